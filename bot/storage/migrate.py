"""Apply Alembic migrations programmatically, inside one transaction per run."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.errors import StorageError


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
    """Bring the schema to the newest revision. Returns (before, after)."""
    known = ScriptDirectory.from_config(alembic_config())
    async with engine.begin() as conn:
        before = await conn.run_sync(_current)
        if before is not None and known.get_revision(before) is None:
            raise StorageError(
                f"the database is at schema revision {before}, which this tagrelay version does not "
                "know: it was written by a newer version; upgrade tagrelay instead of downgrading")
        await conn.run_sync(_upgrade)
        after = await conn.run_sync(_current)
    assert after is not None
    return before, after
