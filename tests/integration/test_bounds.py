"""Issue 15 defect 2 on real wire: hostile sizes cost bounded time and never stall the event loop.

* an item with a 250 KB link is skipped and reported; the rest of the feed is delivered;
* a megabyte title is stored and delivered cut to ``TITLE_CHARS``;
* while a big hostile feed is parsed, the health endpoint keeps answering (parsing runs in a
  worker thread, not on the event loop that also runs the instance-lease heartbeat).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bot.bootstrap import build_app
from bot.clock import FakeClock
from bot.domain.limits import LINK_CHARS, TITLE_CHARS
from bot.health import HealthServer, HealthSettings
from bot.settings import Secrets, build_config
from bot.testing import RecordingPlugin
from tests.fakes.archive import ArchiveServer
from tests.fakes.http import LoopbackServer, Request, Response
from tests.integration.test_polling_service import make_app, texts

DEADLINE = 30.0


@pytest.fixture
def archive() -> Iterator[ArchiveServer]:
    with ArchiveServer() as server:
        server.add_post(title="Old MEK", tags=["MEK"])
        yield server


async def test_an_item_with_an_overlong_link_is_skipped_and_reported(db_url: str, archive: ArchiveServer,
                                                                   clock: FakeClock,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    plugin = RecordingPlugin()
    async with make_app(db_url, archive, "rss", plugin, clock) as app:
        await app.run_once()
        archive.add_post(title="Hostile", tags=["MEK"], slug="a" * 250_000)
        archive.add_post(title="Fine", tags=["MEK"])
        clock.advance(120)
        with caplog.at_level(logging.WARNING, logger="tagrelay.poll"):
            report = await app.run_once()
        assert [p.outcome for p in report.polls] == ["new"]
        assert report.polls[0].new_posts == 1
        assert texts(plugin, "masto") == ["Fine"]
        rejected = [r for r in caplog.records if r.getMessage() == "poll.item_rejected"]
        assert len(rejected) == 1
        fields = rejected[0].kv  # type: ignore[attr-defined]
        assert fields["source"] == "archive" and fields["title"] == "Hostile"
        assert f"over the {LINK_CHARS:,}-character limit" in fields["reason"]
        status = await app.store.sources()
        assert status[0].post_count == 2  # the hostile item is not stored


async def test_a_megabyte_title_is_stored_and_delivered_cut(db_url: str, archive: ArchiveServer,
                                                          clock: FakeClock) -> None:
    plugin = RecordingPlugin()
    async with make_app(db_url, archive, "rss", plugin, clock) as app:
        await app.run_once()
        archive.add_post(title="word " * 200_000, tags=["MEK"], slug="long-title")
        clock.advance(120)
        await app.run_once()
        [sent] = plugin.publishers["masto"].sent
        assert sent.text.startswith("word word")
        titles = {row.post_title for row in await app.store.deliveries(limit=10)}
        assert all(len(title) <= TITLE_CHARS for title in titles)
        assert any(title.endswith("…") for title in titles)


class _BigFeed(LoopbackServer):
    """Serves one large, valid RSS body (20,000 items, ~8 MB) at any path."""

    def __init__(self) -> None:
        super().__init__()
        items = "".join(
            f"<item><title>Item {i}</title><link>https://example.org/{i}</link><guid>g{i}</guid>"
            f"<description>{'x' * 300}</description><category>MEK</category></item>"
            for i in range(20_000)
        )
        self.body = ("<?xml version='1.0'?><rss version='2.0'><channel><title>Big</title>"
                     f"{items}</channel></rss>").encode()

    def handle(self, request: Request) -> Response:
        return Response(200, self.body, {"Content-Type": "application/rss+xml"})


async def test_healthz_answers_while_a_big_feed_is_parsed(tmp_path: Path) -> None:
    with _BigFeed() as feed:
        raw = {
            "storage": {"url": f"sqlite+aiosqlite:///{tmp_path / 'tagrelay.db'}"},
            "sources": [{"name": "big", "url": feed.url + "/feed/", "kind": "rss", "interval": "1h",
                         "baseline_depth": 1000}],
            "channels": [{"name": "console", "platform": "console", "paused": True, "stream": "stderr"}],
            "subscriptions": [{"tag": "MEK", "channels": ["console"]}],
        }
        config = build_config(raw, path=tmp_path / "tagrelay.toml")
        server = HealthServer(HealthSettings(host="127.0.0.1", port=0, timeout=DEADLINE))
        app = build_app(config, secrets=Secrets(environ={}), sidecars=[server])
        async with app:
            await server.start(app)
            try:
                async with httpx.AsyncClient(base_url=server.url, timeout=DEADLINE) as client:
                    assert (await client.get("/healthz")).status_code == 200
                    started = time.monotonic()
                    poll = asyncio.create_task(app.poller.poll_source("big", force=True))
                    answered = [started]
                    while not poll.done():
                        live = await client.get("/healthz")
                        assert live.status_code == 200
                        answered.append(time.monotonic())
                        assert answered[-1] - started < DEADLINE, "the poll did not finish"
                    outcome = await poll
                    answered.append(time.monotonic())
                assert outcome.outcome == "baseline" and outcome.posts == 1000  # the baseline keeps the newest 1000
                took = answered[-1] - started
                longest = max(b - a for a, b in itertools.pairwise(answered))
                # Parsing ~8 MB is most of the poll. On the event loop it would hold /healthz for
                # (nearly) all of that time; in a worker thread, /healthz keeps answering throughout.
                assert longest < took / 2, f"/healthz stalled {longest:.2f} s of a {took:.2f} s poll"
            finally:
                await server.stop()
