"""The service lifecycle: initialize → run (forever, or once as a burst) → shut down.

``initialize`` takes the instance guard through the coordinator (``bot.services.coordinator``, chosen
once in ``bot.bootstrap``: on a SQLite file a lock the OS drops when the process dies, so a second
live instance refuses to start while a restart after a crash starts at once; on PostgreSQL a session
advisory lock beside the instance's registration), migrates the schema, applies the config, starts
the publishers and recovers deliveries a crash left in ``sending``. ``run_forever`` runs the poll
driver (woken on time by ``bot.scheduling``), the delivery driver, any sidecars (health server, admin
bot), the prune pass every ``[storage.retention] every`` (``bot.services.pruner``) and the
coordinator's background work (on PostgreSQL the heartbeat and the watch for dead instances), until
SIGTERM/SIGINT; ``run_once`` runs the same two drivers in burst mode: every source
polled once, everything due delivered, then it returns. Shutdown stops taking new work, lets
in-flight sends finish for ``service.shutdown_timeout`` seconds, makes abandoned ones resumable,
releases the guard and closes everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import httpx

from bot.domain.models import Subscription
from bot.domain.retention import seen_refresh
from bot.domain.rules import Rule
from bot.domain.tags import make_tag
from bot.errors import PermanentPublishError, StorageError
from bot.log import event
from bot.observability import Metrics
from bot.publishers.api import Clock, PublisherPlugin
from bot.services.admin import AdminService
from bot.services.coordinator import Coordinator
from bot.services.delivery import ChannelRuntime, Deliverer, DeliveryOutcome
from bot.services.delivery_driver import DeliveryDriver
from bot.services.notifier import Notifier
from bot.services.poll_driver import PollDriver
from bot.services.polling import Poller, PollOutcome
from bot.services.pruner import Pruner, longest_window
from bot.services.push import PushSecrets, PushService
from bot.services.unpublish import Unpublisher
from bot.services.websub import WebSubService
from bot.settings import Config
from bot.sources.base import Source
from bot.storage import migrate
from bot.storage.store import Store

log = logging.getLogger("tagrelay")


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
    coordinator: Coordinator
    """What this instance may take: one instance alone on SQLite, N with leases on PostgreSQL."""
    sidecars: list[Sidecar] = field(default_factory=list)
    close_http: bool = True
    feed_http: httpx.AsyncClient | None = None
    """The sources' client when it is not ``http`` (see ``bot.sources.http``); closed with it."""
    admin: AdminService | None = None
    """The administration use cases over this store and config (the admin bot's, as the CLI's)."""
    notifier: Notifier | None = None
    """Tells the admins about a paused channel or a held burst (the admin bot); None: the log only."""
    push_secrets: PushSecrets = field(default_factory=PushSecrets)
    """The sources' hook secrets and the WebSub master secret (none: no push endpoints)."""


@dataclass(frozen=True, slots=True)
class CycleReport:
    polls: list[PollOutcome]
    deliveries: list[DeliveryOutcome]


def channel_rules(config: Config) -> dict[str, Rule]:
    """Each channel's own exclusions (``[[channels]] exclude_tags``/``exclude_keywords``), by channel."""
    return {c.name: rule for c in config.channels if (rule := c.rule()) is not None}


