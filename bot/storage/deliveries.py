"""Deliveries: the queue, claims and outcomes (``apply_decision``: a delivery decision with its channel's
effects, in one transaction), the views of it (``deliveries``, counts, depths).

The statements of every delivery and delivery round are built once, here (building a Core statement
and its cache key costs more CPU than SQLite takes to run it).
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Integer,
    String,
    Text,
    Update,
    and_,
    bindparam,
    case,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.sql.base import Executable

from bot.domain.delivery import Decision
from bot.domain.models import DeliveryKind, DeliveryStatus
from bot.domain.state import ChannelCounts, ClaimedDelivery, DeliveryView, SentMessage
from bot.errors import NotFoundError
from bot.storage import tables as t
from bot.storage.base import StoreBase, chunks, insert_ignore, utc
from bot.storage.posts import load_post

INTERRUPTED = ("interrupted while sending; the platform has no idempotency, so it was not "
               "re-sent automatically (use `tagrelay retry` if it did not arrive)")
"""Why a ``sending`` delivery of a platform without idempotency became ``unknown`` after a crash."""

_LIVE_CHANNELS = select(t.channels.c.id, t.channels.c.name).where(
    t.channels.c.paused.is_(False),
    or_(t.channels.c.hold_until.is_(None), t.channels.c.hold_until <= bindparam("due_now", type_=t.TS)))
"""Channels neither paused nor held (``due_channels``)."""
_LIVE_CHANNEL = _LIVE_CHANNELS.where(t.channels.c.name == bindparam("due_name", type_=String))
_DUE_DELIVERY = select(t.deliveries.c.id).where(
    t.deliveries.c.channel_id == bindparam("due_channel_id", type_=t.ID),
    t.deliveries.c.status.in_([DeliveryStatus.QUEUED.value, DeliveryStatus.FAILED.value]),
    t.deliveries.c.next_attempt_at <= bindparam("due_now", type_=t.TS)).limit(1)
_WAITING_BY_CHANNEL = (
    select(t.deliveries.c.channel_id,
           func.min(func.coalesce(t.deliveries.c.next_attempt_at, t.deliveries.c.created_at)).label("due"))
    .where(text(t.PENDING_SQL)).group_by(t.deliveries.c.channel_id).subquery())
_NEXT_DUE = (
    select(func.min(case((t.channels.c.hold_until > _WAITING_BY_CHANNEL.c.due, t.channels.c.hold_until),
                         else_=_WAITING_BY_CHANNEL.c.due)))
    .select_from(_WAITING_BY_CHANNEL.join(t.channels, t.channels.c.id == _WAITING_BY_CHANNEL.c.channel_id))
    .where(t.channels.c.paused.is_(False)))
_CHANNEL_NAMES = select(t.channels.c.id, t.channels.c.name)
_WAITING = (select(t.deliveries.c.channel_id, func.count().label("n"),
                   func.min(t.deliveries.c.created_at).label("oldest"))
            .where(text(t.PENDING_SQL)).group_by(t.deliveries.c.channel_id))
_SENDING = (select(t.deliveries.c.channel_id, func.min(t.deliveries.c.created_at).label("oldest"))
            .where(t.deliveries.c.status == DeliveryStatus.SENDING.value)
            .group_by(t.deliveries.c.channel_id))


UNCERTAIN_SINCE_CLAIM = func.coalesce(t.deliveries.c.uncertain_since, t.deliveries.c.updated_at)
"""A ``sending`` row put back after a crash: its request may have left at its claim (``updated_at``
before this UPDATE: SET expressions read the old row, on SQLite and PostgreSQL alike)."""


@functools.cache
def _claim_statement(dialect: str) -> Update:
    """``claim_next``'s statement (parameters ``claim_channel``, ``claim_now``, ``claim_owner``)."""
    return claim_statement(dialect, "claim")


