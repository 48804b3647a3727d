"""The coordinator port: what this instance may take. Chosen once, in the composition root.

Polling and delivery each have one driver (``bot.services.poll_driver``, ``bot.services.delivery_driver``):
the database says what is due, the coordinator says which of it is this instance's. There are two:

- ``SoloCoordinator`` (SQLite): a cluster of one. The single-instance guard is the operating-system lock
  on ``<database>.lock`` (``bot.storage.instance_lock.FileLock``; none for an in-memory database, which no
  other process can open), so every due source and channel is this instance's; a crash's in-flight
  deliveries are recovered at start (``Store.recover_sending``).
- ``ClusterCoordinator`` (PostgreSQL): N instances. Each registers, holds a session advisory lock
  (``SessionLock``) and heartbeats; it watches the others and takes over the work of dead ones at once
  (``Store.reap_instances``); it claims sources with leases (``Store.claim_sources``) and sends to a
  channel only under the channel's lease (``Store.try_lease``, renewed by a keeper), taking its fair
  share of the due channels at a time.

The life of an instance, as ``bot.app.App`` drives it: ``lock`` (before the schema is touched) →
``start`` (the schema is current and the config applied: join, recover) → the drivers, with
``background()`` beside them → ``stop`` (before the database closes) → ``unlock`` (after it closed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Collection, Coroutine, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Protocol

from bot.domain.runtime import channel_limit
from bot.domain.state import CHANNEL_LEASE
from bot.log import event
from bot.publishers.api import Clock
from bot.storage.instance_lock import FileLock, Holder, SessionLock
from bot.storage.store import Store

log = logging.getLogger("tagrelay")

PEER_CHECK = 1.0
"""Cluster: how often (seconds) an instance looks for instances whose advisory lock is gone (dead)."""
RECHECK = 2.0
"""Cluster: the longest a driver waits before looking at the database again: other instances queue posts
and poll sources without waking this one, and hold leases that end."""


class Coordinator(Protocol):
    """What this instance may take, and the instance's life among the others (see the module docstring)."""

    owner: str
    recheck: float | None
    """The longest a driver may go without looking at the database (None: only this process changes
    what is due, and it wakes its drivers itself)."""

    async def lock(self, now: datetime) -> None:
        """The single-instance guard, before the schema is touched. ``InstanceLockedError`` if taken."""

    async def start(self, now: datetime, resend_channels: Collection[str]) -> tuple[int, int]:
        """Join (register, where there are others) and recover the deliveries a crash left in ``sending``:
        requeued on ``resend_channels``, else ``unknown``. Returns (requeued, unknown)."""

    async def stop(self) -> None:
        """Leave: drop the registration and everything it holds. Before the database closes; never raises."""

    def unlock(self) -> None:
        """Release the guard, last (after the database closed). Safe to call twice."""

    async def claim_sources(self, names: Sequence[str], now: datetime, *, limit: int, force: bool) -> list[str]:
        """Up to ``limit`` of ``names`` (in that order of preference) for this instance to poll now.
        ``force``: whether or not they are due (``run --once``)."""

    async def release_sources(self, names: Sequence[str]) -> None:
        """Give back sources whose poll ended without a record (skipped, or broken)."""

    async def share(self, busy: int, concurrency: int) -> int:
        """How many channels to send to at once when ``busy`` channels are due or being sent to."""

    def order(self, names: list[str]) -> list[str]:
        """The order in which to try due channels."""

    def channel(self, name: str) -> AbstractAsyncContextManager[bool]:
        """Around one run of a channel: yields whether this instance may send to it now."""

    def background(self, stop: asyncio.Event) -> list[Coroutine[Any, Any, None]]:
        """What runs beside the drivers for the instance's life (heartbeat, peer watch); each ends when
        ``stop`` is set, and sets it when the instance was taken over."""


