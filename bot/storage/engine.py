"""Database engines: SQLite in WAL mode with a busy timeout, or PostgreSQL through asyncpg.

On SQLite the ``Store`` runs its statements through a second, synchronous engine on the same
file (``make_sqlite_statement_engine``), on one dedicated thread: a whole Store method is one
hop to that thread instead of one per statement (the async layer and aiosqlite's per-statement
thread hop cost more CPU than SQLite itself). The async engine stays for migrations, ``db copy``
and tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bot.errors import StorageError

SQLITE_BUSY_TIMEOUT_MS = 10_000
SQLITE_POOL_TIMEOUT = 60.0
"""Seconds a statement may wait for the (single) SQLite connection before failing."""


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL, or None for in-memory databases."""
    db = make_url(url).database
    if not db or db == ":memory:":
        return None
    return Path(db)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_engine(url: str, *, create_dirs: bool = True) -> AsyncEngine:
    """An async engine for ``url``. SQLite: the parent folder is created, WAL and busy timeout set."""
    try:
        parsed = make_url(url)
    except Exception as exc:  # noqa: BLE001 - any parse failure means a bad URL
        raise StorageError(f"invalid storage URL: {exc}") from None
    if is_sqlite(url):
        path = sqlite_path(url)
        if path is not None and create_dirs:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(f"cannot create the database folder {path.parent}: {exc.strerror}") from exc
        # One connection: SQLite has one writer anyway, and several pooled connections of one process
        # writing at once (16 concurrent polls) meet "database is locked" and SQLite's busy handler,
        # which SLEEPS (1, 2, 5 … 100 ms) between retries: that made a 1,000-post cycle 40× slower.
        # With one connection the contenders queue in the pool, on the event loop, without sleeping.
        engine = create_async_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
                                     pool_size=1, max_overflow=0, pool_timeout=SQLITE_POOL_TIMEOUT)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(parsed, pool_size=5, max_overflow=5, pool_pre_ping=True)


def is_private_to_process(url: URL) -> bool:
    """In-memory SQLite: another engine or process opening ``url`` gets a different, empty database."""
    if url.get_backend_name() != "sqlite":
        return False
    database = url.database or ""
    return (not database or database == ":memory:" or url.query.get("mode") == "memory"
            or database.startswith("file::memory:"))


def make_sqlite_statement_engine(engine: AsyncEngine) -> Engine | None:
    """A synchronous pysqlite engine on the same SQLite file as ``engine``, with the same pragmas and
    ONE connection, for the Store's dedicated database thread. None for PostgreSQL and for in-memory
    SQLite (a second engine would open a second, empty database there)."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or is_private_to_process(url):
        return None
    # One connection, used only by the Store's single database thread: every runtime statement of this
    # process is serialised there, so they never contend for SQLite's write lock among themselves (see
    # make_engine on why that matters). pysqlite's check_same_thread is off for file databases; the
    # connection is nevertheless opened, used and closed on that one thread only.
    sync = create_engine(url.set(drivername="sqlite+pysqlite"),
                         connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
                         pool_size=1, max_overflow=0, pool_timeout=SQLITE_POOL_TIMEOUT)
    event.listen(sync, "connect", _sqlite_pragmas)
    return sync
