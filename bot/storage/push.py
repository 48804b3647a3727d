"""Push: a source's poll brought forward by a trigger, and the sources' WebSub subscriptions.

``request_poll`` is the one write a push makes to the schedule (``bot.domain.push.poll_request``
decides; one transaction, the source's row locked on PostgreSQL so a poll's record and a push never
interleave). Every instance reads the same ``next_poll_at``, so whichever instance received the push,
the one that may take the source polls it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, or_, select, update

from bot.domain.push import HubLink, PollRequest, PushOutcome, WebSubState, WebSubSubscription, poll_request
from bot.storage import tables as t
from bot.storage.base import StoreBase, dialect_insert, utc

_SUBSCRIPTION = (select(t.websub_subscriptions, t.sources.c.name.label("source"))
                 .join(t.sources, t.sources.c.id == t.websub_subscriptions.c.source_id))

MAX_ERROR = 500
"""Characters of a hub's failure kept for ``status``."""


def subscription(row: Row[Any]) -> WebSubSubscription:
    return WebSubSubscription(
        source=row.source, hub=row.hub_url, topic=row.topic_url, state=WebSubState(row.state),
        requested_at=utc(row.requested_at), verified_at=utc(row.verified_at), lease_seconds=row.lease_seconds,
        expires_at=utc(row.expires_at), renew_at=utc(row.renew_at), attempts=row.attempts or 0,
        last_error=row.last_error)


def _source_id(conn: Connection, name: str) -> int | None:
    found = conn.execute(select(t.sources.c.id).where(t.sources.c.name == name)).scalar()
    return int(found) if found is not None else None


