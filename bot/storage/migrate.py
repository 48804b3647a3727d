"""Apply Alembic migrations programmatically, inside one transaction per run.

``upgrade_isolated`` is what ``tagrelay run`` uses: when a migration is due on a
database another process can open (a SQLite file, PostgreSQL), it runs
``upgrade`` in a short-lived child process (``python -m bot.storage.migrate``),
so the long-running service never imports Alembic and Mako (~11 MiB of RSS it
would keep for its whole life). The child reads the database URL from the
environment, never from its command line (``ps`` shows a command line, and the
URL may hold a password), and answers with one JSON line; a failure comes back
as the child's one-line error message.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, text
from sqlalchemy.exc import SQLAlchemyError

from bot.errors import StorageError
from bot.storage.engine import is_private_to_process, make_engine

if TYPE_CHECKING:  # Alembic (+ Mako) costs ~10 MiB and ~0.1 s: imported only when a migration is due
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

    from bot.storage.database import Database

HEAD = "0013"
"""The newest revision in migrations/versions (a test checks it against Alembic's own head).
When the database is already there, start-up never imports Alembic."""

MIGRATION_LOCK = 0x7461_6772  # "tagr": the PostgreSQL advisory lock held while migrating

CHILD_URL_ENV = "TAGRELAY_MIGRATE_URL"
"""The environment variable the migration child process reads its database URL from."""


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


def recorded_revision(conn: Connection) -> str | None:
    """The revision in ``alembic_version`` by plain SQL (None if there is no such table yet)."""
    try:
        rows = conn.execute(text("SELECT version_num FROM alembic_version")).all()
    except SQLAlchemyError:
        return None
    return rows[0][0] if len(rows) == 1 else None


async def upgrade(engine: AsyncEngine) -> tuple[str | None, str]:
    """Bring the schema to the newest revision, all of it or nothing. Returns (before, after)."""
    async with engine.connect() as conn:
        recorded = await conn.run_sync(recorded_revision)
    if recorded == HEAD:
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


def _is_known(script: ScriptDirectory, revision: str) -> bool:
    from alembic.util import CommandError

    try:
        return script.get_revision(revision) is not None
    except CommandError:  # "Can't locate revision": Alembic raises rather than answering None
        return False


async def _migrate(conn: AsyncConnection, known: ScriptDirectory) -> tuple[str | None, str]:
    before = await conn.run_sync(_current)
    if before is not None and not _is_known(known, before):
        raise StorageError(
            f"the database is at schema revision {before}, which this tagrelay version does not "
            "know: it was written by a newer version; upgrade tagrelay instead of downgrading")
    await conn.run_sync(_upgrade)
    after = await conn.run_sync(_current)
    assert after is not None
    return before, after


async def upgrade_isolated(database: Database) -> tuple[str | None, str]:
    """``upgrade``, run in a child process when a migration is due (see the module docstring)."""
    try:
        recorded = await database.run(recorded_revision, write=False)
    except StorageError as exc:  # the database's own error (translated by ``database.run``): say what failed
        raise StorageError(f"cannot open or migrate the database: {exc}") from exc
    if recorded == HEAD:
        return HEAD, HEAD
    if is_private_to_process(database.url):  # a child would migrate a database of its own
        return await upgrade(database.async_engine())
    env = {**os.environ, CHILD_URL_ENV: database.url.render_as_string(hide_password=False)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.storage.migrate", env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = await proc.communicate()
    except BaseException:  # cancelled (stopping): the child's transaction rolls back or completes, never half
        if proc.returncode is None:
            proc.terminate()
            await proc.wait()
        raise
    if proc.returncode == 0:
        try:
            answer = json.loads(out.decode("utf-8").strip().splitlines()[-1])
            return answer["before"], str(answer["after"])
        except (ValueError, IndexError, KeyError, TypeError):
            raise StorageError("the migration process gave no readable answer") from None
    lines = [line for line in err.decode("utf-8", "replace").splitlines() if line.strip()]
    raise StorageError(lines[-1] if lines else f"the migration process exited with code {proc.returncode}")


def _child_main() -> int:
    """``python -m bot.storage.migrate``: upgrade the database named by ``TAGRELAY_MIGRATE_URL``."""
    url = os.environ.get(CHILD_URL_ENV)
    if not url:
        print(f"{CHILD_URL_ENV} is not set", file=sys.stderr)
        return 2

    async def run() -> tuple[str | None, str]:
        engine = make_engine(url)
        try:
            return await upgrade(engine)
        finally:
            await engine.dispose()

    try:
        before, after = asyncio.run(run())
    except StorageError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - one line for the parent, which raises StorageError with it
        print(f"cannot open or migrate the database: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"before": before, "after": after}))
    return 0


if __name__ == "__main__":
    raise SystemExit(_child_main())
