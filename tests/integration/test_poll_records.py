"""The 304 fast path's buffer (``bot.services.poll_records``) on a real store, SQLite and PostgreSQL: records
wait until a trigger (a flush, a full batch, the timer) and are then written in ONE transaction; a failed
write keeps them, says so and is tried again; a last write that fails names the sources; a push counted
while a record waited keeps the time it set."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.clock import FakeClock
from bot.domain.state import CacheState
from bot.errors import StorageError
from bot.services.poll_records import MAX_RETRY_DELAY, RecordBuffer, retry_delay
from bot.storage.database import Database, T, Work
from bot.storage.polls import NotModifiedRecord
from bot.storage.store import Store

NAMES = ("a", "b", "c")
DEADLINE = 10.0


@dataclass
class Timer:
    seconds: float
    callback: Callable[[], None]
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class Timers:
    """A ``Later`` that keeps the callbacks for the test to fire (no waiting for real time)."""

    made: list[Timer] = field(default_factory=list)

    def __call__(self, seconds: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(seconds, callback)
        self.made.append(timer)
        return timer

    @property
    def live(self) -> list[Timer]:
        return [t for t in self.made if not t.cancelled]


class CountingDatabase:
    """The store's own database, counting its write transactions."""

    def __init__(self, inner: Database) -> None:
        self.inner = inner
        self.url: URL = inner.url
        self.dialect: str = inner.dialect
        self.writes = 0

    async def run(self, work: Work[T], *, write: bool) -> T:
        self.writes += write
        return await self.inner.run(work, write=write)

    def async_engine(self) -> AsyncEngine:
        return self.inner.async_engine()

    def sync_engines(self) -> list[Engine]:
        return self.inner.sync_engines()

    async def dispose(self) -> None:
        await self.inner.dispose()


@pytest.fixture
async def counted(store: Store, clock: FakeClock) -> Store:
    await store.sync_config([(n, f"https://{n}.example/feed/", "rss") for n in NAMES], [], [], clock.now())
    return Store(CountingDatabase(store.database))  # type: ignore[arg-type]


def writes(store: Store) -> int:
    database = store.database
    assert isinstance(database, CountingDatabase)
    return database.writes


async def record(store: Store, name: str, clock: FakeClock, *, etag: str = '"v1"',
                 hours: float = 1) -> NotModifiedRecord:
    state = await store.source(name)
    return NotModifiedRecord(state.id, name, CacheState(etag=etag), clock.now(), clock.now() + timedelta(hours=hours),
                             state.push_requests)


async def outcomes(store: Store) -> dict[str, tuple[str | None, str | None]]:
    return {n: ((s := await store.source(n)).last_outcome, s.cache.etag) for n in NAMES}


async def rename(store: Store, old: str, new: str) -> None:
    """Take the ``sources`` table away (or give it back): every write to it fails, as a broken database would."""
    def work(conn: Connection) -> None:
        conn.execute(text(f"ALTER TABLE {old} RENAME TO {new}"))

    await store.database.run(work, write=True)


