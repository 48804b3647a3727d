"""Held bursts: a source's deliveries recorded ``held`` until an admin releases or drops them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select, update

from bot.domain.models import DeliveryStatus
from bot.domain.state import HoldView
from bot.errors import NotFoundError
from bot.storage import tables as t
from bot.storage.base import StoreBase, utc


class HoldsMixin(StoreBase):
    async def holds(self) -> list[HoldView]:
        """Each source's held burst (only sources that have one). Reads only the held deliveries
        (``ix_deliveries_status``), never the delivery history."""
        held = t.deliveries.c.status == DeliveryStatus.HELD.value
        joined = (t.deliveries.join(t.posts, t.posts.c.id == t.deliveries.c.post_id)
                  .join(t.sources, t.sources.c.id == t.posts.c.source_id))
        per_source = (select(t.sources.c.name, t.sources.c.usual_new,
                             func.count(func.distinct(t.deliveries.c.post_id)).label("posts"),
                             func.count().label("n"), func.min(t.deliveries.c.created_at).label("since"))
                      .select_from(joined).where(held)
                      .group_by(t.sources.c.id, t.sources.c.name, t.sources.c.usual_new).order_by(t.sources.c.name))
        per_channel = (select(t.sources.c.name.label("source"), t.channels.c.name.label("channel"))
                       .select_from(joined.join(t.channels, t.channels.c.id == t.deliveries.c.channel_id))
                       .where(held).distinct())

        def work(conn: Connection) -> tuple[Sequence[Any], Sequence[Any]]:
            return conn.execute(per_source).all(), conn.execute(per_channel).all()

        rows, chans = await self._read(work)
        by_source: dict[str, list[str]] = {}
        for r in chans:
            by_source.setdefault(r.source, []).append(r.channel)
        return [HoldView(source=r.name, posts=int(r.posts), deliveries=int(r.n), since=utc(r.since),
                         usual_new=r.usual_new, channels=tuple(sorted(by_source.get(r.name, ()))))
                for r in rows]

    async def release_hold(self, source: str, now: datetime) -> int:
        """A source's held deliveries become ``queued`` (due now; sent paced, oldest post first).
        Returns how many. Raises ``NotFoundError`` for an unknown source."""
        return await self._end_hold(source, {
            "status": DeliveryStatus.QUEUED.value, "next_attempt_at": now, "updated_at": now, "reason": "released"})

    async def drop_hold(self, source: str, now: datetime) -> int:
        """A source's held deliveries become ``dropped``: recorded, never sent. Returns how many."""
        return await self._end_hold(source, {
            "status": DeliveryStatus.DROPPED.value, "next_attempt_at": None, "updated_at": now,
            "reason": "dropped", "last_error": "a held burst, dropped by an admin; never sent"})

    async def _end_hold(self, source: str, values: dict[str, Any]) -> int:
        def work(conn: Connection) -> int:
            row = conn.execute(select(t.sources.c.id).where(t.sources.c.name == source)).first()
            if row is None:
                raise NotFoundError("source", source)
            of_source = select(t.posts.c.id).where(t.posts.c.source_id == row.id)
            result = conn.execute(update(t.deliveries).where(
                t.deliveries.c.status == DeliveryStatus.HELD.value, t.deliveries.c.post_id.in_(of_source))
                .values(values))
            return int(result.rowcount or 0)

        return await self._write(work)
