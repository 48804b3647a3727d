"""Client-side pacing: token buckets, pure (time is passed in, in seconds)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class TokenBucket:
    """``capacity`` tokens refilled at ``capacity / per`` per second.

    ``reserve(now)`` takes a token and returns how long the caller must wait
    before using it (0 when one is available now). Reservations queue up: two
    callers never get the same slot.
    """

    capacity: float
    per: float
    _tokens: float = field(init=False)
    _stamp: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.capacity <= 0 or self.per <= 0:
            raise ValueError("capacity and period must be positive")
        self._tokens = self.capacity

    @property
    def rate(self) -> float:
        return self.capacity / self.per

    def _refill(self, now: float) -> None:
        if self._stamp is None:
            self._stamp = now
            return
        elapsed = max(0.0, now - self._stamp)
        self._tokens = min(self.capacity, self._tokens + elapsed * self.rate)
        self._stamp = now

    def reserve(self, now: float) -> float:
        self._refill(now)
        self._tokens -= 1
        if self._tokens >= 0:
            return 0.0
        return -self._tokens / self.rate

    def peek(self, now: float) -> float:
        """Delay a reservation would get now, without taking a token."""
        self._refill(now)
        return 0.0 if self._tokens >= 1 else (1 - self._tokens) / self.rate


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
