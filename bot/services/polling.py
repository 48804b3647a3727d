"""poll_source: fetch → parse → detect → record, for one source.

A failing source never raises out of here: the error is recorded on the source
(kept for ``status``), its backoff moves forward, and its earlier state (known
posts, validators, cursor) is untouched. When the source answered 429 or 503
with ``Retry-After``, the next poll waits at least that long, but never longer
than ``service.max_backoff`` (``domain.schedule.source_retry_delay``).

A known post that comes back changed (``content_hash``) is stored anew, and its messages are updated
where its channels want it (``bot.domain.lifecycle.plan_edit``), in the poll's one write. After each
poll the ``Unpublisher`` checks whether recently sent posts are still on the site (only when a
channel deletes).

A poll answered 304 (or an unchanged file) is the fast path: nothing is parsed, and its record (validators,
poll times, the lease released) waits in ``records`` to be written with others in one transaction
(``bot.services.poll_records``: why losing it in a crash is harmless), except for a source a push can
reach, whose record is written at once so the push observer can compare counts after it.

A poll with more new posts than the source's burst limit is recorded with its
deliveries ``held`` (nothing is sent) and the admins are told once through
the ``Notifier``; ``tagrelay hold release|drop`` (or the admin bot's /hold) ends it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from bot.domain.detect import normalise
from bot.domain.lifecycle import ChannelLifecycle
from bot.domain.limits import rejection
from bot.domain.models import ParsedPost
from bot.domain.plan import plan_poll
from bot.domain.rules import Rule
from bot.domain.schedule import jittered, source_backoff, source_retry_delay
from bot.domain.state import SourceState
from bot.errors import FetchError, SourceError
from bot.log import event, redact_url
from bot.observability import Metrics
from bot.publishers.api import Clock
from bot.services.notifier import Notifier
from bot.services.poll_records import RecordBuffer
from bot.services.unpublish import Unpublisher
from bot.settings import ServiceConfig, SourceConfig
from bot.sources.base import CacheState, NotModified, PollResult, Source
from bot.storage.polls import NotModifiedRecord
from bot.storage.store import Store

log = logging.getLogger("tagrelay.poll")


@dataclass(frozen=True, slots=True)
class PollOutcome:
    source: str
    outcome: str  # baseline | new | held | unchanged | not_modified | error | skipped
    posts: int = 0
    new_posts: int = 0
    queued: int = 0
    backfilled: int = 0
    held: int = 0
    churned: int = 0
    edits: int = 0
    """Edit deliveries queued for known posts that changed."""
    error: str | None = None
    next_poll_at: datetime | None = None


class PollObserver(Protocol):
    """Told of every poll that was recorded (``bot.services.push``: WebSub hubs, pushes during a poll)."""

    async def polled(self, state: SourceState, result: PollResult) -> None:
        """``state``: the source as the poll found it before fetching; ``result``: what it fetched."""

    def watches(self, source: str) -> bool:
        """Must a poll of ``source`` answered 304 be written at once and reported (``polled``)? False: it
        waits in the poller's buffer, and ``polled`` would do nothing with it."""


