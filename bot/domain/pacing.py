"""Client-side pacing: token buckets, pure (time is passed in, in seconds)."""

from __future__ import annotations

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


def parse_rate(text: str) -> tuple[float, float]:
    """``"20/min"``, ``"1/s"``, ``"300/5min"``, ``"100/15m"`` → (count, seconds)."""
    count_s, _, period_s = text.replace(" ", "").partition("/")
    if not count_s or not period_s:
        raise ValueError(f"{text!r} is not a rate (use e.g. '1/s', '20/min', '300/5min')")
    count = float(count_s)
    units = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600,
             "d": 86400, "day": 86400}
    digits = "".join(ch for ch in period_s if ch.isdigit() or ch == ".")
    unit = period_s[len(digits):]
    if unit not in units:
        raise ValueError(f"{text!r}: unknown time unit {unit!r}")
    seconds = (float(digits) if digits else 1.0) * units[unit]
    if count <= 0 or seconds <= 0:
        raise ValueError(f"{text!r}: count and period must be positive")
    return count, seconds
