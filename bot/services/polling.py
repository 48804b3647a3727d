"""poll_source: fetch → parse → detect → record, for one source.

A failing source never raises out of here: the error is recorded on the source
(kept for ``status``), its backoff moves forward, and its earlier state (known
posts, validators, cursor) is untouched.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.domain.detect import detect, normalise
from bot.domain.limits import rejection
from bot.domain.models import ParsedPost
from bot.domain.schedule import jittered, source_backoff
from bot.errors import SourceError
from bot.log import event, redact_url
from bot.observability import Metrics
from bot.publishers.api import Clock
from bot.settings import ServiceConfig, SourceConfig
from bot.sources.base import CacheState, NotModified, Source
from bot.storage.store import SourceState, Store

log = logging.getLogger("tagrelay.poll")


@dataclass(frozen=True, slots=True)
class PollOutcome:
    source: str
    outcome: str  # baseline | new | unchanged | not_modified | error | skipped
    posts: int = 0
    new_posts: int = 0
    queued: int = 0
    backfilled: int = 0
    error: str | None = None
    next_poll_at: datetime | None = None


class Poller:
    """Polls sources by name. ``on_queued`` is called when deliveries were queued."""

    def __init__(
        self,
        store: Store,
        sources: Mapping[str, Source],
        configs: Mapping[str, SourceConfig],
        clock: Clock,
        service: ServiceConfig,
        metrics: Metrics,
        on_queued: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.sources = sources
        self.configs = configs
        self.clock = clock
        self.service = service
        self.metrics = metrics
        self.on_queued = on_queued

    def _next_poll(self, name: str, now: datetime, failures: int = 0) -> datetime:
        interval = self.configs[name].interval
        delay = source_backoff(interval, failures, self.service.max_backoff) if failures else interval
        return now + timedelta(seconds=jittered(delay, self.service.jitter))

    async def poll_source(self, name: str, *, force: bool = False) -> PollOutcome:
        """Poll one source. Skips (outcome "skipped") while a failing source is backing off."""
        state = await self.store.source(name)
        now = self.clock.now()
        if not force and state.consecutive_failures and state.next_poll_at and state.next_poll_at > now:
            return PollOutcome(name, "skipped", next_poll_at=state.next_poll_at)
        started = time.perf_counter()
        try:
            result = await self.sources[name].poll(state.cache, first_poll=not state.baseline_done)
        except SourceError as exc:
            # the reason may quote the URL; a password in it must not reach the database or `status`
            return await self._failed(state, redact_url(exc.reason), started)
        now = self.clock.now()
        if isinstance(result, NotModified):
            next_at = self._next_poll(name, now)
            await self.store.record_not_modified(state.id, result.cache, now, next_at)
            self.metrics.poll(name, "not_modified")
            event(log, logging.INFO, "poll", source=name, outcome="not_modified",
                  ms=round((time.perf_counter() - started) * 1000, 1))
            return PollOutcome(name, "not_modified", next_poll_at=next_at)
        for note in result.notes:
            event(log, logging.INFO, "poll.note", source=name, note=note)
        return await self._record(state, result.posts, result.cache, started)

    async def _record(self, state: SourceState, items: Sequence[ParsedPost], cache: CacheState,
                      started: float) -> PollOutcome:
        rejected = self._report_rejected(state.name, items)
        # normalising a big feed is CPU work proportional to it: off the event loop (health, lease heartbeat)
        posts = await asyncio.to_thread(normalise, state.name, items)
        known = await self.store.known_keys(state.id, [p.key for p in posts])
        new_tags = {slug for p in posts if p.key not in known for slug in p.tag_slugs}
        subs = await self.store.subscriptions_for_tags(new_tags)  # only what routing can match: ∝ new posts
        detection = await asyncio.to_thread(detect, state.name, items, known, subs,
                                            first_poll=not state.baseline_done)
        now = self.clock.now()
        next_at = self._next_poll(state.name, now)
        record = await self.store.record_poll(state, detection.new_posts, detection.intents, cache, now,
                                              next_at, baseline=detection.baseline)
        outcome = "baseline" if detection.baseline else ("new" if detection.new_posts else "unchanged")
        self.metrics.poll(state.name, outcome)
        self.metrics.new_posts(state.name, 0 if detection.baseline else record.new_posts)
        event(log, logging.INFO, "poll", source=state.name, outcome=outcome, posts=len(posts),
              new=record.new_posts, queued=record.queued, backfilled=record.backfilled,
              **({"rejected": rejected} if rejected else {}),
              ms=round((time.perf_counter() - started) * 1000, 1))
        if record.queued or record.backfilled:
            self.on_queued()
        return PollOutcome(state.name, outcome, posts=len(posts), new_posts=record.new_posts,
                           queued=record.queued, backfilled=record.backfilled, next_poll_at=next_at)

    def _report_rejected(self, source: str, items: Sequence[ParsedPost]) -> int:
        """Log each item ``domain.limits`` rejects (normalise leaves it out); returns how many."""
        count = 0
        for item in items:
            reason = rejection(item)
            if reason is not None:
                count += 1
                event(log, logging.WARNING, "poll.item_rejected", source=source, reason=reason,
                      title=item.title, guid=item.guid)
        return count

    async def _failed(self, state: SourceState, reason: str, started: float) -> PollOutcome:
        now = self.clock.now()
        failures = state.consecutive_failures + 1
        next_at = self._next_poll(state.name, now, failures)
        await self.store.record_poll_failure(state.id, reason, now, next_at)
        self.metrics.poll(state.name, "error")
        event(log, logging.WARNING, "poll", source=state.name, outcome="error", error=reason,
              failures=failures, retry_in=round((next_at - now).total_seconds()),
              ms=round((time.perf_counter() - started) * 1000, 1))
        return PollOutcome(state.name, "error", error=reason, next_poll_at=next_at)