async def eventually(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


async def test_records_wait_for_a_flush_then_go_in_one_transaction(counted: Store, clock: FakeClock) -> None:
    buffer = RecordBuffer(counted, size=200, delay=0.5, later=Timers())
    before = writes(counted)
    for name in NAMES:
        await buffer.add(await record(counted, name, clock))
    assert writes(counted) == before and buffer.unwritten == frozenset(NAMES)
    assert await outcomes(counted) == dict.fromkeys(NAMES, (None, None))  # nothing written yet

    await buffer.flush()
    assert writes(counted) == before + 1  # ONE transaction for the three
    assert await outcomes(counted) == dict.fromkeys(NAMES, ("not_modified", '"v1"'))
    state = await counted.source("a")
    assert (state.last_poll_at, state.next_poll_at) == (clock.now(), clock.now() + timedelta(hours=1))
    assert (len(buffer), buffer.unwritten) == (0, frozenset())
    await buffer.flush()  # nothing waits: no transaction
    assert writes(counted) == before + 1


async def test_a_full_batch_is_written_at_once_by_the_poll_that_fills_it(counted: Store, clock: FakeClock) -> None:
    buffer = RecordBuffer(counted, size=2, delay=0.5, later=Timers())
    before = writes(counted)
    await buffer.add(await record(counted, "a", clock))
    await buffer.add(await record(counted, "a", clock, etag='"v2"'))  # the same source: replaced, still one
    assert writes(counted) == before and len(buffer) == 1
    await buffer.add(await record(counted, "b", clock))
    assert writes(counted) == before + 1 and len(buffer) == 0
    assert await outcomes(counted) == {"a": ("not_modified", '"v2"'), "b": ("not_modified", '"v1"'), "c": (None, None)}


async def test_the_timer_writes_what_waits_delay_seconds_after_the_first_record(counted: Store,
                                                                                clock: FakeClock) -> None:
    timers = Timers()
    buffer = RecordBuffer(counted, size=200, delay=0.5, later=timers)
    await buffer.add(await record(counted, "a", clock))
    await buffer.add(await record(counted, "b", clock))
    assert [t.seconds for t in timers.live] == [0.5]  # one timer, from the first record
    timers.live[0].callback()
    await eventually(lambda: len(buffer) == 0, "the timer's write")
    assert (await outcomes(counted))["b"] == ("not_modified", '"v1"')
    await buffer.add(await record(counted, "c", clock))
    assert [t.seconds for t in timers.live if t is not timers.made[0]] == [0.5]  # the next record: a new timer


async def test_a_real_timer_fires(counted: Store, clock: FakeClock) -> None:
    buffer = RecordBuffer(counted, size=200, delay=0.01)  # the loop's own call_later
    await buffer.add(await record(counted, "a", clock))
    await eventually(lambda: len(buffer) == 0, "the timer's write")
    assert (await outcomes(counted))["a"] == ("not_modified", '"v1"')


async def test_a_failed_write_keeps_the_records_logs_and_is_tried_again(counted: Store, clock: FakeClock,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    timers = Timers()
    buffer = RecordBuffer(counted, size=200, delay=0.5, later=timers)
    await buffer.add(await record(counted, "a", clock))
    await buffer.add(await record(counted, "b", clock))
    newer = await record(counted, "a", clock, etag='"v2"')
    await rename(counted, "sources", "sources_away")
    caplog.set_level(logging.INFO, logger="tagrelay.poll")
    with pytest.raises(StorageError):
        await buffer.flush()
    assert buffer.unwritten == {"a", "b"} and buffer.failures == 1
    failed = [r for r in caplog.records if r.getMessage() == "poll.record_failed"]
    assert len(failed) == 1 and failed[0].levelno == logging.WARNING
    assert failed[0].kv["records"] == 2 and failed[0].kv["retry_in"] == 1.0  # type: ignore[attr-defined]
    assert "sources" in failed[0].kv["error"]  # type: ignore[attr-defined]  # the driver's first line
    assert [t.seconds for t in timers.live] == [1.0]  # the retry

    # a poll answered 304 meanwhile: a newer record of "a" wins over the one kept
    await buffer.add(newer)
    with pytest.raises(StorageError):  # the retry fails too: kept, the wait doubles
        await buffer.flush()
    assert buffer.failures == 2 and [t.seconds for t in timers.live] == [2.0]

    await rename(counted, "sources_away", "sources")
    timers.live[0].callback()
    await eventually(lambda: len(buffer) == 0, "the retried write")
    assert await outcomes(counted) == {"a": ("not_modified", '"v2"'), "b": ("not_modified", '"v1"'), "c": (None, None)}
    assert buffer.failures == 0
    written = [r for r in caplog.records if r.getMessage() == "poll.record_written"]
    assert [r.kv["after_failures"] for r in written] == [2]  # type: ignore[attr-defined]


async def test_a_full_batch_that_cannot_be_written_does_not_fail_the_poll(counted: Store, clock: FakeClock) -> None:
    buffer = RecordBuffer(counted, size=1, delay=0.5, later=Timers())
    waiting = await record(counted, "a", clock)
    await rename(counted, "sources", "sources_away")
    try:
        await buffer.add(waiting)  # not raised: the poll is not what failed
    finally:
        await rename(counted, "sources_away", "sources")
    assert buffer.unwritten == {"a"}
    await buffer.flush()
    assert (await outcomes(counted))["a"] == ("not_modified", '"v1"')


async def test_the_last_write_names_the_sources_it_could_not_write(counted: Store, clock: FakeClock,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    buffer = RecordBuffer(counted, size=200, delay=0.5, later=Timers())
    for name in NAMES:
        await buffer.add(await record(counted, name, clock))
    await rename(counted, "sources", "sources_away")
    try:
        await buffer.flush(last=True)  # shutdown: logged, not raised
    finally:
        await rename(counted, "sources_away", "sources")
    lost = [r for r in caplog.records if r.getMessage() == "poll.record_lost"]
    assert len(lost) == 1 and lost[0].levelno == logging.ERROR
    assert lost[0].kv["sources"] == "a, b, c" and "polled again" in lost[0].kv["note"]  # type: ignore[attr-defined]
    assert len(buffer) == 0


async def test_a_push_counted_while_the_record_waited_keeps_its_time(counted: Store, clock: FakeClock) -> None:
    buffer = RecordBuffer(counted, size=200, delay=0.5, later=Timers())
    state = await counted.source("a")
    await counted.record_not_modified(state.id, state.cache, clock.now(), clock.now() + timedelta(hours=1))
    clock.advance(3600)  # due: polled, answered 304, its record waits
    await buffer.add(await record(counted, "a", clock))
    await buffer.add(await record(counted, "b", clock))
    pushed = await counted.request_poll("a", clock.now(), 1.0)  # a push now
    assert pushed is not None
    await buffer.flush()
    a, b = await counted.source("a"), await counted.source("b")
    assert a.next_poll_at == pushed.at and a.last_outcome == "not_modified"  # the push's time, not an hour away
    assert b.next_poll_at == clock.now() + timedelta(hours=1)


@given(delay=st.floats(min_value=0.01, max_value=3600.0), failures=st.integers(min_value=1, max_value=10_000))
def test_a_retry_waits_at_least_a_second_and_at_most_the_cap(delay: float, failures: int) -> None:
    wait = retry_delay(delay, failures)
    assert 1.0 <= wait <= MAX_RETRY_DELAY
    assert wait >= min(MAX_RETRY_DELAY, max(1.0, delay))
    assert retry_delay(delay, failures + 1) >= wait
