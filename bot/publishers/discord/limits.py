"""Discord's rate limits as the answers' headers state them, and a cap on invalid requests.

Discord does not publish fixed numbers (docs.discord.com, "Rate Limits": "do not hard-code
limits, follow the headers"). Every answer carries the state of its **bucket**:
``X-RateLimit-Bucket`` (which bucket the route is in), ``X-RateLimit-Remaining`` (requests
left) and ``X-RateLimit-Reset-After`` (seconds, fractional, until it refills; else
``X-RateLimit-Reset``, epoch seconds). A webhook's bucket is per webhook (its id is the
route's "major parameter"). ``DiscordLimits`` remembers them and, before a request, says how
long to wait: a spent bucket until its reset, and after a 429 with ``"global": true`` every
request to the host until the global limit lifts. The publisher does not sleep: it raises
``RetryAfter`` for that long *without sending anything*, and the delivery service holds the
channel exactly that long (in the database, so a restart waits too).

Invalid requests: Cloudflare bans an IP address that makes 10,000 requests answered 401,
403 or 429 (a 429 whose ``X-RateLimit-Scope`` is ``shared`` does not count) within 10
minutes. ``DiscordLimits`` counts them over a sliding 10-minute window for every Discord
channel of the process that talks to one API host, and from ``INVALID_REQUEST_BUDGET``
(1,000: a tenth of Cloudflare's threshold) on it sends nothing more until the oldest counted
one is 10 minutes old. With channels paused on 401/403 and held on 429 the budget is far out
of reach; it is the backstop against a bug or a misconfiguration that would otherwise hammer.
The counts live in the process: a restarted process starts from zero, but what made the
requests invalid (a pause, a hold) is in the database and survives the restart.

Every header value is hostile input: unparsable, negative, NaN or infinite values are ignored.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

INVALID_REQUEST_BUDGET = 1000
"""Invalid (401/403/429) answers within ``INVALID_REQUEST_WINDOW`` after which nothing more is sent."""
INVALID_REQUEST_WINDOW = 600.0
"""Cloudflare's window for invalid requests: 10 minutes."""
CLOUDFLARE_THRESHOLD = 10_000
"""Invalid requests per window that get an IP address banned (support-dev.discord.com 6223003921559)."""
MAX_BUCKET_WAIT = 7 * 86400.0
"""A reset further away than this is nonsense (the delivery decision caps any hold at a week too)."""
BUCKET_ID_LIMIT = 64
"""Longest ``X-RateLimit-Bucket`` kept (Discord's are 32 hex digits)."""


def _number(value: str | None) -> float | None:
    """A header's value as a finite, non-negative number, or None."""
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    if not math.isfinite(number) or number < 0:
        return None
    return number


def seconds_to_reset(headers: Mapping[str, str], now: datetime) -> float | None:
    """Seconds until the bucket refills: ``X-RateLimit-Reset-After``, else ``X-RateLimit-Reset`` (epoch)."""
    after = _number(headers.get("x-ratelimit-reset-after"))
    if after is not None:
        return min(after, MAX_BUCKET_WAIT)
    reset = _number(headers.get("x-ratelimit-reset"))
    if reset is not None and reset > 0:
        return min(max(0.0, reset - now.timestamp()), MAX_BUCKET_WAIT)
    return None


def _later(now: datetime, seconds: float) -> datetime:
    """``now`` plus ``seconds`` (at most ``MAX_BUCKET_WAIT``), to the microsecond."""
    return now + timedelta(seconds=min(max(0.0, seconds), MAX_BUCKET_WAIT))


@dataclass(slots=True)
class _Bucket:
    remaining: int
    reset_at: datetime


@dataclass(frozen=True, slots=True)
class Wait:
    """How long to wait before the next request, and why (for the ``RetryAfter`` reason)."""

    seconds: float
    why: str


