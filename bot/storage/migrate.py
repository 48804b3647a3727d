"""Apply Alembic migrations programmatically, inside one transaction per run."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.errors import StorageError

if TYPE_CHECKING:  # Alembic (+ Mako) costs ~10 MiB and ~0.1 s: imported only when a migration is due
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory

HEAD = "0003"
"""The newest revision in migrations/versions (a test checks it against Alembic's own head).
When the database is already there, start-up never imports Alembic."""

MIGRATION_LOCK = 0x7461_6772  # "tagr": the PostgreSQL advisory lock held while migrating


def migrations_dir() -> Path:
    """The migrations folder: in a checkout at the top level, in a wheel inside the package."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here.parent / "migrations", here / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise StorageError("the migrations folder is missing from this installation")


def alembic_config() -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(migrations_dir()))
    return cfg


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def _current(conn: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()


def _upgrade(conn: Connection) -> None:
    from alembic import command

    cfg = alembic_config()
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, "head")


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(_current)


async def _recorded_revision(engine: AsyncEngine) -> str | None:
    """The revision in ``alembic_version`` by plain SQL (None if there is no such table yet)."""
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
    except SQLAlchemyError:
        return None
    return rows[0][0] if len(rows) == 1 else None


async def upgrade(engine: AsyncEngine) -> tuple[str | None, str]:
    """Bring the schema to the newest revision, all of it or nothing. Returns (before, after)."""
    if await _recorded_revision(engine) == HEAD:
        return HEAD, HEAD  # the common start: nothing to do, and Alembic is never imported
    from alembic.script import ScriptDirectory

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
