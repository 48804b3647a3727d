"""The repository on real SQLite and real PostgreSQL: atomic poll records, claims, leases."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from bot.clock import FakeClock
from bot.domain.delivery import Decision
from bot.domain.detect import normalise
from bot.domain.models import DeliveryStatus, ParsedPost, Subscription
from bot.domain.plan import plan_poll
from bot.domain.state import ClaimedDelivery
from bot.domain.tags import slugify
from bot.errors import NotFoundError
from bot.sources.base import CacheState
from bot.storage import migrate
from bot.storage import tables as t
from bot.storage.store import Store


def parsed(n: int, *tags: str) -> ParsedPost:
    from datetime import UTC, datetime

    return ParsedPost(title=f"Post {n}", url=f"https://a.example/{n}/", guid=f"p{n}", tags=tags,
                      published=datetime(2026, 1, n, tzinfo=UTC), summary_html=f"<p>Excerpt {n}</p>")


async def setup(store: Store, clock: FakeClock, subs: list[tuple[str, str, int]] | None = None) -> None:
    subscriptions = [Subscription(slugify(tag), tag, chan, backfill) for tag, chan, backfill in
                     (subs if subs is not None else [("MEK", "tg", 0), ("Iraq", "tg", 0), ("MEK", "masto", 0)])]
    await store.sync_config([("archive", "https://a.example/feed/", "rss")],
                            [("tg", "telegram"), ("masto", "mastodon")], subscriptions, clock.now())


async def poll(store: Store, clock: FakeClock, items: list[ParsedPost], cache: CacheState | None = None) -> int:
    """The poll path's storage half: one read, the pure plan, one write."""
    state = await store.source("archive")
    posts = normalise("archive", items)
    facts = await store.poll_facts(state, posts)
    plan = plan_poll("archive", posts, facts, first_poll=not state.baseline_done)
    rec = await store.apply_poll(state, plan, cache or CacheState(etag='"v1"'), clock.now(),
                                 clock.now() + timedelta(minutes=10))
    return rec.queued + rec.backfilled


async def test_schema_matches_the_migrations(store: Store) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    async with store.engine.connect() as conn:
        diff = await conn.run_sync(lambda c: compare_metadata(MigrationContext.configure(c), t.metadata))
    assert diff == []
    assert await migrate.current_revision(store.engine) == migrate.head_revision()


async def test_baseline_then_one_delivery_per_channel(store: Store, clock: FakeClock) -> None:
    await setup(store, clock)
    assert await poll(store, clock, [parsed(1, "MEK"), parsed(2, "Iraq")]) == 0
    state = await store.source("archive")
    assert state.baseline_done and state.cache.etag == '"v1"'
    queued = await poll(store, clock, [parsed(3, "MEK", "Iraq", "Other"), parsed(1, "MEK"), parsed(2, "Iraq")])
    assert queued == 2
    rows = await store.deliveries()
    assert sorted((d.channel, d.post_title, d.status) for d in rows) == [
        ("masto", "Post 3", "queued"), ("tg", "Post 3", "queued")]
    # the same post seen again queues nothing more
    assert await poll(store, clock, [parsed(3, "MEK", "Iraq")]) == 0
    assert len(await store.deliveries()) == 2


async def test_backfill_queues_latest_matching_once(store: Store, clock: FakeClock) -> None:
    await setup(store, clock, [("MEK", "tg", 2)])
    assert await poll(store, clock, [parsed(n, "MEK") for n in range(1, 6)] + [parsed(9, "Iraq")]) == 2
    assert sorted(d.post_title for d in await store.deliveries()) == ["Post 4", "Post 5"]
    assert await poll(store, clock, [parsed(n, "MEK") for n in range(1, 6)]) == 0


