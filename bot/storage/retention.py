"""Retention in storage: the prune pass's batches, its dry-run counts, and the database's size.

Each ``prune_*`` method is ONE short transaction over at most ``limit`` rows (posts, deliveries, rule
drops or audit entries), so polls and deliveries run between two batches. A batch reads the facts of its
candidates by index (walking on from the ``cursor`` the previous batch returned), asks the pure rules
(``bot.domain.retention``) which may go, and writes that with the rule's conditions repeated in the
statement, so a row that changed since the read (a delivery queued for the post meanwhile) is left alone.
On PostgreSQL the candidates are locked ``FOR UPDATE SKIP LOCKED``: a row another transaction is using
(a delivery being inserted for the post, a backfill reading it, another instance's prune pass) is skipped
until the next pass; removing a row twice removes it once, so two instances pruning at once is harmless.

The database's size: a SQLite file's bytes with its WAL, or ``pg_database_size``. A SQLite database
made by this version has incremental auto-vacuum (``bot.storage.engine``): ``release_free_pages`` gives
the pages a pass freed back to the file system; ``vacuum`` rewrites the whole database (and turns
incremental auto-vacuum on for an older SQLite file).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, bindparam, delete, func, insert, not_, or_, select, text, true, update

from bot.domain.models import DeliveryStatus
from bot.domain.retention import (
    RENDERED,
    SETTLED,
    Cutoffs,
    PruneCounts,
    PruneRecord,
    content_may_go,
    delivery_may_go,
    identity_cutoff,
    identity_may_go,
    parse_detail,
)
from bot.storage import tables as t
from bot.storage.audit import audit_row
from bot.storage.base import StoreBase, utc
from bot.storage.engine import sqlite_path

Cursor = tuple[datetime, int] | None
"""Where a batch walk stands: the (time, id) of the last row it looked at (None: the start)."""
IdentityCursor = tuple[int, Cursor]
"""Where the identity walk stands: the index of the source in the pass's list, and the cursor in it."""

_RENDERED = [s.value for s in RENDERED]
_SETTLED = [s.value for s in SETTLED]
_FREE_PAGES_STEP = 2048
"""Pages ``release_free_pages`` returns per transaction (8 MiB at SQLite's default page size)."""


def _after(time_col: Any, id_col: Any, cursor: Cursor) -> Any:
    """Rows past ``cursor`` in (time, id) order."""
    if cursor is None:
        return true()
    at, last = cursor
    return or_(time_col > at, and_(time_col == at, id_col > last))


def _statuses(conn: Connection, post_ids: Sequence[int]) -> dict[int, list[DeliveryStatus]]:
    out: dict[int, list[DeliveryStatus]] = {pid: [] for pid in post_ids}
    if post_ids:
        for r in conn.execute(select(t.deliveries.c.post_id, t.deliveries.c.status)
                              .where(t.deliveries.c.post_id.in_(post_ids))):
            out[r.post_id].append(DeliveryStatus(r.status))
    return out


def _still_renders() -> Any:
    """A delivery of the post (``posts.id``) that may still render it."""
    return select(t.deliveries.c.id).where(t.deliveries.c.post_id == t.posts.c.id,
                                           t.deliveries.c.status.not_in(_RENDERED)).exists()


def _pending_sibling() -> Any:
    """Another delivery of the same post and channel as ``deliveries``' row that is still pending."""
    other = t.deliveries.alias("sibling")
    return select(other.c.id).where(other.c.post_id == t.deliveries.c.post_id,
                                    other.c.channel_id == t.deliveries.c.channel_id,
                                    other.c.status.not_in(_SETTLED)).exists()


def _any_delivery() -> Any:
    return select(t.deliveries.c.id).where(t.deliveries.c.post_id == t.posts.c.id).exists()


