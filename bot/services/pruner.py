"""The prune pass: what the database may forget (``bot.domain.retention``), removed batch by batch.

A pass removes, in this order: settled delivery records and rule drops older than ``deliveries``, audit
entries older than ``audit``, the content of posts nothing will render again (``content``), then the rows
of posts their source has stopped listing (``identity``; their delivery records went first), and gives
the freed pages back (SQLite with incremental auto-vacuum). Each batch is one short transaction over at
most ``batch`` rows (``bot.storage.retention``); the pass yields to the event loop between two, so polls
and deliveries interleave with it (on SQLite they queue behind one batch at most). It ends early, between
two batches, when ``stop`` is set.

In the service (``Pruner.run``, started by ``bot.app.App.run_forever`` beside the drivers when
``[storage.retention] enabled``) a pass runs shortly after the start and then every ``every``; it logs
one ``prune`` event with its counts; a failure is logged and the next pass comes as planned. A pass that
removed something is recorded in the audit log (action ``prune``: ``status`` shows the last one).
``tagrelay db prune`` runs one pass (or, ``--dry-run``, only counts) whatever ``enabled`` says.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.domain.retention import Cutoffs, PruneCounts, Retention, cutoffs
from bot.log import event
from bot.publishers.api import Clock
from bot.settings import Config, RetentionConfig
from bot.storage.retention import Cursor, IdentityCursor
from bot.storage.store import Store

log = logging.getLogger("tagrelay.retention")

FIRST_PASS_AFTER = 60.0
"""Seconds after the service's start before its first pass (the start's own work goes first)."""

Progress = Callable[[PruneCounts, int], Awaitable[None] | None]
"""Told after each batch, between two transactions: the counts so far and the number of batches (what it
returns is awaited before the next batch)."""


@dataclass(frozen=True, slots=True)
class PruneReport:
    """What one pass did (or, ``dry_run``, would do)."""

    counts: PruneCounts
    dry_run: bool
    size_before: int | None
    """The database's bytes before the pass (None: in memory)."""
    size_after: int | None
    batches: int = 0
    pages_released: int = 0
    """SQLite pages given back to the file system after the pass."""
    vacuumed: bool = False
    complete: bool = True
    """False: ``stop`` ended the pass between two batches."""


def retention_of(settings: RetentionConfig) -> Retention:
    return Retention(content=settings.content, deliveries=settings.deliveries, audit=settings.audit,
                     identity=settings.identity)


def longest_window(config: Config) -> float:
    """The channels' longest ``edit_window`` or ``delete_window`` (seconds): sent records are kept that long."""
    return max((max(c.edit_window, c.delete_window) for c in config.channels), default=0.0)


class Pruner:
    """Runs prune passes over ``store`` with the ``[storage.retention]`` settings."""

    def __init__(self, store: Store, clock: Clock, settings: RetentionConfig, *, window: float = 0.0,
                 first_after: float = FIRST_PASS_AFTER) -> None:
        self.store = store
        self.clock = clock
        self.settings = settings
        self.retention = retention_of(settings)
        self.window = window
        """The channels' longest edit/delete window (``longest_window``)."""
        self.first_after = first_after
        self.passes = 0
        self.passed = asyncio.Event()
        """Set after each pass of ``run`` (tests wait on it)."""
        self.last: PruneReport | None = None

    async def prune(self, *, dry_run: bool = False, vacuum: bool = False, progress: Progress | None = None,
                    stop: asyncio.Event | None = None, record: bool | None = None, actor: str = "tagrelay",
                    via: str = "retention") -> PruneReport:
        """One pass (``dry_run``: count only). ``vacuum``: rewrite the database afterwards. ``record``: write
        the audit line (None: when something was removed)."""
        cut = cutoffs(self.retention, self.clock.now(), longest_window=self.window)
        before = await self.store.database_size()
        if dry_run:
            counts = await self.store.prune_counts(cut)
            return PruneReport(counts, True, before, before)
        size = self.settings.batch
        counts = PruneCounts()
        batches = 0

        async def done(**removed: int) -> bool:
            """Count a batch, yield to the event loop; True when the pass must end now."""
            nonlocal counts, batches
            counts = counts.plus(**removed)
            batches += 1
            told = progress(counts, batches) if progress is not None else None
            if told is not None:
                await told
            await asyncio.sleep(0)  # polls and deliveries run between two batches
            return stop is not None and stop.is_set()

        complete = await self._walk(cut, size, done)
        released = await self.store.release_free_pages() if complete else 0
        if vacuum and complete:
            await self.store.vacuum()
        if record if record is not None else counts.total > 0:
            await self.store.record_prune(counts, cut.now, actor=actor, via=via)
        report = PruneReport(counts, False, before, await self.store.database_size(), batches=batches,
                             pages_released=released, vacuumed=vacuum and complete, complete=complete)
        self.last = report
        return report

    async def _walk(self, cut: Cutoffs, size: int, step: Callable[..., Awaitable[bool]]) -> bool:
        """Every kind's batches in order; False when ``step`` said to stop."""
        cursor: Cursor = None
        while True:
            removed, cursor = await self.store.prune_deliveries(cut, size, cursor)
            if await step(deliveries=removed):
                return False
            if cursor is None:
                break
        for kind, batch in (("rule_drops", self.store.prune_rule_drops), ("audit", self.store.prune_audit)):
            while True:
                removed = await batch(cut, size)
                if await step(**{kind: removed}):
                    return False
                if removed < size:
                    break
        cursor = None
        while True:
            removed, cursor = await self.store.prune_content(cut, size, cursor)
            if await step(content=removed):
                return False
            if cursor is None:
                break
        sources = await self.store.identity_sources(cut)
        place: IdentityCursor | None = (0, None) if sources else None
        while place is not None:
            removed, place = await self.store.prune_identities(cut, sources, size, place)
            if await step(identities=removed):
                return False
        return True

    async def run(self, stop: asyncio.Event) -> None:
        """A pass ``first_after`` seconds after the start, then every ``every``, until ``stop``."""
        delay = self.first_after
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
                return
            except TimeoutError:
                pass
            delay = self.settings.every
            started = time.perf_counter()
            try:
                report = await self.prune(stop=stop)
            except Exception as exc:  # noqa: BLE001 - a failed pass must not stop the service; the next one retries
                event(log, logging.WARNING, "prune.failed", error=f"{type(exc).__name__}: {exc}",
                      retry_in=round(delay))
            else:
                event(log, logging.INFO, "prune", **report.counts.as_dict(), batches=report.batches,
                      size=report.size_after, complete=report.complete,
                      ms=round((time.perf_counter() - started) * 1000, 1))
            self.passes += 1
            self.passed.set()
