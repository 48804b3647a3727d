"""The one poll driver: ``run`` (the service) and ``run --once`` (burst) go through the same round.

A round reads from the database only the sources due (``Store.due_sources``: ``next_poll_at`` passed, or
never polled; names and times, not whole rows) and the earliest ``next_poll_at`` to come, at most once per
``ROUND_GAP`` while a backlog from the last read is left (see ``round``); ``Poller._next_poll`` is the one
place that decides a next poll time.
It lets the coordinator take the due sources (``Coordinator.claim_sources``: all of them on SQLite, the
unleased ones on PostgreSQL) up to the free ``[http] concurrency`` slots, never more than ``[http]
per_host`` against one host, and starts their polls, handing each its row (``Store.source_states``: one
read for the polls a round starts, not one per poll). It then knows when to wake next
(``bot.domain.runtime``: the earliest time to come, but no sooner than ``ROUND_GAP`` after the round, so
polls due milliseconds apart start in one round instead of one round each). In the service,
``bot.scheduling.WakeTimer`` (APScheduler, one job) wakes the driver then; a poll that ends wakes it too
when a round could decide something new (``round_after_poll``: due sources were waiting for its slot or
its host, a round was running meanwhile, the poll broke, or its next time comes before the planned
wake). A restart therefore polls only the sources whose time has come, not every source at once.

**Start-up spread.** The first round of ``run`` (and the first after a round that could not read the
database) looks at how many sources are overdue. More than ``[service] ramp_after``: they are spread over
their interval (``bot.domain.schedule.spread_overdue``, by each source's stable phase) and the spread times
are written to ``sources.next_poll_at`` in one transaction (``Store.spread_polls``), so other instances
and a restart after a crash mid-ramp see them. Only those rounds: a running service that falls behind
(more due than its slots) works off its backlog oldest first, since spreading it again on every round
would push the same sources back for ever. ``ramp_after`` or fewer overdue: polled at once, as before.

**Per host.** A poll that waits for a connection inside the HTTP client's pool (aiohttp's
``limit_per_host``) holds one of the ``concurrency`` slots and burns its own timeout while another
host's due source could have run; the driver instead starts no poll whose host already has ``per_host``
running (``take_by_host``) and starts the other hosts' sources meanwhile; the source that waits is
started in the round after one of its host's polls ends (it is not put off for an interval). The host is
that of the source's configured URL, or of the URL discovery resolved it to once the round read it.

``burst`` is ``run --once``: rounds with ``force`` (every enabled source once, due or not, as the
documented ``--once`` does; no spread) until none is left to take and none is running; it returns the
outcomes.

Polls answered 304 are written by the ``Poller`` many to a transaction (``bot.services.poll_records``);
the driver has it write them at the start of each (unforced) round, before the schedule is read, at the
end of ``burst`` and in ``drain`` (the lines marked "fastpoll").
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Protocol

from bot.domain.runtime import (
    ROUND_GAP,
    PollPlan,
    host_of,
    plan_polls,
    poll_wake,
    round_after_poll,
    take_by_host,
)
from bot.domain.schedule import spread_overdue
from bot.domain.state import DueSource, SourceState
from bot.log import event
from bot.publishers.api import Clock
from bot.services.coordinator import Coordinator
from bot.services.polling import Poller, PollOutcome
from bot.storage.store import Store

log = logging.getLogger("tagrelay.scheduler")

RETRY_ROUND = 5.0
"""Seconds before a round that could not read the database (or claim) is tried again."""
BACKLOG_WINDOW = 4
"""A round taken from the backlog looks at this many times ``concurrency`` of its first due sources (more
than the free slots, so that ``per_host`` can pass over some)."""


class Timer(Protocol):
    """What wakes the driver on time (``bot.scheduling.WakeTimer``)."""

    def wake_in(self, seconds: float | None) -> None:
        """Wake the driver in ``seconds`` (replacing any earlier wake); None: no timed wake."""


class PollDriver:
    """Polls the due sources this instance may take, at most ``concurrency`` at a time and ``per_host``
    against one host; spreads the overdue ones at start-up when more than ``ramp_after``."""

    def __init__(self, store: Store, poller: Poller, coordinator: Coordinator, clock: Clock, *,
                 names: Sequence[str], intervals: Mapping[str, float], concurrency: int,
                 urls: Mapping[str, str] | None = None, per_host: int | None = None,
                 ramp_after: int | None = None) -> None:
        self.store = store
        self.poller = poller
        self.coordinator = coordinator
        self.clock = clock
        self.names = list(names)
        """The enabled sources, in config order."""
        self._order = {name: i for i, name in enumerate(self.names)}
        self.intervals = dict(intervals)
        self.concurrency = max(1, concurrency)
        self.per_host = self.concurrency if per_host is None else max(1, per_host)
        """At most this many polls against one host at a time (``[http] per_host``)."""
        self.ramp_after = ramp_after
        """More sources overdue than this at start-up are spread over their interval (None: never)."""
        self.hosts: dict[str, str | None] = {name: host_of(url) for name, url in (urls or {}).items()}
        """Each source's host, from its configured URL; a resolved URL's host replaces it once read."""
        self._host_polls: dict[str, int] = {}
        """Polls in flight per host."""
        self._polling_host: dict[str, str] = {}
        """The host each poll in flight counts against."""
        self._ramp_pending = False
        """The next round of ``run`` looks at the start-up spread (its first, or the first after a failure)."""
        self._backlog: dict[str, None] = {}
        """The due sources the last round left for lack of a slot, in order (taken before reading again)."""
        self._read_at: datetime | None = None
        """When a round last read what is due."""
        self._backlog_later: datetime | None = None
        """The earliest time to come, as of that read."""
        self._gap = timedelta(seconds=ROUND_GAP)
        self.spread = 0
        """Sources the last start-up spread moved (0: none)."""
        self.wake = asyncio.Event()
        """Set to make the driver run a round now (a poll ended, the timer fired, a test or ``force``)."""
        self.running = False
        self.next_wake: datetime | None = None
        """When the last round asked to be woken (None: only when a poll ends)."""
        self.rounds = 0
        self._starved = False
        """The last round left due sources for lack of a free slot (a poll that ends frees one)."""
        self._in_round = False
        self._inflight: dict[str, asyncio.Task[PollOutcome]] = {}
        self._resting: dict[str, datetime] = {}
        self._draining = False
        self._bursting = False
        self._ended_polls: list[asyncio.Task[PollOutcome]] = []
        """Burst: the polls that ended since it last looked."""
        self._poll_ended = asyncio.Event()

    @property
    def in_flight(self) -> frozenset[str]:
        """The sources being polled right now."""
        return frozenset(self._inflight)

    # -- one round --------------------------------------------------------------------------------------

    async def round(self, *, force: bool = False, only: Collection[str] | None = None) -> list[str]:
        """Start the polls this round may: the due sources (``force``: every one of ``only``, in its order,
        or of all enabled sources) that the coordinator lets this instance take, within the free slots and
        ``per_host``. Returns the sources started; ``next_wake`` says when the next round is due.

        A round reads what is due at most once per ``ROUND_GAP``: a round that follows a poll's end sooner
        than that, while due sources are left over from the last read (more due than slots: a backlog),
        takes them from that read instead of reading again. With thousands due (a start-up, a slow
        machine) a read per poll end would cost the backlog's size per poll."""
        self._in_round = True
        try:
            if not force:  # (fastpoll) a 304 still in the poller's buffer would look due: written first
                await self.poller.flush()
            now = self.clock.now()
            free = self.concurrency - len(self._inflight)
            plan: PollPlan | None = None
            read = False
            if force:
                pool = self.names if only is None else only
                busy = self._inflight.keys()
                # a burst passes the names whose poll has not started (a set-like view): none is busy, and
                # telling so costs a look per busy source, not one per name left (a burst rounds per poll)
                candidates: Sequence[str] = list(pool) if busy.isdisjoint(pool) else [
                    n for n in pool if n not in busy]
            else:
                # (fastpoll) a poll that ended during the read is not written yet: busy (a round follows it)
                occupied = self._inflight.keys() | self.poller.unwritten
                if (self._backlog and not self._ramp_pending and self._read_at is not None
                        and now - self._read_at < self._gap):
                    # the head of the backlog (cost ∝ the slots, not the backlog); per_host may pass over some
                    window = (n for n in self._backlog if n not in occupied)
                    plan = PollPlan(tuple(itertools.islice(window, BACKLOG_WINDOW * self.concurrency)),
                                    self._backlog_later)
                else:
                    plan, read = await self._read_due(now, occupied), True
                candidates = plan.due
            wanted = take_by_host(candidates, self.hosts, self._host_polls, per_host=self.per_host, limit=free)
            taken: list[str] = []
            if wanted:
                taken = await self.coordinator.claim_sources(wanted, now, limit=free, force=force)
            # each poll starts from its row, read here for the few started (a burst's polls read their own)
            states = {} if force else await self.store.source_states(taken)
            for name in taken:
                self._start(name, force=force, state=states.get(name))
            if plan is not None:
                if read:
                    self._backlog = dict.fromkeys(candidates)  # the whole due list, in its order
                for name in taken:
                    self._backlog.pop(name, None)
            # due sources left for lack of a slot (or of one on their host): the next poll to end starts them
            # (the ones the coordinator refused stay in the backlog but wait for its recheck, not for a slot)
            refused = len(wanted) - len(taken)
            self._starved = (len(self._backlog) > refused if plan is not None
                             else len(candidates) > len(wanted))
            if plan is not None:
                # the sources the coordinator refused (another instance holds them) are rechecked soon; the
                # ones passed over for a slot wait for a poll to end (``_starved``), not for a timer
                self.next_wake = poll_wake(PollPlan(tuple(wanted), plan.next_at), taken=len(taken),
                                           free=len(wanted), now=now, recheck=self.coordinator.recheck,
                                           gap=ROUND_GAP)
            self.rounds += 1
            return taken
        finally:
            self._in_round = False

    async def _read_due(self, now: datetime, occupied: Collection[str]) -> PollPlan:
        """Read what is due (``Store.due_sources``), spread it at start-up, note the resolved hosts, and plan."""
        read = await self.store.due_sources(now)
        rows = {r.name: r for r in read.rows if r.name in self._order}
        later = read.next_at
        if self._ramp_pending:
            later = await self._spread(rows, now, later)
            self._ramp_pending = False
        for row in rows.values():
            if row.resolved_url:
                self.hosts[row.name] = host_of(row.resolved_url) or self.hosts.get(row.name)
        plan = plan_polls({n: r.next_poll_at for n, r in rows.items()}, self._order, busy=occupied,
                          resting=self._resting, now=now, later=later)
        self._read_at, self._backlog_later = now, plan.next_at
        return plan

    async def _spread(self, states: dict[str, DueSource], now: datetime, later: datetime | None
                      ) -> datetime | None:
        """The start-up spread (see the module docstring): the overdue sources of ``states`` spread over
        their interval when there are more than ``ramp_after``, written in one transaction; the moved
        sources whose new time is still to come leave ``states``. Returns the earliest time to come."""
        if self.ramp_after is None:
            return later
        overdue = {n: self.intervals.get(n, 60.0) for n, s in states.items()
                   if n not in self._inflight and (s.next_poll_at is None or s.next_poll_at < now)}
        times = spread_overdue(overdue, now=now, ramp_after=self.ramp_after)
        if not times:
            return later
        await self.store.spread_polls(times, now)
        self.spread = len(times)
        for name, at in times.items():
            if at > now:
                del states[name]
                later = at if later is None else min(later, at)
            else:
                states[name] = replace(states[name], next_poll_at=at)
        event(log, logging.INFO, "poll.spread", sources=len(times), ramp_after=self.ramp_after,
              note="more sources overdue at start-up than ramp_after: their polls are spread over their interval")
        return later

    def _start(self, name: str, *, force: bool, state: SourceState | None = None) -> None:
        host = self.hosts.get(name)
        if host is not None:
            self._host_polls[host] = self._host_polls.get(host, 0) + 1
            self._polling_host[name] = host
        task = asyncio.create_task(self._poll(name, force=force, state=state), name=f"poll:{name}")
        self._inflight[name] = task
        task.add_done_callback(functools.partial(self._ended, name))

    def _ended(self, name: str, task: asyncio.Task[PollOutcome]) -> None:
        self._inflight.pop(name, None)
        host = self._polling_host.pop(name, None)
        if host is not None:
            left = self._host_polls.get(host, 1) - 1
            if left > 0:
                self._host_polls[host] = left
            else:
                self._host_polls.pop(host, None)
        if self._bursting:
            self._ended_polls.append(task)
            self._poll_ended.set()
        failure = None if task.cancelled() else task.exception()
        outcome = None if task.cancelled() or failure is not None else task.result()
        # a slot is free and the source has a new next_poll_at: a round only when it could decide something
        # (a skipped poll wrote nothing and gave its lease back: a round too)
        if outcome is None or outcome.outcome == "skipped" or round_after_poll(
                outcome.next_poll_at, wake=self.next_wake, starved=self._starved, in_round=self._in_round):
            self.wake.set()
        if not self._bursting and failure is not None:
            # a bug must not stop the polling; it is logged with its traceback (``burst`` raises it instead)
            log.error("poll job for source %s failed unexpectedly", name, exc_info=failure)

    async def _poll(self, name: str, *, force: bool, state: SourceState | None) -> PollOutcome:
        outcome: PollOutcome | None = None
        try:
            outcome = await self.poller.poll_source(name, force=force, state=state)
            self._resting.pop(name, None)
            return outcome
        except asyncio.CancelledError:
            if self._draining:
                # stopping, and the poll outlived the grace period: its transaction rolls back, nothing is lost
                log.warning("poll of source %s abandoned at shutdown; it runs again on the next start", name)
            raise
        except Exception:
            # nothing was recorded, so its next_poll_at is still in the past: rest a whole interval first
            self._resting[name] = self.clock.now() + timedelta(seconds=self.intervals.get(name, 60.0))
            raise
        finally:
            if outcome is None or outcome.outcome == "skipped":
                # no record was written, so a lease on it is still ours: give it back now
                with contextlib.suppress(Exception):
                    await self.coordinator.release_sources([name])

    # -- run --once ---------------------------------------------------------------------------------------

    async def burst(self) -> list[PollOutcome]:
        """Poll every enabled source once (those this instance may take), then return the outcomes in
        config order. A poll that broke (a bug, the database) is raised once the others have ended."""
        pending = dict.fromkeys(self.names)  # in config order; a name leaves it when its poll starts
        outcomes: dict[str, PollOutcome] = {}
        failure: BaseException | None = None
        self._bursting = True
        self._ended_polls.clear()
        try:
            while failure is None:
                for name in await self.round(force=True, only=pending.keys()):
                    del pending[name]
                if not self._inflight and not self._ended_polls:
                    break
                if not self._ended_polls:  # until a poll ends (``_ended`` says so: no wait over every task)
                    self._poll_ended.clear()
                    await self._poll_ended.wait()
                failure = _collect(self._take_ended(), outcomes)
            if self._inflight:  # one broke: the others end first
                await asyncio.wait(list(self._inflight.values()))
            failure = failure or _collect(self._take_ended(), outcomes)
        except BaseException:
            running = list(self._inflight.values())
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            raise
        finally:
            self._bursting = False
            self._ended_polls.clear()
        # (fastpoll) every 304 of the burst is written before it returns
        if failure is not None:
            with contextlib.suppress(Exception):  # kept and logged; written by a later flush (App.aclose's)
                await self.poller.flush()
            raise failure
        await self.poller.flush()
        return [outcomes[n] for n in self.names if n in outcomes]

    def _take_ended(self) -> list[asyncio.Task[PollOutcome]]:
        ended, self._ended_polls = self._ended_polls, []
        return ended

    # -- run ----------------------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, timer: Timer) -> None:
        """Rounds whenever woken (the timer, a poll ending), until ``stop``. Polls still running are left
        to ``drain``."""
        self.running = True
        self._ramp_pending = True  # the first round looks at how many are overdue: spread them if too many
        self.wake.set()  # the first round at once: the database says what is due since the last run
        try:
            while not stop.is_set():
                await _first(self.wake, stop)
                if stop.is_set():
                    break
                self.wake.clear()
                try:
                    await self.round()
                except Exception as exc:  # noqa: BLE001 - a database blip must not stop the service
                    log.warning("could not start the due polls: %s: %s", type(exc).__name__, exc)
                    self.next_wake = self.clock.now() + timedelta(seconds=RETRY_ROUND)
                    self._ramp_pending = True  # nothing was polled meanwhile: a backlog may have built up
                wait = None if self.next_wake is None else (self.next_wake - self.clock.now()).total_seconds()
                timer.wake_in(None if wait is None else max(0.0, wait))
        finally:
            self.running = False

    async def drain(self, timeout: float) -> None:
        """Start no more polls (``run`` has ended); wait up to ``timeout`` seconds for the running ones,
        then cancel the rest (their transactions roll back, nothing is lost)."""
        self._draining = True
        running = list(self._inflight.values())
        if running:
            _, pending = await asyncio.wait(running, timeout=timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)  # failures were logged as they ended
        await self.poller.flush(last=True)  # (fastpoll) the polls answered 304; a failure is logged, not raised


def _collect(done: Iterable[asyncio.Task[PollOutcome]], outcomes: dict[str, PollOutcome]) -> BaseException | None:
    """Outcomes of finished polls into ``outcomes``; the first failure, if any."""
    failure: BaseException | None = None
    for task in done:
        if task.cancelled():
            continue
        exc = task.exception()
        if exc is not None:
            failure = failure or exc
            continue
        result = task.result()
        outcomes[result.source] = result
    return failure


async def _first(*events: asyncio.Event) -> None:
    """Until any of ``events`` is set."""
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
