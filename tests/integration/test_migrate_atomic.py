"""A schema upgrade is all or nothing: a crash half-way must not leave a database no later start can open."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.operations import Operations
from sqlalchemy import inspect

from bot.storage import migrate
from bot.storage.engine import make_engine


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