class SoloCoordinator:
    """SQLite: one instance owns the database (its file lock says so), so everything due is its own."""

    recheck: float | None = None

    def __init__(self, store: Store, owner: str, *, file_lock: FileLock | None = None) -> None:
        self.store = store
        self.owner = owner
        self.file_lock = file_lock
        """None for an in-memory database: no other process can open it."""

    async def lock(self, now: datetime) -> None:
        if self.file_lock is not None:
            await self.file_lock.acquire(Holder.me(self.owner, now))

    async def start(self, now: datetime, resend_channels: Collection[str]) -> tuple[int, int]:
        return await self.store.recover_sending(now, resend_channels=set(resend_channels))

    async def stop(self) -> None:
        return None

    def unlock(self) -> None:
        if self.file_lock is not None:
            self.file_lock.release()

    async def claim_sources(self, names: Sequence[str], now: datetime, *, limit: int, force: bool) -> list[str]:
        return list(names[:max(0, limit)])

    async def release_sources(self, names: Sequence[str]) -> None:
        return None

    async def share(self, busy: int, concurrency: int) -> int:
        return concurrency

    def order(self, names: list[str]) -> list[str]:
        return names

    @contextlib.asynccontextmanager
    async def channel(self, name: str) -> AsyncIterator[bool]:
        yield True

    def background(self, stop: asyncio.Event) -> list[Coroutine[Any, Any, None]]:
        return []