async def test_claim_marks_sending_oldest_first_and_finish_records(store: Store, clock: FakeClock) -> None:
    await setup(store, clock)
    await poll(store, clock, [])
    await poll(store, clock, [parsed(5, "MEK"), parsed(3, "MEK")])
    first = await store.claim_next("tg", clock.now(), "me")
    assert first is not None and first.post.title == "Post 3" and first.attempts == 1
    assert [t.slug for t in first.post.tags] == ["mek"]
    async with store.engine.connect() as conn:
        status = (await conn.execute(select(t.deliveries.c.status).where(t.deliveries.c.id == first.id))).scalar()
    assert status == "sending"
    await store.finish(first.id, DeliveryStatus.SENT, clock.now(), remote_id="42", remote_url="https://t.me/x/42")
    second = await store.claim_next("tg", clock.now(), "me")
    assert second is not None and second.post.title == "Post 5"
    assert await store.claim_next("tg", clock.now(), "me") is None
    sent = await store.deliveries(status="sent")
    assert [(d.remote_id, d.remote_url) for d in sent] == [("42", "https://t.me/x/42")]


async def test_paused_or_held_channel_is_not_claimed(store: Store, clock: FakeClock) -> None:
    await setup(store, clock)
    await poll(store, clock, [])
    await poll(store, clock, [parsed(5, "MEK")])
    await store.set_paused("tg", True, "bot was kicked", clock.now())
    assert await store.claim_next("tg", clock.now(), "me") is None
    assert "tg" not in await store.due_channels(clock.now())
    await store.set_paused("tg", False, None, clock.now())
    await store.set_hold("tg", clock.now() + timedelta(seconds=30))
    assert await store.claim_next("tg", clock.now(), "me") is None
    clock.advance(31)
    assert await store.claim_next("tg", clock.now(), "me") is not None


async def test_next_due_at_is_per_channel_and_can_leave_channels_out(store: Store, clock: FakeClock) -> None:
    await setup(store, clock)
    await poll(store, clock, [])
    assert await store.next_due_at() is None  # nothing waiting
    await poll(store, clock, [parsed(5, "MEK")])  # one delivery each for tg and masto, due now
    now = clock.now()
    assert await store.next_due_at() == now
    await store.set_hold("tg", now + timedelta(seconds=600))
    assert await store.next_due_at() == now  # masto's is still due now: one channel's hold is not everyone's
    assert await store.next_due_at(exclude={"masto"}) == now + timedelta(seconds=600)  # tg: when its hold ends
    assert await store.next_due_at(exclude={"masto", "tg"}) is None
    await store.set_paused("masto", True, "bot was kicked", now)
    assert await store.next_due_at() == now + timedelta(seconds=600)  # a paused channel is never due
    await store.set_hold("tg", now - timedelta(seconds=1))  # a hold that is over
    assert await store.next_due_at() == now


async def test_recover_sending_requeues_idempotent_and_marks_others_unknown(store: Store, clock: FakeClock) -> None:
    await setup(store, clock)
    await poll(store, clock, [])
    await poll(store, clock, [parsed(5, "MEK")])
    assert await store.claim_next("tg", clock.now(), "dead-instance") is not None
    assert await store.claim_next("masto", clock.now(), "dead-instance") is not None
    requeued, unknown = await store.recover_sending(clock.now(), resend_channels={"masto"})
    assert (requeued, unknown) == (1, 1)
    by_chan = {d.channel: d for d in await store.deliveries()}
    assert by_chan["masto"].status == "queued" and by_chan["masto"].attempts == 0
    assert by_chan["tg"].status == "unknown"
    assert await store.requeue(clock.now(), channel="tg") == 1
    assert {d.status for d in await store.deliveries()} == {"queued"}


async def test_config_sync_keeps_cli_subscriptions_and_drops_removed_config_ones(store: Store,
                                                                                clock: FakeClock) -> None:
    await setup(store, clock, [("MEK", "tg", 0), ("Iraq", "tg", 0)])
    assert await store.add_subscription(Subscription("basra", "Basra", "masto"), "cli", clock.now())
    assert not await store.add_subscription(Subscription("basra", "Basra", "masto"), "cli", clock.now())
    await setup(store, clock, [("MEK", "tg", 0)])
    subs = {(s.tag_slug, s.channel, origin) for s, origin in await store.subscriptions()}
    assert subs == {("mek", "tg", "config"), ("basra", "masto", "cli")}
    with pytest.raises(NotFoundError):
        await store.add_subscription(Subscription("x", "x", "nope"), "cli", clock.now())


