"""``tagrelay db copy``: move a database (normally SQLite) into an empty one (normally PostgreSQL).

Everything that matters is copied as it is: sources with their validators and
cursors, every known post and tag, subscriptions, backfill marks, channels
with their pause and hold state, every delivery with its status, attempts,
remote ids and errors (the delivery history), the audit log and the pacing
buckets. Runtime-only state is not copied: instance registrations and leases
belong to processes of the old database, so source leases are cleared.

The target is migrated to the current schema first and must hold no rows;
the copy runs in one transaction on the target (a failure leaves it empty),
then the row count of every table is compared with the source.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn

from sqlalchemy import DateTime, Table, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.errors import StorageError
from bot.storage import migrate
from bot.storage import tables as t
from bot.storage.instance_lock import lock_path, probe

SKIPPED = ("instance_leases", "instances")
"""Runtime state of the old database's processes: never copied."""
BATCH = 1000


@dataclass(frozen=True, slots=True)
class CopyReport:
    counts: dict[str, int]
    """Rows copied per table, in copy order (verified equal on both sides)."""


def copied_tables() -> list[Table]:
    """Tables in foreign-key order, without the runtime ones."""
    return [tbl for tbl in t.metadata.sorted_tables if tbl.name not in SKIPPED]


async def _counts(conn: AsyncConnection, tables: list[Table]) -> dict[str, int]:
    return {tbl.name: int((await conn.execute(select(func.count()).select_from(tbl))).scalar_one())
            for tbl in tables}


def _fixer(tbl: Table) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Per-row adjustments: aware UTC datetimes (SQLite gives naive ones), no source leases."""
    stamps = [c.name for c in tbl.columns if isinstance(c.type, DateTime)]

    def fix(row: dict[str, Any]) -> dict[str, Any]:
        for name in stamps:
            value = row.get(name)
            if isinstance(value, datetime) and value.tzinfo is None:
                row[name] = value.replace(tzinfo=UTC)
        if tbl.name == "sources":
            row["lease_owner"] = None
            row["lease_expires_at"] = None
        return row

    return fix


def _refuse_running(who: str) -> NoReturn:
    raise StorageError(f"tagrelay is running on the source database ({who}); stop it before copying, "
                       "so no delivery changes during the copy")


async def copy_database(source: AsyncEngine, target: AsyncEngine, *, now: datetime,
                        progress: Callable[[str, int], object] | None = None) -> CopyReport:
    """Copy ``source`` into ``target`` (see the module docstring). Raises ``StorageError`` with the reason."""
    if source.url == target.url:
        raise StorageError("the source and the target are the same database")
    path = lock_path(source.url)
    holder = probe(path) if path is not None else None  # before migrating: never under a running instance
    if holder is not None:
        _refuse_running(holder.describe())
    await migrate.upgrade(source)
    async with source.connect() as conn:
        live = (await conn.execute(select(t.instances.c.owner).where(t.instances.c.expires_at > now))).first()
    if live is not None:
        _refuse_running(live.owner)
    await migrate.upgrade(target)
    tables = copied_tables()
    async with target.connect() as conn:
        busy = {name: n for name, n in (await _counts(conn, [*tables, t.instances, t.instance_leases])).items()
                if n}
    if busy:
        detail = ", ".join(f"{name}: {n} rows" for name, n in sorted(busy.items()))
        raise StorageError(f"the target database is not empty ({detail}); copy only into a new, empty database")

    copied: dict[str, int] = {}
    async with source.connect() as src, target.begin() as dst:
        for tbl in tables:
            fix = _fixer(tbl)
            order = list(tbl.primary_key.columns)
            total = 0
            result = await src.stream(select(tbl).order_by(*order))
            async for part in result.mappings().partitions(BATCH):
                rows = [fix(dict(r)) for r in part]
                await dst.execute(tbl.insert(), rows)
                total += len(rows)
            copied[tbl.name] = total
            if progress is not None:
                progress(tbl.name, total)
        if target.dialect.name == "postgresql":
            for tbl in tables:  # identity sequences continue after the copied ids
                pk = list(tbl.primary_key.columns)
                if len(pk) == 1 and pk[0].autoincrement is True:
                    top = select(func.max(pk[0])).scalar_subquery()
                    await dst.execute(select(func.setval(func.pg_get_serial_sequence(tbl.name, pk[0].name),
                                                         func.coalesce(top, 0) + 1, False)))
    async with source.connect() as src_conn, target.connect() as dst_conn:
        before, after = await _counts(src_conn, tables), await _counts(dst_conn, tables)
    if before != after or after != copied:
        wrong = [f"{name}: source {before[name]}, target {after.get(name)}" for name in before
                 if before[name] != after.get(name) or copied.get(name) != after.get(name)]
        raise StorageError("row counts differ after the copy (" + "; ".join(wrong) + ")")
    return CopyReport(counts=copied)