class ClusterCoordinator:
    """PostgreSQL: any number of instances share the database and split the work with leases."""

    recheck: float | None = RECHECK

    def __init__(self, store: Store, clock: Clock, owner: str, *, version: str, lease_ttl: float,
                 source_lease_ttl: float, session_lock: SessionLock | None,
                 rng: random.Random | None = None) -> None:
        self.store = store
        self.clock = clock
        self.owner = owner
        self.version = version
        self.lease_ttl = lease_ttl
        """The registration's and a channel lease's life without renewal (``[storage] lease_ttl``)."""
        self.source_lease_ttl = source_lease_ttl
        """A claimed source's lease: ``lease_ttl`` plus the longest fetch."""
        self.session_lock = session_lock
        """Held while this instance lives: the others see it dead at once when it is gone (None: tests
        that drive the claims without one; dead instances are then found by their heartbeat only)."""
        self.rng = rng or random.Random()
        self.resend_channels: set[str] = set()
        self._registered = False
        self._sending: set[str] = set()
        """Channels whose lease this process holds for a run now (a second run here would release it)."""

    # -- the instance's life ----------------------------------------------------------------------------

    async def lock(self, now: datetime) -> None:
        return None  # N instances are allowed; each one's own advisory lock is taken at start

    async def start(self, now: datetime, resend_channels: Collection[str]) -> tuple[int, int]:
        self.resend_channels = set(resend_channels)
        if self.session_lock is not None:  # once the database answers
            await self.session_lock.acquire()
        # registered after its advisory lock is taken: a registered instance without one is dead
        await self.store.register_instance(self.owner, self.version, now, self.lease_ttl)
        self._registered = True
        # only the claims of instances that are gone: the live ones are still sending
        _dead, requeued, unknown = await self.store.reap_instances(now, resend_channels=self.resend_channels,
                                                                   **self._lock_reaping)
        return requeued, unknown

    async def stop(self) -> None:
        if self._registered:
            with contextlib.suppress(Exception):
                await self.store.unregister_instance(self.owner)
            self._registered = False
        if self.session_lock is not None:  # after unregistering: registered without its lock reads as dead
            with contextlib.suppress(Exception):
                await self.session_lock.release()

    def unlock(self) -> None:
        return None

    def background(self, stop: asyncio.Event) -> list[Coroutine[Any, Any, None]]:
        return [self._heartbeat(stop), self._watch_peers(stop)]

    async def _heartbeat(self, stop: asyncio.Event) -> None:
        """Renew the registration every ``lease_ttl / 3`` and reap expired instances."""
        ttl = self.lease_ttl
        while not stop.is_set():
            await _wait(stop, ttl / 3)
            if stop.is_set():
                return
            try:
                ok = await self.store.heartbeat_instance(self.owner, self.clock.now(), ttl)
                if ok:
                    await self._reap()
            except Exception as exc:  # noqa: BLE001 - a blip must not stop the service
                log.warning("could not renew the instance registration: %s", type(exc).__name__)
                continue
            if not ok:
                _taken_over(stop)

    async def _watch_peers(self, stop: asyncio.Event) -> None:
        """Every ``PEER_CHECK`` seconds, keep this instance's advisory lock (taken again if its connection
        broke) and take over at once the work of instances whose lock is gone: they are dead, whatever
        their heartbeat says."""
        if self.session_lock is None:
            return
        ttl = self.lease_ttl
        while not stop.is_set():
            await _wait(stop, min(PEER_CHECK, ttl / 3))
            if stop.is_set():
                return
            try:
                if not await self.session_lock.check():  # lost for a moment: the others may have taken over
                    log.warning("the instance's advisory lock connection broke; took the lock again")
                    if not await self.store.heartbeat_instance(self.owner, self.clock.now(), ttl):
                        _taken_over(stop)
                        return
                if await self.store.unlocked_instances(self.version, exclude=self.owner):
                    await self._reap()
            except Exception as exc:  # noqa: BLE001 - a blip must not stop the service; the next round retries
                log.warning("could not check the other instances: %s", type(exc).__name__)

    @property
    def _lock_reaping(self) -> dict[str, str]:
        """``reap_instances`` arguments: instances of this version hold an advisory lock while alive (an older
        version's do not, so they are left to the heartbeat expiry); this one is never its own reaper."""
        return {"lock_version": self.version, "me": self.owner} if self.session_lock is not None else {}

    async def _reap(self) -> None:
        """Take over the in-flight work of instances that are dead (advisory lock gone) or whose heartbeat
        expired."""
        dead, requeued, unknown = await self.store.reap_instances(
            self.clock.now(), resend_channels=self.resend_channels, **self._lock_reaping)
        if dead or requeued or unknown:
            event(log, logging.WARNING, "instance.taken_over", dead=",".join(dead) or "-", requeued=requeued,
                  unknown=unknown, note="their sources and channels are polled and sent by the others now")

    # -- sources ------------------------------------------------------------------------------------------

    async def claim_sources(self, names: Sequence[str], now: datetime, *, limit: int, force: bool) -> list[str]:
        """Only sources no other instance is polling right now, leased to this one (``FOR UPDATE SKIP
        LOCKED``): the poll's record releases the lease."""
        if not names or limit <= 0:
            return []
        return await self.store.claim_sources(self.owner, now, self.source_lease_ttl, names, limit=limit,
                                              due_only=not force)

    async def release_sources(self, names: Sequence[str]) -> None:
        if names:
            await self.store.release_sources(self.owner, names)

    # -- channels -----------------------------------------------------------------------------------------

    async def share(self, busy: int, concurrency: int) -> int:
        """A channel's lease is kept until its backlog is sent, so an instance that took every due channel
        at once would leave the others idle: each takes its fair share at a time (the rest as its slots
        free up, so nothing waits on an instance that is gone or slow)."""
        if busy <= 1:
            return concurrency
        return channel_limit(busy, await self.store.live_instances(self.clock.now()), concurrency)

    def order(self, names: list[str]) -> list[str]:
        """Each instance tries the due channels in its own random order, so two rarely race for one lease."""
        shuffled = list(names)
        self.rng.shuffle(shuffled)
        return shuffled

    @contextlib.asynccontextmanager
    async def channel(self, name: str) -> AsyncIterator[bool]:
        """Only the instance holding the channel's lease sends to it, so per-channel order and pacing hold
        across instances; another instance finds the lease taken and leaves the channel alone. A dead
        holder's lease expires after ``lease_ttl`` (or is freed at once when its advisory lock is gone)."""
        lease = CHANNEL_LEASE + name
        if name in self._sending or not await self.store.try_lease(lease, self.owner, self.clock.now(),
                                                                   self.lease_ttl):
            yield False
            return
        self._sending.add(name)
        keeper = asyncio.create_task(self._keep_lease(lease), name=f"lease:{name}")
        try:
            yield True
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await keeper
            with contextlib.suppress(Exception):
                await self.store.release_lease(lease, self.owner)
            self._sending.discard(name)

    async def _keep_lease(self, lease: str) -> None:
        ttl = self.lease_ttl
        while True:
            await asyncio.sleep(ttl / 3)
            try:
                kept = await self.store.try_lease(lease, self.owner, self.clock.now(), ttl)
            except Exception as exc:  # noqa: BLE001 - retried on the next round
                log.warning("could not renew the %s lease: %s", lease, type(exc).__name__)
                continue
            if not kept:
                log.error("lost the %s lease to another instance", lease)
                return


def _taken_over(stop: asyncio.Event) -> None:
    log.error("this instance was taken over by another one (its registration expired or its lock was "
              "lost); stopping")
    stop.set()


async def _wait(stop: asyncio.Event, timeout: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout)