async def test_tags_with_counts_and_latest_post(store: Store, clock: FakeClock) -> None:
    await setup(store, clock)
    await poll(store, clock, [parsed(1, "MEK", "Iraq"), parsed(2, "MEK"), parsed(3, "Editor’s picks")])
    counts = {tc.slug: tc.posts for tc in await store.tags()}
    assert counts == {"mek": 2, "iraq": 1, "editors-picks": 1}
    assert [tc.name for tc in await store.tags("edit")] == ["Editor’s picks"]
    latest = await store.latest_post(tag_slug="mek")
    assert latest is not None and latest.title == "Post 2"
    by_url = await store.latest_post(url="https://a.example/3/")
    assert by_url is not None and by_url.tags[0].name == "Editor’s picks"


async def test_failure_keeps_cache_state(store: Store, clock: FakeClock) -> None:
    await setup(store, clock)
    await poll(store, clock, [parsed(1, "MEK")], CacheState(etag='"keep"', cursor="c1"))
    state = await store.source("archive")
    failures = await store.record_poll_failure(state.id, "HTTP 500", clock.now(), clock.now())
    failures = await store.record_poll_failure(state.id, "HTTP 502", clock.now(), clock.now())
    after = await store.source("archive")
    assert failures == 2
    assert after.cache.etag == '"keep"' and after.cache.cursor == "c1"
    assert after.last_error == "HTTP 502" and after.baseline_done


def test_head_constant_matches_the_migration_scripts() -> None:
    assert migrate.head_revision() == migrate.HEAD


def test_an_up_to_date_database_starts_without_importing_alembic(tmp_path: object) -> None:
    import subprocess
    import sys
    from pathlib import Path

    url = f"sqlite+aiosqlite:///{Path(str(tmp_path)) / 'db.sqlite'}"
    code = (
        "import asyncio, sys\n"
        "from bot.storage.engine import make_engine\n"
        "from bot.storage import migrate\n"
        "async def go():\n"
        f"    e = make_engine({url!r})\n"
        "    print(await migrate.upgrade(e))\n"
        "    await e.dispose()\n"
        "asyncio.run(go())\n"
        "print('alembic' in sys.modules)\n"
    )
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert first.stdout.split("\n")[:2] == [f"(None, '{migrate.HEAD}')", "True"]
    second = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert second.stdout.split("\n")[:2] == [f"('{migrate.HEAD}', '{migrate.HEAD}')", "False"]


async def delivery_rows(store: Store) -> dict[tuple[str, str], tuple[str, int, str | None, str | None]]:
    """(channel, post title) → (status, attempts, claimed_by, remote_id), read straight from the table."""
    query = (select(t.channels.c.name, t.posts.c.title, t.deliveries.c.status, t.deliveries.c.attempts,
                    t.deliveries.c.claimed_by, t.deliveries.c.remote_id)
             .join_from(t.deliveries, t.channels, t.channels.c.id == t.deliveries.c.channel_id)
             .join(t.posts, t.posts.c.id == t.deliveries.c.post_id))
    async with store.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return {(r.name, r.title): (r.status, r.attempts, r.claimed_by, r.remote_id) for r in rows}



async def settle(store: Store, delivery: ClaimedDelivery, status: DeliveryStatus, clock: FakeClock,
                 **decision: Any) -> ClaimedDelivery | None:
    """Record ``delivery``'s outcome and claim tg's next due delivery for "me", in one transaction."""
    return await store.apply_decision(delivery.id, Decision(status, **decision), clock.now(), channel="tg",
                                      claim_for="me")

