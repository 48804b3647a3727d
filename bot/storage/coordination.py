"""Coordination of several instances on one database (PostgreSQL): registrations, named leases, source
claims, and taking over the work of an instance that died.

Each instance registers in ``instances`` and renews a heartbeat; a source is polled under a lease
(``sources.lease_owner/lease_expires_at``), a channel is sent to under a named lease
(``instance_leases`` row ``channel:<name>``), and whoever sees an instance dead (its heartbeat
expired, or its session advisory lock gone: ``bot.storage.instance_lock``) recovers its in-flight
deliveries. Every step is one statement or one short transaction, safe against the other instances
doing the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, case, delete, func, insert, or_, select, update

from bot.domain.models import DeliveryKind, DeliveryStatus
from bot.domain.state import CHANNEL_LEASE, InstanceInfo
from bot.storage import tables as t
from bot.storage.base import StoreBase, dialect_insert, utc
from bot.storage.deliveries import INTERRUPTED, UNCERTAIN_SINCE_CLAIM
from bot.storage.instance_lock import advisory_key, held_keys


class CoordinationMixin(StoreBase):
    async def release_lease(self, name: str, owner: str) -> None:
        await self._execute(delete(t.instance_leases).where(
            t.instance_leases.c.name == name, t.instance_leases.c.owner == owner))

    async def register_instance(self, owner: str, version: str, now: datetime, ttl: float) -> None:
        expires = now + timedelta(seconds=ttl)

        def work(conn: Connection) -> None:
            conn.execute(delete(t.instances).where(t.instances.c.owner == owner))
            conn.execute(insert(t.instances).values(owner=owner, version=version[:32], started_at=now,
                                                    heartbeat_at=now, expires_at=expires))

        await self._write(work)

    async def heartbeat_instance(self, owner: str, now: datetime, ttl: float) -> bool:
        """Renew this instance's registration. False: it had expired and was taken over."""
        stmt = update(t.instances).where(t.instances.c.owner == owner).values(
            heartbeat_at=now, expires_at=now + timedelta(seconds=ttl))
        return await self._write(lambda conn: bool(conn.execute(stmt).rowcount))

    async def unregister_instance(self, owner: str) -> None:
        """A clean stop: drop the registration and every lease this instance holds."""

        def work(conn: Connection) -> None:
            conn.execute(update(t.sources).where(t.sources.c.lease_owner == owner).values(
                lease_owner=None, lease_expires_at=None))
            conn.execute(delete(t.instance_leases).where(t.instance_leases.c.owner == owner))
            conn.execute(delete(t.instances).where(t.instances.c.owner == owner))

        await self._write(work)

    async def live_instances(self, now: datetime) -> int:
        """How many registered instances have not expired (shared mode)."""
        stmt = select(func.count()).select_from(t.instances).where(t.instances.c.expires_at > now)
        return int(await self._read(lambda conn: conn.execute(stmt).scalar() or 0))

    async def instances(self) -> list[InstanceInfo]:
        """Registered instances with what each holds (sources being polled, channels being sent to)."""

        def work(conn: Connection) -> tuple[Sequence[Any], ...]:
            rows = conn.execute(select(t.instances).order_by(t.instances.c.started_at)).all()
            held = conn.execute(select(t.sources.c.lease_owner, t.sources.c.name)
                                .where(t.sources.c.lease_owner.is_not(None))
                                .order_by(t.sources.c.name)).all()
            leases = conn.execute(select(t.instance_leases.c.owner, t.instance_leases.c.name)
                                  .where(t.instance_leases.c.name.like(f"{CHANNEL_LEASE}%"))
                                  .order_by(t.instance_leases.c.name)).all()
            return rows, held, leases

        rows, held, leases = await self._read(work)
        sources: dict[str, list[str]] = {}
        for r in held:
            sources.setdefault(r.lease_owner, []).append(r.name)
        channels: dict[str, list[str]] = {}
        for r in leases:
            channels.setdefault(r.owner, []).append(r.name[len(CHANNEL_LEASE):])
        out = []
        for r in rows:
            started, heartbeat, expires = utc(r.started_at), utc(r.heartbeat_at), utc(r.expires_at)
            assert started is not None and heartbeat is not None and expires is not None
            out.append(InstanceInfo(owner=r.owner, version=r.version, started_at=started, heartbeat_at=heartbeat,
                                    expires_at=expires, sources=tuple(sources.get(r.owner, ())),
                                    channels=tuple(channels.get(r.owner, ()))))
        return out

    async def unlocked_instances(self, version: str, *, exclude: str) -> list[str]:
        """Registered instances of ``version`` (other than ``exclude``) whose advisory lock no session
        holds: dead, whatever their heartbeat says (PostgreSQL; see ``bot.storage.instance_lock``)."""
        return await self._read(lambda conn: self._unlocked(conn, version, exclude))

    def _unlocked(self, conn: Connection, version: str, exclude: str | None) -> list[str]:
        if self.dialect != "postgresql":
            return []
        rows = conn.execute(select(t.instances.c.owner).where(
            t.instances.c.version == version[:32], t.instances.c.owner != (exclude or ""))).all()
        if not rows:
            return []
        held = held_keys(conn)
        return [r.owner for r in rows if advisory_key(r.owner) not in held]

    async def reap_instances(self, now: datetime, *, resend_channels: set[str], lock_version: str | None = None,
                             me: str | None = None) -> tuple[list[str], int, int]:
        """Take over the work of instances whose heartbeat expired, and (with ``lock_version``) at once of
        those of that version whose advisory lock is gone (``unlocked_instances``; never ``me``).

        Their registrations are deleted (one statement, so two reapers never both act on
        one), their source and channel leases freed, and every ``sending`` delivery whose
        claimer is no longer registered is recovered like ``recover_sending`` does:
        requeued on channels in ``resend_channels``, else ``unknown``. Returns
        (dead owners, requeued, unknown).
        """

        def work(conn: Connection) -> tuple[list[str], int, int]:
            gone: ColumnElement[bool] = t.instances.c.expires_at < now
            unlocked = self._unlocked(conn, lock_version, me) if lock_version is not None else []
            if unlocked:
                gone = or_(gone, t.instances.c.owner.in_(unlocked))
            dead = [r.owner for r in conn.execute(
                delete(t.instances).where(gone).returning(t.instances.c.owner)).all()]
            if dead:
                conn.execute(update(t.sources).where(t.sources.c.lease_owner.in_(dead)).values(
                    lease_owner=None, lease_expires_at=None))
                conn.execute(delete(t.instance_leases).where(t.instance_leases.c.owner.in_(dead),
                                                             t.instance_leases.c.name != "main"))
            orphan = and_(
                t.deliveries.c.status == DeliveryStatus.SENDING.value,
                ~select(t.instances.c.owner).where(t.instances.c.owner == t.deliveries.c.claimed_by).exists())
            resend_ids = select(t.channels.c.id).where(t.channels.c.name.in_(sorted(resend_channels)))
            # an edit or a deletion is safe to repeat (bot.domain.amend): always back in the queue
            again = or_(t.deliveries.c.channel_id.in_(resend_ids), t.deliveries.c.kind != DeliveryKind.POST.value)
            requeued = conn.execute(update(t.deliveries).where(orphan, again).values(
                status=DeliveryStatus.QUEUED.value, next_attempt_at=now, claimed_by=None, updated_at=now,
                attempts=t.deliveries.c.attempts - 1, uncertain_since=UNCERTAIN_SINCE_CLAIM,
            ).returning(t.deliveries.c.id))
            n_requeued = len(requeued.all())
            unknown = conn.execute(update(t.deliveries).where(orphan, ~again).values(
                status=DeliveryStatus.UNKNOWN.value, claimed_by=None, updated_at=now, reason="interrupted",
                last_error=INTERRUPTED).returning(t.deliveries.c.id))
            n_unknown = len(unknown.all())
            return dead, n_requeued, n_unknown

        return await self._write(work)

    async def claim_sources(self, owner: str, now: datetime, ttl: float, names: Sequence[str], *,
                            limit: int, due_only: bool = True) -> list[str]:
        """Lease up to ``limit`` of the named sources for polling by ``owner``.

        A source is claimable when no live lease is on it and (with ``due_only``) its
        ``next_poll_at`` has come. ``apply_poll``/``record_not_modified``/
        ``record_poll_failure`` release the lease; ``release_sources`` releases it
        when a poll ends without a record. On PostgreSQL the rows are picked with
        ``FOR UPDATE SKIP LOCKED``, so concurrent claimers never block each other and
        never get the same source.
        """
        if not names or limit <= 0:
            return []
        cond: list[ColumnElement[bool]] = [
            t.sources.c.name.in_(list(names)),
            # not even our own live lease: that source is being polled by this very instance right now
            or_(t.sources.c.lease_owner.is_(None), t.sources.c.lease_expires_at < now)]
        if due_only:
            cond.append(or_(t.sources.c.next_poll_at.is_(None), t.sources.c.next_poll_at <= now))
        pick = (select(t.sources.c.id).where(*cond)
                .order_by(t.sources.c.next_poll_at.asc().nulls_first(), t.sources.c.id).limit(limit))
        if self.dialect == "postgresql":
            pick = pick.with_for_update(skip_locked=True)
        # one statement: on SQLite it runs under the write lock, so two claimers cannot both pick a row
        claim = update(t.sources).where(t.sources.c.id.in_(pick.scalar_subquery())).values(
            lease_owner=owner, lease_expires_at=now + timedelta(seconds=ttl)).returning(t.sources.c.name)
        rows = await self._write(lambda conn: conn.execute(claim).all())
        return sorted(r.name for r in rows)

    async def release_sources(self, owner: str, names: Sequence[str] | None = None) -> None:
        cond: list[ColumnElement[bool]] = [t.sources.c.lease_owner == owner]
        if names is not None:
            cond.append(t.sources.c.name.in_(list(names)))
        await self._execute(update(t.sources).where(*cond).values(lease_owner=None, lease_expires_at=None))

    async def try_lease(self, name: str, owner: str, now: datetime, ttl: float) -> bool:
        """Take or renew the named lease unless another owner's is still alive. One statement."""
        expires = now + timedelta(seconds=ttl)
        ins = dialect_insert(self.dialect, t.instance_leases)
        stmt = ins.values(name=name, owner=owner, acquired_at=now, heartbeat_at=now, expires_at=expires)
        upsert = stmt.on_conflict_do_update(
            index_elements=["name"],
            set_={"owner": stmt.excluded.owner, "heartbeat_at": stmt.excluded.heartbeat_at,
                  "expires_at": stmt.excluded.expires_at,
                  "acquired_at": case((t.instance_leases.c.owner == stmt.excluded.owner,
                                       t.instance_leases.c.acquired_at), else_=stmt.excluded.acquired_at)},
            where=or_(t.instance_leases.c.owner == stmt.excluded.owner, t.instance_leases.c.expires_at < now),
        ).returning(t.instance_leases.c.owner)
        row = await self._write(lambda conn: conn.execute(upsert).first())
        return row is not None and row.owner == owner
