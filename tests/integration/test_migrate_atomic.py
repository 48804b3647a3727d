"""A schema upgrade is all or nothing: a crash half-way must not leave a database no later start can open."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.operations import Operations
from sqlalchemy import inspect

from bot.storage import migrate
from bot.storage.engine import make_engine
from bot.storage.store import Store


class Crash(Exception):
    """Stands in for the process dying in the middle of the migration."""


async def table_names(url: str) -> list[str]:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return sorted(await conn.run_sync(lambda c: inspect(c).get_table_names()))
    finally:
        await engine.dispose()


async def test_an_interrupted_first_migration_leaves_nothing_and_the_next_start_migrates(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    real = Operations.create_table
    calls = 0

    def create_table(self: Operations, *args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 3:  # two tables exist by now
            raise Crash
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Operations, "create_table", create_table)
    engine = make_engine(db_url)
    try:
        with pytest.raises(Crash):
            await migrate.upgrade(engine)
    finally:
        await engine.dispose()
    assert await table_names(db_url) == []  # not two tables and an empty alembic_version

    monkeypatch.setattr(Operations, "create_table", real)
    engine = make_engine(db_url)
    try:
        before, after = await migrate.upgrade(engine)
        assert (before, after) == (None, migrate.head_revision())
        async with engine.begin() as conn:  # the connection works normally again afterwards
            await conn.exec_driver_sql("INSERT INTO tags (slug, name) VALUES ('a', 'A')")
        async with engine.connect() as conn:
            assert (await conn.exec_driver_sql("SELECT count(*) FROM tags")).scalar() == 1
    finally:
        await engine.dispose()
    assert "deliveries" in await table_names(db_url)


async def test_a_due_migration_runs_in_a_child_process_and_the_service_never_imports_alembic(
        db_url: str, tmp_path: Any) -> None:
    """Also pins the memory diet of a SQLite service: no Alembic, no ORM, no asyncio extension and
    no PostgreSQL dialect are imported by opening the store, migrating and using it."""
    import asyncio
    import os
    import subprocess
    import sys

    code = (
        "import asyncio, sys\n"
        "from bot.storage import migrate\n"
        "from bot.storage.store import Store\n"
        "async def main():\n"
        "    store = Store.open(sys.argv[1])\n"
        "    try:\n"
        "        first = await migrate.upgrade_isolated(store.database)\n"
        "        second = await migrate.upgrade_isolated(store.database)\n"
        "        await store.ping()\n"
        "    finally:\n"
        "        await store.aclose()\n"
        "    heavy = ['alembic', 'sqlalchemy.orm', 'sqlalchemy.ext.asyncio', 'sqlalchemy.dialects.postgresql']\n"
        "    print(first, second, [m for m in heavy if m in sys.modules])\n"
        "asyncio.run(main())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != migrate.CHILD_URL_ENV}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code, db_url, env=env, cwd=tmp_path,
                                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdout, stderr = await proc.communicate()
    assert proc.returncode == 0, stderr.decode()
    out = stdout.decode().strip()
    head = migrate.HEAD
    # PostgreSQL runs on asyncpg, which needs the asyncio extension (and so the ORM); never Alembic
    loaded = "[]" if db_url.startswith("sqlite") else (
        "['sqlalchemy.orm', 'sqlalchemy.ext.asyncio', 'sqlalchemy.dialects.postgresql']")
    assert out == f"(None, '{head}') ('{head}', '{head}') {loaded}"
    assert "deliveries" in await table_names(db_url)
    engine = make_engine(db_url)
    try:
        assert await migrate.current_revision(engine) == head
    finally:
        await engine.dispose()


async def test_a_failing_child_migration_is_one_storage_error_naming_why(db_url: str) -> None:
    from sqlalchemy import text

    from bot.errors import StorageError

    engine = make_engine(db_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)"))
            await conn.execute(text("INSERT INTO alembic_version VALUES ('9999')"))
        store = Store.open(db_url)
        try:
            with pytest.raises(StorageError, match="revision 9999, which this tagrelay version does not know"):
                await migrate.upgrade_isolated(store.database)
        finally:
            await store.aclose()
        assert await table_names(db_url) == ["alembic_version"]  # nothing half-written
    finally:
        await engine.dispose()


async def test_an_in_memory_database_is_migrated_in_process() -> None:
    store = Store.open("sqlite+aiosqlite:///:memory:")
    try:
        assert await migrate.upgrade_isolated(store.database) == (None, migrate.HEAD)
        assert await migrate.current_revision(store.engine) == migrate.HEAD  # the same (private) database
    finally:
        await store.aclose()
