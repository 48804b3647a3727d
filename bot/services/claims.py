"""Polling in shared mode: several instances on one PostgreSQL database split the sources.

Instead of one timer per source (``bot.scheduling``), each instance repeatedly
claims the sources that are due and not leased by another live instance
(``Store.claim_sources``: ``FOR UPDATE SKIP LOCKED``, a lease with an expiry) and
polls them, at most ``limit`` at a time. The poll's record releases the lease, and
``next_poll_at`` (written by whichever instance polled) decides when the source is
due again, so each source is polled by one instance at a time and about once per
interval overall, however many instances run. A dead instance's leases expire and
its sources are claimed by the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

from bot.publishers.api import Clock
from bot.storage.store import Store

log = logging.getLogger("tagrelay.scheduler")

PollFn = Callable[[str], Awaitable[object]]

IDLE_WAIT_MAX = 5.0
"""Longest pause between two claim attempts when nothing is due (seconds)."""
IDLE_WAIT_MIN = 0.25
"""Shortest pause: a source that is due but leased elsewhere is not re-tried in a tight loop."""


class SharedPollLoop:
    """Claims due sources and polls them until ``stop`` is set. ``running`` for health checks."""

    def __init__(self, store: Store, poll: PollFn, clock: Clock, *, owner: str, names: Sequence[str],
                 limit: int, lease_ttl: float) -> None:
        self.store = store
        self._poll = poll
        self.clock = clock
        self.owner = owner
        self.names = list(names)
        self.limit = max(1, limit)
        self.lease_ttl = lease_ttl
        self.running = False
        self.polls = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, stop: asyncio.Event) -> None:
        self._runner = asyncio.create_task(self.run(stop), name="shared-poll-loop")

    def shutdown(self) -> None:
        runner = getattr(self, "_runner", None)
        if runner is not None and not runner.done():
            runner.cancel()

    async def drain(self, timeout: float) -> None:
        """Claim no more sources; wait up to ``timeout`` seconds for running polls, then cancel the rest."""
        runner = getattr(self, "_runner", None)
        if runner is not None and not runner.done():
            runner.cancel()  # claim nothing more
        if runner is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await runner
        running = {t for t in self._tasks if not t.done()}
        if running:
            await asyncio.wait(running, timeout=timeout)
        await self.cancel()  # past the grace period: their transactions roll back, nothing is lost

    def next_run(self, name: str) -> datetime | None:
        return None  # the database decides (sources.next_poll_at)

    async def _one(self, name: str) -> None:
        outcome: object = None
        try:
            outcome = await self._poll(name)
        except Exception:  # a bug must not kill the loop; it is logged with its traceback
            log.exception("poll of source %s failed unexpectedly", name)
        finally:
            self.polls += 1
            if getattr(outcome, "outcome", None) in (None, "skipped"):
                # no record was written, so the lease is still ours: give it back now
                with contextlib.suppress(Exception):
                    await self.store.release_sources(self.owner, [name])

    async def run(self, stop: asyncio.Event) -> None:
        self.running = True
        try:
            while not stop.is_set():
                free = self.limit - len(self._tasks)
                claimed: list[str] = []
                if free > 0 and self.names:
                    try:
                        claimed = await self.store.claim_sources(self.owner, self.clock.now(), self.lease_ttl,
                                                                 self.names, limit=free)
                    except Exception as exc:  # noqa: BLE001 - a database blip must not stop the service
                        log.warning("could not claim sources: %s: %s", type(exc).__name__, exc)
                        await self._pause(stop, IDLE_WAIT_MAX)
                        continue
                for name in claimed:
                    task = asyncio.create_task(self._one(name), name=f"poll:{name}")
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                if claimed and len(claimed) == free:
                    await self._pause(stop, IDLE_WAIT_MAX)  # all slots busy: go on when one frees up
                    continue
                await self._pause(stop, await self._idle_for())
        finally:
            self.running = False  # running polls are left to drain()

    async def _idle_for(self) -> float:
        try:
            nxt = await self.store.next_poll_due(self.names)
        except Exception:  # noqa: BLE001 - retried on the next round
            return IDLE_WAIT_MAX
        if nxt is None:
            return 1.0
        return min(IDLE_WAIT_MAX, max(IDLE_WAIT_MIN, (nxt - self.clock.now()).total_seconds()))

    async def _pause(self, stop: asyncio.Event, timeout: float) -> None:
        """Wait until ``stop``, a finished poll (a free slot), or ``timeout``."""
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({stopped, *self._tasks}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()

    async def cancel(self) -> None:
        """Stop the polls still running (their leases are released by ``unregister_instance``)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
