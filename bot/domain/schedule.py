"""Pure timing decisions: poll jitter, failing-source backoff, delivery retries, shared-mode fair share."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

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
