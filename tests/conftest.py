"""Shared fixtures: real SQLite and (when TAGRELAY_TEST_POSTGRES_URL is set) real PostgreSQL stores."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bot.clock import FakeClock
from bot.storage import migrate
from bot.storage.store import Store

PG_URL = os.environ.get("TAGRELAY_TEST_POSTGRES_URL")
ROOT = Path(__file__).resolve().parent.parent


def _pg_admin_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def _pg_exec(url: str, *statements: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_pg_admin_dsn(url))
    try:
        for stmt in statements:
            await conn.execute(stmt)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A scratch PostgreSQL database for this test session (dropped at the end)."""
    if not PG_URL:
        pytest.skip("TAGRELAY_TEST_POSTGRES_URL is not set")
    name = f"tagrelay_t_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    asyncio.run(_pg_exec(PG_URL, f'CREATE DATABASE "{name}"'))
    base, _, _ = PG_URL.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        asyncio.run(_pg_exec(PG_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _db_params() -> list[object]:
    return ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=_db_params())
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database URL: SQLite file, or a reset PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'tagrelay.db'}"
    url = request.getfixturevalue("pg_database")
    asyncio.run(_pg_exec(url, "DROP SCHEMA IF EXISTS public CASCADE", "CREATE SCHEMA public"))
    return str(url)


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    s = Store.open(db_url)
    await migrate.upgrade(s.engine)
    try:
        yield s
    finally:
        await s.aclose()
