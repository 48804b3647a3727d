"""The service's delivery driver (``DeliveryDriver.run`` over ``DeliveryDriver.start_due``): each
channel runs on its own, so a channel that is busy (a held answer here; a long, paced backlog in
production) never holds up a post for another channel.

The real service (``build_app`` + ``run_forever``) on SQLite, a Mastodon channel on its loopback
fake and a console channel; the feed is a file the test rewrites.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bot.bootstrap import build_app
from bot.settings import Secrets, build_config
from bot.storage.store import Store
from tests.fakes.mastodon_api import DEFAULT_TOKEN, STATUSES, FakeMastodon

DEADLINE = 10.0

FEED = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel><title>Archive</title><link>https://a.example/</link>{items}</channel></rss>
"""
ITEM = """<item><title>Post {n}</title><link>https://a.example/{n}/</link><guid isPermaLink="false">p{n}</guid>
<pubDate>Sun, {n:02} Feb 2020 10:00:00 +0000</pubDate><category>{tag}</category>
<description>Excerpt of post {n}</description></item>"""


def write_feed(path: Path, *posts: tuple[int, str]) -> None:
    path.write_text(FEED.format(items="".join(ITEM.format(n=n, tag=tag) for n, tag in posts)), encoding="utf-8")


async def eventually(probe: Callable[[], Awaitable[bool]], what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not await probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def statuses(store: Store) -> dict[tuple[str, str], str]:
    """{(channel, post URL): status}"""
    return {(d.channel, d.post_url or ""): d.status for d in await store.deliveries()}


async def test_a_post_for_an_idle_channel_goes_out_while_another_channel_is_busy(tmp_path: Path) -> None:
    feed = tmp_path / "feed.xml"
    write_feed(feed, (1, "Alpha"))
    with FakeMastodon() as masto:
        held = masto.hold_next(STATUSES)  # the Mastodon channel's first post is made; its answer waits
        raw: dict[str, Any] = {
            "storage": {"url": f"sqlite+aiosqlite:///{tmp_path / 'tagrelay.db'}"},
            "http": {"timeout": 60},  # the held answer must not time out during the test
            "delivery": {"pacing": False},
            "sources": [{"name": "feed", "url": str(feed), "interval": "1h"}],
            "channels": [{"name": "masto", "platform": "mastodon", "instance": masto.url},
                         {"name": "console", "platform": "console", "stream": "stderr"}],
            "subscriptions": [{"tag": "Alpha", "channels": ["masto"], "backfill": 1},
                              {"tag": "Beta", "channels": ["console"]}],
        }
        app = build_app(build_config(raw, path=tmp_path / "tagrelay.toml"),
                        secrets=Secrets(environ={"MASTODON_TOKEN": DEFAULT_TOKEN}))
        async with app:
            task = asyncio.create_task(app.run_forever())
            try:
                async def masto_is_posting() -> bool:
                    if task.done():
                        task.result()
                    return len(masto.seen("POST", STATUSES)) == 1

                await eventually(masto_is_posting, "the backfilled post to reach Mastodon")
                write_feed(feed, (2, "Beta"), (1, "Alpha"))
                await app.poller.poll_source("feed")  # post 2 is queued for the console channel

                async def console_sent() -> bool:
                    return (await statuses(app.store)).get(("console", "https://a.example/2/")) == "sent"

                await eventually(console_sent, "the console channel's post, while Mastodon's answer is held",
                                 timeout=5.0)
                assert (await statuses(app.store))[("masto", "https://a.example/1/")] == "sending"
            finally:
                held.set()

            async def masto_sent() -> bool:
                return (await statuses(app.store)).get(("masto", "https://a.example/1/")) == "sent"

            await eventually(masto_sent, "the Mastodon post once its answer is released")
            app.stop_event.set()
            await asyncio.wait_for(task, DEADLINE)
        assert len(masto.seen("POST", STATUSES)) == 1  # sent once
