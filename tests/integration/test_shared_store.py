"""Shared mode on the store: instances, source claims, channel leases and take-over of a dead instance.

These run on SQLite and PostgreSQL (the statements must work on both); the
concurrency that only PostgreSQL has (several processes, ``SKIP LOCKED``) is
exercised end to end in ``tests/e2e/test_multi_instance.py``.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from bot.clock import FakeClock
from bot.domain.models import DeliveryStatus
from bot.domain.state import CHANNEL_LEASE
from bot.storage.store import Store
from tests.integration.test_store import parsed, poll, setup


async def _sources(store: Store, clock: FakeClock, n: int) -> list[str]:
    names = [f"s{i}" for i in range(n)]
    await store.sync_config([(name, f"https://{name}.example/feed/", "rss") for name in names], [], [], clock.now())
    return names


async def test_a_source_is_claimed_by_one_owner_until_its_poll_is_recorded(store: Store, clock: FakeClock) -> None:
    names = await _sources(store, clock, 5)
    now = clock.now()
    a = await store.claim_sources("a", now, 60, names, limit=3)
    b = await store.claim_sources("b", now, 60, names, limit=10)
    assert len(a) == 3 and len(b) == 2 and not set(a) & set(b)
    assert await store.claim_sources("c", now, 60, names, limit=10) == []
    assert await store.claim_sources("a", now, 60, names, limit=10, due_only=False) == []  # not twice at once
    # recording the poll releases the lease; the source is not due again before next_poll_at
    state = await store.source(a[0])
    assert state.lease_owner == "a"
    await store.record_not_modified(state.id, state.cache, now, now + timedelta(minutes=10))
    assert (await store.source(a[0])).lease_owner is None
    assert await store.claim_sources("c", now, 60, names, limit=10) == []
    assert await store.claim_sources("c", now, 1000, names, limit=10, due_only=False) == [a[0]]
    clock.advance(600)  # a's and b's leases (60 s) expired without a record: their owners died mid-poll
    taken = await store.claim_sources("d", clock.now(), 60, names, limit=10)
    assert sorted(taken) == sorted(set(names) - {a[0]})  # c still holds a[0] (1000 s)
    clock.advance(401)
    assert a[0] in await store.claim_sources("e", clock.now(), 60, names, limit=10)


async def test_concurrent_claims_never_hand_out_a_source_twice(store: Store, clock: FakeClock) -> None:
    names = await _sources(store, clock, 40)
    results = await asyncio.gather(*(store.claim_sources(f"o{i}", clock.now(), 60, names, limit=7)
                                     for i in range(8)))
    flat = [n for r in results for n in r]
    assert len(flat) == len(set(flat)) == 40


async def test_channel_lease_is_exclusive_renewable_and_expires(store: Store, clock: FakeClock) -> None:
    lease = CHANNEL_LEASE + "masto"
    assert await store.try_lease(lease, "a", clock.now(), 10)
    assert not await store.try_lease(lease, "b", clock.now(), 10)
    clock.advance(8)
    assert await store.try_lease(lease, "a", clock.now(), 10)  # renewed: lives until +18
    clock.advance(8)
    assert not await store.try_lease(lease, "b", clock.now(), 10)
    clock.advance(3)
    assert await store.try_lease(lease, "b", clock.now(), 10)  # a stopped renewing
    assert not await store.try_lease(lease, "a", clock.now(), 10)
    await store.release_lease(lease, "b")
    assert await store.try_lease(lease, "a", clock.now(), 10)


async def test_a_dead_instance_is_taken_over_and_a_live_one_is_left_alone(store: Store, clock: FakeClock) -> None:
    await setup(store, clock)  # channels tg (telegram) and masto (mastodon)
    await poll(store, clock, [])
    await poll(store, clock, [parsed(1, "MEK"), parsed(2, "MEK")])  # 2 posts → tg and masto each
    await store.register_instance("dead", "1.0", clock.now(), 10)
    await store.register_instance("live", "1.0", clock.now(), 10)
    d1 = await store.claim_next("tg", clock.now(), "dead")
    d2 = await store.claim_next("masto", clock.now(), "dead")
    d3 = await store.claim_next("masto", clock.now(), "live")
    assert d1 and d2 and d3
    assert await store.try_lease(CHANNEL_LEASE + "masto", "dead", clock.now(), 10)
    [src] = await store.claim_sources("dead", clock.now(), 60, ["archive"], limit=1, due_only=False)

    # nobody's heartbeat expired: nothing is touched
    assert await store.reap_instances(clock.now(), resend_channels={"masto"}) == ([], 0, 0)
    clock.advance(8)
    assert await store.heartbeat_instance("live", clock.now(), 10)
    clock.advance(5)  # dead's registration expired at +10, live's lives until +18
    held = {i.owner: i for i in await store.instances()}
    assert held["dead"].channels == ("masto",) and held["dead"].sources == (src,)
    dead, requeued, unknown = await store.reap_instances(clock.now(), resend_channels={"masto"})
    assert (dead, requeued, unknown) == (["dead"], 1, 1)
    assert [i.owner for i in await store.instances()] == ["live"]
    assert not await store.heartbeat_instance("dead", clock.now(), 10)  # it must stop if it wakes up
    rows = {d.id: d for d in await store.deliveries()}
    assert rows[d2.id].status == DeliveryStatus.QUEUED and rows[d2.id].attempts == 0  # idempotent: resent
    assert rows[d1.id].status == DeliveryStatus.UNKNOWN  # Telegram: not resent blindly
    assert rows[d3.id].status == DeliveryStatus.SENDING  # the live instance is still sending it
    assert await store.try_lease(CHANNEL_LEASE + "masto", "live", clock.now(), 10)
    assert (await store.source("archive")).lease_owner is None
    # a second reaper finds nothing more to do
    assert await store.reap_instances(clock.now(), resend_channels={"masto"}) == ([], 0, 0)


async def test_unregister_releases_everything(store: Store, clock: FakeClock) -> None:
    names = await _sources(store, clock, 2)
    await store.register_instance("a", "1.0", clock.now(), 10)
    assert len(await store.claim_sources("a", clock.now(), 60, names, limit=5)) == 2
    assert await store.try_lease(CHANNEL_LEASE + "x", "a", clock.now(), 10)
    await store.unregister_instance("a")
    assert await store.instances() == []
    assert await store.try_lease(CHANNEL_LEASE + "x", "b", clock.now(), 10)
    assert len(await store.claim_sources("b", clock.now(), 60, names, limit=5)) == 2