@functools.cache
def claim_statement(dialect: str, prefix: str, *, group: bool = False) -> Update:
    """The claim of a channel's oldest due delivery, or with ``group`` of its ``{prefix}_limit`` oldest
    (``claim_group``), marked ``sending`` (parameters ``{prefix}_channel``, ``{prefix}_now``,
    ``{prefix}_owner``).

    One UPDATE … WHERE id = (the oldest due row) RETURNING: the channel check (not paused, not
    held), the pick (walking ix_deliveries_pending, its predicate spelled the same) and the claim
    are a single statement, atomic under SQLite's write lock and, on PostgreSQL, with the row
    locked by SKIP LOCKED, so two claimers never take the same delivery.
    """
    now = bindparam(f"{prefix}_now", type_=t.TS)
    live_channel = select(t.channels.c.id).where(
        t.channels.c.name == bindparam(f"{prefix}_channel", type_=String), t.channels.c.paused.is_(False),
        or_(t.channels.c.hold_until.is_(None), t.channels.c.hold_until <= now)).scalar_subquery()
    due = t.deliveries.alias("due")
    pick = (select(due.c.id)
            .where(due.c.channel_id == live_channel, text(t.PENDING_SQL), due.c.next_attempt_at <= now)
            .order_by(due.c.post_at, due.c.id).limit(bindparam(f"{prefix}_limit", type_=Integer) if group else 1))
    if dialect == "postgresql":
        pick = pick.with_for_update(of=due, skip_locked=True)
    chosen = t.deliveries.c.id.in_(pick) if group else t.deliveries.c.id == pick.scalar_subquery()
    return (update(t.deliveries).where(chosen)
            .values(status=DeliveryStatus.SENDING.value, attempts=t.deliveries.c.attempts + 1,
                    claimed_by=bindparam(f"{prefix}_owner", type_=String), updated_at=now)
            .returning(t.deliveries.c.id, t.deliveries.c.attempts, t.deliveries.c.post_id,
                       t.deliveries.c.uncertain_since, t.deliveries.c.staged, t.deliveries.c.kind,
                       t.deliveries.c.channel_id, t.deliveries.c.post_at))


@functools.cache
def _outcome_statement(sent: bool, counted: bool, uncertain: bool = False) -> Update:
    """``finish``'s UPDATE (parameters ``o_*``), one shape per kind of outcome: a sent one also records
    the remote post and when it was sent; a ``counted`` one moves the attempt counter; an ``uncertain``
    one (the attempt may have reached the platform) keeps the first such time in ``uncertain_since``."""
    now = bindparam("o_now", type_=t.TS)
    values: dict[str, Any] = {
        "status": bindparam("o_status", type_=String), "updated_at": now, "claimed_by": None,
        "last_error": bindparam("o_error", type_=Text), "reason": bindparam("o_reason", type_=String),
        "next_attempt_at": bindparam("o_next", type_=t.TS)}
    if sent:
        values.update(remote_id=bindparam("o_remote_id", type_=String),
                      remote_url=bindparam("o_remote_url", type_=Text), sent_at=now,
                      rendered_hash=bindparam("o_rendered_hash", type_=String))
    if counted:
        values["attempts"] = t.deliveries.c.attempts + bindparam("o_delta", type_=Integer)
    if uncertain:
        values["uncertain_since"] = func.coalesce(t.deliveries.c.uncertain_since, now)
    return update(t.deliveries).where(t.deliveries.c.id == bindparam("o_id", type_=t.ID)).values(values)


@dataclass(frozen=True, slots=True)
class _Outcome:
    """The outcome of a send, as ``finish`` records it."""

    delivery_id: int
    status: DeliveryStatus
    now: datetime
    remote_id: str | None
    remote_url: str | None
    error: str | None
    next_attempt_at: datetime | None
    reason: str | None
    attempts_delta: int
    uncertain: bool = False
    rendered_hash: str | None = None

    def record(self, conn: Connection) -> None:
        sent = self.status is DeliveryStatus.SENT
        if sent:
            next_at = None
        elif self.status in (DeliveryStatus.FAILED, DeliveryStatus.QUEUED):
            next_at = self.next_attempt_at or self.now
        else:
            next_at = None
        params: dict[str, Any] = {
            "o_id": self.delivery_id, "o_status": self.status.value, "o_now": self.now,
            "o_error": self.error[:2000] if self.error else None, "o_reason": self.reason, "o_next": next_at}
        if sent:
            params.update(o_remote_id=self.remote_id, o_remote_url=self.remote_url,
                          o_rendered_hash=self.rendered_hash)
        if self.attempts_delta:
            params["o_delta"] = self.attempts_delta
        conn.execute(_outcome_statement(sent, bool(self.attempts_delta), self.uncertain), params)


