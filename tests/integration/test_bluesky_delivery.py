"""Bluesky through the REAL Deliverer and store (SQLite, and PostgreSQL when configured): a 429 holds the
channel to the second and drops nothing, an expired session is refreshed once, revoked credentials pause the
channel with the reason and tell the admins, an ambiguous outcome is resent without a duplicate.

Time is a ``FakeClock`` shared by the service and the fake PDS (its tokens expire and its rate limits reset
on it)."""

from __future__ import annotations

import logging
import random
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest

from bot.bootstrap import StoreAttempts
from bot.clock import FakeClock
from bot.domain.models import Subscription
from bot.observability import Metrics
from bot.publishers.api import PublisherContext
from bot.publishers.bluesky import BlueskyOptions, plugin
from bot.services.delivery import ChannelRuntime, Deliverer
from bot.settings import DeliveryConfig
from bot.storage.store import Store
from tests.delivery_support import deliver_due
from tests.fakes.bluesky_api import APP_PASSWORD, CREATE_RECORD, CREATE_SESSION, HANDLE, FakeBluesky
from tests.integration.test_store import parsed, poll

POLICY = DeliveryConfig(pacing=False, max_attempts=3, retry_base=10, retry_cap=100)
LINK = re.compile(r"https://a\.example/(\d+)/")


class Notes:
    def __init__(self) -> None:
        self.texts: list[str] = []

    async def notify(self, text: str) -> None:
        self.texts.append(text)


@dataclass
class Rig:
    fake: FakeBluesky
    store: Store
    clock: FakeClock
    chan: ChannelRuntime
    ctx: PublisherContext
    notes: Notes

    def deliverer(self) -> Deliverer:
        return Deliverer(self.store, {self.chan.name: self.chan}, self.clock, POLICY, Metrics(), owner="test",
                         notifier=self.notes, rng=random.Random(5))

    async def deliver(self) -> list[Any]:
        return await deliver_due(self.deliverer())

    def restart(self) -> None:
        """A new process: a new publisher (no session) on the same database."""
        self.chan.publisher = plugin.create(self.chan.options, self.ctx)

    def posted(self) -> list[int]:
        with self.fake.lock:
            uris = [c.record["embed"]["external"]["uri"] for c in self.fake.created]
        return [int(m[1]) for uri in uris for m in [LINK.search(uri)] if m]

    async def states(self) -> dict[int, tuple[str, int]]:
        out = {}
        for row in await self.store.deliveries(channel=self.chan.name):
            m = LINK.search(row.post_url or "")
            assert m is not None
            out[int(m[1])] = (row.status, row.attempts)
        return out


@pytest.fixture
async def rig(store: Store, clock: FakeClock) -> AsyncIterator[Rig]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(5.0, read=0.4)) as http:
        with FakeBluesky(clock=clock.now) as fake:
            options = BlueskyOptions.model_validate({"name": "bsky", "platform": "bluesky", "handle": HANDLE,
                                                     "service": fake.url})
            ctx = PublisherContext(http=http, secret=lambda name: {"BLUESKY_APP_PASSWORD": APP_PASSWORD}[name],
                                   logger=logging.getLogger("test.bluesky.delivery"), clock=clock,
                                   attempts=StoreAttempts(store, clock))
            chan = ChannelRuntime("bsky", "bluesky", plugin, options, plugin.create(options, ctx))
            await store.sync_config([("archive", "https://a.example/feed/", "rss")], [("bsky", "bluesky")],
                                    [Subscription("mek", "MEK", "bsky")], clock.now())
            await poll(store, clock, [])  # the baseline
            await poll(store, clock, [parsed(3, "MEK"), parsed(2, "MEK")])
            yield Rig(fake, store, clock, chan, ctx, Notes())


async def test_both_posts_arrive_once_with_facets_and_card(rig: Rig) -> None:
    await rig.deliver()
    assert await rig.states() == {2: ("sent", 1), 3: ("sent", 1)}
    assert rig.posted() == [2, 3] and rig.fake.logins == 1
    rows = await rig.store.deliveries(channel="bsky")
    assert {r.remote_url for r in rows} == {f"https://bsky.app/profile/{rig.fake.account.did}/post/{c.rkey}"
                                            for c in rig.fake.created}


