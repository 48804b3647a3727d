"""What every part of the Store shares: its ``Database``, the one-transaction runners and the dialect helpers.

Each Store method's body is one synchronous function over a SQLAlchemy ``Connection`` (``work``), run
as one transaction by ``_write`` (or one read by ``_read``) on the Store's ``Database``
(``bot.storage.database``): on a SQLite file, a dedicated thread with a synchronous pysqlite
connection (one thread hop per method instead of one per statement); on PostgreSQL, the async engine
through ``run_sync`` (asyncpg). The same function serves both dialects. A database failure comes out
of ``_read``/``_write`` as ``StorageError`` (the ``Database`` translates it, in one place).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Self, TypeVar

from sqlalchemy import Connection, Engine, Table, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import URL
from sqlalchemy.sql.base import Executable

from bot.domain.state import CacheState
from bot.errors import StorageError
from bot.storage.database import Database, Work, open_database

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

T = TypeVar("T")

CHUNK = 500
"""Most values in one ``IN (…)`` list."""
NO_LEASE: dict[str, Any] = {"lease_owner": None, "lease_expires_at": None}
"""Written with every poll record: the poll is over, so its source lease (shared mode) is released."""


def utc(value: datetime | None) -> datetime | None:
    """Re-attach UTC to naive datetimes coming back from SQLite."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def cache_values(cache: CacheState) -> dict[str, str | None]:
    """A source's cache state as its ``sources`` columns."""
    return {"etag": cache.etag, "last_modified": cache.last_modified, "cursor": cache.cursor,
            "resolved_url": cache.resolved_url, "resolved_kind": cache.resolved_kind}


def dialect_insert(dialect: str, table: Table) -> Any:
    """An INSERT with this dialect's ON CONFLICT clauses (the PostgreSQL dialect package is imported only
    on PostgreSQL: it costs ~2 MiB of resident memory)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table)
    return sqlite.insert(table)


def insert_ignore(dialect: str, table: Table, index: Sequence[str]) -> Any:
    """An INSERT that skips rows whose ``index`` columns are taken already."""
    return dialect_insert(dialect, table).on_conflict_do_nothing(index_elements=list(index))


class StoreBase:
    """The Store's database and runners. Open with ``Store.open(url)`` (or give it a ``Database``);
    call ``aclose`` at the end."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.dialect = database.dialect

    @classmethod
    def open(cls, url: str, *, create_dirs: bool = True) -> Self:
        """The store of a storage URL (see ``open_database``)."""
        return cls(open_database(url, create_dirs=create_dirs))

    @property
    def url(self) -> URL:
        return self.database.url

    @property
    def engine(self) -> AsyncEngine:
        """An ``AsyncEngine`` on this database, for migrations, ``db copy`` and tests (on a SQLite
        file it is made on first use: the service itself never needs one)."""
        return self.database.async_engine()

    def statement_engines(self) -> list[Engine]:
        """The synchronous engines the Store's statements run on (for ``before_cursor_execute``
        listeners)."""
        return self.database.sync_engines()

    async def aclose(self) -> None:
        """Close every connection (and, on SQLite, end the database thread). Safe to call twice."""
        await self.database.dispose()

    async def _write(self, work: Work[T]) -> T:
        """Run ``work`` as one transaction, committed before this returns (rolled back if it raises)."""
        return await self.database.run(work, write=True)

    async def _read(self, work: Work[T]) -> T:
        """Run ``work`` on a connection without committing anything."""
        return await self.database.run(work, write=False)

    async def _execute(self, statement: Executable) -> None:
        """One statement as one transaction."""

        def work(conn: Connection) -> None:
            conn.execute(statement)

        await self._write(work)

    def _insert_ignore(self, table: Table, index: Sequence[str]) -> Any:
        return insert_ignore(self.dialect, table, index)

    async def ping(self) -> None:
        try:
            await self._read(lambda conn: conn.execute(select(1)).scalar())
        except StorageError as exc:
            cause = exc.__cause__ if exc.__cause__ is not None else exc
            raise StorageError(f"database unreachable: {type(cause).__name__}") from cause