class DiscordLimits:
    """The rate-limit state of one Discord API host, shared by the channels that post there.

    ``wait_before(route, now)``: how long a request on ``route`` must wait (None: go). ``observe``:
    what an answer said. ``now``: the channel's clock's time (the object holds no clock, so a registry
    keyed by the clock can forget it). Times are datetimes, so a wait is exact to the microsecond.
    """

    def __init__(self, *, budget: int = INVALID_REQUEST_BUDGET, window: float = INVALID_REQUEST_WINDOW) -> None:
        self.budget = budget
        self.window = window
        self._route_bucket: dict[str, str] = {}
        self._buckets: dict[str, _Bucket] = {}
        self._global_until = datetime.min.replace(tzinfo=UTC)
        self._invalid: deque[datetime] = deque()
        self.invalid_total = 0
        """Invalid answers seen since the process started (for tests and the log)."""

    def invalid_in_window(self, now: datetime) -> int:
        """Invalid answers within the ``window`` seconds before ``now``."""
        self._prune(now)
        return len(self._invalid)

    def wait_before(self, route: str, now: datetime) -> Wait | None:
        """How long a request on ``route`` (method + webhook id) must wait, the longest reason winning."""
        waits: list[Wait] = []
        if self._global_until > now:
            waits.append(Wait((self._global_until - now).total_seconds(), "Discord's global rate limit"))
        bucket_id = self._route_bucket.get(route)
        bucket = self._buckets.get(bucket_id) if bucket_id is not None else None
        if bucket is not None and bucket.remaining <= 0 and bucket.reset_at > now:
            waits.append(Wait((bucket.reset_at - now).total_seconds(),
                              f"Discord's rate-limit bucket for {route} is spent"))
        self._prune(now)
        if len(self._invalid) >= self.budget:
            oldest = self._invalid[len(self._invalid) - self.budget]
            waits.append(Wait(max(0.0, (oldest - now).total_seconds() + self.window),
                              f"{len(self._invalid)} invalid requests (401/403/429) to Discord in the last "
                              f"{self.window / 60:.0f} minutes; sending nothing more until fewer than "
                              f"{self.budget} (Cloudflare bans an address at {CLOUDFLARE_THRESHOLD})"))
        return max(waits, key=lambda w: w.seconds) if waits else None

    def observe(self, route: str, status: int, headers: Mapping[str, str], now: datetime) -> None:
        """Remember the bucket state an answer carried and count it if it was an invalid request.

        ``headers``: the answer's headers, names in lower case.
        """
        if status in (401, 403) or (status == 429 and (headers.get("x-ratelimit-scope") or "").strip() != "shared"):
            self._invalid.append(now)
            self.invalid_total += 1
            self._prune(now)
        bucket_id = (headers.get("x-ratelimit-bucket") or "").strip()[:BUCKET_ID_LIMIT] or f"route:{route}"
        key = f"{bucket_id}:{route.split(' ', 1)[-1]}"  # a bucket is per major parameter: the webhook id
        self._route_bucket[route] = key
        remaining = _number(headers.get("x-ratelimit-remaining"))
        reset = seconds_to_reset(headers, now)
        if remaining is not None and reset is not None:
            self._buckets[key] = _Bucket(int(remaining), _later(now, reset))

    def rate_limited(self, route: str, seconds: float, now: datetime, *, is_global: bool) -> None:
        """A 429 said to wait ``seconds``: the route's bucket (or, ``is_global``, the whole host) waits."""
        until = _later(now, seconds)
        if is_global:
            self._global_until = max(self._global_until, until)
            return
        key = self._route_bucket.get(route) or f"route:{route}:{route.split(' ', 1)[-1]}"
        self._route_bucket[route] = key
        bucket = self._buckets.get(key)
        if bucket is None or bucket.reset_at < until or bucket.remaining > 0:
            self._buckets[key] = _Bucket(0, until)

    def _prune(self, now: datetime) -> None:
        cutoff = now - timedelta(seconds=self.window)
        while self._invalid and self._invalid[0] <= cutoff:
            self._invalid.popleft()
        while len(self._invalid) > self.budget * 2:  # never more than needed to decide
            self._invalid.popleft()
