"""Sources: their state (cache, schedule, health, churn) and when the next one is due."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, String, bindparam, func, select

from bot.domain.state import CacheState, SourceState
from bot.errors import NotFoundError
from bot.storage import tables as t
from bot.storage.base import StoreBase, utc

SOURCE = select(t.sources).where(t.sources.c.name == bindparam("source_name", type_=String))
"""A source's row by name (built once: every poll reads it)."""
_SCHEDULE = select(t.sources.c.name, t.sources.c.next_poll_at)
"""Every source's next poll time (``poll_schedule``; built once: every round of the poll driver reads it)."""


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
        guid_churn_at=utc(row.guid_churn_at), usual_new=row.usual_new, push_requests=row.push_requests or 0)


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

    async def poll_schedule(self, names: Sequence[str]) -> dict[str, datetime | None]:
        """``next_poll_at`` of each named source that exists (None: never polled, or its URL changed):
        what the poll driver needs to tell which sources are due and when to wake. One read of the
        ``sources`` rows, no post counts: cost ∝ sources, not history. The statement is built once and
        has no ``IN`` list (one parameter per source, expanded on every round): the table holds the
        configured sources, so the rows not named are dropped here."""
        if not names:
            return {}
        wanted = set(names)
        rows = await self._read(lambda conn: conn.execute(_SCHEDULE).all())
        return {r.name: utc(r.next_poll_at) for r in rows if r.name in wanted}