def _retire(conn: Connection, source_id: int, ids: Sequence[int], bound: datetime) -> int:
    """Remove the rows of posts ``ids`` (still unseen since before ``bound``, with no delivery record) and
    move the source's ``retired_before`` up to the newest date among them, in the same transaction: a
    dated post that comes back after its identity went is recorded, never sent again."""
    p = t.posts.c
    gone = and_(p.id.in_(ids), p.last_seen_at < bound, ~_any_delivery())
    newest = conn.execute(select(func.max(func.coalesce(p.published_at, p.first_seen_at))).where(gone)).scalar()
    removed = int(conn.execute(delete(t.posts).where(gone)).rowcount or 0)
    if removed and newest is not None:
        s = t.sources.c
        conn.execute(update(t.sources).where(
            s.id == source_id, or_(s.retired_before.is_(None), s.retired_before < newest)).values(
            retired_before=newest))
    return removed


class RetentionMixin(StoreBase):
    # -- the pass's batches ---------------------------------------------------------------------------

    async def prune_deliveries(self, cut: Cutoffs, limit: int, cursor: Cursor = None) -> tuple[int, Cursor]:
        """Remove settled delivery records older than the cutoff, looking at ``limit`` rows at most.
        Returns (removed, the cursor of the next batch; None: the walk is over)."""

        def work(conn: Connection) -> tuple[int, Cursor]:
            d = t.deliveries.c
            rows = conn.execute(select(d.id, d.status, d.updated_at, d.post_id, d.channel_id)
                                .where(d.updated_at < cut.deliveries, _after(d.updated_at, d.id, cursor))
                                .order_by(d.updated_at, d.id).limit(limit)
                                .with_for_update(skip_locked=True)).all()
            if not rows:
                return 0, None
            busy = {(r.post_id, r.channel_id) for r in conn.execute(
                select(d.post_id, d.channel_id).where(d.post_id.in_({r.post_id for r in rows}),
                                                      d.status.not_in(_SETTLED)))}
            gone = [r.id for r in rows if delivery_may_go(DeliveryStatus(r.status), utc(r.updated_at) or cut.now, cut,
                                                          sibling_pending=(r.post_id, r.channel_id) in busy)]
            removed = 0
            if gone:
                removed = conn.execute(delete(t.deliveries).where(
                    d.id.in_(gone), d.status.in_(_SETTLED), d.updated_at < cut.deliveries,
                    ~_pending_sibling())).rowcount or 0
            last = rows[-1]
            return int(removed), (last.updated_at, last.id) if len(rows) >= limit else None

        return await self._write(work)

    async def prune_rule_drops(self, cut: Cutoffs, limit: int) -> int:
        """Remove up to ``limit`` rule drops recorded before the deliveries' cutoff."""

        def work(conn: Connection) -> int:
            r = t.rule_drops.c
            rows = conn.execute(select(r.post_id, r.channel_id).where(r.at < cut.deliveries)
                                .order_by(r.at).limit(limit).with_for_update(skip_locked=True)).all()
            if not rows:
                return 0
            conn.execute(delete(t.rule_drops).where(
                r.post_id == bindparam("p", type_=t.ID), r.channel_id == bindparam("c", type_=t.ID)),
                [{"p": row.post_id, "c": row.channel_id} for row in rows])
            return len(rows)

        return await self._write(work)

    async def prune_audit(self, cut: Cutoffs, limit: int) -> int:
        """Remove up to ``limit`` audit entries older than the audit cutoff."""

        def work(conn: Connection) -> int:
            a = t.audit_log.c
            ids = conn.execute(select(a.id).where(a.at < cut.audit).order_by(a.at).limit(limit)
                               .with_for_update(skip_locked=True)).scalars().all()
            if not ids:
                return 0
            return int(conn.execute(delete(t.audit_log).where(a.id.in_(ids))).rowcount or 0)

        return await self._write(work)

    async def prune_content(self, cut: Cutoffs, limit: int, cursor: Cursor = None) -> tuple[int, Cursor]:
        """Drop the content of the posts ``content_may_go`` allows, looking at ``limit`` unpruned posts first
        seen before the cutoff at most (``ix_posts_unpruned``). Returns (pruned, next cursor or None)."""

        def work(conn: Connection) -> tuple[int, Cursor]:
            p = t.posts.c
            rows = conn.execute(select(p.id, p.first_seen_at)
                                .where(p.pruned_at.is_(None), p.first_seen_at < cut.content,
                                       _after(p.first_seen_at, p.id, cursor))
                                .order_by(p.first_seen_at, p.id).limit(limit)
                                .with_for_update(of=t.posts, skip_locked=True)).all()
            if not rows:
                return 0, None
            statuses = _statuses(conn, [r.id for r in rows])
            gone = [r.id for r in rows
                    if content_may_go(utc(r.first_seen_at) or cut.now, False, statuses[r.id], cut)]
            pruned = 0
            if gone:
                pruned = conn.execute(update(t.posts).where(p.id.in_(gone), p.pruned_at.is_(None), ~_still_renders())
                                      .values(content_html="", summary_html="", image_alt=None,
                                              pruned_at=cut.now)).rowcount or 0
            last = rows[-1]
            return int(pruned), (last.first_seen_at, last.id) if len(rows) >= limit else None

        return await self._write(work)

    async def identity_sources(self, cut: Cutoffs) -> list[tuple[int, datetime]]:
        """(source id, cutoff) of every source whose posts last seen before its cutoff may lose their identity
        (``identity_cutoff``): the start of the identity walk."""

        def work(conn: Connection) -> list[tuple[int, datetime]]:
            s = t.sources.c
            rows = conn.execute(select(s.id, s.listed_at, s.kind, s.resolved_kind).where(s.listed_at.is_not(None))
                                .order_by(s.id)).all()
            out = []
            for r in rows:
                bound = identity_cutoff(utc(r.listed_at), r.resolved_kind or r.kind, cut)
                if bound is not None:
                    out.append((r.id, bound))
            return out

        return await self._read(work)

    async def prune_identities(self, cut: Cutoffs, sources: Sequence[tuple[int, datetime]], limit: int,
                               cursor: IdentityCursor = (0, None)) -> tuple[int, IdentityCursor | None]:
        """Remove the rows of posts ``identity_may_go`` allows (their tags' links and rule drops go with them),
        looking at ``limit`` posts at most, source after source of ``sources`` (``identity_sources``).
        Returns (removed, next cursor or None)."""

        def work(conn: Connection) -> tuple[int, IdentityCursor | None]:
            p = t.posts.c
            index, within = cursor
            looked = removed = 0
            visited = 0  # sources looked at: a pass over thousands of sources is many short transactions too
            while index < len(sources) and looked < limit and visited < limit:
                visited += 1
                source_id, bound = sources[index]
                rows = conn.execute(select(p.id, p.last_seen_at)
                                    .where(p.source_id == source_id, p.last_seen_at < bound,
                                           _after(p.last_seen_at, p.id, within))
                                    .order_by(p.last_seen_at, p.id).limit(limit - looked)
                                    .with_for_update(of=t.posts, skip_locked=True)).all()
                looked += len(rows)
                statuses = _statuses(conn, [r.id for r in rows])
                gone = [r.id for r in rows if identity_may_go(utc(r.last_seen_at), bound + cut.identity, "",
                                                              len(statuses[r.id]), cut)]
                if gone:
                    removed += _retire(conn, source_id, gone, bound)
                if looked >= limit and rows:
                    within = (rows[-1].last_seen_at, rows[-1].id)
                else:
                    index, within = index + 1, None
            return int(removed), ((index, within) if index < len(sources) else None)

        return await self._write(work)

    # -- dry run ----------------------------------------------------------------------------------------

    async def prune_counts(self, cut: Cutoffs) -> PruneCounts:
        """What a pass would remove now, counted, nothing written (identities: counting the delivery records
        the same pass removes first as gone)."""

        def work(conn: Connection) -> PruneCounts:
            d, p = t.deliveries.c, t.posts.c
            old_settled = and_(d.status.in_(_SETTLED), d.updated_at < cut.deliveries, ~_pending_sibling())

            def count(query: Any) -> int:
                return int(conn.execute(query).scalar_one())

            identities = 0
            s = t.sources.c
            for r in conn.execute(select(s.id, s.listed_at, s.kind, s.resolved_kind).where(s.listed_at.is_not(None))):
                bound = identity_cutoff(utc(r.listed_at), r.resolved_kind or r.kind, cut)
                if bound is not None:
                    staying = select(d.id).where(d.post_id == p.id, not_(old_settled)).exists()
                    identities += count(select(func.count()).select_from(t.posts).where(
                        p.source_id == r.id, p.last_seen_at < bound, ~staying))
            return PruneCounts(
                content=count(select(func.count()).select_from(t.posts).where(
                    p.pruned_at.is_(None), p.first_seen_at < cut.content, ~_still_renders())),
                deliveries=count(select(func.count()).select_from(t.deliveries).where(old_settled)),
                rule_drops=count(select(func.count()).select_from(t.rule_drops)
                                 .where(t.rule_drops.c.at < cut.deliveries)),
                audit=count(select(func.count()).select_from(t.audit_log).where(t.audit_log.c.at < cut.audit)),
                identities=identities)

        return await self._read(work)

    # -- the record of a pass ---------------------------------------------------------------------------

    async def record_prune(self, counts: PruneCounts, now: datetime, *, actor: str = "tagrelay",
                           via: str = "retention") -> None:
        """The audit line of a pass (``last_prune`` reads the newest)."""
        await self._execute(insert(t.audit_log).values(audit_row(actor, via, "prune", counts.detail(), now)))

    async def last_prune(self) -> PruneRecord | None:
        a = t.audit_log.c
        row = await self._read(lambda conn: conn.execute(
            select(a.at, a.actor, a.detail).where(a.action == "prune").order_by(a.id.desc()).limit(1)).first())
        if row is None:
            return None
        return PruneRecord(at=utc(row.at) or row.at, counts=parse_detail(row.detail), actor=row.actor)

    # -- size and space ---------------------------------------------------------------------------------

    async def database_size(self) -> int | None:
        """Bytes the database takes: a SQLite file with its WAL, or ``pg_database_size`` (None: in memory)."""
        if self.dialect == "postgresql":
            return int(await self._read(lambda conn: conn.execute(
                text("SELECT pg_database_size(current_database())")).scalar_one()))
        path = sqlite_path(self.url.render_as_string(hide_password=False))
        if path is None or self.url.query.get("mode") == "memory":
            return None
        total = 0
        for name in (str(path), f"{path}-wal"):
            try:
                total += os.stat(name).st_size
            except FileNotFoundError:
                continue
        return total

    async def sqlite_pages(self) -> tuple[int, int, int] | None:
        """SQLite: (page_count, freelist_count, auto_vacuum mode: 0 none, 1 full, 2 incremental); else None."""
        if self.dialect != "sqlite":
            return None

        def work(conn: Connection) -> tuple[int, int, int]:
            return (int(conn.exec_driver_sql("PRAGMA page_count").scalar_one()),
                    int(conn.exec_driver_sql("PRAGMA freelist_count").scalar_one()),
                    int(conn.exec_driver_sql("PRAGMA auto_vacuum").scalar_one()))

        return await self._read(work)

    async def release_free_pages(self) -> int:
        """SQLite with incremental auto-vacuum: give the free pages back to the file system, a short
        transaction per ``_FREE_PAGES_STEP`` of them. Returns how many (0 elsewhere, and in memory)."""
        if self.dialect != "sqlite":
            return 0

        def work(conn: Connection) -> int:
            raw = conn.connection.dbapi_connection
            if not isinstance(raw, sqlite3.Connection):  # aiosqlite (in memory): nothing worth returning
                return 0
            if int(conn.exec_driver_sql("PRAGMA auto_vacuum").scalar_one()) != 2:
                return 0
            free = int(conn.exec_driver_sql("PRAGMA freelist_count").scalar_one())
            if free:
                # ``execute`` steps a statement once, and ``incremental_vacuum`` frees one page per step: the
                # script runs it to its end, as its own transaction (none is open on this read connection)
                raw.executescript(f"PRAGMA incremental_vacuum({_FREE_PAGES_STEP});")
            return min(free, _FREE_PAGES_STEP)

        released = 0
        while True:
            step = await self._read(work)
            released += step
            if step < _FREE_PAGES_STEP:
                return released

    async def vacuum(self) -> None:
        """Rewrite the whole database (SQLite ``VACUUM``: the file shrinks to its data, and an older file
        gets incremental auto-vacuum; PostgreSQL ``VACUUM``). Outside any transaction; may take a while."""

        def work(conn: Connection) -> None:
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM")

        await self._read(work)