async def test_a_429_holds_the_channel_to_the_second_and_drops_nothing(rig: Rig) -> None:
    reset = int(rig.clock.now().timestamp()) + 1800
    rig.fake.rate_limit(reset)
    await rig.deliver()
    assert await rig.states() == {2: ("queued", 0), 3: ("queued", 0)}
    hold = (await rig.store.channel(rig.chan.name)).hold_until
    assert hold is not None and hold.timestamp() == reset
    rig.clock.advance(1799.999)
    assert await rig.deliver() == [] and rig.posted() == []
    rig.clock.advance(0.001)
    await rig.deliver()
    assert await rig.states() == {2: ("sent", 1), 3: ("sent", 1)} and rig.posted() == [2, 3]


async def test_an_expired_session_is_refreshed_once(rig: Rig) -> None:
    await rig.deliver()
    await poll(rig.store, rig.clock, [parsed(4, "MEK")])
    rig.clock.advance(2 * 3600 + 1)  # the access JWT has expired on the fake's clock
    await rig.deliver()
    assert (await rig.states())[4] == ("sent", 1)
    assert (rig.fake.logins, rig.fake.refreshes) == (1, 1)


async def test_revoked_credentials_pause_the_channel_and_tell_the_admins(rig: Rig) -> None:
    rig.fake.revoke_app_password()
    await rig.deliver()
    assert await rig.states() == {2: ("queued", 0), 3: ("queued", 0)}
    channel = await rig.store.channel("bsky")
    assert channel.paused and "BLUESKY_APP_PASSWORD" in (channel.paused_reason or "")
    assert "Invalid identifier or password" in (channel.paused_reason or "")
    [note] = rig.notes.texts
    assert note.startswith("Channel bsky paused (credentials)") and "/resume bsky" in note
    for secret in [*rig.fake.live_secrets(), APP_PASSWORD]:
        assert secret not in (channel.paused_reason or "") and secret not in note


@pytest.mark.parametrize("how", ["drop", "timeout"])
async def test_an_ambiguous_outcome_is_resent_without_a_duplicate(rig: Rig, how: str) -> None:
    if how == "drop":
        rig.fake.drop_next(CREATE_RECORD, process=True)
    else:
        rig.fake.hold_next(CREATE_RECORD)
    await rig.deliver()
    assert await rig.states() == {2: ("failed", 1), 3: ("queued", 0)}
    assert rig.posted() == [2]
    rig.clock.advance(100)
    rig.restart()  # and a restart in between, for good measure: the key is the delivery's, not the process's
    await rig.deliver()
    assert await rig.states() == {2: ("sent", 2), 3: ("sent", 1)}
    assert rig.posted() == [2, 3]
    assert len(rig.fake.seen("POST", CREATE_RECORD)) == 2  # post 2 was not sent again


async def test_a_crash_loop_does_not_spend_the_logins(rig: Rig) -> None:
    """Twenty starts, three seconds apart, each with a new post to send: a login each (the session dies with
    the process) until the persisted bucket is empty after twelve; then the channel is held until a login is
    allowed again, nothing dropped, nothing sent twice. The PDS itself would refuse logins after thirty in five
    minutes and lock the account out for the day after a hundred."""
    await rig.deliver()  # posts 2 and 3: the first start's login
    for n in range(4, 23):
        rig.restart()
        await poll(rig.store, rig.clock, [parsed(n, "MEK")])
        await rig.deliver()
        rig.clock.advance(3)
    assert rig.fake.logins == 12 and len(rig.fake.seen("POST", CREATE_SESSION)) == 12
    assert rig.posted() == list(range(2, 15))  # one login for posts 2 and 3, then one per start
    states = await rig.states()
    assert {n for n, (status, _) in states.items() if status == "queued"} == set(range(15, 23))
    hold = (await rig.store.channel(rig.chan.name)).hold_until
    assert hold is not None and timedelta(minutes=30) < hold - rig.clock.now() <= timedelta(minutes=40)
    rig.clock.set(hold)
    rig.restart()
    await rig.deliver()
    assert rig.fake.logins == 13 and rig.posted() == list(range(2, 23))
    assert {status for status, _ in (await rig.states()).values()} == {"sent"}
