"""Pure timing decisions: poll jitter, failing-source backoff, delivery retries, shared-mode fair share, and
the start-up spread of overdue sources (each source's stable ``phase``, ``spread_overdue``).

Steady state needs no grid: a poll's next time is ``now + jittered(interval)`` (``Poller._next_poll``).
Started spread, the sources stay spread: three intervals after a spread start no window of a tenth of
the interval holds more than twice its share (``tests/unit/test_herd.py`` simulates it; the ±10 %
jitter is a random walk of the sources' offsets around an even start, which smooths it rather than
clumping it). What clumps is a start with every source at once (then ±10 % only widens the clump to
a fifth of the interval, for many intervals): that is what ``spread_overdue`` removes.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

_MAX_DOUBLINGS = 64
"""Doublings past which a backoff stops growing: 2**64 times the smallest base (0.1 s) is beyond any cap."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter, bounded attempts."""

    base: float = 30.0
    cap: float = 3600.0
    max_attempts: int = 8

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return self.delay_for(attempt, (rng or random).random())

    def delay_for(self, attempt: int, jitter: float) -> float:
        """``delay`` with the randomness given: ``jitter`` is a uniform draw in [0, 1) (0: half the
        ceiling, the shortest wait; towards 1: the whole ceiling)."""
        doublings = min(max(0, attempt - 1), _MAX_DOUBLINGS)
        ceiling = min(self.cap, self.base * 2.0 ** doublings)
        return float(ceiling / 2 + ceiling / 2 * min(1.0, max(0.0, jitter)))

    def exhausted(self, attempts: int) -> bool:
        return attempts >= self.max_attempts


def jittered(interval: float, fraction: float = 0.1, rng: random.Random | None = None) -> float:
    """``interval`` ± ``fraction``, so sources on one interval do not poll in lockstep."""
    r = rng or random
    return float(max(1.0, interval * (1 + r.uniform(-fraction, fraction))))


def source_backoff(interval: float, failures: int, cap: float = 6 * 3600.0) -> float:
    """Delay before the next poll of a source that failed ``failures`` times in a row."""
    if failures <= 0:
        return interval
    return float(min(cap, max(interval, interval * (2 ** min(failures, 16) / 2))))


def source_retry_delay(backoff: float, retry_after: float | None, cap: float) -> float:
    """Delay before polling a failed source again: its (jittered) ``backoff``, or the source's own
    ``Retry-After`` when that is longer, but never more than ``cap`` (``service.max_backoff``).
    A missing, zero, negative or non-finite ``retry_after`` leaves the backoff alone."""
    if retry_after is None or not math.isfinite(retry_after) or retry_after <= backoff:
        return backoff
    return max(backoff, min(retry_after, cap))


def fair_share(due: int, live: int, concurrency: int) -> int:
    """How many of ``due`` channels one of ``live`` instances sends to at a time (at least 1, at most
    ``concurrency``): the smallest number that, taken by every live instance, covers them all."""
    if due <= 0:
        return 0
    return max(1, min(concurrency, -(-due // max(1, live))))


def phase(name: str) -> float:
    """A source's stable place in its interval, in [0, 1): from a BLAKE2b hash of its name, so it is the
    same in every process, on every instance and after every restart (Python's ``hash`` of a string is
    salted per process)."""
    digest = hashlib.blake2b(name.encode("utf-8"), digest_size=8, person=b"tagrelay-phase").digest()
    return int.from_bytes(digest, "big") / 2.0**64


def spread_overdue(overdue: Mapping[str, float], *, now: datetime, ramp_after: int) -> dict[str, datetime]:
    """When each overdue source becomes due, at start-up: ``overdue`` maps the sources found overdue
    (never polled, or their ``next_poll_at`` passed) to their intervals in seconds.

    ``ramp_after`` of them or fewer: ``{}``, nothing changes (a small install polls everything due at once,
    as before). More: each source gets a time within one interval of ``now``, so their first polls spread
    over the interval instead of all coming at once. The sources sharing an interval are ordered by
    ``phase`` and take evenly spaced slots: the k-th of n is due at ``now + interval * k / n``. (A time of
    ``now + phase * interval`` alone is as stable but random-spaced: 10,000 sources over 600 s would put
    30 into the fullest second for an average of 16.7; the slots never put more than
    ``ceil(n / interval) + 1`` into any second.) Phases are stable, so a restart that finds the same
    sources overdue spreads them the same way.
    """
    if len(overdue) <= ramp_after:
        return {}
    groups: dict[float, list[str]] = {}
    for name, interval in overdue.items():
        groups.setdefault(interval, []).append(name)
    times: dict[str, datetime] = {}
    for interval, names in groups.items():
        names.sort(key=lambda n: (phase(n), n))
        step = interval / len(names)
        for k, name in enumerate(names):
            times[name] = now + timedelta(seconds=k * step)
    return times
