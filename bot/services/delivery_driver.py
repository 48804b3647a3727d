"""The one delivery driver: the dispatcher that ``run`` and ``run --once`` (burst) both use.

It asks the database which channels have a delivery due (``Store.due_channels``: queued or failed,
``next_attempt_at`` come, the channel neither paused nor held), and starts a run
(``Deliverer.deliver_channel``) for each one that has none, at most ``[delivery] concurrency`` at once
(on PostgreSQL the coordinator's fair share, in its order), each under the coordinator's
``channel(name)`` (on PostgreSQL: the channel's lease). Runs are not waited for as a batch, so one
channel's long, paced backlog never holds up another channel's post.

``run`` wakes when posts are queued (``wake``), a run ends, something becomes due (the earliest
``next_attempt_at`` or hold end), or the service stops. ``burst`` (``run --once``) delivers everything
due now the same way and returns when no run is going and nothing more can start: what is left is held,
backing off, paused, or another instance's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from bot.domain.runtime import channels_to_start
from bot.services.coordinator import Coordinator
from bot.services.delivery import Deliverer, DeliveryOutcome

log = logging.getLogger("tagrelay")

IDLE_WAIT = 5.0
"""Longest sleep of the delivery loop between database checks, in seconds: a ``retry`` or ``channels
resume`` from the CLI (another process) changes the database without waking the service."""
MIN_WAIT = 0.05
LEASE_RECHECK = 1.0
"""Seconds before a channel whose lease another instance holds is tried again."""
FAILED_RUN_COOLDOWN = 5.0
"""Seconds before a channel whose run failed (the database, a bug) is started again."""
EMPTY_RUN_RECHECK = 0.25
"""Seconds before a channel whose run found nothing to send is started again."""

Run = asyncio.Task[list[DeliveryOutcome]]
"""One channel's run, started by ``start_due``."""


