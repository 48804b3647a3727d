"""Where a Store's transactions run: one of two ``Database`` kinds, picked from the storage URL.

A Store method's body is one synchronous function over a SQLAlchemy ``Connection`` (a ``Work``);
``Database.run`` runs it as one transaction (``write=True``: committed before ``run`` returns,
rolled back if it raises) or as one read.

- ``ThreadedDatabase`` (a SQLite file): one dedicated thread and one synchronous pysqlite
  connection. The process never imports SQLAlchemy's asyncio extension (and the ORM it pulls in).
- ``AsyncDatabase`` (PostgreSQL, in-memory SQLite): an ``AsyncEngine``, the work run through
  ``run_sync`` (asyncpg / aiosqlite underneath). On PostgreSQL a read runs without BEGIN and
  ROLLBACK: under READ COMMITTED a transaction gave it nothing but two round trips.

On PostgreSQL a write transaction that loses a deadlock or a serialization check (SQLSTATE
40P01, 40001) is rolled back by the server; ``AsyncDatabase`` runs it again, up to
``TRANSIENT_ATTEMPTS`` times in all. So a ``Work`` must have no effect outside its connection
(every Store method's body is like that: it only builds its result from what it reads).

Database errors are translated here, in one place: whatever the database or its driver raises
(``SQLAlchemyError``, a driver error, ``OSError`` and so ``TimeoutError``) comes out of ``run`` as the
project's ``StorageError`` (``database_error``), the original kept as its ``__cause__``; its message
is the error's type and first line only: no SQL, no parameters, no password. A deadlock or
serialization failure is run again first, and translated only when it still fails.

``open_database(url)`` chooses. ``async_engine()`` gives an ``AsyncEngine`` on the same database
for the tools that need one (migrations, ``db copy``, tests); on a SQLite file it is built on the
first call and disposed of with the database.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Protocol, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from bot.errors import StorageError
from bot.log import event, redact_text
from bot.storage.engine import is_private_to_process, make_engine, make_sqlite_engine, parse_url

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger("tagrelay.storage")

T = TypeVar("T")
Work = Callable[[Connection], T]
"""A Store method's body: every statement of its transaction, on a synchronous connection."""

TRANSIENT_SQLSTATES = {"40P01": "deadlock", "40001": "serialization failure"}
"""Errors after which PostgreSQL has rolled the transaction back and running it again may succeed."""
TRANSIENT_ATTEMPTS = 3


def transient_reason(exc: BaseException) -> str | None:
    """``deadlock`` / ``serialization failure`` when ``exc`` is one (the transaction may be rerun), else None."""
    if not isinstance(exc, DBAPIError):
        return None
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return TRANSIENT_SQLSTATES.get(code) if isinstance(code, str) else None


DATABASE_ERRORS: tuple[type[BaseException], ...] = (SQLAlchemyError, sqlite3.Error, OSError)
"""What a transaction may raise when the database fails (``OSError`` covers ``TimeoutError``); every
``Database`` adds its driver's own errors that SQLAlchemy might let through unwrapped."""
_QUERY_ARGUMENT = re.compile(r"(query argument \$\d+):.*", re.S)
"""asyncpg's "invalid input for query argument $1: <the value> (…)": the value is a parameter."""
_SQLALCHEMY_PREFIX = re.compile(r"^\([\w.]+\) ")
"""SQLAlchemy's "(module.ErrorClass) " in front of the driver's message."""


def database_error(exc: BaseException) -> StorageError:
    """The ``StorageError`` of a database failure (the caller raises it ``from exc``): the error's type
    and the first line of its message (the driver's, for a SQLAlchemy ``DBAPIError``), without SQL,
    parameters or a password, at most 300 characters."""
    shown: BaseException = exc
    if isinstance(exc, DBAPIError) and isinstance(exc.orig, BaseException):
        shown = exc.orig
        # SQLAlchemy's asyncpg adapter wraps the driver's exception in one of its own: show asyncpg's
        if isinstance(shown.__cause__, Exception) and type(shown).__module__.startswith("sqlalchemy"):
            shown = shown.__cause__
    text = str(shown).strip()
    first = _SQLALCHEMY_PREFIX.sub("", text.splitlines()[0] if text else "")
    first = redact_text(_QUERY_ARGUMENT.sub(r"\1 (its value left out)", first))
    if len(first) > 300:
        first = first[:299] + "…"
    name = type(shown).__name__
    return StorageError(f"{name}: {first}" if first else name)


class Database(Protocol):
    url: URL
    dialect: str

    async def run(self, work: Work[T], *, write: bool) -> T: ...

    def async_engine(self) -> AsyncEngine: ...

    def sync_engines(self) -> list[Engine]:
        """The synchronous engines statements run on (for ``before_cursor_execute`` listeners)."""
        ...

    async def dispose(self) -> None:
        """Close every connection. The database may be used again afterwards (it reconnects)."""
        ...


