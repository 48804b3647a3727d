"""The single-instance guard: locks the operating system or PostgreSQL release when a process dies.

A lease row with an expiry cannot tell a dead instance from a slow one, so a restart right after a
SIGKILL (a supervisor's ``restart:``, the OOM killer) used to be refused until the dead one's lease
ran out. The locks here are held by something that dies with the process:

- ``FileLock`` (SQLite): ``flock(LOCK_EX)`` on ``<database>.lock`` beside the database file, through
  a descriptor open for the life of the process. The kernel drops it when the process ends, however
  it ends. The holder writes who it is (owner, host, pid, since) into the file, for the message a
  refused start prints and for ``status``. The file is never deleted (deleting a locked file would
  let the next start lock a new file beside a live holder). ``flock`` locks belong to the open file
  description, so even a second open in the same process conflicts; ``probe`` relies on that.
- ``SessionLock`` (PostgreSQL): a session-level advisory lock keyed by the instance's owner id, on a
  connection held for the instance's life. The server drops it when that session ends (the process
  died, its connection closed); ``held_keys`` lists the keys held, so the others can tell a dead
  instance at once instead of after ``lease_ttl``.

Both: ``acquire`` → held (or ``InstanceLockedError`` naming the holder), ``release``. A later
coordinator wraps these.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hashlib
import json
import os
import socket
import stat
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from sqlalchemy.engine import URL, make_url

from bot.errors import InstanceLockedError, StorageError
from bot.storage.engine import is_private_to_process

if TYPE_CHECKING:
    from sqlalchemy import Connection
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

SUFFIX = ".lock"
HOLDER_MAX = 4096
"""Bytes of holder information read from a lock file (it is a few dozen; the rest is ignored)."""
FIELD_MAX = 200
"""Characters kept of each holder field read back (they end up in error messages and on terminals)."""
START_GRACE = 0.5
"""Seconds a start retries a taken lock before refusing: ``probe`` (``status`` in another process) holds
a shared lock for a moment, and a start must not be refused because of it. A live instance holds it
far longer."""
RETRY_EVERY = 0.05


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds an instance lock, as it wrote itself into the lock file."""

    owner: str
    host: str
    pid: int | None
    since: datetime | None

    @classmethod
    def me(cls, owner: str, since: datetime) -> Holder:
        return cls(owner=owner, host=socket.gethostname(), pid=os.getpid(), since=since)

    def describe(self) -> str:
        """``web-1:7:3fa2, pid 7 on web-1, running since 2026-11-24 09:07:51 UTC``."""
        parts = [self.owner or "unknown instance"]
        if self.pid is not None:
            parts.append(f"pid {self.pid} on {self.host or 'an unknown host'}")
        if self.since is not None:
            parts.append(f"running since {self.since.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC")
        return ", ".join(parts)

    def encode(self) -> bytes:
        since = self.since.astimezone(UTC).isoformat() if self.since else None
        return (json.dumps({"owner": self.owner, "host": self.host, "pid": self.pid, "since": since}) + "\n").encode()


UNKNOWN = Holder(owner="", host="", pid=None, since=None)
"""A holder that has not written itself yet (it took the lock a moment ago), or wrote something unreadable."""


def _clean(value: object) -> str:
    """A holder field read back from the file: text without control or format characters, bounded."""
    if not isinstance(value, str):
        return ""
    kept = "".join(ch for ch in value[:FIELD_MAX] if unicodedata.category(ch)[0] not in "CZ" or ch == " ")
    return kept.strip()


def decode_holder(data: bytes) -> Holder:
    """Parse what a holder wrote. Anything unexpected (a half-written file, garbage) reads as ``UNKNOWN``
    or loses the odd field: the file is only information, the lock itself is the guard."""
    try:
        raw: Any = json.loads(data[:HOLDER_MAX].decode("utf-8", errors="replace"))
    except ValueError:
        return UNKNOWN
    if not isinstance(raw, dict):
        return UNKNOWN
    pid = raw.get("pid")
    since: datetime | None = None
    with contextlib.suppress(TypeError, ValueError):
        parsed = datetime.fromisoformat(_clean(raw.get("since")))
        since = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return Holder(owner=_clean(raw.get("owner")), host=_clean(raw.get("host")),
                  pid=pid if isinstance(pid, int) and not isinstance(pid, bool) and 0 < pid < 2**31 else None,
                  since=since)


