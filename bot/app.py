"""The service lifecycle: initialize → run (forever, or once) → shut down.

``initialize`` takes the instance guard (``bot.storage.instance_lock``: on a SQLite
file a lock the OS drops when the process dies, so a second live instance refuses
to start while a restart after a crash starts at once; on PostgreSQL a session
advisory lock beside the instance's registration), migrates the schema, applies
the config, starts the publishers and recovers deliveries a crash left in
``sending``. ``run_forever`` runs the poll schedule, the delivery loop, any
sidecars (health server, admin bot) and, on PostgreSQL, the heartbeat and the
watch for dead instances, until SIGTERM/SIGINT; ``run_once`` does one full
poll-and-deliver cycle. Shutdown stops taking new work, lets in-flight sends
finish for ``service.shutdown_timeout`` seconds, makes abandoned ones
resumable, releases the guard and closes everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import httpx

from bot import __version__
from bot.domain.models import Subscription
from bot.domain.tags import make_tag
from bot.errors import PermanentPublishError, StorageError
from bot.log import event
from bot.observability import Metrics
from bot.publishers.api import Clock, PublisherPlugin
from bot.services.admin import AdminService
from bot.services.delivery import ChannelRuntime, Deliverer, DeliveryOutcome, Run
from bot.services.notifier import Notifier
from bot.services.polling import Poller, PollOutcome
from bot.settings import Config
from bot.sources.base import Source
from bot.storage import migrate
from bot.storage.engine import is_sqlite
from bot.storage.instance_lock import FileLock, Holder, SessionLock, lock_path
from bot.storage.store import Store

log = logging.getLogger("tagrelay")

PEER_CHECK = 1.0
"""Shared mode: how often (seconds) an instance looks for instances whose advisory lock is gone (dead)."""
IDLE_WAIT = 5.0
"""Longest sleep of the delivery loop between database checks, in seconds."""
SHARED_IDLE_WAIT = 2.0
"""Shared mode: the longest the delivery loop sleeps before looking for work other instances queued."""


async def upgrade_schema(store: Store, *, isolated: bool = True) -> tuple[str | None, str]:
    """Migrate the schema to the newest revision: (before, after); any failure is one ``StorageError``
    (a down database is an error message, not a traceback). ``isolated``: a due migration runs in a
    child process, so a long-running service never imports Alembic."""
    try:
        return await (migrate.upgrade_isolated(store.database) if isolated else migrate.upgrade(store.engine))
    except StorageError:
        raise
    except Exception as exc:
        raise StorageError(f"cannot open or migrate the database: {type(exc).__name__}: {exc}") from exc


class Sidecar(Protocol):
    """Something that runs beside the service (health endpoint, admin bot)."""

    name: str

    async def start(self, app: App) -> None: ...

    async def stop(self) -> None: ...


@dataclass
class Components:
    """Everything the composition root built. Owned (and closed) by ``App``."""

    config: Config
    store: Store
    http: httpx.AsyncClient
    sources: dict[str, Source]
    channels: dict[str, ChannelRuntime]
    plugins: dict[str, PublisherPlugin]
    clock: Clock
    metrics: Metrics
    owner: str
    sidecars: list[Sidecar] = field(default_factory=list)
    close_http: bool = True
    feed_http: httpx.AsyncClient | None = None
    """The sources' client when it is not ``http`` (see ``bot.sources.http``); closed with it."""
    admin: AdminService | None = None
    """The administration use cases over this store and config (the admin bot's, as the CLI's)."""
    notifier: Notifier | None = None
    """Tells the admins about a paused channel or a held burst (the admin bot); None: the log only."""


@dataclass(frozen=True, slots=True)
class CycleReport:
    polls: list[PollOutcome]
    deliveries: list[DeliveryOutcome]


