"""Claimed groups (pipelined delivery, ``bot.domain.pipeline``): claim a channel's oldest due deliveries in
one transaction, and record a group's outcomes, their channel effects and the hand-back of its unsent
deliveries in another.

Only for a channel whose platform deduplicates a resend (``bot.services.pipeline``): a crash with a group
claimed leaves its rows ``sending``, and the usual recovery (``recover_sending``, ``reap_instances``) puts
them back in the queue, to be sent again with the same keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, String, bindparam, or_, select, update

from bot.domain.delivery import Decision
from bot.domain.models import DeliveryStatus
from bot.domain.state import ClaimedDelivery
from bot.storage import tables as t
from bot.storage.base import StoreBase, chunks, utc
from bot.storage.deliveries import channel_effects, claim_statement, claimed_delivery, decision_outcome

_LIVE = select(t.channels.c.id).where(
    t.channels.c.name == bindparam("live_name", type_=String), t.channels.c.paused.is_(False),
    or_(t.channels.c.hold_until.is_(None), t.channels.c.hold_until <= bindparam("live_now", type_=t.TS)))
"""The channel, if it is neither paused nor held (a pause or a hold from elsewhere ends a group too)."""

_RELEASE = (update(t.deliveries)
            .where(t.deliveries.c.id.in_(bindparam("r_ids", expanding=True)),
                   t.deliveries.c.status == DeliveryStatus.SENDING.value,
                   t.deliveries.c.claimed_by == bindparam("r_owner", type_=String))
            .values(status=DeliveryStatus.QUEUED.value, attempts=t.deliveries.c.attempts - 1, claimed_by=None,
                    next_attempt_at=bindparam("r_now", type_=t.TS), updated_at=bindparam("r_now", type_=t.TS)))
"""A claimed, never sent delivery goes back untouched: queued, its attempt uncounted (only this owner's
claims: a row another instance's recovery took is left alone)."""


class PipelineMixin(StoreBase):
    async def claim_group(self, channel: str, now: datetime, owner: str, limit: int) -> list[ClaimedDelivery]:
        """Claim up to ``limit`` of the channel's due deliveries, oldest post first (the order ``claim_next``
        would take them in), and mark them ``sending``: one transaction, committed before this returns. None
        while the channel is paused or held."""
        params = {"g_channel": channel, "g_now": now, "g_owner": owner, "g_limit": limit}

        def work(conn: Connection) -> list[ClaimedDelivery]:
            rows = sorted(conn.execute(claim_statement(self.dialect, "g", group=True), params).all(),
                          key=lambda r: (r.post_at is None, utc(r.post_at) or now, r.id))
            return [claimed_delivery(conn, channel, row) for row in rows]

        return await self._write(work)

    async def settle_group(self, decisions: Sequence[tuple[int, Decision, datetime]], now: datetime, *,
                           channel: str, owner: str, unsent: Sequence[int] = (), hand_back: bool = False) -> bool:
        """Record a group's outcomes (each as ``apply_decision`` would at its own time, with its channel's hold
        or pause) and, with ``hand_back`` or when the channel is now paused or held (by these decisions or from
        elsewhere), give the ``unsent`` deliveries back: queued, their attempts uncounted (only those still
        ``sending`` under ``owner``). One transaction. Returns True when the unsent ones stay claimed."""
        records = [(decision_outcome(delivery_id, decision, at), channel_effects(decision, channel, at))
                   for delivery_id, decision, at in decisions]
        waiting = list(unsent)

        def work(conn: Connection) -> bool:
            for outcome, effects in records:
                outcome.record(conn)
                for statement in effects:
                    conn.execute(statement)
            if not waiting:
                return not hand_back
            give_back = hand_back or conn.execute(_LIVE, {"live_name": channel, "live_now": now}).first() is None
            if give_back:
                for part in chunks(waiting):
                    conn.execute(_RELEASE, {"r_ids": list(part), "r_owner": owner, "r_now": now})
            return not give_back

        return await self._write(work)
