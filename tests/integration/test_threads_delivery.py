"""Threads end to end in-process: the real publisher over real sockets against ``FakeThreads``, through the real
Deliverer and store (SQLite; PostgreSQL too when ``TAGRELAY_TEST_POSTGRES_URL`` is set), on a ``FakeClock``.

Two posts (2, then 3) are queued for one Threads channel; each test scripts the fake the way Threads fails and
checks the rows, the channel's hold or pause, what the admins were told and what the profile holds.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.clock import FakeClock
from bot.domain.models import DeliveryStatus, ParsedPost, Subscription
from bot.observability import Metrics
from bot.publishers.api import PublisherContext
from bot.publishers.threads import ThreadsOptions, plugin
from bot.publishers.threads.publisher import QUOTA_RECHECK
from bot.services.delivery import ChannelRuntime, Deliverer, DeliveryOutcome
from bot.settings import DeliveryConfig
from bot.storage.store import Store
from tests.delivery_support import deliver_due
from tests.fakes.threads_api import CONTAINERS, DEFAULT_TOKEN, PUBLISH, FakeThreads
from tests.integration.test_store import parsed, poll

POLICY = DeliveryConfig(pacing=False, max_attempts=4, retry_base=10, retry_cap=100)
LINK = re.compile(r"https://a\.example/(\d+)/")
EPS = timedelta(milliseconds=1)
NAME = "threads-main"


class Notes:
    def __init__(self) -> None:
        self.texts: list[str] = []

    async def notify(self, text: str) -> None:
        self.texts.append(text)


@dataclass
class Rig:
    fake: FakeThreads
    chan: ChannelRuntime
    store: Store
    clock: FakeClock
    notes: Notes = field(default_factory=Notes)

    def deliverer(self) -> Deliverer:
        return Deliverer(self.store, {NAME: self.chan}, self.clock, POLICY, Metrics(), owner="test",
                         notifier=self.notes, rng=random.Random(3))

    async def deliver(self) -> list[DeliveryOutcome]:
        return await deliver_due(self.deliverer())

    def posted(self) -> list[int]:
        return [int(m[1]) for text in self.fake.posted_texts() for m in [LINK.search(text)] if m]

    async def states(self) -> dict[int, tuple[str, int]]:
        out = {}
        for row in await self.store.deliveries(channel=NAME):
            m = LINK.search(row.post_url or "")
            assert m is not None
            out[int(m[1])] = (row.status, row.attempts)
        return out

    async def channel(self) -> Any:
        (counts,) = [c for c in await self.store.channel_counts(self.clock.now()) if c.channel == NAME]
        return counts


@pytest.fixture
def threads(clock: FakeClock) -> Iterator[FakeThreads]:
    with FakeThreads(clock=clock.now) as fake:
        yield fake


@pytest.fixture
async def rig(store: Store, clock: FakeClock, threads: FakeThreads, tmp_path: Path) -> AsyncIterator[Rig]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(5.0, read=0.5)) as http:
        options = ThreadsOptions.model_validate({"name": NAME, "platform": "threads", "api_base": threads.url})
        ctx = PublisherContext(http=http, secret=lambda _name: DEFAULT_TOKEN,
                               logger=logging.getLogger("test.threads"), clock=clock, state_dir=tmp_path)
        chan = ChannelRuntime(NAME, "threads", plugin, options, plugin.create(options, ctx))
        await chan.publisher.initialize()
        await store.sync_config([("archive", "https://a.example/feed/", "rss")], [(NAME, "threads")],
                                [Subscription("mek", "MEK", NAME)], clock.now())
        await poll(store, clock, [])  # the baseline
        await poll(store, clock, [parsed(3, "MEK"), parsed(2, "MEK")])
        yield Rig(threads, chan, store, clock)


async def test_both_posts_arrive_once_in_order_as_text_posts_with_their_link(rig: Rig) -> None:
    outcomes = await rig.deliver()
    assert [o.status for o in outcomes] == [DeliveryStatus.SENT, DeliveryStatus.SENT]
    assert rig.posted() == [2, 3]
    assert [p.link_attachment for p in rig.fake.posts] == ["https://a.example/2/", "https://a.example/3/"]
    rows = {r.post_url: r for r in await rig.store.deliveries(channel=NAME)}
    row = rows["https://a.example/2/"]
    assert (row.remote_id, row.remote_url) == (rig.fake.posts[0].id, rig.fake.posts[0].permalink)
    assert row.staged is not None and row.staged.startswith(rig.fake.posts[0].container_id + ":")
    assert len(rig.fake.refreshes) == 1  # the token's expiry was unknown: refreshed once, not per post


async def test_a_429_holds_the_channel_to_the_second_and_drops_nothing(rig: Rig) -> None:
    rig.fake.rate_limit(120, match=PUBLISH)
    await rig.deliver()
    assert await rig.states() == {2: ("queued", 0), 3: ("queued", 0)}  # the attempt is not counted
    held = (await rig.channel()).hold_until
    assert held == rig.clock.now() + timedelta(seconds=120)
    rig.clock.advance(120 - 0.001)
    assert await rig.deliver() == []  # not a millisecond early
    rig.clock.advance(0.001)
    await rig.deliver()
    assert rig.posted() == [2, 3] and await rig.states() == {2: ("sent", 1), 3: ("sent", 1)}
    assert len(rig.fake.containers) == 2  # post 2's container was staged, then published after the hold


async def test_a_spent_publishing_quota_holds_the_channel_until_posts_leave_the_24_hours(rig: Rig) -> None:
    rig.fake.spend_quota(250)
    await rig.deliver()
    assert await rig.states() == {2: ("queued", 0), 3: ("queued", 0)}
    assert (await rig.channel()).hold_until == rig.clock.now() + timedelta(seconds=QUOTA_RECHECK)
    assert rig.fake.containers == []
    for _ in range(int(86400 / QUOTA_RECHECK) - 1):  # still spent: asked again each time, nothing sent
        rig.clock.advance(QUOTA_RECHECK)
        await rig.deliver()
        assert rig.fake.posts == []
    rig.clock.advance(QUOTA_RECHECK)  # the other app's posts are 24 h old now
    await rig.deliver()
    assert rig.posted() == [2, 3]


async def test_a_revoked_token_pauses_the_channel_with_the_reason_and_tells_the_admins(rig: Rig) -> None:
    rig.fake.revoke(DEFAULT_TOKEN)
    rig.fake.refreshes.clear()
    await rig.deliver()
    counts = await rig.channel()
    assert counts.paused and "refused the access token" in counts.paused_reason
    assert "password changed" in counts.paused_reason and "THREADS_ACCESS_TOKEN" in counts.paused_reason
    assert await rig.states() == {2: ("queued", 0), 3: ("queued", 0)}  # the queue is kept
    (note,) = rig.notes.texts
    assert note.startswith(f"Channel {NAME} paused (credentials)") and "/resume threads-main" in note
    assert DEFAULT_TOKEN not in note and DEFAULT_TOKEN not in counts.paused_reason


async def test_an_expired_token_pauses_the_channel_with_the_reason(rig: Rig) -> None:
    rig.fake.expire(DEFAULT_TOKEN)
    await rig.deliver()
    counts = await rig.channel()
    assert counts.paused and "it has expired" in counts.paused_reason and rig.notes.texts


async def test_a_token_near_its_end_is_refreshed_once_and_the_channel_goes_on(rig: Rig) -> None:
    await rig.deliver()
    assert len(rig.fake.refreshes) == 1
    await poll(rig.store, rig.clock, [parsed(4, "MEK"), parsed(5, "MEK")])
    rig.clock.advance(86400 * 31)  # 29 days left
    rig.fake.expire(DEFAULT_TOKEN)  # the environment's token is long gone; the refreshed one carries on
    await rig.deliver()
    assert len(rig.fake.refreshes) == 2 and rig.posted() == [2, 3, 4, 5]
    assert {p.token for p in rig.fake.posts[2:]} == {rig.fake.refreshes[1]}


async def test_a_lost_answer_is_retried_without_a_second_post(rig: Rig) -> None:
    rig.fake.drop_next(PUBLISH, process=True)  # post 2 is made; its answer never arrives
    await rig.deliver()
    assert await rig.states() == {2: ("failed", 1), 3: ("queued", 0)}  # idempotent: retried, not `unknown`
    assert rig.posted() == [2]
    rig.clock.advance(POLICY.retry_cap + 1)
    await rig.deliver()
    assert rig.posted() == [2, 3] and await rig.states() == {2: ("sent", 2), 3: ("sent", 1)}
    assert len(rig.fake.containers) == 2 and len(rig.fake.seen("POST", CONTAINERS)) == 2
    rows = {r.post_url: r for r in await rig.store.deliveries(channel=NAME)}
    assert rows["https://a.example/2/"].remote_id == rig.fake.posts[0].id  # found among the latest posts


async def test_an_image_threads_cannot_fetch_goes_out_as_a_text_post(rig: Rig) -> None:
    rig.chan.options = rig.chan.options.model_copy(update={"send_image": True})
    await poll(rig.store, rig.clock, [parsed(4, "MEK")])
    rig.fake.image_error = "UNKNOWN"
    post = ParsedPost(title="Post 6", url="https://a.example/6/", guid="p6", tags=("MEK",),
                      published=datetime(2026, 1, 6, tzinfo=UTC), summary_html="<p>six</p>",
                      image_url="https://a.example/6.jpg")
    await poll(rig.store, rig.clock, [post])
    await rig.deliver()
    assert rig.posted() == [2, 3, 4, 6]
    sixth = rig.fake.posts[-1]
    assert sixth.media_type == "TEXT" and sixth.link_attachment == "https://a.example/6/"
    assert [c.media_type for c in rig.fake.containers].count("IMAGE") == 1
