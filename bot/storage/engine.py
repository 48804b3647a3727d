"""Database engines: SQLite in WAL mode with a busy timeout, or PostgreSQL through asyncpg."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
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
