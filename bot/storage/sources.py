"""Sources: their state (cache, schedule, health, churn), which ones are due, and the start-up spread."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, String, bindparam, func, or_, select, update

from bot.domain.state import CacheState, DueSource, DueSources, SourceState
from bot.errors import NotFoundError
from bot.storage import tables as t
from bot.storage.base import StoreBase, utc

SOURCE = select(t.sources).where(t.sources.c.name == bindparam("source_name", type_=String))
"""A source's row by name (built once: every poll reads it)."""
_DUE_BY = bindparam("due_by", type_=t.TS)
_DUE_COLUMNS = (t.sources.c.name, t.sources.c.next_poll_at, t.sources.c.resolved_url)
_NEVER_POLLED = select(*_DUE_COLUMNS).where(t.sources.c.next_poll_at.is_(None))
_DUE = select(*_DUE_COLUMNS).where(t.sources.c.next_poll_at <= _DUE_BY)
_NEXT_TO_COME = select(func.min(t.sources.c.next_poll_at)).where(t.sources.c.next_poll_at > _DUE_BY)
"""``due_sources``' three statements, built once (every round of the poll driver runs them); each one an
index lookup on ``ix_sources_next_poll`` (0014), so a round costs the sources due, not all of them."""
_SPREAD = update(t.sources).where(
    t.sources.c.name == bindparam("sp_name", type_=String),
    # still overdue: another instance may have polled it since the round read it
    or_(t.sources.c.next_poll_at.is_(None), t.sources.c.next_poll_at < bindparam("sp_now", type_=t.TS)),
).values(next_poll_at=bindparam("sp_at", type_=t.TS))
"""``spread_polls``: one source's spread time (parameters ``sp_*``), executed for many in one transaction."""


def source_state(row: Row[Any], post_count: int = 0) -> SourceState:
    return SourceState(
        id=row.id, name=row.name, url=row.url, kind=row.kind,
        cache=CacheState(etag=row.etag, last_modified=row.last_modified, cursor=row.cursor,
                         resolved_url=row.resolved_url, resolved_kind=row.resolved_kind),
        baseline_done=bool(row.baseline_done), last_poll_at=utc(row.last_poll_at),
        last_success_at=utc(row.last_success_at), last_outcome=row.last_outcome,
        last_error=row.last_error, consecutive_failures=row.consecutive_failures or 0,
        next_poll_at=utc(row.next_poll_at), lease_owner=row.lease_owner, post_count=post_count,
        guid_churn_last=row.guid_churn_last or 0, guid_churn_total=row.guid_churn_total or 0,
        guid_churn_at=utc(row.guid_churn_at), usual_new=row.usual_new, push_requests=row.push_requests or 0,
        retired_before=utc(row.retired_before))


class SourcesMixin(StoreBase):
    async def source(self, name: str) -> SourceState:
        row = await self._read(lambda conn: conn.execute(SOURCE, {"source_name": name}).first())
        if row is None:
            raise NotFoundError("source", name)
        return source_state(row)

    async def sources(self) -> list[SourceState]:
        counts = (
            select(t.posts.c.source_id, func.count().label("n")).group_by(t.posts.c.source_id).subquery()
        )
        query = (select(t.sources, func.coalesce(counts.c.n, 0).label("post_count"))
                 .outerjoin(counts, counts.c.source_id == t.sources.c.id)
                 .order_by(t.sources.c.name))
        rows = await self._read(lambda conn: conn.execute(query).all())
        return [source_state(r, r.post_count) for r in rows]

    async def due_sources(self, due_by: datetime) -> DueSources:
        """The sources due by ``due_by`` (never polled, or ``next_poll_at`` at or before it: their name, time
        and resolved URL, not their whole row) and the earliest ``next_poll_at`` after it: what a poll round
        needs to decide, in one read. Rows of sources no longer in the configuration come too; the caller
        drops them."""
        params = {"due_by": due_by}

        def work(conn: Connection) -> DueSources:
            rows = [*conn.execute(_NEVER_POLLED).all(), *conn.execute(_DUE, params).all()]
            later = conn.execute(_NEXT_TO_COME, params).scalar()
            return DueSources(tuple(DueSource(r.name, utc(r.next_poll_at), r.resolved_url) for r in rows),
                              utc(later))

        return await self._read(work)

    async def source_states(self, names: Collection[str]) -> dict[str, SourceState]:
        """The whole rows of the named sources (those a round starts: at most its free slots), in one read;
        each poll then starts from its row instead of reading it again."""
        if not names:
            return {}
        wanted = list(names)
        rows = await self._read(lambda conn: conn.execute(select(t.sources).where(t.sources.c.name.in_(wanted))).all())
        return {r.name: source_state(r) for r in rows}

    async def spread_polls(self, times: Mapping[str, datetime], now: datetime) -> None:
        """Set each named source's ``next_poll_at`` (the start-up spread: ``bot.domain.schedule.spread_overdue``),
        in one transaction (one batched UPDATE), where the source is still overdue at ``now``: a source another
        instance polled meanwhile keeps the time its poll wrote."""
        if not times:
            return
        params = [{"sp_name": name, "sp_at": at, "sp_now": now} for name, at in times.items()]

        def work(conn: Connection) -> None:
            conn.execute(_SPREAD, params)

        await self._write(work)