def decision_outcome(delivery_id: int, decision: Decision, now: datetime) -> _Outcome:
    """What ``apply_decision`` records for the delivery (its channel's effects: ``channel_effects``)."""
    return _Outcome(delivery_id, decision.status, now, remote_id=decision.remote_id,
                    remote_url=decision.remote_url, error=decision.error,
                    next_attempt_at=decision.next_attempt_at, reason=decision.reason,
                    attempts_delta=decision.attempts_delta, uncertain=decision.uncertain,
                    rendered_hash=decision.rendered_hash)


def channel_effects(decision: Decision, channel: str, now: datetime) -> list[Executable]:
    """The statements of a decision's effects on its channel: ``hold_until`` and ``pause`` (none for most
    decisions: the sent path stays one UPDATE)."""
    effects: list[Executable] = []
    if decision.hold_until is not None:
        effects.append(update(t.channels).where(t.channels.c.name == channel)
                       .values(hold_until=decision.hold_until))
    if decision.pause is not None:  # as ``set_paused``: an unchanged pause keeps its time
        effects.append(update(t.channels).where(
            t.channels.c.name == channel,
            or_(t.channels.c.paused.is_(False), t.channels.c.paused_reason.is_distinct_from(decision.pause))
        ).values(paused=True, paused_reason=decision.pause, paused_at=now))
    return effects


def queue_deliveries(conn: Connection, dialect: str, pairs: Sequence[tuple[int, str]], now: datetime, *,
                     status: DeliveryStatus = DeliveryStatus.QUEUED,
                     channel_ids: dict[str, int] | None = None) -> int:
    """Insert deliveries (post id, channel name): ``queued``, or ``held`` for a burst, with their send
    order (``post_at``); a (post, channel) pair that has one already is skipped. Returns how many were
    inserted. ``channel_ids``: the channels' ids by name, if the caller has read them."""
    if not pairs:
        return 0
    chan_ids = channel_ids if channel_ids is not None else read_channel_ids(conn)
    rows = [{"post_id": post_id, "channel_id": chan_ids[channel], "kind": "post", "status": status.value,
             "attempts": 0, "next_attempt_at": now, "created_at": now, "updated_at": now}
            for post_id, channel in pairs if channel in chan_ids]
    if not rows:
        return 0
    stmt = insert_ignore(dialect, t.deliveries, ["post_id", "channel_id", "kind"]).returning(t.deliveries.c.id)
    result = conn.execute(stmt, rows)
    ids = [r.id for r in result.all()]  # rowcount is unreliable for executemany on asyncpg
    post_at = (select(func.coalesce(t.posts.c.published_at, t.posts.c.first_seen_at))
               .where(t.posts.c.id == t.deliveries.c.post_id).scalar_subquery())
    for part in chunks(ids):  # the send order, read by claim_next through ix_deliveries_pending
        conn.execute(update(t.deliveries).where(t.deliveries.c.id.in_(part)).values(post_at=post_at))
    return len(ids)


def read_channel_ids(conn: Connection) -> dict[str, int]:
    return {r.name: r.id for r in conn.execute(_CHANNEL_NAMES)}


def claim(conn: Connection, dialect: str, channel: str, now: datetime, owner: str) -> ClaimedDelivery | None:
    """``claim_next``'s work (see there)."""
    row = conn.execute(_claim_statement(dialect),
                       {"claim_channel": channel, "claim_now": now, "claim_owner": owner}).first()
    if row is None:
        return None
    return claimed_delivery(conn, channel, row)


def claimed_delivery(conn: Connection, channel: str, row: Any) -> ClaimedDelivery:
    """A claimed row (the claim statements' RETURNING columns) with its post and, for an edit or a deletion,
    the message it changes."""
    kind = DeliveryKind(row.kind)
    target = None if kind is DeliveryKind.POST else sent_message(conn, row.post_id, row.channel_id)
    return ClaimedDelivery(id=row.id, channel=channel, post=load_post(conn, row.post_id),
                           attempts=row.attempts, status=DeliveryStatus.SENDING,
                           uncertain_since=utc(row.uncertain_since), staged=row.staged, kind=kind, target=target)


