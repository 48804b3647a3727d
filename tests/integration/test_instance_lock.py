"""The single-instance guard (``bot.storage.instance_lock``) on real files and a real PostgreSQL.

SQLite: the lock is ``flock`` on ``<db>.lock``, which belongs to the open file description, so two opens in
one process conflict, and another process (a subprocess here) conflicts too; a SIGKILLed holder's lock is
gone at once. PostgreSQL: a session advisory lock per instance; an instance whose session ended is reaped
at once instead of after its registration expires.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import unicodedata
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text

from bot.clock import FakeClock
from bot.domain.state import CHANNEL_LEASE
from bot.errors import InstanceLockedError, StorageError
from bot.storage.instance_lock import (
    FIELD_MAX,
    UNKNOWN,
    FileLock,
    Holder,
    SessionLock,
    advisory_key,
    decode_holder,
    held_keys,
    lock_path,
    probe,
)
from bot.storage.store import Store
from tests.integration.test_store import parsed, poll, setup

SINCE = datetime(2026, 11, 24, 9, 7, 51, tzinfo=UTC)

HOLD = """
import sys
from datetime import UTC, datetime
from pathlib import Path
from bot.storage.instance_lock import FileLock, Holder
lock = FileLock(Path(sys.argv[1]))
assert lock.try_acquire(Holder.me("other:1:abcd", datetime(2026, 11, 24, 9, 7, 51, tzinfo=UTC))) is None
print("locked", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def holder_process(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding ``tmp_path/t.db.lock`` until killed."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "t.db.lock")], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "locked\n"
        yield proc
    finally:
        proc.kill()
        proc.wait(10)


def test_lock_path_is_beside_the_database_file(tmp_path: Path) -> None:
    db = tmp_path / "data" / "t.db"
    assert lock_path(f"sqlite+aiosqlite:///{db}") == tmp_path / "data" / "t.db.lock"
    assert lock_path(f"sqlite:///file:{db}?uri=true&mode=rw") == tmp_path / "data" / "t.db.lock"
    link = tmp_path / "link.db"
    link.symlink_to(db)  # two names of one database share one lock
    assert lock_path(f"sqlite:///{link}") == tmp_path / "data" / "t.db.lock"
    assert lock_path("sqlite+aiosqlite:///:memory:") is None
    assert lock_path("sqlite+aiosqlite://") is None
    assert lock_path("postgresql+asyncpg://u@h/db") is None


def test_another_process_holding_the_lock_is_named_and_its_death_frees_it_at_once(
        tmp_path: Path, holder_process: subprocess.Popen[str]) -> None:
    path = tmp_path / "t.db.lock"
    lock = FileLock(path)
    other = lock.try_acquire(Holder.me("me:2:ffff", SINCE))
    assert other is not None and other.owner == "other:1:abcd" and other.pid == holder_process.pid
    assert other.since == SINCE
    assert probe(path) == other and not lock.held
    holder_process.send_signal(signal.SIGKILL)
    holder_process.wait(10)
    assert probe(path) is None  # the kernel dropped it with the process: nothing to wait for
    assert lock.try_acquire(Holder.me("me:2:ffff", SINCE)) is None
    try:
        assert json.loads(path.read_text())["owner"] == "me:2:ffff"
    finally:
        lock.release()


async def test_a_refused_acquire_names_the_holder_and_the_action(
        tmp_path: Path, holder_process: subprocess.Popen[str]) -> None:
    with pytest.raises(InstanceLockedError) as caught:
        await FileLock(tmp_path / "t.db.lock").acquire(Holder.me("me:2:ffff", SINCE), grace=0.1)
    message = str(caught.value)
    assert "another tagrelay instance (other:1:abcd" in message
    assert f"pid {holder_process.pid} on " in message and "running since 2026-11-24 09:07:51 UTC" in message
    assert "stop it first" in message and str(tmp_path / "t.db.lock") in message


def test_two_opens_in_one_process_conflict_and_release_keeps_the_file(tmp_path: Path) -> None:
    path = tmp_path / "t.db.lock"
    first, second = FileLock(path), FileLock(path)
    assert first.try_acquire(Holder.me("a:1:0001", SINCE)) is None
    assert first.try_acquire(Holder.me("a:1:0001", SINCE)) is None  # already held: no second descriptor
    taken = second.try_acquire(Holder.me("b:2:0002", SINCE))
    assert taken is not None and taken.owner == "a:1:0001"
    assert probe(path) is not None and probe(path).owner == "a:1:0001"  # type: ignore[union-attr]
    first.release()
    first.release()  # twice is harmless
    assert path.exists() and path.read_bytes() == b""  # never deleted; no stale holder left in it
    assert probe(path) is None
    assert second.try_acquire(Holder.me("b:2:0002", SINCE)) is None
    second.release()


def test_probe_neither_creates_nor_follows_links(tmp_path: Path) -> None:
    path = tmp_path / "t.db.lock"
    assert probe(path) is None and not path.exists()
    target = tmp_path / "precious"
    target.write_text("keep me")
    path.symlink_to(target)  # a planted link must not make the service truncate another file
    with pytest.raises(StorageError, match="cannot open the instance lock file"):
        FileLock(path).try_acquire(Holder.me("a:1:0001", SINCE))
    assert target.read_text() == "keep me"
    os.unlink(path)
    path.mkdir()
    with pytest.raises(StorageError, match="cannot open the instance lock file"):
        FileLock(path).try_acquire(Holder.me("a:1:0001", SINCE))


def test_an_unwritable_folder_is_a_storage_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="cannot open the instance lock file"):
        FileLock(tmp_path / "missing" / "t.db.lock").try_acquire(Holder.me("a:1:0001", SINCE))


@given(st.binary(max_size=6000))
def test_any_lock_file_content_reads_as_a_bounded_printable_holder(data: bytes) -> None:
    holder = decode_holder(data)
    for value in (holder.owner, holder.host):
        assert len(value) <= FIELD_MAX
        assert all(unicodedata.category(ch)[0] not in "C" for ch in value)


@given(st.text(max_size=500), st.text(max_size=500), st.one_of(st.integers(), st.text(), st.none(), st.booleans()))
def test_hostile_holder_fields_are_cleaned(owner: str, host: str, pid: object) -> None:
    holder = decode_holder(json.dumps({"owner": owner, "host": host, "pid": pid, "since": owner}).encode())
    assert len(holder.owner) <= FIELD_MAX and "\x1b" not in holder.owner + holder.host
    assert "\u202e" not in holder.describe()  # no bidi override reaches a terminal
    assert holder.pid is None or (isinstance(holder.pid, int) and 0 < holder.pid < 2**31)


def test_unreadable_holder_information_is_unknown() -> None:
    assert decode_holder(b"") == UNKNOWN
    assert decode_holder(b'{"owner": "a:1:0001", "host": "h", "pid": 1, "sin') == UNKNOWN
    assert decode_holder(b"[1, 2]") == UNKNOWN
    assert decode_holder(b'{"owner": "\\u001b[31mred\\u202e", "pid": true}') == Holder("[31mred", "", None, None)


# -- PostgreSQL --------------------------------------------------------------------------------------


POSTGRES_ONLY = pytest.mark.parametrize("db_url", [pytest.param("postgres", marks=pytest.mark.postgres)],
                                        indirect=True)


@POSTGRES_ONLY
async def test_an_instance_whose_session_ended_is_reaped_at_once(store: Store, clock: FakeClock) -> None:
    await setup(store, clock)
    await poll(store, clock, [])
    await poll(store, clock, [parsed(1, "MEK")])  # → tg and masto
    engine = store.database.async_engine()
    dead_lock, live_lock = SessionLock(engine, "dead:1:0001"), SessionLock(engine, "live:2:0002")
    await dead_lock.acquire()
    await live_lock.acquire()
    try:
        with pytest.raises(InstanceLockedError):  # one owner id, one session
            await SessionLock(engine, "dead:1:0001").acquire()
        for owner in ("dead:1:0001", "live:2:0002"):
            await store.register_instance(owner, "9.9", clock.now(), 60)
        await store.register_instance("old:3:0003", "9.8", clock.now(), 60)  # an older version: no lock
        sending = await store.claim_next("masto", clock.now(), "dead:1:0001")
        assert sending is not None
        assert await store.try_lease(CHANNEL_LEASE + "masto", "dead:1:0001", clock.now(), 60)
        assert await store.unlocked_instances("9.9", exclude="live:2:0002") == []
        assert await store.reap_instances(clock.now(), resend_channels={"masto"}, lock_version="9.9",
                                          me="live:2:0002") == ([], 0, 0)

        await _kill_session(store, dead_lock.key)  # what the server does when the process dies
        assert await store.unlocked_instances("9.9", exclude="live:2:0002") == ["dead:1:0001"]
        dead, requeued, unknown = await store.reap_instances(  # the same second: no lease_ttl to wait for
            clock.now(), resend_channels={"masto"}, lock_version="9.9", me="live:2:0002")
        assert (dead, requeued, unknown) == (["dead:1:0001"], 1, 0)
        assert sorted(i.owner for i in await store.instances()) == ["live:2:0002", "old:3:0003"]
        assert await store.try_lease(CHANNEL_LEASE + "masto", "live:2:0002", clock.now(), 60)
    finally:
        await dead_lock.release()
        await live_lock.release()


@POSTGRES_ONLY
async def test_a_lost_lock_session_is_noticed_and_taken_again(store: Store) -> None:
    lock = SessionLock(store.database.async_engine(), "me:1:0001")
    await lock.acquire()
    try:
        assert await lock.check()
        await _kill_session(store, lock.key)
        assert not await lock.check()  # lost: taken again on a new connection, and the caller told
        assert await lock.check()
        assert lock.key in await _held(store)
    finally:
        await lock.release()
    assert lock.key not in await _held(store)
    assert advisory_key("me:1:0001") == lock.key != advisory_key("me:1:0002")


async def _held(store: Store) -> set[int]:
    return await store.database.run(held_keys, write=False)


async def _kill_session(store: Store, key: int) -> None:
    """End the session holding ``key`` (as the server does when the holder's process dies)."""
    hi, lo = (key >> 32) & 0xFFFF_FFFF, key & 0xFFFF_FFFF
    async with store.database.async_engine().connect() as conn:
        ended = (await conn.execute(text(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 1 "
            "AND classid::bigint = :hi AND objid::bigint = :lo"), {"hi": hi, "lo": lo})).scalars().all()
    assert ended == [True]
    for _ in range(200):  # the backend exits asynchronously: poll with a deadline
        if key not in await _held(store):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the terminated session still holds its lock")