class App:
    def __init__(self, parts: Components) -> None:
        self.parts = parts
        self.config = parts.config
        self.store = parts.store
        self.clock = parts.clock
        self.metrics = parts.metrics
        self.owner = parts.owner
        self.coordinator = parts.coordinator
        self.wake = asyncio.Event()
        """Set when deliveries were queued: the delivery driver looks at once."""
        self.stop_event = asyncio.Event()
        retention = parts.config.storage.retention
        lifecycle = {name: chan.lifecycle for name, chan in parts.channels.items()}
        unpublisher = Unpublisher(parts.store, parts.feed_http or parts.http, parts.clock, lifecycle,
                                  max_bytes=parts.config.http.max_bytes, on_queued=self.wake.set)
        self.poller = Poller(parts.store, parts.sources, {s.name: s for s in parts.config.sources}, parts.clock,
                             parts.config.service, parts.metrics, on_queued=self.wake.set, notifier=parts.notifier,
                             channel_rules=channel_rules(parts.config), lifecycle=lifecycle,
                             unpublisher=unpublisher if unpublisher.active else None,
                             seen_refresh=seen_refresh(retention.identity))
        self.deliverer = Deliverer(parts.store, parts.channels, parts.clock, parts.config.delivery, parts.metrics,
                                   owner=parts.owner, notifier=parts.notifier)
        enabled = [s for s in parts.config.sources if s.enabled]
        self.polls = PollDriver(parts.store, self.poller, self.coordinator, parts.clock,
                                names=[s.name for s in enabled], intervals={s.name: s.interval for s in enabled},
                                concurrency=parts.config.http.concurrency, urls={s.name: s.url for s in enabled},
                                per_host=parts.config.http.per_host, ramp_after=parts.config.service.ramp_after)
        """The one poll driver (``run_forever`` and ``run_once`` alike)."""
        self.deliveries = DeliveryDriver(self.deliverer, self.coordinator, wake=self.wake, stop=self.stop_event)
        """The one delivery driver (``run_forever`` and ``run_once`` alike)."""
        self.push = self._make_push(parts, enabled={s.name for s in enabled if s.websub})
        """Pushes (hook calls, WebSub notifications) into polls; None when no source has a hook and
        WebSub is off. Served on the health listener (``bot.pushhooks``), active in ``run_forever`` only."""
        self.poller.observer = self.push
        self.pruner = Pruner(parts.store, parts.clock, retention, window=longest_window(parts.config)) \
            if retention.enabled else None
        """Prune passes every ``[storage.retention] every`` (``run_forever`` only); None when disabled."""
        self._serving = False
        self._initialized = False
        self.started_at: datetime | None = None

    def _make_push(self, parts: Components, *, enabled: set[str]) -> PushService | None:
        secrets = parts.push_secrets
        if not secrets.any:
            return None
        websub = None
        if secrets.websub is not None and parts.config.push.websub_on:
            websub = WebSubService(parts.store, parts.clock, parts.http, parts.config.push, secrets.websub,
                                   sources=enabled)
        return PushService(parts.store, parts.clock, parts.metrics, parts.config.push, secrets,
                           wake=self.polls.wake.set, websub=websub)

    # -- lifecycle ------------------------------------------------------------------------

    async def initialize(self) -> None:
        # the guard first, so a second instance does not even migrate the schema under a running one
        await self.coordinator.lock(self.clock.now())
        before, after = await upgrade_schema(self.store)
        if before != after:
            event(log, logging.INFO, "db.migrated", from_revision=before or "empty", to_revision=after)
        await self.sync_config()
        now = self.clock.now()
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
        requeued, unknown = await self.coordinator.start(self.clock.now(), self._resend_channels())
        if requeued or unknown:
            event(log, logging.WARNING, "recovered", requeued=requeued, unknown=unknown,
                  note="deliveries interrupted by a crash or kill")
        self.started_at = now
        self._initialized = True

    def _resend_channels(self) -> set[str]:
        """Channels whose interrupted sends may be sent again (idempotent, or configured at-least-once)."""
        return {c.name for c in self.parts.channels.values() if c.resend_when_unsure}

    async def sync_config(self) -> None:
        cfg = self.config
        subs: list[Subscription] = []
        for s in cfg.subscriptions:
            tag = make_tag(s.tag)
            assert tag is not None  # validated at load
            rule = s.rule()
            subs.extend(Subscription(tag.slug, tag.name, ch, s.backfill, rule) for ch in s.channels)
        await self.store.sync_config(
            [(s.name, s.url, s.kind) for s in cfg.sources if s.enabled],
            [(c.name, c.platform) for c in cfg.channels], subs, self.clock.now())
        for state in await self.store.channels():
            chan = self.parts.channels.get(state.name)
            if chan is not None and state.target_override and chan.can_move:
                chan.move_to(state.target_override)

    async def aclose(self) -> None:
        # polls answered 304 still in the poller's buffer (none after a drain or a burst; a failure is logged)
        await self.poller.flush(last=True)
        for chan in self.parts.channels.values():
            with contextlib.suppress(Exception):
                await chan.publisher.aclose()
        await self.coordinator.stop()
        try:
            if self.parts.close_http:
                try:
                    await self.parts.http.aclose()
                finally:
                    if self.parts.feed_http is not None and self.parts.feed_http is not self.parts.http:
                        await self.parts.feed_http.aclose()
            await self.store.aclose()
        finally:
            self.coordinator.unlock()  # last: the database is closed (WAL checkpointed) before a next start

    async def __aenter__(self) -> App:
        try:
            await self.initialize()
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- once -----------------------------------------------------------------------------

    async def run_once(self) -> CycleReport:
        """Poll every source once, then deliver everything that is due, then return: the two drivers
        of ``run_forever`` in burst mode.

        The instance guard is held throughout, however long a backlog takes (on SQLite a second
        instance is refused until this process ends). On PostgreSQL the coordinator's background work
        (heartbeat, peer watch) runs meanwhile, as in ``run_forever``; should this instance be taken
        over anyway, no new run starts.
        """
        background = self._start_background()
        try:
            polls = await self.polls.burst()
            deliveries = await self.deliveries.burst()
            return CycleReport(polls, deliveries)
        finally:
            await _cancel(background)

    def _start_background(self) -> list[asyncio.Task[None]]:
        return [asyncio.create_task(work, name=f"instance-{i}")
                for i, work in enumerate(self.coordinator.background(self.stop_event))]

    # -- forever --------------------------------------------------------------------------

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
        # deliberately lazy: APScheduler is loaded by the service only, never by `run --once` or the CLI
        from bot.scheduling import WakeTimer

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
        pushing = await self._start_push()
        timer = WakeTimer(self.polls.wake.set)
        timer.start()
        polling = asyncio.create_task(self.polls.run(self.stop_event, timer), name="polls")
        self._serving = True
        event(log, logging.INFO, "started", sources=len(self.polls.names), channels=len(self.parts.channels),
              storage=self.config.storage.url.split("://", 1)[0], instance=self.owner)
        delivery = asyncio.create_task(self.deliveries.run(), name="delivery")
        background = self._start_background()
        pruning = [] if self.pruner is None else [
            asyncio.create_task(self.pruner.run(self.stop_event), name="pruner")]
        try:
            await self.stop_event.wait()
        finally:
            self._serving = False
            timer.shutdown()
            await _cancel([polling])  # starts no more polls; the running ones drain below
            polls = asyncio.ensure_future(self.polls.drain(self.config.service.shutdown_timeout))
            self.deliverer.stopping = True
            self.wake.set()
            done, pending = await asyncio.wait({delivery}, timeout=self.config.service.shutdown_timeout)
            await polls  # running polls finish (or are abandoned) within the same grace period
            await _cancel(list(pending))
            await _cancel(background)
            await _cancel(pruning)
            await _cancel(pushing)
            if self.push is not None:
                self.push.active = False
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    log.error("delivery loop ended with %r", task.exception())
            for sidecar in reversed(self.parts.sidecars):
                with contextlib.suppress(Exception):
                    await sidecar.stop()
            if pending:
                requeued, unknown = await self.store.recover_sending(
                    self.clock.now(), resend_channels=self._resend_channels(), owner=self.owner)
                event(log, logging.WARNING, "abandoned", requeued=requeued, unknown=unknown)
            event(log, logging.INFO, "stopped")

    async def _start_push(self) -> list[asyncio.Task[None]]:
        """Pushes become polls from now on; the WebSub subscriber reads its subscriptions and starts."""
        if self.push is None:
            return []
        self.push.active = True
        websub = self.push.websub
        if websub is None:
            return []
        try:
            await websub.start()
        except StorageError as exc:  # the subscriber retries on its own; a blip must not stop the start
            log.warning("could not read the WebSub subscriptions: %s", exc)
        return [asyncio.create_task(websub.run(self.stop_event), name="websub")]

    @property
    def running(self) -> bool:
        """Serving (``run_forever`` started its drivers) and not stopping: what ``/readyz`` reports."""
        return self._serving and not self.stop_event.is_set()


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
