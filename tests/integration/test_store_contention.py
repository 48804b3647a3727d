"""PostgreSQL under contention: transactions of several instances that collide are kept apart
or run again, and nothing they write is lost.

Found by ``make bench`` phase 6: two instances polling sources that share tags deadlocked on
the ``tags`` unique index (each poll inserted its new tags in its own order). PostgreSQL
aborted one poll after ``deadlock_timeout`` (1 s), and the stalls added up to seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

import pytest
from sqlalchemy import Connection, text

from bot.clock import FakeClock
from bot.domain.detect import normalise
from bot.domain.plan import PollFacts, plan_poll
from bot.errors import StorageError
from bot.sources.base import CacheState
from bot.storage import migrate
from bot.storage.database import TRANSIENT_ATTEMPTS
from bot.storage.store import Store
from tests.conftest import _pg_admin_dsn, _pg_exec
from tests.integration.test_store import parsed

pytestmark = pytest.mark.postgres


@pytest.fixture
async def pg_url(pg_database: str) -> str:
    await _pg_exec(pg_database, "DROP SCHEMA IF EXISTS public CASCADE", "CREATE SCHEMA public")
    store = Store.open(pg_database)
    try:
        await migrate.upgrade(store.engine)
    finally:
        await store.aclose()
    return pg_database


@pytest.fixture
async def pg_store(pg_url: str) -> AsyncIterator[Store]:
    store = Store.open(pg_url)
    try:
        yield store
    finally:
        await store.aclose()


async def _until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


def _retries(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [getattr(r, "kv", {}) for r in caplog.records if r.getMessage() == "db.retry"]


async def test_a_transaction_that_loses_a_deadlock_is_run_again(pg_url: str, pg_store: Store, clock: FakeClock,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    import asyncpg

    await pg_store.sync_config([("a", "https://a.example/feed/", "rss"), ("b", "https://b.example/feed/", "rss")],
                               [], [], clock.now())
    other = await asyncpg.connect(_pg_admin_dsn(pg_url))
    runs: list[int] = []

    def work(conn: Connection) -> int:
        runs.append(1)
        # long enough for the other side to close the cycle first, so this side is the one aborted
        conn.execute(text("SET LOCAL deadlock_timeout = '300ms'"))
        conn.execute(text("UPDATE sources SET last_error = 'work' WHERE name = 'b'"))
        conn.execute(text("UPDATE sources SET last_error = 'work' WHERE name = 'a'"))  # waits for `other`
        return len(runs)

    try:
        await other.execute("SET deadlock_timeout = '20s'")
        tx = other.transaction()
        await tx.start()
        await other.execute("UPDATE sources SET last_error = 'other' WHERE name = 'a'")
        caplog.set_level(logging.WARNING, logger="tagrelay.storage")
        running = asyncio.create_task(pg_store.database.run(work, write=True))

        async def work_is_waiting() -> bool:
            return bool(await other.fetchval("SELECT count(*) FROM pg_locks WHERE NOT granted"))

        await _until(work_is_waiting, "the work to wait for the row lock")
        await other.execute("UPDATE sources SET last_error = 'other' WHERE name = 'b'")  # the cycle
        await tx.commit()  # the aborted work's locks are gone, so ours went through
        assert await running == 2  # ran again after PostgreSQL aborted it, and committed
    finally:
        await other.close()
    assert (await pg_store.source("a")).last_error == "work"
    assert (await pg_store.source("b")).last_error == "work"
    assert [r["reason"] for r in _retries(caplog)] == ["deadlock"]


async def test_a_transaction_that_keeps_deadlocking_fails_after_the_last_attempt(
        pg_store: Store, clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    from sqlalchemy.exc import DBAPIError

    runs: list[int] = []

    def work(conn: Connection) -> None:
        runs.append(1)
        conn.execute(text("DO $$ BEGIN RAISE EXCEPTION 'simulated' USING ERRCODE = '40P01'; END $$"))

    caplog.set_level(logging.WARNING, logger="tagrelay.storage")
    with pytest.raises(StorageError, match="simulated") as failed:  # translated once every attempt failed
        await pg_store.database.run(work, write=True)
    assert isinstance(failed.value.__cause__, DBAPIError)
    assert len(runs) == TRANSIENT_ATTEMPTS
    assert len(_retries(caplog)) == TRANSIENT_ATTEMPTS - 1


async def test_other_database_errors_are_not_retried(pg_store: Store) -> None:
    from sqlalchemy.exc import DBAPIError

    runs: list[int] = []

    def work(conn: Connection) -> None:
        runs.append(1)
        conn.execute(text("INSERT INTO tags (slug, name) VALUES (NULL, NULL)"))  # not null violation

    with pytest.raises(StorageError) as failed:
        await pg_store.database.run(work, write=True)
    assert isinstance(failed.value.__cause__, DBAPIError)
    assert runs == [1]


async def test_instances_polling_sources_that_share_new_tags_never_deadlock(
        pg_url: str, clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    """Two instances record, at the same time, posts carrying the same 12 tags, new to the database,
    listed in different orders. A third connection holds one tag back (inserted, uncommitted) until
    both polls are waiting, so their inserts are sure to interleave: the first poll stops at that tag
    holding the tags before it; the second has run ahead on the tags after it (when it inserts in
    its own order) and waits for the first one's. Let go, the first poll wants the second's tags: a
    deadlock, unless both insert in one order."""
    import asyncpg

    tags = [f"Tag {j:02}" for j in range(12)]
    stores = [Store.open(pg_url), Store.open(pg_url)]  # two instances: two connection pools
    blocker = await asyncpg.connect(_pg_admin_dsn(pg_url))
    caplog.set_level(logging.WARNING, logger="tagrelay.storage")
    try:
        await stores[0].sync_config([(n, f"https://{n}.example/feed/", "rss") for n in ("a", "b")], [], [],
                                    clock.now())

        async def record(store: Store, name: str, order: list[str]) -> int:
            state = await store.source(name)
            posts = normalise(name, [parsed(1, *order), parsed(2, *order)])
            plan = plan_poll(name, posts, PollFacts(known_keys=set()), first_poll=False)
            rec = await store.apply_poll(state, plan, CacheState(), clock.now(), clock.now() + timedelta(minutes=10))
            return rec.new_posts

        def waiting(n: int) -> Callable[[], Awaitable[bool]]:
            async def check() -> bool:
                return bool(await blocker.fetchval("SELECT count(*) FROM pg_locks WHERE NOT granted") == n)
            return check

        held = blocker.transaction()
        await held.start()
        await blocker.execute("INSERT INTO tags (slug, name) VALUES ('tag-05', 'Tag 05')")
        first = asyncio.create_task(record(stores[0], "a", tags))
        await _until(waiting(1), "the first poll to wait for tag-05")
        second = asyncio.create_task(record(stores[1], "b", tags[6:] + tags[:6]))
        await _until(waiting(2), "the second poll to wait for the first")
        await held.rollback()
        assert list(await asyncio.gather(first, second)) == [2, 2]
    finally:
        await blocker.close()
        for store in stores:
            await store.aclose()
    assert _retries(caplog) == []  # kept apart by the insert order, not rescued by a retry
    conn = await asyncpg.connect(_pg_admin_dsn(pg_url))
    try:
        assert await conn.fetchval("SELECT count(*) FROM tags") == len(tags)
        assert await conn.fetchval("SELECT count(*) FROM post_tags") == 2 * 2 * len(tags)
    finally:
        await conn.close()
