"""The only module that touches APScheduler: ONE job that wakes the poll driver on time.

The database decides when each source is due (``sources.next_poll_at``, written by
``Poller._next_poll``); after each round the poll driver (``bot.services.poll_driver``) asks to
be woken when the earliest of them comes, and this timer holds that one wake-up as a date job
(UTC; ``misfire_grace_time=None``: a late wake still runs). There is no second schedule here: no
interval jobs, no jitter (``Poller._next_poll`` applies it). ``run --once`` never imports this
module: its burst polls at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger

log = logging.getLogger("tagrelay.scheduler")

JOB = "poll-driver-wake"


class WakeTimer:
    """Calls ``wake`` (on the event loop) when the time asked for with ``wake_in`` comes."""

    def __init__(self, wake: Callable[[], None]) -> None:
        self._wake = wake
        self._scheduler = AsyncIOScheduler(timezone=UTC, job_defaults={
            "max_instances": 1, "coalesce": True, "misfire_grace_time": None})

    async def _fire(self) -> None:  # a coroutine: APScheduler runs it on the event loop, not in a thread
        self._wake()

    def start(self) -> None:
        self._scheduler.start()

    def wake_in(self, seconds: float | None) -> None:
        """Wake in ``seconds`` from now (real time: the driver converts from its clock), replacing the
        wake asked for before; None: no timed wake."""
        if not self._scheduler.running:
            return
        if seconds is None:
            if self._scheduler.get_job(JOB) is not None:
                self._scheduler.remove_job(JOB)
            return
        at = datetime.now(UTC) + timedelta(seconds=max(0.0, seconds))
        self._scheduler.add_job(self._fire, DateTrigger(run_date=at, timezone=UTC), id=JOB, name="wake the poll driver",
                                replace_existing=True)

    @property
    def running(self) -> bool:
        return bool(self._scheduler.running)

    def shutdown(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
