"""Channels: their state (paused, held until, target override)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, select, update

from bot.domain.state import ChannelState
from bot.errors import NotFoundError
from bot.storage import tables as t
from bot.storage.base import StoreBase, utc


def channel_state(row: Row[Any]) -> ChannelState:
    return ChannelState(id=row.id, name=row.name, platform=row.platform, paused=bool(row.paused),
                        paused_reason=row.paused_reason, paused_at=utc(row.paused_at),
                        hold_until=utc(row.hold_until), target_override=row.target_override)


class ChannelsMixin(StoreBase):
    async def channel(self, name: str) -> ChannelState:
        row = await self._read(lambda conn: conn.execute(
            select(t.channels).where(t.channels.c.name == name)).first())
        if row is None:
            raise NotFoundError("channel", name)
        return channel_state(row)

    async def channels(self) -> list[ChannelState]:
        rows = await self._read(lambda conn: conn.execute(select(t.channels).order_by(t.channels.c.name)).all())
        return [channel_state(r) for r in rows]

    async def set_paused(self, name: str, paused: bool, reason: str | None, now: datetime) -> bool:
        """Pause or resume a channel. Returns False when it already was in that state."""

        def work(conn: Connection) -> bool:
            row = conn.execute(select(t.channels).where(t.channels.c.name == name)).first()
            if row is None:
                raise NotFoundError("channel", name)
            if bool(row.paused) == paused and (not paused or row.paused_reason == reason):
                return False
            conn.execute(update(t.channels).where(t.channels.c.id == row.id).values(
                paused=paused, paused_reason=reason if paused else None, paused_at=now if paused else None,
                hold_until=None if not paused else row.hold_until))
            return True

        return await self._write(work)

    async def set_hold(self, name: str, until: datetime | None) -> None:
        await self._execute(update(t.channels).where(t.channels.c.name == name).values(hold_until=until))

    async def set_target_override(self, name: str, target: str | None) -> None:
        await self._execute(update(t.channels).where(t.channels.c.name == name).values(target_override=target))
