"""The push writes on both databases: a push brings a source's poll forward (or not) in one transaction
that every instance sees, and a WebSub request is claimed by exactly one instance."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

from bot.clock import FakeClock
from bot.domain.push import HubLink, PushOutcome, WebSubState
from bot.storage import migrate
from bot.storage.store import Store

HUB = HubLink("https://hub.example/", "https://site.example/feed/")


async def _sources(store: Store, clock: FakeClock) -> None:
    await store.sync_config([("archive", "https://site.example/feed/", "rss"),
                             ("other", "https://other.example/feed/", "rss")], [], [], clock.now())


async def test_a_push_moves_the_next_poll_forward_counts_itself_and_keeps_a_backoff(store: Store,
                                                                                  clock: FakeClock) -> None:
    await _sources(store, clock)
    assert await store.request_poll("nosuchsource", clock.now(), 2.0) is None
    never = await store.request_poll("archive", clock.now(), 2.0)  # never polled: due already
    assert never is not None and never.outcome == PushOutcome.DUE
    state = await store.source("archive")
    await store.record_not_modified(state.id, state.cache, clock.now(), clock.now() + timedelta(hours=1))
    clock.advance(1)
    soon = await store.request_poll("archive", clock.now(), 2.0)
    assert soon is not None and (soon.outcome, soon.at) == (PushOutcome.QUEUED, clock.now() + timedelta(seconds=1))
    state = await store.source("archive")
    assert state.next_poll_at == clock.now() + timedelta(seconds=1) and state.push_requests == 2
    assert await store.push_requests("archive") == 2 and await store.push_requests("other") == 0
    # a failing source (Retry-After: one hour) keeps its time; the push is still counted
    await store.record_poll_failure(state.id, "HTTP 503", clock.now(), clock.now() + timedelta(hours=1))
    held = await store.request_poll("archive", clock.now(), 2.0)
    assert held is not None and (held.outcome, held.at) == (PushOutcome.HELD, clock.now() + timedelta(hours=1))
    state = await store.source("archive")
    assert state.next_poll_at == clock.now() + timedelta(hours=1) and state.push_requests == 3


async def test_websub_rows_follow_the_feed_and_a_due_request_is_claimed_once(store: Store, clock: FakeClock) -> None:
    await _sources(store, clock)
    assert await store.websub_want("nosuchsource", HUB, clock.now()) is None
    wanted = await store.websub_want("archive", HUB, clock.now())
    assert wanted is not None and wanted.state == WebSubState.PENDING
    again = await store.websub_want("archive", HUB, clock.now())  # the same hub again: left as it is
    assert again is not None and again.state == WebSubState.PENDING

    claimed = await store.websub_claim_due(clock.now(), 600, ["archive", "other"])
    assert [(s.source, s.state, s.renew_at) for s in claimed] == [
        ("archive", WebSubState.REQUESTED, clock.now() + timedelta(seconds=600))]
    assert await store.websub_claim_due(clock.now(), 600, ["archive"]) == []  # not twice
    assert await store.websub_claim_due(clock.now(), 600, ["other"]) == []

    # the hub verified it
    assert not await store.websub_verified("archive", "https://elsewhere/", 3600, clock.now(), clock.now())
    renew = clock.now() + timedelta(minutes=50)
    assert await store.websub_verified("archive", HUB.topic, 3600, clock.now(), renew)
    active = await store.websub_subscription("archive")
    assert active is not None and (active.state, active.expires_at, active.renew_at, active.lease_seconds) == (
        WebSubState.ACTIVE, clock.now() + timedelta(hours=1), renew, 3600)
    # a failure reported for an older request does not undo the verification
    await store.websub_failed("archive", claimed[0].requested_at or clock.now(), "late", clock.now(), clock.now())
    assert (await store.websub_subscription("archive")).state == WebSubState.ACTIVE  # type: ignore[union-attr]

    moved = HubLink("https://newhub.example/", HUB.topic)
    fresh = await store.websub_want("archive", moved, clock.now())
    assert fresh is not None and fresh.state == WebSubState.PENDING and fresh.hub == moved.hub
    assert await store.websub_drop("archive", clock.now())
    assert not await store.websub_drop("archive", clock.now())  # already
    clock.advance(10_000)
    assert await store.websub_claim_due(clock.now(), 600, ["archive"]) == []  # dropped: never renewed
    assert [s.source for s in await store.websub_subscriptions()] == ["archive"]


async def test_two_instances_never_send_the_same_websub_request(store: Store, db_url: str, clock: FakeClock) -> None:
    await _sources(store, clock)
    await store.websub_want("archive", HUB, clock.now())
    await store.websub_want("other", HubLink("https://hub.example/", "https://other.example/feed/"), clock.now())
    second = Store.open(db_url)
    try:
        await migrate.upgrade(second.engine)
        one, two = await asyncio.gather(store.websub_claim_due(clock.now(), 600, ["archive", "other"], limit=1),
                                        second.websub_claim_due(clock.now(), 600, ["archive", "other"], limit=1))
        names = [s.source for s in (*one, *two)]
        assert sorted(names) == sorted(set(names))  # nothing claimed twice
        rest = await store.websub_claim_due(clock.now(), 600, ["archive", "other"])
        assert sorted([*names, *(s.source for s in rest)]) == ["archive", "other"]
    finally:
        await second.aclose()


async def test_migration_0008_keeps_every_source_post_and_delivery_both_ways(db_url: str, clock: FakeClock) -> None:
    """Adding ``sources.push_requests`` must not recreate ``sources``: on SQLite that cascades to every post."""
    from alembic import command
    from sqlalchemy import Connection, column, func, insert, select, table

    sources = table("sources", *(column(c) for c in ("id", "name", "url", "kind", "baseline_done",
                                                      "consecutive_failures", "created_at")))
    posts = table("posts", *(column(c) for c in ("id", "source_id", "key", "title", "summary_html",
                                                  "content_html", "first_seen_at")))
    channels = table("channels", *(column(c) for c in ("id", "name", "platform", "paused", "created_at")))
    deliveries = table("deliveries", *(column(c) for c in ("post_id", "channel_id", "status", "attempts",
                                                            "created_at", "updated_at")))

    def to(revision: str, down: bool = False) -> Callable[[Connection], None]:
        def run(conn: Connection) -> None:
            cfg = migrate.alembic_config()
            cfg.attributes["connection"] = conn
            (command.downgrade if down else command.upgrade)(cfg, revision)
        return run

    async def counts(store: Store) -> tuple[int, int, int]:
        async with store.engine.connect() as conn:
            return tuple([(await conn.execute(select(func.count()).select_from(tbl))).scalar_one()  # type: ignore[return-value]
                          for tbl in (sources, posts, deliveries)])

    store = Store.open(db_url)
    try:
        async with store.engine.begin() as conn:
            await conn.run_sync(to("0006"))
            source_id = (await conn.execute(insert(sources).values(
                name="archive", url="https://a.example/feed/", kind="rss", baseline_done=True,
                consecutive_failures=0, created_at=clock.now()).returning(sources.c.id))).scalar_one()
            channel_id = (await conn.execute(insert(channels).values(
                name="tg", platform="telegram", paused=False, created_at=clock.now()).returning(channels.c.id))
                          ).scalar_one()
            for n in range(3):
                post_id = (await conn.execute(insert(posts).values(
                    source_id=source_id, key=f"k{n}", title=f"Post {n}", summary_html="", content_html="",
                    first_seen_at=clock.now()).returning(posts.c.id))).scalar_one()
                await conn.execute(insert(deliveries).values(post_id=post_id, channel_id=channel_id, status="sent",
                                                             attempts=1, created_at=clock.now(),
                                                             updated_at=clock.now()))
        assert await counts(store) == (1, 3, 3)
        await migrate.upgrade(store.engine)
        assert await counts(store) == (1, 3, 3)
        assert (await store.source("archive")).push_requests == 0
        await store.websub_want("archive", HUB, clock.now())
        async with store.engine.begin() as conn:
            await conn.run_sync(to("0006", down=True))
        assert await counts(store) == (1, 3, 3)
    finally:
        await store.aclose()