_SENT_MESSAGE = select(t.deliveries.c.id, t.deliveries.c.status, t.deliveries.c.remote_id, t.deliveries.c.sent_at,
                       t.deliveries.c.rendered_hash).where(
    t.deliveries.c.post_id == bindparam("sm_post_id", type_=t.ID),
    t.deliveries.c.channel_id == bindparam("sm_channel_id", type_=t.ID),
    t.deliveries.c.kind == DeliveryKind.POST.value)


def sent_message(conn: Connection, post_id: int, channel_id: int) -> SentMessage | None:
    """The message the post delivery of (post, channel) made, for an edit or a deletion of it."""
    row = conn.execute(_SENT_MESSAGE, {"sm_post_id": post_id, "sm_channel_id": channel_id}).first()
    if row is None:
        return None
    return SentMessage(delivery_id=row.id, status=DeliveryStatus(row.status), remote_id=row.remote_id,
                       sent_at=utc(row.sent_at), rendered_hash=row.rendered_hash)


class DeliveriesMixin(StoreBase):
    async def due_channels(self, now: datetime, *, only: str | None = None) -> list[str]:
        """Channels with a queued/failed delivery due now, that are neither paused nor held."""
        chans, params = (_LIVE_CHANNELS, {"due_now": now}) if only is None else (
            _LIVE_CHANNEL, {"due_now": now, "due_name": only})

        def work(conn: Connection) -> list[str]:
            names: list[str] = []
            for chan in conn.execute(chans, params).all():
                if conn.execute(_DUE_DELIVERY, {"due_channel_id": chan.id, "due_now": now}).first() is not None:
                    names.append(chan.name)
            return sorted(names)

        return await self._read(work)

    async def next_due_at(self, exclude: Collection[str] = ()) -> datetime | None:
        """The earliest time a queued/failed delivery of an unpaused channel becomes due: for each
        channel its earliest delivery, or the end of its hold if that is later. ``exclude``: channels
        left out (those the caller is sending to already). Cost ∝ waiting deliveries, not history."""

        def work(conn: Connection) -> Any:
            stmt = _NEXT_DUE
            if exclude:
                stmt = stmt.where(t.channels.c.name.not_in(list(exclude)))
            return conn.execute(stmt).scalar()

        return utc(await self._read(work))

    async def has_due(self, channel: str, now: datetime) -> bool:
        """Is a delivery of this (unpaused, unheld) channel due now? Cheap; does not claim."""
        return channel in await self.due_channels(now, only=channel)

    async def claim_next(self, channel: str, now: datetime, owner: str) -> ClaimedDelivery | None:
        """Claim the channel's oldest due delivery (oldest post first) and mark it ``sending``.

        The transition is committed before this returns, i.e. before any request leaves.
        """
        return await self._write(lambda conn: claim(conn, self.dialect, channel, now, owner))

    async def stage(self, delivery_id: int, staged: str, *, owner: str) -> bool:
        """Remember what a two-step publisher staged for a delivery ``owner`` has claimed (``sending``),
        committed before this returns, i.e. before the publishing request leaves (``PublishesStaged``).
        False when the delivery is not, or no longer, this owner's claim (nothing is written)."""

        def work(conn: Connection) -> bool:
            result = conn.execute(update(t.deliveries).where(
                t.deliveries.c.id == delivery_id, t.deliveries.c.status == DeliveryStatus.SENDING.value,
                t.deliveries.c.claimed_by == owner).values(staged=staged))
            return bool(result.rowcount)

        return await self._write(work)

    async def finish(self, delivery_id: int, status: DeliveryStatus, now: datetime, *,
                     remote_id: str | None = None, remote_url: str | None = None,
                     error: str | None = None, next_attempt_at: datetime | None = None,
                     reason: str | None = None, attempts_delta: int = 0, uncertain: bool = False) -> None:
        """Record the outcome of a send (committed right after the answer). ``uncertain``: the attempt
        may have reached the platform (``uncertain_since`` keeps the first such time)."""
        outcome = _Outcome(delivery_id, status, now, remote_id=remote_id, remote_url=remote_url, error=error,
                           next_attempt_at=next_attempt_at, reason=reason, attempts_delta=attempts_delta,
                           uncertain=uncertain)
        await self._write(outcome.record)

    async def apply_decision(self, delivery_id: int, decision: Decision, now: datetime, *, channel: str,
                             claim_for: str | None = None) -> ClaimedDelivery | None:
        """Record a delivery's outcome (``finish``) together with its channel's effects: ``hold_until``
        (no delivery of the channel is due before then) and ``pause`` (paused with that reason; its queue
        is kept). With ``claim_for`` (an owner), also claim the channel's next due delivery for it, as
        ``claim_next`` would, in the same transaction; a channel the decision holds or pauses yields none. Returns the
        claimed delivery, or None. One transaction: a crash leaves all of it or none of it."""
        outcome = decision_outcome(delivery_id, decision, now)
        effects = channel_effects(decision, channel, now)

        def work(conn: Connection) -> ClaimedDelivery | None:
            outcome.record(conn)
            for statement in effects:
                conn.execute(statement)
            return None if claim_for is None else claim(conn, self.dialect, channel, now, claim_for)

        return await self._write(work)

    async def recover_sending(self, now: datetime, *, resend_channels: set[str], owner: str | None = None
                              ) -> tuple[int, int]:
        """After a crash: ``sending`` rows go back to ``queued`` on channels whose publisher is
        idempotent (or configured at-least-once), else to ``unknown``; an edit or a deletion always goes
        back to ``queued`` (repeating one is safe). Returns (requeued, unknown).
        With ``owner`` only that owner's claims are touched."""

        def work(conn: Connection) -> tuple[int, int]:
            cond: list[ColumnElement[bool]] = [t.deliveries.c.status == DeliveryStatus.SENDING.value]
            if owner is not None:
                cond.append(t.deliveries.c.claimed_by == owner)
            rows = conn.execute(
                select(t.deliveries.c.id, t.deliveries.c.kind, t.channels.c.name)
                .join(t.channels, t.channels.c.id == t.deliveries.c.channel_id).where(and_(*cond))).all()
            # an edit or a deletion is safe to repeat (bot.domain.amend): always back in the queue
            again = [r for r in rows if r.name in resend_channels or r.kind != DeliveryKind.POST.value]
            requeue = [r.id for r in again]
            unknown = [r.id for r in rows if r not in again]
            for part in chunks(requeue):
                conn.execute(update(t.deliveries).where(t.deliveries.c.id.in_(part)).values(
                    status=DeliveryStatus.QUEUED.value, next_attempt_at=now, claimed_by=None, updated_at=now,
                    attempts=t.deliveries.c.attempts - 1, uncertain_since=UNCERTAIN_SINCE_CLAIM))
            for part in chunks(unknown):
                conn.execute(update(t.deliveries).where(t.deliveries.c.id.in_(part)).values(
                    status=DeliveryStatus.UNKNOWN.value, claimed_by=None, updated_at=now, reason="interrupted",
                    last_error=INTERRUPTED))
            return len(requeue), len(unknown)

        return await self._write(work)

    async def requeue(self, now: datetime, *, channel: str | None = None, delivery_id: int | None = None,
                      statuses: Sequence[DeliveryStatus] = (DeliveryStatus.FAILED, DeliveryStatus.DEAD,
                                                            DeliveryStatus.UNKNOWN)) -> int:
        """Put failed/dead/unknown deliveries back in the queue (admin ``retry``)."""

        def work(conn: Connection) -> int:
            cond: list[ColumnElement[bool]] = [t.deliveries.c.status.in_([s.value for s in statuses])]
            if delivery_id is not None:
                exists = conn.execute(select(t.deliveries.c.id).where(t.deliveries.c.id == delivery_id)).first()
                if exists is None:
                    raise NotFoundError("delivery", str(delivery_id))
                cond.append(t.deliveries.c.id == delivery_id)
            if channel is not None:
                chan = conn.execute(select(t.channels.c.id).where(t.channels.c.name == channel)).first()
                if chan is None:
                    raise NotFoundError("channel", channel)
                cond.append(t.deliveries.c.channel_id == chan.id)
            result = conn.execute(update(t.deliveries).where(and_(*cond)).values(
                status=DeliveryStatus.QUEUED.value, next_attempt_at=now, attempts=0, updated_at=now,
                reason="retry"))
            return int(result.rowcount or 0)

        return await self._write(work)


    async def deliveries(self, *, status: str | None = None, channel: str | None = None,
                         limit: int = 50, ids: Sequence[int] | None = None, kind: str | None = None
                         ) -> list[DeliveryView]:
        query = (
            select(t.deliveries, t.channels.c.name.label("channel"), t.channels.c.platform,
                   t.posts.c.title, t.posts.c.url, t.posts.c.published_at, t.sources.c.name.label("source"))
            .join(t.channels, t.channels.c.id == t.deliveries.c.channel_id)
            .join(t.posts, t.posts.c.id == t.deliveries.c.post_id)
            .join(t.sources, t.sources.c.id == t.posts.c.source_id)
            .order_by(t.deliveries.c.id.desc()).limit(limit)
        )
        if status:
            query = query.where(t.deliveries.c.status == status)
        if channel:
            query = query.where(t.channels.c.name == channel)
        if ids is not None:
            query = query.where(t.deliveries.c.id.in_(list(ids)))
        if kind:
            query = query.where(t.deliveries.c.kind == kind)
        rows = await self._read(lambda conn: conn.execute(query).all())
        return [DeliveryView(
            id=r.id, channel=r.channel, platform=r.platform, status=r.status, attempts=r.attempts,
            post_title=r.title, post_url=r.url, source=r.source, published=utc(r.published_at),
            next_attempt_at=utc(r.next_attempt_at), remote_id=r.remote_id, remote_url=r.remote_url,
            last_error=r.last_error, created_at=utc(r.created_at), updated_at=utc(r.updated_at),
            sent_at=utc(r.sent_at), staged=r.staged, kind=r.kind, reason=r.reason) for r in rows]

    async def channel_counts(self, now: datetime) -> list[ChannelCounts]:
        day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)

        def work(conn: Connection) -> tuple[Sequence[Any], ...]:
            chans = conn.execute(select(t.channels).order_by(t.channels.c.name)).all()
            counts = conn.execute(
                select(t.deliveries.c.channel_id, t.deliveries.c.status, func.count().label("n"))
                .group_by(t.deliveries.c.channel_id, t.deliveries.c.status)).all()
            oldest = conn.execute(
                select(t.deliveries.c.channel_id, func.min(t.deliveries.c.created_at).label("oldest"))
                .where(t.deliveries.c.status.in_([DeliveryStatus.QUEUED.value, DeliveryStatus.FAILED.value,
                                                  DeliveryStatus.SENDING.value]))
                .group_by(t.deliveries.c.channel_id)).all()
            today = conn.execute(
                select(t.deliveries.c.channel_id, func.count().label("n"))
                .where(t.deliveries.c.status == DeliveryStatus.SENT.value, t.deliveries.c.sent_at >= day_start,
                       t.deliveries.c.kind == DeliveryKind.POST.value)  # posts sent, not their edits
                .group_by(t.deliveries.c.channel_id)).all()
            return chans, counts, oldest, today

        chans, counts, oldest, today = await self._read(work)
        by_chan: dict[int, dict[str, int]] = {}
        for row in counts:
            by_chan.setdefault(row.channel_id, {})[row.status] = row.n
        old = {r.channel_id: utc(r.oldest) for r in oldest}
        sent_today = {r.channel_id: r.n for r in today}
        return [ChannelCounts(channel=c.name, platform=c.platform, paused=bool(c.paused),
                              paused_reason=c.paused_reason, hold_until=utc(c.hold_until),
                              counts=by_chan.get(c.id, {}), oldest_queued=old.get(c.id),
                              sent_today=sent_today.get(c.id, 0)) for c in chans]

    async def queue_depths(self) -> dict[str, tuple[int, datetime | None]]:
        """Per channel: deliveries waiting (queued + failed), and when the oldest waiting or in-flight
        one was created. Reads only those rows (partial index), never the delivery history, so it is
        cheap enough for every delivery round and every metrics scrape."""

        def work(conn: Connection) -> tuple[dict[int, str], Sequence[Any], Sequence[Any]]:
            names = {r.id: r.name for r in conn.execute(_CHANNEL_NAMES).all()}
            return names, conn.execute(_WAITING).all(), conn.execute(_SENDING).all()

        names, waiting, sending = await self._read(work)
        out: dict[str, tuple[int, datetime | None]] = {name: (0, None) for name in names.values()}
        for r in waiting:
            out[names[r.channel_id]] = (int(r.n), utc(r.oldest))
        for r in sending:
            depth, oldest = out[names[r.channel_id]]
            began = utc(r.oldest)
            out[names[r.channel_id]] = (depth, began if oldest is None or (began and began < oldest) else oldest)
        return out