def lock_path(url: str | URL) -> Path | None:
    """The lock file of a storage URL: ``<database file>.lock``. None where no file lock applies (PostgreSQL,
    in-memory SQLite). Symlinks are resolved, so two paths to one database file share one lock."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or is_private_to_process(parsed):
        return None
    database = parsed.database or ""
    if parsed.query.get("uri") in ("true", "1") and database.startswith("file:"):
        database = database[len("file:"):].split("?", 1)[0]
    path = Path(database).expanduser()
    with contextlib.suppress(OSError, RuntimeError):
        path = path.resolve()
    return path.with_name(path.name + SUFFIX)


def database_dir(url: str | URL) -> Path | None:
    """The directory of a SQLite database file, where a publisher may keep a small private file beside it
    (``PublisherContext.state_dir``); None for PostgreSQL and in-memory SQLite."""
    path = lock_path(url)
    return path.parent if path is not None else None


_HELD: dict[Path, Holder] = {}
"""The lock files this process holds. ``probe`` answers from here for them: it must never open and close
such a file itself (where ``flock`` is emulated with POSIX locks, as on NFS, closing any descriptor of the
file would drop the process's lock)."""


class FileLock:
    """An exclusive ``flock`` on a lock file, held through one open descriptor until ``release`` or death."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self, holder: Holder) -> Holder | None:
        """Take the lock and write ``holder`` into the file: None. Taken by another: who holds it."""
        if self._fd is not None:
            return None
        fd = _open(self.path, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            try:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise StorageError(f"cannot lock {self.path}: {exc.strerror}") from exc
                return decode_holder(os.pread(fd, HOLDER_MAX, 0))
            finally:
                os.close(fd)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, holder.encode(), 0)
        except OSError as exc:
            os.close(fd)  # drops the lock again
            raise StorageError(f"cannot write {self.path}: {exc.strerror}") from exc
        self._fd = fd
        _HELD[self.path] = holder
        return None

    async def acquire(self, holder: Holder, *, grace: float = START_GRACE) -> None:
        """Take the lock or raise ``InstanceLockedError`` naming the live holder (retried for ``grace``
        seconds first: a ``status`` probing it holds it for a moment)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while True:
            other = self.try_acquire(holder)
            if other is None:
                return
            if loop.time() >= deadline:
                raise InstanceLockedError("an instance that is just starting" if other == UNKNOWN
                                          else other.describe(), where=str(self.path))
            await asyncio.sleep(RETRY_EVERY)

    def release(self) -> None:
        """Drop the lock (the file stays: see the module docstring). Safe to call twice."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        _HELD.pop(self.path, None)
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # no stale holder information for the next reader
        os.close(fd)


def probe(path: Path) -> Holder | None:
    """Who holds the lock file at ``path`` right now (``UNKNOWN`` fields when it did not say), or None
    when nobody does. Never creates the file; a momentary shared lock, so concurrent probes do not
    conflict with each other."""
    mine = _HELD.get(path)
    if mine is not None:
        return mine
    try:
        fd = _open(path, os.O_RDONLY)
    except StorageError:
        if not path.exists():
            return None
        raise
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise StorageError(f"cannot probe {path}: {exc.strerror}") from exc
            return decode_holder(os.pread(fd, HOLDER_MAX, 0))
        return None
    finally:
        os.close(fd)  # also drops the shared lock, if it was taken


def _open(path: Path, flags: int) -> int:
    """Open a lock file: never through a symlink, never anything but a regular file."""
    try:
        fd = os.open(path, flags | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        raise StorageError(f"cannot open the instance lock file {path}: {exc.strerror}") from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise StorageError(f"the instance lock file {path} is not a regular file")
    return fd


# -- PostgreSQL ---------------------------------------------------------------------------------------


def advisory_key(owner: str) -> int:
    """The signed 64-bit advisory lock key of an instance (a hash of its owner id)."""
    digest = hashlib.blake2b(f"tagrelay-instance:{owner}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


_HELD_KEYS = text(
    "SELECT classid::bigint AS hi, objid::bigint AS lo FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 1 "
    "AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")


_MINE = text("SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'advisory' AND objsubid = 1 "
             "AND granted AND classid::bigint = :hi AND objid::bigint = :lo")


def held_keys(conn: Connection) -> set[int]:
    """The single-key (bigint) advisory locks some session of this database holds right now."""
    keys = set()
    for row in conn.execute(_HELD_KEYS):
        key = (int(row.hi) << 32) | int(row.lo)
        keys.add(key - 2**64 if key >= 2**63 else key)
    return keys


class SessionLock:
    """A session-level advisory lock on a connection of its own, held until ``release`` or the session ends."""

    def __init__(self, engine: AsyncEngine, owner: str) -> None:
        self.engine = engine
        self.owner = owner
        self.key = advisory_key(owner)
        self._conn: AsyncConnection | None = None

    @property
    def held(self) -> bool:
        return self._conn is not None

    async def acquire(self) -> None:
        """Take the lock (on a new connection). Raises ``InstanceLockedError`` if another session holds it."""
        try:
            conn = await self.engine.connect()
        except Exception as exc:  # any failure to connect is a StorageError (its text could hold the URL)
            raise StorageError(f"cannot take the instance's advisory lock: {type(exc).__name__}") from exc
        try:
            got = (await conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key})).scalar()
            await conn.commit()  # a session lock outlives the transaction; no idle transaction is left open
        except BaseException as exc:
            await conn.close()
            if isinstance(exc, Exception):
                raise StorageError(f"cannot take the instance's advisory lock: {type(exc).__name__}") from exc
            raise
        if not got:
            await conn.close()
            raise InstanceLockedError(self.owner, where=f"the PostgreSQL advisory lock {self.key}",
                                      action="this instance id is taken; start again (a new one is drawn)")
        self._conn = conn

    async def check(self) -> bool:
        """True while the lock's session is alive. Lost (the connection broke): taken again on a new
        connection and False, so the caller can see whether it was taken over meanwhile."""
        if await self._still_held():
            return True
        await self._drop()
        await self.acquire()
        return False

    async def _still_held(self) -> bool:
        conn = self._conn
        if conn is None:
            return False
        try:
            mine = (await conn.execute(_MINE, {"hi": (self.key >> 32) & 0xFFFF_FFFF,
                                               "lo": self.key & 0xFFFF_FFFF})).scalar()
            await conn.commit()
        except Exception:  # noqa: BLE001 - a broken session is what this looks for
            return False
        return bool(mine)

    async def release(self) -> None:
        """Unlock and close the connection (closing alone would drop it too). Safe to call twice."""
        conn = self._conn
        if conn is None:
            return
        with contextlib.suppress(Exception):
            await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
            await conn.commit()
        await self._drop()

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.invalidate()  # never back into the pool: a pooled session must not hold the lock
            with contextlib.suppress(Exception):
                await conn.close()