class DeliveryDriver:
    """Starts and reaps channel runs. ``wake`` (set when posts are queued) and ``stop`` are the service's."""

    def __init__(self, deliverer: Deliverer, coordinator: Coordinator, *, wake: asyncio.Event | None = None,
                 stop: asyncio.Event | None = None) -> None:
        self.deliverer = deliverer
        self.coordinator = coordinator
        self.store = deliverer.store
        self.clock = deliverer.clock
        self.concurrency = deliverer.config.concurrency
        self.wake = wake or asyncio.Event()
        self.stop = stop or asyncio.Event()
        self._not_before: dict[str, float] = {}
        """Channels left alone until this ``time.monotonic()`` (held elsewhere, failed, empty)."""

    # -- one round ----------------------------------------------------------------------------------------

    async def start_due(self, running: dict[str, Run]) -> list[str]:
        """Start a run for each due channel that has none in ``running``, up to the limit (``concurrency``;
        on PostgreSQL the fair share), and add it there. Returns the channels started."""
        due = [n for n in await self.store.due_channels(self.clock.now()) if n in self.deliverer.channels]
        now = time.monotonic()
        if not any(n not in running and self._not_before.get(n, 0.0) <= now for n in due):
            return []
        limit = await self.coordinator.share(len(set(due) | set(running)), self.concurrency)
        started = channels_to_start(self.coordinator.order(due), running, self._not_before, limit=limit,
                                    clock=now)
        for name in started:
            running[name] = asyncio.create_task(self._run(name), name=f"deliver:{name}")
        return started

    async def _run(self, name: str) -> list[DeliveryOutcome]:
        async with self.coordinator.channel(name) as mine:
            if not mine:  # another instance sends to it
                self._not_before[name] = time.monotonic() + LEASE_RECHECK
                return []
            return await self.deliverer.deliver_channel(name)

    def reap(self, running: dict[str, Run]) -> list[str]:
        """Take the finished runs out of ``running`` (returns their channels). A run that failed is logged
        with its traceback and its channel rests ``FAILED_RUN_COOLDOWN`` seconds; one that found nothing
        to send rests ``EMPTY_RUN_RECHECK`` (no tight loop on a channel that looks due)."""
        finished, failures = self._take_finished(running, [])
        now = time.monotonic()
        for name, exc in failures.items():
            self._not_before[name] = now + FAILED_RUN_COOLDOWN
            log.error("delivery to channel %s failed; trying it again in %.0fs", name, FAILED_RUN_COOLDOWN,
                      exc_info=exc)
        return finished

    def _take_finished(self, running: dict[str, Run], outcomes: list[DeliveryOutcome]
                       ) -> tuple[list[str], dict[str, BaseException]]:
        """Pop the finished runs; their outcomes into ``outcomes``; returns (channels, failures)."""
        finished = [name for name, task in running.items() if task.done()]
        failures: dict[str, BaseException] = {}
        now = time.monotonic()
        for name in finished:
            task = running.pop(name)
            if task.cancelled():
                continue
            exc = task.exception()
            if exc is not None:
                failures[name] = exc
                continue
            result = task.result()
            outcomes.extend(result)
            if not result:
                self._not_before[name] = max(self._not_before.get(name, 0.0), now + EMPTY_RUN_RECHECK)
        return finished, failures

    # -- run --once ---------------------------------------------------------------------------------------

    async def burst(self) -> list[DeliveryOutcome]:
        """Deliver everything due now, as ``run`` would, and return the outcomes once no run is going and
        none can start (``stop`` ends it between runs). A run that failed (the database, a bug) is raised
        once the others have ended."""
        self._not_before.clear()  # a burst decides afresh (and a test's fake clock may have moved)
        running: dict[str, Run] = {}
        outcomes: list[DeliveryOutcome] = []
        failure: BaseException | None = None
        try:
            while failure is None and not self.stop.is_set():
                await self.start_due(running)
                if not running:
                    break
                await asyncio.wait(running.values(), return_when=asyncio.FIRST_COMPLETED)
                _, failures = self._take_finished(running, outcomes)
                failure = next(iter(failures.values()), None)
            if running:
                await asyncio.wait(running.values())
                _, failures = self._take_finished(running, outcomes)
                failure = failure or next(iter(failures.values()), None)
        finally:
            await self._end_runs(running)
        if failure is not None:
            raise failure
        await self.deliverer.refresh_queue_metrics()
        return outcomes

    # -- run ----------------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Until ``stop``: start the due runs, sleep until something changes, reap. Runs still going when
        it stops end after their current send (``Deliverer.stopping``)."""
        running: dict[str, Run] = {}
        try:
            while not self.stop.is_set():
                self.wake.clear()
                try:
                    await self.start_due(running)
                    timeout = await self._idle_timeout(running)
                except Exception:
                    log.exception("delivery cycle failed; retrying in 5s")
                    timeout = 5.0
                await self._wait(timeout, *running.values())
                if self.reap(running):
                    try:
                        await self.deliverer.refresh_queue_metrics()
                    except Exception as exc:  # noqa: BLE001 - metrics only; the next round tries again
                        log.warning("could not refresh the queue metrics: %s", type(exc).__name__)
        finally:
            await self._end_runs(running)

    async def _idle_timeout(self, running: dict[str, Run]) -> float:
        """How long the dispatcher may sleep: until a channel it is not sending to has something due."""
        nxt = await self.store.next_due_at(exclude=running)
        timeout = IDLE_WAIT
        if nxt is not None:
            timeout = min(IDLE_WAIT, max(MIN_WAIT, (nxt - self.clock.now()).total_seconds()))
        recheck = self.coordinator.recheck
        if recheck is not None:  # other instances queue work without waking us, or hold a due channel's lease
            timeout = min(recheck, max(0.25, timeout))
        return timeout

    async def _end_runs(self, running: dict[str, Run]) -> None:
        """Stopping: each run ends after its current send (``deliverer.stopping``). Cancelled (the grace
        period is over): the runs are cancelled too, and their claims recovered by the caller."""
        if not running:
            return
        try:
            await asyncio.gather(*running.values(), return_exceptions=True)
        except asyncio.CancelledError:
            for task in running.values():
                task.cancel()
            await asyncio.gather(*running.values(), return_exceptions=True)
            raise
        self.reap(running)

    async def _wait(self, timeout: float, *also: asyncio.Future[Any]) -> None:
        """Until ``wake``, ``stop``, any of ``also`` done, or ``timeout`` seconds."""
        waiters = [asyncio.ensure_future(self.wake.wait()), asyncio.ensure_future(self.stop.wait())]
        try:
            await asyncio.wait([*waiters, *also], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