async def test_apply_decision_claiming_next_records_the_outcome_and_claims_the_next_on_that_channel_only(
        store: Store, clock: FakeClock) -> None:
    # masto's only post is the OLDEST due delivery of all: claiming for tg must never take it
    await setup(store, clock, [("MEK", "tg", 0), ("Iraq", "masto", 0)])
    await poll(store, clock, [])
    await poll(store, clock, [parsed(5, "MEK"), parsed(1, "Iraq"), parsed(4, "MEK"), parsed(3, "MEK")])
    first = await store.claim_next("tg", clock.now(), "me")
    assert first is not None and first.post.title == "Post 3"

    second = await settle(store, first, DeliveryStatus.SENT, clock, remote_id="42", remote_url="https://t.me/x/42")
    assert second is not None
    assert (second.channel, second.post.title, second.status, second.attempts) == (
        "tg", "Post 4", DeliveryStatus.SENDING, 1)
    assert [tag.slug for tag in second.post.tags] == ["mek"]
    rows = await delivery_rows(store)
    assert rows[("tg", "Post 3")] == ("sent", 1, None, "42")
    assert rows[("tg", "Post 4")] == ("sending", 1, "me", None)
    assert rows[("tg", "Post 5")] == ("queued", 0, None, None)
    assert rows[("masto", "Post 1")] == ("queued", 0, None, None)
    sent = await store.deliveries(status="sent")
    assert [(d.id, d.remote_url, d.sent_at) for d in sent] == [(first.id, "https://t.me/x/42", clock.now())]

    clock.advance(1)
    third = await settle(store, second, DeliveryStatus.SENT, clock, remote_id="43")
    assert third is not None and third.post.title == "Post 5" and third.attempts == 1
    last = await settle(store, third, DeliveryStatus.SENT, clock, remote_id="44")
    assert last is None  # nothing else due on tg, though masto's older delivery is
    assert await delivery_rows(store) == {
        ("tg", "Post 3"): ("sent", 1, None, "42"),
        ("tg", "Post 4"): ("sent", 1, None, "43"),
        ("tg", "Post 5"): ("sent", 1, None, "44"),
        ("masto", "Post 1"): ("queued", 0, None, None),
    }
    assert await store.claim_next("tg", clock.now(), "me") is None


async def test_apply_decision_claiming_next_records_a_failure_outcome_and_skips_what_is_not_due(
        store: Store, clock: FakeClock) -> None:
    await setup(store, clock, [("MEK", "tg", 0)])
    await poll(store, clock, [])
    await poll(store, clock, [parsed(3, "MEK"), parsed(4, "MEK")])
    first = await store.claim_next("tg", clock.now(), "me")
    assert first is not None and first.post.title == "Post 3"
    retry_at = clock.now() + timedelta(seconds=60)
    second = await settle(store, first, DeliveryStatus.FAILED, clock, error="HTTP 502", next_attempt_at=retry_at,
                          reason="retry")
    assert second is not None and second.post.title == "Post 4"  # the failed one waits for its retry time
    assert await settle(store, second, DeliveryStatus.DEAD, clock, error="gone", reason="error") is None
    views = {d.post_title: d for d in await store.deliveries(channel="tg")}
    assert (views["Post 3"].status, views["Post 3"].attempts, views["Post 3"].last_error) == ("failed", 1, "HTTP 502")
    assert views["Post 3"].next_attempt_at == retry_at
    assert (views["Post 4"].status, views["Post 4"].attempts, views["Post 4"].last_error) == ("dead", 1, "gone")
    assert (await delivery_rows(store))[("tg", "Post 3")][2] is None  # claim released
    clock.advance(61)
    again = await store.claim_next("tg", clock.now(), "me")
    assert again is not None and again.id == first.id and again.attempts == 2


