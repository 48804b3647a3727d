"""Apply Alembic migrations programmatically, inside one transaction per run."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.errors import StorageError

MIGRATION_LOCK = 0x7461_6772  # "tagr": the PostgreSQL advisory lock held while migrating


def migrations_dir() -> Path:
    """The migrations folder: in a checkout at the top level, in a wheel inside the package."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here.parent / "migrations", here / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise StorageError("the migrations folder is missing from this installation")


def alembic_config() -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(migrations_dir()))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def _current(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def _upgrade(conn: Connection) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, "head")


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(_current)


async def upgrade(engine: AsyncEngine) -> tuple[str | None, str]:
    """Bring the schema to the newest revision, all of it or nothing. Returns (before, after)."""
    known = ScriptDirectory.from_config(alembic_config())
    if engine.dialect.name == "sqlite":
        async with engine.connect() as conn:
            # pysqlite (under aiosqlite) opens no transaction before DDL: each CREATE/ALTER would commit on its
            # own, and a crash half-way through would leave tables without a revision, a schema no later start
            # can migrate ("table ... already exists"). So the driver steps aside and one explicit transaction
            # holds the whole upgrade (IMMEDIATE: a second process starting at once waits for it).
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                before, after = await _migrate(conn, known)
            except BaseException:
                await conn.exec_driver_sql("ROLLBACK")
                raise
            await conn.exec_driver_sql("COMMIT")
        return before, after
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # several instances may start at once on one database: one migrates, the others wait and see it done
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        return await _migrate(conn, known)


async def _migrate(conn: AsyncConnection, known: ScriptDirectory) -> tuple[str | None, str]:
    before = await conn.run_sync(_current)
    if before is not None and known.get_revision(before) is None:
        raise StorageError(
            f"the database is at schema revision {before}, which this tagrelay version does not "
            "know: it was written by a newer version; upgrade tagrelay instead of downgrading")
    await conn.run_sync(_upgrade)
    after = await conn.run_sync(_current)
    assert after is not None
    return before, after
