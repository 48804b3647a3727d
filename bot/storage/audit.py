"""The audit log: who did what, through which door (CLI, admin bot, the poll holding a burst)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert, select

from bot.domain.state import AuditEntry
from bot.storage import tables as t
from bot.storage.base import StoreBase, utc


def audit_row(actor: str, via: str, action: str, detail: str, now: datetime) -> dict[str, object]:
    """An ``audit_log`` row (the actor and the detail cut to their columns' sizes)."""
    return {"at": now, "actor": actor[:128], "via": via, "action": action, "detail": detail[:2000]}


class AuditMixin(StoreBase):
    async def audit(self, actor: str, via: str, action: str, detail: str, now: datetime) -> None:
        await self._execute(insert(t.audit_log).values(at=now, actor=actor[:128], via=via, action=action,
                                                       detail=detail))

    async def audit_entries(self, limit: int = 50) -> list[AuditEntry]:
        rows = await self._read(lambda conn: conn.execute(
            select(t.audit_log).order_by(t.audit_log.c.id.desc()).limit(limit)).all())
        return [AuditEntry(at=utc(r.at) or r.at, actor=r.actor, via=r.via, action=r.action, detail=r.detail)
                for r in rows]