async def test_apply_decision_claiming_next_on_a_paused_or_held_channel_records_but_claims_nothing(
        store: Store, clock: FakeClock) -> None:
    await setup(store, clock, [("MEK", "tg", 0), ("MEK", "masto", 0)])
    await poll(store, clock, [])
    await poll(store, clock, [parsed(3, "MEK"), parsed(4, "MEK"), parsed(5, "MEK")])

    first = await store.claim_next("tg", clock.now(), "me")
    assert first is not None and first.post.title == "Post 3"
    await store.set_paused("tg", True, "bot was kicked", clock.now())
    assert await settle(store, first, DeliveryStatus.SENT, clock, remote_id="42") is None
    rows = await delivery_rows(store)
    assert rows[("tg", "Post 3")] == ("sent", 1, None, "42")
    assert rows[("tg", "Post 4")] == ("queued", 0, None, None)
    assert rows[("tg", "Post 5")] == ("queued", 0, None, None)

    await store.set_paused("tg", False, None, clock.now())
    second = await store.claim_next("tg", clock.now(), "me")
    assert second is not None and second.post.title == "Post 4"
    await store.set_hold("tg", clock.now() + timedelta(seconds=30))
    assert await settle(store, second, DeliveryStatus.SENT, clock, remote_id="43") is None
    rows = await delivery_rows(store)
    assert rows[("tg", "Post 4")] == ("sent", 1, None, "43")
    assert rows[("tg", "Post 5")] == ("queued", 0, None, None)
    assert all(rows[("masto", f"Post {n}")] == ("queued", 0, None, None) for n in (3, 4, 5))

    clock.advance(31)
    third = await store.claim_next("tg", clock.now(), "me")
    assert third is not None and third.post.title == "Post 5" and third.attempts == 1


async def test_an_unconfirmed_attempt_is_remembered_from_its_first_time_until_the_next_claim(
        store: Store, clock: FakeClock) -> None:
    await setup(store, clock, [("MEK", "masto", 0)])
    await poll(store, clock, [])
    await poll(store, clock, [parsed(3, "MEK")])
    first = await store.claim_next("masto", clock.now(), "me")
    assert first is not None and first.uncertain_since is None
    unsure_at = clock.now()
    await store.finish(first.id, DeliveryStatus.FAILED, unsure_at, error="timed out", next_attempt_at=unsure_at,
                       reason="retry", uncertain=True)
    clock.advance(600)
    second = await store.claim_next("masto", clock.now(), "me")
    assert second is not None and second.id == first.id and second.uncertain_since == unsure_at
    # a later unconfirmed attempt keeps the FIRST time: the platform's key dates from then
    await store.finish(second.id, DeliveryStatus.FAILED, clock.now(), error="timed out again",
                       next_attempt_at=clock.now(), reason="retry", uncertain=True)
    # a plain failure (the request never left) does not move it either
    third = await store.claim_next("masto", clock.now(), "me")
    assert third is not None and third.uncertain_since == unsure_at
    await store.finish(third.id, DeliveryStatus.FAILED, clock.now(), error="refused", next_attempt_at=clock.now(),
                       reason="retry")
    fourth = await store.claim_next("masto", clock.now(), "me")
    assert fourth is not None and fourth.uncertain_since == unsure_at


async def test_a_crash_while_sending_makes_the_claim_time_the_unconfirmed_attempt(
        store: Store, clock: FakeClock) -> None:
    await setup(store, clock, [("MEK", "masto", 0), ("MEK", "tg", 0)])
    await poll(store, clock, [])
    await poll(store, clock, [parsed(3, "MEK")])
    claimed_at = clock.now()
    masto = await store.claim_next("masto", claimed_at, "dead-owner")
    tg = await store.claim_next("tg", claimed_at, "dead-owner")
    assert masto is not None and tg is not None
    clock.advance(3600)
    assert await store.recover_sending(clock.now(), resend_channels={"masto"}) == (1, 1)
    again = await store.claim_next("masto", clock.now(), "me")
    assert again is not None and again.id == masto.id and again.uncertain_since == claimed_at
    rows = await delivery_rows(store)
    assert rows[("tg", "Post 3")][0] == "unknown"


async def test_the_featured_image_and_its_alt_text_reach_the_claimed_delivery(store: Store, clock: FakeClock) -> None:
    from dataclasses import replace

    await setup(store, clock)
    await poll(store, clock, [])
    await poll(store, clock, [replace(parsed(7, "MEK"), image_url="https://e.example/7.jpg",
                                      image_alt="Protesters with flags in Baghdad")])
    claimed = await store.claim_next("tg", clock.now(), "me")
    assert claimed is not None
    assert (claimed.post.image_url, claimed.post.image_alt) == ("https://e.example/7.jpg",
                                                                "Protesters with flags in Baghdad")