class Poller:
    """Polls sources by name. ``on_queued`` is called when deliveries were queued; ``notifier`` tells
    the admins about a burst that was held (a failure is logged, never raised); ``observer`` is told of
    each recorded poll (a failure is logged, never raised)."""

    def __init__(
        self,
        store: Store,
        sources: Mapping[str, Source],
        configs: Mapping[str, SourceConfig],
        clock: Clock,
        service: ServiceConfig,
        metrics: Metrics,
        on_queued: Callable[[], None] = lambda: None,
        notifier: Notifier | None = None,
        channel_rules: Mapping[str, Rule] | None = None,
        lifecycle: Mapping[str, ChannelLifecycle] | None = None,
        unpublisher: Unpublisher | None = None,
        observer: PollObserver | None = None,
        seen_refresh: float = 86400.0,
    ) -> None:
        self.store = store
        self.sources = sources
        self.configs = configs
        self.clock = clock
        self.service = service
        self.metrics = metrics
        self.on_queued = on_queued
        self.notifier = notifier
        self.channel_rules = dict(channel_rules or {})
        """Each channel's own exclusions (``[[channels]] exclude_tags``/``exclude_keywords``)."""
        self.lifecycle = dict(lifecycle or {})
        """Each channel's policy for edits and deletions (none: an edited post's messages are left)."""
        self.unpublisher = unpublisher
        """Checks after each poll whether recently sent posts are still on the site (None: never)."""
        self.observer = observer
        self.seen_refresh = seen_refresh
        """Seconds a known post's ``last_seen_at`` may lag (``bot.domain.retention.seen_refresh``)."""
        self.records = RecordBuffer(store, size=service.not_modified_batch, delay=service.not_modified_delay)
        """Polls answered 304, written many to a transaction (``bot.services.poll_records``)."""

    def burst_limit(self, name: str) -> int:
        """The source's own ``burst_limit``, else ``[service] burst_limit`` (0: never hold)."""
        own = self.configs[name].burst_limit
        return self.service.burst_limit if own is None else own

    def _next_poll(self, name: str, now: datetime, failures: int = 0, retry_after: float | None = None) -> datetime:
        interval = self.configs[name].interval
        delay = source_backoff(interval, failures, self.service.max_backoff) if failures else interval
        wait = source_retry_delay(jittered(delay, self.service.jitter), retry_after, self.service.max_backoff)
        return now + timedelta(seconds=wait)

    async def poll_source(self, name: str, *, force: bool = False, state: SourceState | None = None) -> PollOutcome:
        """Poll one source. Skips (outcome "skipped") while a failing source is backing off. ``state``: its
        row as the poll driver's round has just read it (None: read here)."""
        if state is None:
            state = await self.store.source(name)
        now = self.clock.now()
        if not force and state.consecutive_failures and state.next_poll_at and state.next_poll_at > now:
            return PollOutcome(name, "skipped", next_poll_at=state.next_poll_at)
        started = time.perf_counter()
        try:
            result = await self.sources[name].poll(state.cache, first_poll=not state.baseline_done)
        except SourceError as exc:
            # the reason may quote the URL; a password in it must not reach the database or `status`
            retry_after = exc.retry_after if isinstance(exc, FetchError) else None
            return await self._failed(state, redact_url(exc.reason), started, retry_after)
        now = self.clock.now()
        if isinstance(result, NotModified):
            return await self._not_modified(state, result, now, started)
        for note in result.notes:
            event(log, logging.INFO, "poll.note", source=name, note=note)
        outcome = await self._record(state, result.posts, result.cache, started)
        await self._observed(state, result)
        return outcome

    async def _not_modified(self, state: SourceState, result: NotModified, now: datetime,
                            started: float) -> PollOutcome:
        """The 304 fast path: the record waits in ``records`` to be written with others, unless a push can
        reach the source (its observer compares push counts after the write: written at once, as before)."""
        name = state.name
        next_at = self._next_poll(name, now)
        watched = self.observer is not None and self.observer.watches(name)
        if watched:
            self.records.discard(state.id)
            await self.store.record_not_modified(state.id, result.cache, now, next_at)
        else:
            await self.records.add(NotModifiedRecord(state.id, name, result.cache, now, next_at,
                                                     state.push_requests))
        self.metrics.poll(name, "not_modified")
        if log.isEnabledFor(logging.INFO):
            event(log, logging.INFO, "poll", source=name, outcome="not_modified",
                  ms=round((time.perf_counter() - started) * 1000, 1))
        if self.unpublisher is not None:
            await self.unpublisher.check(state, result.cache, None)
        if watched:
            await self._observed(state, result)
        return PollOutcome(name, "not_modified", next_poll_at=next_at)

    @property
    def unwritten(self) -> frozenset[str]:
        """Sources whose poll answered 304 and is not written yet (the poll driver leaves them out of a
        round: the database still shows them due)."""
        return self.records.unwritten

    async def flush(self, *, last: bool = False) -> None:
        """Write the polls answered 304 that wait in ``records`` (``RecordBuffer.flush``): at the start of
        a poll driver's round, at the end of a burst; ``last`` at shutdown (a failure is logged, not raised)."""
        await self.records.flush(last=last)

    async def _observed(self, state: SourceState, result: PollResult) -> None:
        if self.observer is None:
            return
        try:
            await self.observer.polled(state, result)
        except Exception as exc:  # noqa: BLE001 - the poll is recorded; what follows it must not fail it
            log.warning("after the poll of source %s: %s: %s", state.name, type(exc).__name__, exc)

    async def _record(self, state: SourceState, items: Sequence[ParsedPost], cache: CacheState,
                      started: float) -> PollOutcome:
        """Normalise once → one read of what the decision needs → the pure plan → one write."""
        rejected = self._report_rejected(state.name, items)
        # normalising and planning a big feed is CPU work proportional to it: off the event loop (health,
        # lease heartbeat)
        posts = await asyncio.to_thread(normalise, state.name, items)
        # index lookups: ∝ the poll's posts, not history
        facts = await self.store.poll_facts(state, posts, ruled_channels=self.channel_rules.keys())
        limit = self.burst_limit(state.name)
        # the rules are evaluated here, once per post, at detection (``now``): a rule changed later applies to
        # the posts detected after it
        detected = self.clock.now()
        plan = await asyncio.to_thread(plan_poll, state.name, posts, facts, first_poll=not state.baseline_done,
                                       burst_limit=limit, usual_new=state.usual_new, now=detected,
                                       channel_rules=self.channel_rules, retired_before=state.retired_before)
        now = self.clock.now()
        next_at = self._next_poll(state.name, now)
        self.records.discard(state.id)  # an older 304 of the source must not be written after this
        record = await self.store.apply_poll(state, plan, cache, now, next_at, self.lifecycle,
                                             seen_before=now - timedelta(seconds=self.seen_refresh))
        outcome = plan.outcome
        churned = len(plan.churned)
        self.metrics.poll(state.name, outcome)
        self.metrics.new_posts(state.name, 0 if plan.baseline else record.new_posts)
        event(log, logging.INFO, "poll", source=state.name, outcome=outcome, posts=len(posts),
              new=record.new_posts, queued=record.queued, held=record.held, churned=churned,
              backfilled=record.backfilled, **({"filtered": len(plan.drops)} if plan.drops else {}),
              **({"rejected": rejected} if rejected else {}),
              ms=round((time.perf_counter() - started) * 1000, 1))
        if record.edited:
            event(log, logging.INFO, "poll.edited", source=state.name, posts=record.edited, edits=record.edits,
                  note="known posts changed on the site; their messages are updated where the channel wants it")
        if plan.returned:
            event(log, logging.WARNING, "poll.returned", source=state.name, posts=len(plan.returned),
                  retired_before=state.retired_before.isoformat() if state.retired_before else None,
                  note="posts dated before the identities retention removed came back: recorded, not sent "
                       "(they may have been sent before; [storage.retention] identity)")
        if churned:
            event(log, logging.WARNING, "poll.guid_churn", source=state.name, churned=churned,
                  note="guids change between polls; identity falls back to the link")
        if record.held:
            event(log, logging.WARNING, "poll.burst_held", source=state.name, new=record.new_posts,
                  held=record.held, limit=limit, action=f"tagrelay hold release|drop {state.name}")
            if record.hold_started:
                await self._announce(state.name, f"Source {state.name}: {plan.hold_note} (or here: /hold release "
                                                 f"{state.name}, /hold drop {state.name}).")
        if record.queued or record.backfilled or record.edits:
            self.on_queued()
        if self.unpublisher is not None and not plan.baseline:
            await self.unpublisher.check(state, cache, posts)
        return PollOutcome(state.name, outcome, posts=len(posts), new_posts=record.new_posts,
                           queued=record.queued, backfilled=record.backfilled, held=record.held,
                           churned=churned, next_poll_at=next_at, edits=record.edits)

    async def _announce(self, source: str, text: str) -> None:
        if self.notifier is None:
            return
        try:
            await self.notifier.notify(text)
        except Exception:  # noqa: BLE001 - a failing admin chat must not fail the poll (already recorded)
            log.warning("could not notify admins about the burst held on source %s", source)

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

    async def _failed(self, state: SourceState, reason: str, started: float,
                      retry_after: float | None = None) -> PollOutcome:
        now = self.clock.now()
        failures = state.consecutive_failures + 1
        next_at = self._next_poll(state.name, now, failures, retry_after)
        if retry_after is not None and retry_after > self.service.max_backoff:
            reason = f"{reason} (waiting {self.service.max_backoff:.0f}s: service.max_backoff caps it)"
        self.records.discard(state.id)
        await self.store.record_poll_failure(state.id, reason, now, next_at)
        self.metrics.poll(state.name, "error")
        event(log, logging.WARNING, "poll", source=state.name, outcome="error", error=reason,
              failures=failures, retry_in=round((next_at - now).total_seconds()),
              ms=round((time.perf_counter() - started) * 1000, 1))
        return PollOutcome(state.name, "error", error=reason, next_poll_at=next_at)
