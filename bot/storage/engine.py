"""Database engines: SQLite in WAL mode with a busy timeout, or PostgreSQL through asyncpg.

Two kinds of engine, built from the one storage URL:

- ``make_sqlite_engine``: a synchronous pysqlite engine with ONE connection, for the Store's
  dedicated database thread on a SQLite file (``bot.storage.database``). A whole Store method is
  one hop to that thread instead of one per statement (the async layer and aiosqlite's thread hop
  per statement cost more CPU than SQLite itself). Building it never imports SQLAlchemy's asyncio
  extension, which pulls in the ORM (~9 MiB of resident memory the service would keep for nothing).
- ``make_engine``: an ``AsyncEngine`` (aiosqlite or asyncpg), for PostgreSQL, in-memory SQLite,
  migrations, ``db copy`` and tests. The asyncio extension is imported when it is first called.
  On asyncpg its pool hands out only live connections without a round trip on the hot path
  (``_check_out_live``), instead of ``pool_pre_ping``'s three round trips per transaction.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from bot.errors import StorageError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

SQLITE_BUSY_TIMEOUT_MS = 10_000
SQLITE_POOL_TIMEOUT = 60.0
"""Seconds a statement may wait for the (single) SQLite connection before failing."""
PING_AFTER_IDLE = 10.0
"""PostgreSQL (asyncpg): a pooled connection idle longer than this many seconds is pinged before use."""
_RETURNED_AT = "tagrelay_returned_at"


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL, or None for in-memory databases."""
    db = make_url(url).database
    if not db or db == ":memory:":
        return None
    return Path(db)


def parse_url(url: str) -> URL:
    try:
        return make_url(url)
    except Exception as exc:  # noqa: BLE001 - any parse failure means a bad URL
        raise StorageError(f"invalid storage URL: {exc}") from None


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    # before anything is written: a new database is created with incremental auto-vacuum, so the pages a
    # prune pass frees can be returned (``PRAGMA incremental_vacuum``); on an older database it takes effect
    # at its next VACUUM (``tagrelay db prune --vacuum``), and costs nothing until then
    cursor.execute("PRAGMA auto_vacuum=INCREMENTAL")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _create_folder(url: URL) -> None:
    if not url.database or url.database == ":memory:":
        return
    path = Path(url.database)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create the database folder {path.parent}: {exc.strerror}") from exc


def make_engine(url: str, *, create_dirs: bool = True) -> AsyncEngine:
    """An async engine for ``url``. SQLite: the parent folder is created, WAL and busy timeout set."""
    from sqlalchemy.ext.asyncio import create_async_engine

    parsed = parse_url(url)
    if is_sqlite(url):
        if is_private_to_process(parsed):
            engine = create_async_engine(parsed)  # SQLAlchemy keeps the one connection (and so the database)
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
            return engine
        if create_dirs:
            _create_folder(parsed)
        # One connection: SQLite has one writer anyway, and several pooled connections of one process
        # writing at once (16 concurrent polls) meet "database is locked" and SQLite's busy handler,
        # which SLEEPS (1, 2, 5 … 100 ms) between retries: that made a 1,000-post cycle 40× slower.
        # With one connection the contenders queue in the pool, on the event loop, without sleeping.
        engine = create_async_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
                                     pool_size=1, max_overflow=0, pool_timeout=SQLITE_POOL_TIMEOUT)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.get_driver_name() != "asyncpg":  # another driver: SQLAlchemy's own ping on every checkout
        return create_async_engine(parsed, pool_size=5, max_overflow=5, pool_pre_ping=True)
    engine = create_async_engine(parsed, pool_size=5, max_overflow=5)
    _check_out_live(engine.sync_engine)
    return engine


def _check_out_live(engine: Engine) -> None:
    """The asyncpg pool hands out live connections only, without a round trip on the hot path.

    ``pool_pre_ping`` pings on every checkout, and SQLAlchemy's asyncpg ping is three round trips
    (BEGIN, ``;``, ROLLBACK: it supports pgbouncer's transaction mode): about 0.14 ms of CPU, a
    third of a short transaction, paid by every delivery and poll. Instead, at checkout:

    - a connection the server has closed (a restart, ``pg_terminate_backend``, its idle timeout)
      is known to asyncpg once the event loop has read the end of its socket (``is_closed()``, no
      round trip): it is discarded and another one taken;
    - a connection idle longer than ``PING_AFTER_IDLE`` is pinged as ``pool_pre_ping`` would: a
      connection dropped without a word (a NAT or firewall timeout, a host gone) hides there.

    Raising ``DisconnectionError`` from the pool's ``checkout`` event is SQLAlchemy's documented
    way to make the pool discard a connection and check out a fresh one.
    """
    dialect = engine.dialect

    @event.listens_for(engine, "checkin")
    def _returned(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info[_RETURNED_AT] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _live(dbapi_connection: Any, record: ConnectionPoolEntry, proxy: PoolProxiedConnection) -> None:
        if dbapi_connection.driver_connection.is_closed():
            raise DisconnectionError("the server closed the connection")
        returned = record.info.get(_RETURNED_AT)
        if returned is not None and time.monotonic() - returned > PING_AFTER_IDLE:
            try:
                dialect.do_ping(dbapi_connection)
            except Exception as exc:  # whatever the ping met, that connection is not used
                raise DisconnectionError(f"the idle connection did not answer: {type(exc).__name__}") from exc


def is_private_to_process(url: URL) -> bool:
    """In-memory SQLite: another engine or process opening ``url`` gets a different, empty database."""
    if url.get_backend_name() != "sqlite":
        return False
    database = url.database or ""
    return (not database or database == ":memory:" or url.query.get("mode") == "memory"
            or database.startswith("file::memory:"))


def make_sqlite_engine(url: URL, *, create_dirs: bool = True) -> Engine:
    """A synchronous pysqlite engine on the SQLite file of ``url`` (any sqlite driver name), with the
    same pragmas as ``make_engine`` and ONE connection, for the Store's dedicated database thread.
    Not for in-memory SQLite (each engine would open a database of its own there)."""
    if url.get_backend_name() != "sqlite" or is_private_to_process(url):
        raise StorageError(f"not a SQLite file: {url.render_as_string(hide_password=True)}")
    if create_dirs:
        _create_folder(url)
    # One connection, used only by the Store's single database thread: every runtime statement of this
    # process is serialised there, so they never contend for SQLite's write lock among themselves (see
    # make_engine on why that matters). pysqlite's check_same_thread is off for file databases; the
    # connection is nevertheless opened, used and closed on that one thread only.
    sync = create_engine(url.set(drivername="sqlite+pysqlite"),
                         connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
                         pool_size=1, max_overflow=0, pool_timeout=SQLITE_POOL_TIMEOUT)
    event.listen(sync, "connect", _sqlite_pragmas)
    return sync