class ThreadedDatabase:
    """A SQLite file: one dedicated thread runs every transaction on one pysqlite connection.

    A method's whole transaction is one hop to this thread, and the transactions of this process
    run one after the other there, so they never contend for SQLite's write lock among themselves.
    A caller cancelled while its work runs does not interrupt it: the transaction commits or rolls
    back on the thread, and the next call runs after it.
    """

    dialect = "sqlite"

    def __init__(self, engine: Engine, url: URL) -> None:
        self.engine = engine
        self.url = url
        """The storage URL as configured (the engine's own names the pysqlite driver)."""
        self._executor: ThreadPoolExecutor | None = None
        self._async: AsyncEngine | None = None

    async def run(self, work: Work[T], *, write: bool) -> T:
        executor = self._executor
        if executor is None:  # first use, or used again after dispose (like a disposed engine)
            executor = self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tagrelay-db")
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, self._call, work, write)
        except DATABASE_ERRORS as exc:
            raise database_error(exc) from exc

    def _call(self, work: Work[T], write: bool) -> T:
        if write:
            with self.engine.begin() as conn:
                return work(conn)
        with self.engine.connect() as conn:
            return work(conn)

    def async_engine(self) -> AsyncEngine:
        if self._async is None:
            self._async = make_engine(self.url.render_as_string(hide_password=False), create_dirs=False)
        return self._async

    def sync_engines(self) -> list[Engine]:
        engines = [self.engine]
        if self._async is not None:
            engines.append(self._async.sync_engine)
        return engines

    async def dispose(self) -> None:
        """Close the connection (on its thread) and end the thread. Safe to call twice."""
        executor, self._executor = self._executor, None
        try:
            if executor is not None:
                try:
                    await asyncio.get_running_loop().run_in_executor(executor, self.engine.dispose)
                finally:
                    executor.shutdown(wait=False)  # idle by now (or finishing the dispose): it ends on its own
        finally:
            if self._async is not None:
                await self._async.dispose()


class AsyncDatabase:
    """PostgreSQL (asyncpg) or in-memory SQLite (aiosqlite): an ``AsyncEngine`` and ``run_sync``."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.url = engine.url
        self.dialect = engine.dialect.name
        self.errors = DATABASE_ERRORS + _driver_errors(self.dialect)
        # PostgreSQL: a read runs outside a transaction. Under READ COMMITTED (the default, which the
        # store uses) each statement of a transaction sees what was committed before that statement,
        # in or out of one, so the BEGIN and the ROLLBACK around a read were two round trips for
        # nothing. SQLite keeps its transaction: there, it is one snapshot for all of the read.
        self._reader = engine.execution_options(isolation_level="AUTOCOMMIT") if self.dialect == "postgresql" \
            else engine

    async def run(self, work: Work[T], *, write: bool) -> T:
        try:
            if not write:
                async with self._reader.connect() as conn:
                    return await conn.run_sync(work)
            return await self._write(work)
        except self.errors as exc:
            raise database_error(exc) from exc

    async def _write(self, work: Work[T]) -> T:
        """One transaction, run again after a deadlock or a serialization failure (``TRANSIENT_ATTEMPTS``)."""
        attempt = 1
        while True:
            try:
                async with self.engine.connect() as conn:
                    # the transaction begins and commits inside the one run_sync: ``engine.begin()`` would
                    # cross into SQLAlchemy's greenlet twice more (begin, commit), ~0.05 ms of CPU each time
                    return await conn.run_sync(_in_transaction, work)
            except DBAPIError as exc:
                reason = transient_reason(exc)
                if reason is None or attempt >= TRANSIENT_ATTEMPTS:
                    raise
                event(log, logging.WARNING, "db.retry", reason=reason, attempt=attempt,
                      note="the database rolled the transaction back; running it again")
                # apart, so the transactions that collided do not collide again at once
                await asyncio.sleep(random.uniform(0.005, 0.05) * attempt)
                attempt += 1

    def async_engine(self) -> AsyncEngine:
        return self.engine

    def sync_engines(self) -> list[Engine]:
        return [self.engine.sync_engine]

    async def dispose(self) -> None:
        await self.engine.dispose()


def _in_transaction(conn: Connection, work: Work[T]) -> T:
    """``work`` as one transaction: committed when it returns, rolled back if it raises."""
    with conn.begin():
        return work(conn)


def _driver_errors(dialect: str) -> tuple[type[BaseException], ...]:
    """asyncpg's own base errors on PostgreSQL (SQLAlchemy wraps what it sees; these are for what it may not)."""
    if dialect != "postgresql":
        return ()
    try:  # lazy: only a PostgreSQL database loads the driver (SQLAlchemy has imported it by now anyway)
        import asyncpg
    except ImportError:  # another PostgreSQL driver: SQLAlchemy wraps its errors
        return ()
    return (asyncpg.PostgresError, asyncpg.InterfaceError)


def open_database(url: str, *, create_dirs: bool = True) -> Database:
    """The database of a storage URL: a SQLite file gets a ``ThreadedDatabase``, anything else
    (PostgreSQL, in-memory SQLite) an ``AsyncDatabase``. SQLite: the parent folder is created
    unless ``create_dirs`` is false."""
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite" and not is_private_to_process(parsed):
        return ThreadedDatabase(make_sqlite_engine(parsed, create_dirs=create_dirs), parsed)
    return AsyncDatabase(make_engine(url, create_dirs=create_dirs))
