"""Pipelined delivery with the REAL Mastodon publisher over real sockets to the loopback Mastodon, through the
real Deliverer and store (SQLite, and PostgreSQL when configured): 1,000 posts go out once each, oldest
first, in claimed groups; a 429 or a 503 in the middle of a group holds the channel, counts only the attempt
that failed and hands the rest of the group back, and a stop (SIGTERM) hands back what was not sent; the next
run sends everything once."""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from bot.clock import FakeClock
from bot.domain.models import DeliveryStatus, ParsedPost, Subscription
from bot.observability import Metrics
from bot.publishers.api import PublisherContext
from bot.publishers.mastodon import MastodonOptions
from bot.publishers.mastodon import plugin as mastodon_plugin
from bot.services.delivery import ChannelRuntime, Deliverer
from bot.settings import DeliveryConfig
from bot.storage.store import Store
from tests.delivery_support import deliver_due
from tests.fakes.http import Request
from tests.fakes.mastodon_api import DEFAULT_TOKEN, STATUSES, FakeMastodon
from tests.integration.test_store import poll

CONFIG = DeliveryConfig(pacing=False, max_attempts=3, retry_base=10, retry_cap=100)
LINK = re.compile(r"https://a\.example/(\d+)/")
BASE = datetime(2026, 1, 1, tzinfo=UTC)


def item(n: int) -> ParsedPost:
    return ParsedPost(title=f"Post {n}", url=f"https://a.example/{n}/", guid=f"p{n}", tags=("MEK",),
                      published=BASE + timedelta(minutes=n), summary_html=f"<p>Excerpt {n}</p>")


@dataclass
class Rig:
    fake: FakeMastodon
    store: Store
    clock: FakeClock
    chan: ChannelRuntime

    def deliverer(self) -> Deliverer:
        return Deliverer(self.store, {self.chan.name: self.chan}, self.clock, CONFIG, Metrics(), owner="test",
                         rng=random.Random(5))

    def posted(self) -> list[int]:
        with self.fake.lock:
            return [int(m[1]) for s in self.fake.statuses for m in [LINK.search(s.text)] if m]

    async def rows(self) -> dict[int, tuple[str, int]]:
        out = {}
        for row in await self.store.deliveries(channel="masto", limit=5000):
            m = LINK.search(row.post_url or "")
            assert m is not None
            out[int(m[1])] = (row.status, row.attempts)
        return out

    def on_status(self, number: int, script: Callable[[], object]) -> None:
        """Call ``script()`` when the ``number``-th status request arrives, before it is answered."""
        seen = [0]

        def hook(request: Request) -> None:
            if request.method == "POST" and request.path == STATUSES:
                seen[0] += 1
                if seen[0] == number:
                    script()

        self.fake.on_request = hook


@pytest.fixture
async def rig(store: Store, clock: FakeClock) -> AsyncIterator[Rig]:
    with FakeMastodon(clock=clock.now) as fake:
        async with httpx.AsyncClient(timeout=httpx.Timeout(5.0)) as http:
            options = MastodonOptions.model_validate({"name": "masto", "platform": "mastodon", "instance": fake.url})
            ctx = PublisherContext(http=http, secret=lambda name: DEFAULT_TOKEN,
                                   logger=logging.getLogger("test.pipeline"), clock=clock)
            chan = ChannelRuntime("masto", "mastodon", mastodon_plugin, options, mastodon_plugin.create(options, ctx))
            await chan.publisher.initialize()
            await store.sync_config([("archive", "https://a.example/feed/", "rss")], [("masto", "mastodon")],
                                    [Subscription("mek", "MEK", "masto")], clock.now())
            await poll(store, clock, [])
            try:
                yield Rig(fake, store, clock, chan)
            finally:
                await chan.publisher.aclose()


async def test_a_thousand_posts_go_out_once_each_oldest_first(rig: Rig) -> None:
    await poll(rig.store, rig.clock, [item(n) for n in range(1000, 0, -1)])
    deliverer = rig.deliverer()
    assert deliverer.pipelined(rig.chan)
    outcomes = await deliver_due(deliverer)
    assert len(outcomes) == 1000 and {o.status for o in outcomes} == {DeliveryStatus.SENT}
    assert rig.posted() == list(range(1, 1001))
    assert rig.fake.idempotent_replays == 0
    assert await rig.rows() == {n: ("sent", 1) for n in range(1, 1001)}


async def test_a_rate_limit_mid_group_holds_the_channel_as_told_and_requeues_the_rest(rig: Rig) -> None:
    await poll(rig.store, rig.clock, [item(n) for n in range(40, 0, -1)])
    reset = rig.clock.now() + timedelta(seconds=120)
    rig.on_status(5, lambda: rig.fake.rate_limit(reset))
    outcomes = await deliver_due(rig.deliverer())
    assert [o.status for o in outcomes] == [DeliveryStatus.SENT] * 4 + [DeliveryStatus.QUEUED]
    assert rig.posted() == [1, 2, 3, 4]
    assert await rig.rows() == {n: ("sent", 1) if n <= 4 else ("queued", 0) for n in range(1, 41)}
    [chan] = [c for c in await rig.store.channel_counts(rig.clock.now()) if c.channel == "masto"]
    assert chan.hold_until is not None and abs((chan.hold_until - reset).total_seconds()) < 0.001
    assert await rig.store.deliveries(status="sending") == []
    rig.clock.advance(120)
    await deliver_due(rig.deliverer())
    assert rig.posted() == list(range(1, 41)) and rig.fake.idempotent_replays == 0
    assert await rig.rows() == {n: ("sent", 1) for n in range(1, 41)}


async def test_a_server_error_mid_group_counts_that_attempt_only(rig: Rig) -> None:
    await poll(rig.store, rig.clock, [item(n) for n in range(40, 0, -1)])
    rig.on_status(5, lambda: rig.fake.fail_next(503, {"error": "Service Unavailable"}, match=STATUSES))
    await deliver_due(rig.deliverer())
    rows = await rig.rows()
    assert rows[5] == ("failed", 1)
    assert {n: rows[n] for n in range(6, 41)} == dict.fromkeys(range(6, 41), ("queued", 0))
    rig.clock.advance(200)
    await deliver_due(rig.deliverer())
    assert rig.posted() == list(range(1, 41))
    rows = await rig.rows()
    assert rows.pop(5) == ("sent", 2) and set(rows.values()) == {("sent", 1)}


async def test_a_stop_mid_group_hands_the_unsent_posts_back_as_queued(rig: Rig) -> None:
    await poll(rig.store, rig.clock, [item(n) for n in range(40, 0, -1)])
    deliverer = rig.deliverer()
    loop = asyncio.get_running_loop()
    # SIGTERM while post 5 is on its way: the service sets `stopping` (from the fake's thread, the loop's way)
    rig.on_status(5, lambda: loop.call_soon_threadsafe(setattr, deliverer, "stopping", True))
    outcomes = await deliver_due(deliverer)
    assert [o.status for o in outcomes] == [DeliveryStatus.SENT] * 5  # the send under way finished
    assert rig.posted() == [1, 2, 3, 4, 5]
    assert await rig.rows() == {n: ("sent", 1) if n <= 5 else ("queued", 0) for n in range(1, 41)}
    assert await rig.store.deliveries(status="sending") == []
    await deliver_due(rig.deliverer())  # the next start sends the rest, each once
    assert rig.posted() == list(range(1, 41)) and rig.fake.idempotent_replays == 0
