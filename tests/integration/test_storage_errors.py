"""Database errors come out of the Store as the project's ``StorageError``, translated in one place
(``bot.storage.database``): the original kept as ``__cause__``, the message its type and first line,
without SQL, parameters or a password. Errors the project raises on purpose pass through as they are."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from bot.errors import NotFoundError, StorageError
from bot.storage.database import database_error
from bot.storage.store import Store

SECRET = "s3cr3t-parameter-value"


async def test_an_unreachable_sqlite_file_is_a_storage_error_from_every_method(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    store = Store.open(f"sqlite:///{tmp_path / 'a-file' / 'tagrelay.db'}", create_dirs=False)
    try:
        with pytest.raises(StorageError, match=r"^OperationalError: unable to open database file$") as caught:
            await store.source("archive")
        assert isinstance(caught.value.__cause__, SQLAlchemyError)
        with pytest.raises(StorageError, match=r"^database unreachable: OperationalError$"):
            await store.ping()
    finally:
        await store.aclose()


async def test_a_failing_statement_shows_neither_its_sql_nor_its_parameters(store: Store) -> None:
    def work(conn: Connection) -> None:
        conn.execute(text("INSERT INTO tags (slug, name) VALUES (:slug, NULL)"), {"slug": SECRET})

    with pytest.raises(StorageError) as caught:
        await store.database.run(work, write=True)
    message = str(caught.value)
    assert "IntegrityError" in message or "NotNullViolationError" in message
    assert "not" in message.lower() and "null" in message.lower()  # the driver's own first line
    assert SECRET not in message and "INSERT" not in message and "[SQL" not in message
    assert "\n" not in message
    assert isinstance(caught.value.__cause__, DBAPIError)
    assert await store.tags() == []  # rolled back


async def test_errors_raised_on_purpose_pass_through(store: Store) -> None:
    with pytest.raises(NotFoundError):
        await store.source("nowhere")
    with pytest.raises(NotFoundError):
        await store.set_paused("nowhere", True, "x", datetime.now(UTC))


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_a_driver_message_quoting_a_parameter_leaves_its_value_out(store: Store) -> None:
    def work(conn: Connection) -> None:  # asyncpg: "invalid input for query argument $1: '<value>' (…)"
        conn.execute(text("SELECT CAST(:n AS integer) + 1"), {"n": SECRET})

    with pytest.raises(StorageError) as caught:
        await store.database.run(work, write=False)
    assert SECRET not in str(caught.value)
    assert "query argument $1" in str(caught.value)


def test_a_password_in_a_driver_message_is_redacted() -> None:
    error = database_error(OSError("could not connect to postgresql://tagrelay:hunter2@db:5432/tagrelay\nline 2"))
    assert str(error) == "OSError: could not connect to postgresql://tagrelay:***@db:5432/tagrelay"
    assert "hunter2" not in str(error)


def test_a_long_first_line_is_cut() -> None:
    error = database_error(OSError("x" * 5000))
    assert len(str(error)) <= len("OSError: ") + 300


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_a_pooled_connection_the_server_closed_is_replaced_before_it_is_used(store: Store) -> None:
    """The pool no longer pings on every checkout (three round trips on asyncpg), yet a connection the
    server has closed (a restart, ``pg_terminate_backend``) is never handed out: the next transaction
    runs on a new one instead of failing with "connection is closed"."""
    from tests.conftest import _pg_exec

    url = store.url.render_as_string(hide_password=False)
    database = store.url.database

    def backend(conn: Connection) -> int:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())

    first = await store.database.run(backend, write=False)  # pooled now, idle
    await _pg_exec(url, f"SELECT pg_terminate_backend({first})")

    async def gone() -> bool:
        import asyncpg

        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
        try:
            return not await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND datname = $2", first, database)
        finally:
            await conn.close()

    deadline = asyncio.get_running_loop().time() + 10
    while not await gone():  # the event loop runs meanwhile: asyncpg reads the end of that socket
        assert asyncio.get_running_loop().time() < deadline, "the backend was not terminated"
    assert await store.database.run(backend, write=True) != first  # a new connection, no StorageError
    assert await store.database.run(backend, write=False) != first
