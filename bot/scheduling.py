"""The only module that touches APScheduler: one interval job per source.

Jobs are one-line calls into ``Poller.poll_source``; ``run --once`` never
imports this module. UTC, ``max_instances=1`` (a slow poll is never doubled),
``coalesce`` (missed runs collapse into one) and jitter on every interval.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from bot.settings import SourceConfig

log = logging.getLogger("tagrelay.scheduler")

PollFn = Callable[[str], Awaitable[object]]


class PollScheduler:
    def __init__(self, poll: PollFn, *, jitter: float) -> None:
        self._poll = poll
        self._jitter = jitter
        self._scheduler = AsyncIOScheduler(timezone=UTC, job_defaults={
            "max_instances": 1, "coalesce": True, "misfire_grace_time": None})
        self._inflight: set[asyncio.Task[Any]] = set()
        self._draining = False

    async def _job(self, name: str) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        try:
            await self._poll(name)
        except asyncio.CancelledError:
            if not self._draining:
                raise
            # stopping, and the poll outlived the grace period: its transaction rolls back, nothing is lost
            log.warning("poll of source %s abandoned at shutdown; it runs again on the next start", name)
        except Exception:  # a bug must not kill the schedule; it is logged with its traceback
            log.exception("poll job for source %s failed unexpectedly", name)
        finally:
            if task is not None:
                self._inflight.discard(task)

    async def drain(self, timeout: float) -> None:
        """Start no new polls; wait up to ``timeout`` seconds for running ones, then shut down."""
        self._draining = True
        if self._scheduler.running:
            self._scheduler.pause()
        running = {t for t in self._inflight if not t.done()}
        if running:
            await asyncio.wait(running, timeout=timeout)
        self.shutdown()

    def start(self, sources: Iterable[SourceConfig], first_run: Callable[[str], datetime]) -> None:
        for src in sources:
            self._scheduler.add_job(
                self._job, IntervalTrigger(seconds=src.interval, jitter=src.interval * self._jitter, timezone=UTC),
                args=[src.name], id=f"poll:{src.name}", name=f"poll {src.name}",
                next_run_time=first_run(src.name), replace_existing=True)
        self._scheduler.start()

    def next_run(self, name: str) -> datetime | None:
        job = self._scheduler.get_job(f"poll:{name}")
        return job.next_run_time if job is not None else None

    @property
    def running(self) -> bool:
        return bool(self._scheduler.running)

    def shutdown(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