class App:
    def __init__(self, parts: Components) -> None:
        self.parts = parts
        self.config = parts.config
        self.store = parts.store
        self.clock = parts.clock
        self.metrics = parts.metrics
        self.owner = parts.owner
        self.wake = asyncio.Event()
        self.stop_event = asyncio.Event()
        self.poller = Poller(parts.store, parts.sources, {s.name: s for s in parts.config.sources}, parts.clock,
                             parts.config.service, parts.metrics, on_queued=self.wake.set, notifier=parts.notifier)
        self.deliverer = Deliverer(parts.store, parts.channels, parts.clock, parts.config.delivery, parts.metrics,
                                   owner=parts.owner, notifier=parts.notifier)
        self.shared = not is_sqlite(parts.config.storage.url)
        """Shared mode (PostgreSQL): instances register, claim sources and lease channels instead of
        one instance holding the database alone (SQLite)."""
        if self.shared:
            self.deliverer.lease_ttl = parts.config.storage.lease_ttl
        path = lock_path(parts.store.url)  # the store's own database (a test or the bench may hand one in)
        self.file_lock = FileLock(path) if path is not None and not self.shared else None
        """SQLite file: the single-instance guard (none for in-memory SQLite: no other process can open it)."""
        self.session_lock = SessionLock(parts.store.database.async_engine(), parts.owner) if self.shared else None
        """Shared mode: held while this instance lives; the others see it dead at once when it is gone."""
        self.scheduler: object | None = None
        self._registered = False
        self._initialized = False
        self.started_at: datetime | None = None

    # -- lifecycle ------------------------------------------------------------------------

    async def initialize(self) -> None:
        # SQLite: the guard first, so a second instance does not even migrate the schema under a running one
        if self.file_lock is not None:
            await self.file_lock.acquire(Holder.me(self.owner, self.clock.now()))
        before, after = await upgrade_schema(self.store)
        if before != after:
            event(log, logging.INFO, "db.migrated", from_revision=before or "empty", to_revision=after)
        if self.session_lock is not None:  # PostgreSQL (any number of instances): once the database answers
            await self.session_lock.acquire()
        now = self.clock.now()
        if self.shared:  # registered after its advisory lock is taken: a registered instance without one is dead
            await self.store.register_instance(self.owner, __version__, now, self.config.storage.lease_ttl)
            self._registered = True
        await self.sync_config()
        for chan in self.parts.channels.values():
            try:
                await chan.publisher.initialize()
            except PermanentPublishError as exc:
                # one revoked token must not stop the other channels: pause this one, say why
                await self.store.set_paused(chan.name, True, exc.reason, now)
                event(log, logging.ERROR, "channel.paused", channel=chan.name, reason=exc.reason,
                      action=f"fix it, then run: tagrelay channels resume {chan.name}")
            if getattr(chan.options, "paused", False):
                await self.store.set_paused(chan.name, True, "paused in the configuration", now)
        resend = {c.name for c in self.parts.channels.values() if c.resend_when_unsure}
        if self.shared:  # only the claims of instances that are gone: the live ones are still sending
            _dead, requeued, unknown = await self.store.reap_instances(now, resend_channels=resend,
                                                                       **self._lock_reaping)
        else:
            requeued, unknown = await self.store.recover_sending(now, resend_channels=resend)
        if requeued or unknown:
            event(log, logging.WARNING, "recovered", requeued=requeued, unknown=unknown,
                  note="deliveries interrupted by a crash or kill")
        self.started_at = now
        self._initialized = True

    async def sync_config(self) -> None:
        cfg = self.config
        subs: list[Subscription] = []
        for s in cfg.subscriptions:
            tag = make_tag(s.tag)
            assert tag is not None  # validated at load
            subs.extend(Subscription(tag.slug, tag.name, ch, s.backfill) for ch in s.channels)
        await self.store.sync_config(
            [(s.name, s.url, s.kind) for s in cfg.sources if s.enabled],
            [(c.name, c.platform) for c in cfg.channels], subs, self.clock.now())
        for state in await self.store.channels():
            chan = self.parts.channels.get(state.name)
            if chan is not None and state.target_override and chan.can_move:
                chan.move_to(state.target_override)

    async def aclose(self) -> None:
        for chan in self.parts.channels.values():
            with contextlib.suppress(Exception):
                await chan.publisher.aclose()
        if self._registered:
            with contextlib.suppress(Exception):
                await self.store.unregister_instance(self.owner)
            self._registered = False
        if self.session_lock is not None:  # after unregistering: registered without its lock reads as dead
            with contextlib.suppress(Exception):
                await self.session_lock.release()
        try:
            if self.parts.close_http:
                try:
                    await self.parts.http.aclose()
                finally:
                    if self.parts.feed_http is not None and self.parts.feed_http is not self.parts.http:
                        await self.parts.feed_http.aclose()
            await self.store.aclose()
        finally:
            if self.file_lock is not None:  # last: the database is closed (WAL checkpointed) before a next start
                self.file_lock.release()

    async def __aenter__(self) -> App:
        try:
            await self.initialize()
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- one cycle ------------------------------------------------------------------------

    async def poll_all(self, *, force: bool = False) -> list[PollOutcome]:
        names = [s.name for s in self.config.sources if s.enabled]
        gate = asyncio.Semaphore(self.config.http.concurrency)
        if self.shared:  # only the sources no other instance is polling right now
            names = await self.store.claim_sources(self.owner, self.clock.now(), self.source_lease_ttl, names,
                                                   limit=len(names), due_only=not force)

        async def one(name: str) -> PollOutcome:
            async with gate:
                return await self.poller.poll_source(name, force=force)

        try:
            return list(await asyncio.gather(*(one(n) for n in names)))
        finally:
            if self.shared and names:  # those that ended without a record (skipped, or a bug)
                await self.store.release_sources(self.owner, names)

    @property
    def source_lease_ttl(self) -> float:
        """How long a claimed source stays leased: the instance TTL plus the longest fetch."""
        from bot.sources.http import DEADLINE_FACTOR

        return self.config.storage.lease_ttl + self.config.http.timeout * DEADLINE_FACTOR

    async def run_once(self) -> CycleReport:
        """Poll every source once, then deliver everything that is due, then return.

        The instance guard is held throughout, however long a backlog takes (on SQLite a second
        instance is refused until this process ends). Shared mode: the registration is renewed
        meanwhile, as in ``run_forever``; should it be lost anyway, no new batch starts.
        """
        heartbeat = asyncio.create_task(self._heartbeat(), name="instance-heartbeat")
        try:
            polls = await self.poll_all(force=True)
            deliveries: list[DeliveryOutcome] = []
            while not self.stop_event.is_set():
                batch = await self.deliverer.deliver_due()
                if not batch:
                    break
                deliveries.extend(batch)
            return CycleReport(polls, deliveries)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await heartbeat

    # -- forever --------------------------------------------------------------------------

    async def _delivery_loop(self) -> None:
        """The dispatcher: starts a run for each due channel (``Deliverer.start_due``) and wakes when
        posts are queued, a run ends, something becomes due, or the service stops. Runs are not
        waited for as a batch, so one channel's long (paced) backlog never holds up another's post."""
        running: dict[str, Run] = {}
        try:
            while not self.stop_event.is_set():
                self.wake.clear()
                try:
                    await self.deliverer.start_due(running)
                    timeout = await self._idle_timeout(running)
                except Exception:
                    log.exception("delivery cycle failed; retrying in 5s")
                    timeout = 5.0
                await self._wait(timeout, *running.values())
                if self.deliverer.reap(running):
                    try:
                        await self.deliverer.refresh_queue_metrics()
                    except Exception as exc:  # noqa: BLE001 - metrics only; the next round tries again
                        log.warning("could not refresh the queue metrics: %s", type(exc).__name__)
        finally:
            await self._end_runs(running)

    async def _idle_timeout(self, running: dict[str, Run]) -> float:
        """How long the dispatcher may sleep: until a channel it is not sending to has something due."""
        nxt = await self.store.next_due_at(exclude=running)
        # at most IDLE_WAIT: a `retry` or `channels resume` from the CLI (another process) changes the
        # database without waking us, and must take effect within seconds
        timeout = IDLE_WAIT
        if nxt is not None:
            timeout = min(IDLE_WAIT, max(0.05, (nxt - self.clock.now()).total_seconds()))
        if self.shared:  # other instances queue work without waking us, or hold a due channel's lease
            timeout = min(SHARED_IDLE_WAIT, max(0.25, timeout))
        return timeout

    async def _end_runs(self, running: dict[str, Run]) -> None:
        """Stopping: each run ends after its current send (``deliverer.stopping``). Cancelled (the
        grace period is over): the runs are cancelled too, and their claims recovered by the caller."""
        if not running:
            return
        try:
            await asyncio.gather(*running.values(), return_exceptions=True)
        except asyncio.CancelledError:
            for task in running.values():
                task.cancel()
            await asyncio.gather(*running.values(), return_exceptions=True)
            raise
        self.deliverer.reap(running)

    async def _wait(self, timeout: float, *also: asyncio.Future[Any]) -> None:
        """Until ``wake``, ``stop_event``, any of ``also`` done, or ``timeout`` seconds."""
        waiters = [asyncio.ensure_future(self.wake.wait()), asyncio.ensure_future(self.stop_event.wait())]
        try:
            await asyncio.wait([*waiters, *also], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()

    async def _heartbeat(self) -> None:
        """Shared mode: renew the registration every ``lease_ttl / 3`` and reap expired instances. (On SQLite
        there is nothing to renew: the file lock is held by the process itself.)"""
        if not self.shared:
            return
        ttl = self.config.storage.lease_ttl
        while not self.stop_event.is_set():
            await self._wait_stop(ttl / 3)
            if self.stop_event.is_set():
                return
            try:
                ok = await self.store.heartbeat_instance(self.owner, self.clock.now(), ttl)
                if ok:
                    await self._reap()
            except Exception as exc:  # noqa: BLE001 - a blip must not stop the service
                log.warning("could not renew the instance registration: %s", type(exc).__name__)
                continue
            if not ok:
                self._taken_over()

    async def _watch_peers(self) -> None:
        """Shared mode: every ``PEER_CHECK`` seconds, keep this instance's advisory lock (taken again if its
        connection broke) and take over at once the work of instances whose lock is gone: they are dead,
        whatever their heartbeat says."""
        if self.session_lock is None:
            return
        ttl = self.config.storage.lease_ttl
        while not self.stop_event.is_set():
            await self._wait_stop(min(PEER_CHECK, ttl / 3))
            if self.stop_event.is_set():
                return
            try:
                if not await self.session_lock.check():  # lost for a moment: the others may have taken over
                    log.warning("the instance's advisory lock connection broke; took the lock again")
                    if not await self.store.heartbeat_instance(self.owner, self.clock.now(), ttl):
                        self._taken_over()
                        return
                if await self.store.unlocked_instances(__version__, exclude=self.owner):
                    await self._reap()
            except Exception as exc:  # noqa: BLE001 - a blip must not stop the service; the next round retries
                log.warning("could not check the other instances: %s", type(exc).__name__)

    def _taken_over(self) -> None:
        log.error("this instance was taken over by another one (its registration expired or its lock was "
                  "lost); stopping")
        self.stop_event.set()

    @property
    def _lock_reaping(self) -> dict[str, str]:
        """``reap_instances`` arguments: instances of this version hold an advisory lock while alive (an older
        version's do not, so they are left to the heartbeat expiry); this one is never its own reaper."""
        return {"lock_version": __version__, "me": self.owner} if self.session_lock is not None else {}

    async def _reap(self) -> None:
        """Shared mode: take over the in-flight work of instances that are dead (advisory lock gone) or whose
        heartbeat expired."""
        resend = {c.name for c in self.parts.channels.values() if c.resend_when_unsure}
        dead, requeued, unknown = await self.store.reap_instances(self.clock.now(), resend_channels=resend,
                                                                  **self._lock_reaping)
        if dead or requeued or unknown:
            event(log, logging.WARNING, "instance.taken_over", dead=",".join(dead) or "-", requeued=requeued,
                  unknown=unknown, note="their sources and channels are polled and sent by the others now")

    async def _wait_stop(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop_event.wait(), timeout)

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        if not self.stop_event.is_set():
            event(log, logging.INFO, "stopping", signal=sig.name,
                  note=f"finishing in-flight sends (up to {self.config.service.shutdown_timeout:.0f}s)")
        self.stop_event.set()

    async def run_forever(self) -> None:
        from bot.scheduling import PollScheduler
        from bot.services.claims import SharedPollLoop

        enabled_names = [s.name for s in self.config.sources if s.enabled]
        scheduler: PollScheduler | SharedPollLoop
        if self.shared:
            scheduler = SharedPollLoop(self.store, self.poller.poll_source, self.clock, owner=self.owner,
                                       names=enabled_names, limit=self.config.http.concurrency,
                                       lease_ttl=self.source_lease_ttl)
        else:
            gate = asyncio.Semaphore(self.config.http.concurrency)

            async def gated_poll(name: str) -> PollOutcome:
                # every source's first run is "now": without a gate all of them would fetch and parse at
                # once, and the process would keep the memory of that peak (100 × a 100-item feed: +150 MiB)
                async with gate:
                    return await self.poller.poll_source(name)

            scheduler = PollScheduler(gated_poll, jitter=self.config.service.jitter)
        self.scheduler = scheduler
        states = {s.name: s for s in await self.store.sources()}
        now = self.clock.now()

        def first_run(name: str) -> datetime:
            state = states.get(name)
            if state and state.consecutive_failures and state.next_poll_at and state.next_poll_at > now:
                return state.next_poll_at
            return now

        enabled = [s for s in self.config.sources if s.enabled]
        started: list[Sidecar] = []
        try:  # sidecars first: one that cannot start (health port taken) stops the run before any poll
            for sidecar in self.parts.sidecars:
                await sidecar.start(self)
                started.append(sidecar)
        except BaseException:
            for sidecar in reversed(started):
                with contextlib.suppress(Exception):
                    await sidecar.stop()
            raise
        if isinstance(scheduler, SharedPollLoop):
            scheduler.start(self.stop_event)
        else:
            scheduler.start(enabled, first_run)
        event(log, logging.INFO, "started", sources=len(enabled), channels=len(self.parts.channels),
              storage=self.config.storage.url.split("://", 1)[0], instance=self.owner)
        delivery = asyncio.create_task(self._delivery_loop(), name="delivery")
        heartbeat = asyncio.create_task(self._heartbeat(), name="instance-heartbeat")
        watch = asyncio.create_task(self._watch_peers(), name="instance-watch")
        try:
            await self.stop_event.wait()
        finally:
            polls = asyncio.ensure_future(scheduler.drain(self.config.service.shutdown_timeout))
            self.deliverer.stopping = True
            self.wake.set()
            done, pending = await asyncio.wait({delivery}, timeout=self.config.service.shutdown_timeout)
            await polls  # running polls finish (or are abandoned) within the same grace period
            for task in pending:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            for task in (heartbeat, watch):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    log.error("delivery loop ended with %r", task.exception())
            for sidecar in reversed(self.parts.sidecars):
                with contextlib.suppress(Exception):
                    await sidecar.stop()
            if pending:
                resend = {c.name for c in self.parts.channels.values() if c.resend_when_unsure}
                requeued, unknown = await self.store.recover_sending(
                    self.clock.now(), resend_channels=resend, owner=self.owner)
                event(log, logging.WARNING, "abandoned", requeued=requeued, unknown=unknown)
            event(log, logging.INFO, "stopped")

    @property
    def is_sqlite(self) -> bool:
        return is_sqlite(self.config.storage.url)

    @property
    def running(self) -> bool:
        sched = self.scheduler
        return bool(sched is not None and getattr(sched, "running", False) and not self.stop_event.is_set())