class PushMixin(StoreBase):
    async def request_poll(self, name: str, now: datetime, min_gap: float) -> PollRequest | None:
        """A push for source ``name``: count it, and bring its next poll forward unless it is backing off
        (``bot.domain.push.poll_request``). None when there is no such source."""

        def work(conn: Connection) -> PollRequest | None:
            query = select(t.sources.c.id, t.sources.c.next_poll_at, t.sources.c.consecutive_failures,
                           t.sources.c.last_poll_at).where(t.sources.c.name == name)
            if self.dialect == "postgresql":
                query = query.with_for_update()
            row = conn.execute(query).first()
            if row is None:
                return None
            request = poll_request(next_poll_at=utc(row.next_poll_at), failures=row.consecutive_failures or 0,
                                   last_poll_at=utc(row.last_poll_at), now=now, min_gap=min_gap)
            values: dict[str, Any] = {"push_requests": t.sources.c.push_requests + 1}
            if request.outcome == PushOutcome.QUEUED:
                values["next_poll_at"] = request.at
            conn.execute(update(t.sources).where(t.sources.c.id == row.id).values(**values))
            return request

        return await self._write(work)

    async def push_requests(self, name: str) -> int:
        """How many pushes source ``name`` has received (0 for an unknown source)."""
        value = await self._read(lambda conn: conn.execute(
            select(t.sources.c.push_requests).where(t.sources.c.name == name)).scalar())
        return int(value or 0)

    # -- WebSub -----------------------------------------------------------------------------------------

    async def websub_subscription(self, name: str) -> WebSubSubscription | None:
        row = await self._read(lambda conn: conn.execute(_SUBSCRIPTION.where(t.sources.c.name == name)).first())
        return subscription(row) if row is not None else None

    async def websub_subscriptions(self) -> list[WebSubSubscription]:
        rows = await self._read(lambda conn: conn.execute(_SUBSCRIPTION.order_by(t.sources.c.name)).all())
        return [subscription(r) for r in rows]

    async def websub_want(self, name: str, link: HubLink, now: datetime) -> WebSubSubscription | None:
        """The feed of source ``name`` advertises ``link``: a new or changed hub (or one dropped before)
        becomes a ``pending`` subscription, due at once; the same one is left as it is. None: no such source."""

        def work(conn: Connection) -> WebSubSubscription | None:
            source_id = _source_id(conn, name)
            if source_id is None:
                return None
            row = conn.execute(_SUBSCRIPTION.where(t.websub_subscriptions.c.source_id == source_id)).first()
            if row is not None and row.hub_url == link.hub and row.topic_url == link.topic \
                    and row.state != WebSubState.DROPPED:
                return subscription(row)
            fresh: dict[str, Any] = {
                "hub_url": link.hub, "topic_url": link.topic, "state": WebSubState.PENDING.value,
                "requested_at": None, "verified_at": None, "lease_seconds": None, "expires_at": None,
                "renew_at": now, "attempts": 0, "last_error": None, "updated_at": now}
            ins = dialect_insert(self.dialect, t.websub_subscriptions)
            conn.execute(ins.values(source_id=source_id, **fresh).on_conflict_do_update(
                index_elements=["source_id"], set_=fresh))
            return WebSubSubscription(source=name, hub=link.hub, topic=link.topic, state=WebSubState.PENDING,
                                      renew_at=now)

        return await self._write(work)

    async def websub_drop(self, name: str, now: datetime) -> bool:
        """Stop renewing source ``name``'s subscription (its feed no longer advertises a hub, or WebSub is
        off for it). True when it changed."""

        def work(conn: Connection) -> bool:
            source_id = _source_id(conn, name)
            if source_id is None:
                return False
            done = conn.execute(update(t.websub_subscriptions).where(
                t.websub_subscriptions.c.source_id == source_id,
                t.websub_subscriptions.c.state != WebSubState.DROPPED.value).values(
                state=WebSubState.DROPPED.value, renew_at=None, updated_at=now))
            return bool(done.rowcount)

        return await self._write(work)

    async def websub_claim_due(self, now: datetime, hold: float, names: Sequence[str], *,
                               limit: int = 20) -> list[WebSubSubscription]:
        """The subscriptions of ``names`` whose request is due (new, renewal, retry, or a verification that
        never came), marked ``requested`` at ``now`` and not due again for ``hold`` seconds: the caller sends
        them. One statement, so two instances never send the same one."""
        if not names:
            return []
        wt = t.websub_subscriptions

        def work(conn: Connection) -> list[WebSubSubscription]:
            ids = select(t.sources.c.id).where(t.sources.c.name.in_(list(names)))
            pick = (select(wt.c.source_id).where(wt.c.state != WebSubState.DROPPED.value, wt.c.renew_at <= now,
                                                 wt.c.source_id.in_(ids))
                    .order_by(wt.c.renew_at, wt.c.source_id).limit(limit))
            if self.dialect == "postgresql":
                pick = pick.with_for_update(skip_locked=True)
            claimed = conn.execute(update(wt).where(wt.c.source_id.in_(pick.scalar_subquery())).values(
                state=WebSubState.REQUESTED.value, requested_at=now, renew_at=now + timedelta(seconds=hold),
                updated_at=now).returning(wt.c.source_id)).scalars().all()
            if not claimed:
                return []
            rows = conn.execute(_SUBSCRIPTION.where(wt.c.source_id.in_(list(claimed)))
                                .order_by(t.sources.c.name)).all()
            return [subscription(r) for r in rows]

        return await self._write(work)

    async def websub_renew_all(self, names: Sequence[str], now: datetime, not_since: datetime) -> int:
        """Make the wanted subscriptions of ``names`` due now, except those requested at ``not_since`` or
        later (a service that restarts in a loop must not flood its hubs). Returns how many."""
        if not names:
            return 0
        wt = t.websub_subscriptions

        def work(conn: Connection) -> int:
            ids = select(t.sources.c.id).where(t.sources.c.name.in_(list(names)))
            done = conn.execute(update(wt).where(
                wt.c.source_id.in_(ids), wt.c.state != WebSubState.DROPPED.value,
                or_(wt.c.requested_at.is_(None), wt.c.requested_at < not_since),
                or_(wt.c.renew_at.is_(None), wt.c.renew_at > now)).values(renew_at=now, updated_at=now))
            return int(done.rowcount or 0)

        return await self._write(work)

    async def websub_failed(self, name: str, requested_at: datetime, error: str, now: datetime,
                            retry_at: datetime) -> None:
        """The request sent at ``requested_at`` failed: retry at ``retry_at`` (unless the hub verified it
        meanwhile, or a newer request was sent)."""
        await self._websub_update(name, requested_at, state=WebSubState.FAILED.value,
                                  attempts=t.websub_subscriptions.c.attempts + 1, last_error=error[:MAX_ERROR],
                                  renew_at=retry_at, updated_at=now)

    async def websub_verified(self, name: str, topic: str, lease: float, now: datetime,
                              renew_at: datetime) -> bool:
        """The hub verified the subscription to ``topic`` for ``lease`` seconds. False when tagrelay does
        not want that topic from this source (then nothing is written)."""
        return await self._websub_answer(name, topic, state=WebSubState.ACTIVE.value, verified_at=now,
                                         lease_seconds=int(lease), expires_at=now + timedelta(seconds=lease),
                                         renew_at=renew_at, attempts=0, last_error=None, updated_at=now)

    async def websub_denied(self, name: str, topic: str, reason: str, now: datetime, retry_at: datetime) -> bool:
        """The hub refused the subscription to ``topic``: keep why, ask again at ``retry_at``."""
        return await self._websub_answer(name, topic, state=WebSubState.DENIED.value, last_error=reason[:MAX_ERROR],
                                         attempts=t.websub_subscriptions.c.attempts + 1, renew_at=retry_at,
                                         updated_at=now)

    async def _websub_answer(self, name: str, topic: str, **values: Any) -> bool:
        wt = t.websub_subscriptions

        def work(conn: Connection) -> bool:
            source_id = _source_id(conn, name)
            if source_id is None:
                return False
            done = conn.execute(update(wt).where(wt.c.source_id == source_id, wt.c.topic_url == topic,
                                                 wt.c.state != WebSubState.DROPPED.value).values(**values))
            return bool(done.rowcount)

        return await self._write(work)

    async def _websub_update(self, name: str, requested_at: datetime, **values: Any) -> None:
        wt = t.websub_subscriptions

        def work(conn: Connection) -> None:
            source_id = _source_id(conn, name)
            if source_id is not None:
                conn.execute(update(wt).where(wt.c.source_id == source_id,
                                              wt.c.state == WebSubState.REQUESTED.value,
                                              wt.c.requested_at == requested_at).values(**values))

        await self._write(work)
