"""Pure decisions of the runtime's two drivers: which sources are due, which of them start (per host),
when to wake, which channels to start.

The database says what is due (``sources.next_poll_at``; the deliveries' ``next_attempt_at``), the
coordinator says what this instance may take; these functions turn what was read into the decision,
so the drivers only do the I/O around them. No clock, no database: everything comes in as arguments.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from bot.domain.schedule import fair_share

ROUND_GAP = 1.0
"""Seconds: the shortest time from one round to a timed wake for the next. 10,000 sources on a 10-minute
interval fall due every 60 ms; a round for each would read and claim 17 times a second. A wake planned
sooner than this comes this long after the round instead, and the sources due meanwhile start together.
A poll starts late by at most this much, never early (a push's ``min_gap`` and a ``Retry-After`` are "no
sooner than")."""
LEASED_RECHECK = 0.25
"""Seconds before a poll round tries again sources that were due but that no slot-free instance could take
(another instance is polling them): not a tight loop, and not a whole interval either."""


@dataclass(frozen=True, slots=True)
class PollPlan:
    """What one poll round found: the sources due now (longest overdue first, never polled before them)
    and the earliest time another one becomes due (None: none is scheduled)."""

    due: tuple[str, ...]
    next_at: datetime | None


def plan_polls(rows: Mapping[str, datetime | None], enabled: Mapping[str, int], *, busy: Collection[str],
               resting: Mapping[str, datetime], now: datetime, later: datetime | None = None) -> PollPlan:
    """Which sources are due at ``now``.

    ``rows``: the stored ``next_poll_at`` of the sources the round read (None: never polled, or its URL
    changed, so due at once). The round reads only the sources due by ``now`` (``Store.due_sources``) and
    ``later``, the earliest stored time after it; a row that is not due yet only adds its time to the
    wake. Only sources in ``enabled`` (name → position in the configuration) count. ``busy``: sources
    being polled right now (neither due nor a wake time: their poll writes a new ``next_poll_at``).
    ``resting``: sources whose last poll broke unexpectedly, due again no sooner than the time given (a
    bug must not turn into a tight loop on one source). Cost: the rows read, not the sources configured.
    """
    due: list[tuple[datetime | None, int, str]] = []
    wakes: list[datetime] = [] if later is None else [later]
    for name, at in rows.items():
        index = enabled.get(name)
        if index is None or name in busy:
            continue
        rest = resting.get(name)
        if rest is not None and rest > now:
            at = rest if at is None else max(at, rest)
        if at is None or at <= now:
            due.append((at, index, name))
        else:
            wakes.append(at)
    # never-polled first, then the longest overdue, then config order: a stable, fair order
    due.sort(key=lambda d: (d[0] is not None, d[0] or now, d[1]))
    return PollPlan(tuple(name for _, _, name in due), min(wakes) if wakes else None)


def host_of(url: str) -> str | None:
    """The host a source's URL is fetched from, lower-case (None: a local file, or no host)."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https"):
        return None
    return parts.hostname or None


def take_by_host(due: Sequence[str], hosts: Mapping[str, str | None], running: Mapping[str, int], *,
                 per_host: int, limit: int) -> list[str]:
    """Which of the ``due`` sources (in their order) to start now: at most ``limit``, and never a poll that
    would make more than ``per_host`` run against one host (``running``: the polls in flight per host;
    ``hosts``: each source's host, None or missing: no host limit, a local file). A source whose host is
    saturated is passed over, not dropped: the sources behind it, on other hosts, start meanwhile, and it
    is due again in the round after one of its host's polls ends. Within a host, the order is kept."""
    taken: list[str] = []
    if limit <= 0:
        return taken
    counts: dict[str, int] = {}
    for name in due:
        host = hosts.get(name)
        if host is not None:
            now_running = running.get(host, 0) + counts.get(host, 0)
            if now_running >= per_host:
                continue
            counts[host] = counts.get(host, 0) + 1
        taken.append(name)
        if len(taken) >= limit:
            break
    return taken


def poll_wake(plan: PollPlan, *, taken: int, free: int, now: datetime, recheck: float | None,
              gap: float = 0.0) -> datetime | None:
    """When the poll driver should look again, after a round that took ``taken`` of ``plan.due`` with
    ``free`` slots (``[http] concurrency`` minus the polls in flight) before it.

    - due sources left over because every slot is busy: no timed wake for them (a finishing poll wakes
      the driver);
    - due sources left over with slots free: another instance holds them; ``LEASED_RECHECK`` seconds;
    - otherwise the earliest ``next_poll_at`` to come, but no sooner than ``gap`` (``ROUND_GAP``) after
      ``now``: the sources due within it start together, in the round then;
    - ``recheck`` (several instances: others change what is due without waking this one) caps the wait.
    None: nothing to wake for until a poll ends or something wakes the driver.
    """
    at = plan.next_at
    if at is not None and gap > 0:
        at = max(at, now + timedelta(seconds=gap))
    if len(plan.due) > taken and free > taken:
        soon = now + timedelta(seconds=LEASED_RECHECK)
        at = soon if at is None else min(at, soon)
    if recheck is not None:
        cap = now + timedelta(seconds=recheck)
        at = cap if at is None else min(at, cap)
    return at


def round_after_poll(next_poll_at: datetime | None, *, wake: datetime | None, starved: bool,
                     in_round: bool) -> bool:
    """Does a poll that just ended (and recorded ``next_poll_at``) need a round of the poll driver now?

    A round reads the schedule and claims; after every finished poll it costs two statements for nothing
    when nothing it would decide has changed. It is needed when:

    - ``starved``: the last round left due sources for lack of a free slot, and one is free now;
    - ``in_round``: a round is running; it read the schedule while this source was still being polled,
      so the wake it plans knows nothing of the new ``next_poll_at``;
    - the poll recorded no next time (``None``: it broke, nothing was written);
    - there is no timed wake (``wake`` None), or the new time comes before it.

    Otherwise the timed wake comes first, and the round it brings reads the new time.
    """
    if starved or in_round or next_poll_at is None or wake is None:
        return True
    return next_poll_at < wake


def channels_to_start(due: Sequence[str], running: Collection[str], resting: Mapping[str, float], *,
                      limit: int, clock: float) -> list[str]:
    """Which due channels the delivery dispatcher starts a run for now: those without a run, not resting
    (``resting``: channel → ``clock`` value until which it is left alone: its lease is held elsewhere, its
    last run failed or found nothing), in the given order, while fewer than ``limit`` runs are going."""
    idle = [n for n in due if n not in running and resting.get(n, 0.0) <= clock]
    return idle[:max(0, limit - len(running))]


def channel_limit(busy: int, live: int, concurrency: int) -> int:
    """How many channels one instance sends to at once when ``busy`` channels are due or being sent to and
    ``live`` instances share them: ``concurrency`` alone (or with one channel), else the fair share."""
    if busy <= 1 or live <= 1:
        return concurrency
    return fair_share(busy, live, concurrency)
