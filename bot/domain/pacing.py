"""Client-side pacing: token buckets, pure (time is passed in, in seconds)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field


def bucket_shape(count: float, period: float) -> tuple[float, float]:
    """Burst size and refill rate for "at most ``count`` in ANY window of ``period`` seconds".

    A plain bucket of capacity N refilled at N/period lets through up to 2N in one
    window (a full burst, then a full refill). Here the burst is a quarter of N
    (at least 1) and the refill rate is what remains of N over the period, so a
    burst plus a window's refill never exceeds N. With N = 1 it is even spacing.
    """
    if count < 2:
        return 1.0, 1.0 / period
    burst = max(1.0, float(int(count // 4)))
    return burst, (count - burst) / period


def reserve(tokens: float, stamp: float, now: float, burst: float, rate: float) -> tuple[float, float, float]:
    """Take one token. Returns (tokens, stamp, wait): the new state and the seconds to wait.

    Reservations queue up: tokens may go negative, and each caller waits until
    its own token has refilled, so two callers never get the same slot.
    """
    if now > stamp:
        tokens = min(burst, tokens + (now - stamp) * rate)
        stamp = now
    tokens -= 1
    wait = 0.0 if tokens >= 0 else -tokens / rate
    return tokens, stamp, wait


def take_if_free(tokens: float, stamp: float, now: float, burst: float, rate: float) -> tuple[float, float, float]:
    """Take one token only if one is there now. Returns (tokens, stamp, wait): the new state and 0, or
    the unchanged (refilled) state and the seconds until a token is there.

    Unlike ``reserve`` nothing queues: a refused caller takes nothing and asks again later, so asking
    again at the time it was told is granted (a queued reservation would be taken by the asking itself).
    For attempts that must not be made early at all (a platform login), not for pacing sends.
    """
    if now > stamp:
        tokens = min(burst, tokens + (now - stamp) * rate)
        stamp = now
    if tokens >= 1 - 1e-9:  # a token refilled to the second may be a hair short in floating point
        return max(0.0, tokens - 1), stamp, 0.0
    return tokens, stamp, (1 - tokens) / rate


@dataclass(slots=True)
class TokenBucket:
    """In-memory limiter: at most ``count`` acquisitions in any window of ``per`` seconds."""

    count: float
    per: float
    _burst: float = field(init=False)
    _rate: float = field(init=False)
    _tokens: float = field(init=False)
    _stamp: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.count <= 0 or self.per <= 0:
            raise ValueError("count and period must be positive")
        self._burst, self._rate = bucket_shape(self.count, self.per)
        self._tokens = self._burst

    def reserve(self, now: float) -> float:
        """Take a token; return how long to wait before using it (0: now)."""
        stamp = now if self._stamp is None else self._stamp
        self._tokens, self._stamp, wait = reserve(self._tokens, stamp, now, self._burst, self._rate)
        return wait


RATE_SYNTAX = "use e.g. '1/s', '20/min', '300/5min': a whole count, '/', an optional length and a unit " \
              "(s, min, h, d)"
"""How a rate is written, for error messages."""

_RATE = re.compile(r"(\d{1,9})/(\d{1,9}(?:\.\d{1,6})?)?(s|sec|second|m|min|minute|h|hour|d|day)", re.ASCII)
_UNITS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600,
          "d": 86400, "day": 86400}


def parse_rate(text: str) -> tuple[float, float]:
    """``"20/min"``, ``"1/s"``, ``"300/5min"``, ``"100/15m"`` → (count, seconds), both above zero.

    Anything else (``"lots"``, ``"0/s"``, ``"-1/m"``, ``"1e309/s"``, ``"1.5/s"``) raises ``ValueError``
    quoting the text and ``RATE_SYNTAX``.
    """
    shown = repr(text[:40] + "…") if len(text) > 40 else repr(text)
    match = _RATE.fullmatch(text.replace(" ", "")) if len(text) <= 64 else None
    if match is None:
        raise ValueError(f"{shown} is not a rate ({RATE_SYNTAX})")
    count_s, length_s, unit = match.groups()
    count, seconds = float(count_s), (float(length_s) if length_s else 1.0) * _UNITS[unit]
    if count <= 0 or seconds <= 0:
        raise ValueError(f"{shown} is not a rate: the count and the window must be above zero ({RATE_SYNTAX})")
    return count, seconds
