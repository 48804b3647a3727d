"""Every bound on a configuration value, in one place (docs/configuration.md, "Bounds", lists them).

The models in ``bot.settings``, ``bot.admin.settings``, ``bot.channel_options``, ``bot.render.options``
and the publishers name these constants instead of repeating numbers. Three kinds of rule, each
expressed in pydantic's terms here and nowhere else:

* ``Span(lo, hi)`` - a number (int or float) from ``lo`` to ``hi`` inclusive; ``within(SPAN, default)``
  makes the ``Field``, ``between(SPAN)`` the ``Annotated`` metadata (for a tuple's items).
* ``DurationIn(lo, hi)`` - a duration (``"10m"``, ``"1h30m"`` or a number of seconds) from ``lo`` to
  ``hi`` seconds; the field's type is ``Annotated[float, BeforeValidator(DURATION)]``.
* ``check_rate`` - a rate (``"20/min"``): a whole count from 1 to ``RATE_COUNT.hi`` per a window of
  ``RATE_WINDOW`` seconds; ``Rate`` is the field's type (``Annotated[str, BeforeValidator(check_rate)]``).

Why bounds at all: every value that loads must survive the service's arithmetic (``timedelta(seconds=…)``,
backoff doubling, token buckets, lease expiry), so NaN, infinities, 1e308 and 20-digit integers are
refused at load with the key named, never found later as a traceback.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Annotated, Any

from annotated_types import Interval
from pydantic import AfterValidator, BeforeValidator, Field

from bot.domain import rules
from bot.domain.budget import MICRO, Limit, parse_limits, parse_money, usd
from bot.domain.pacing import RATE_SYNTAX, parse_rate
from bot.errors import RuleError

SECOND, MINUTE, HOUR, DAY = 1.0, 60.0, 3600.0, 86400.0

MAX_DURATION_TEXT = 64
"""Longest duration text read (``"1d 2h 3m 4s"`` is 11 characters); longer text is refused unread."""

_DURATION_TEXT = re.compile(r"(?:\s*\d+(?:\.\d+)?\s*[dhms])+\s*", re.ASCII)
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([dhms])", re.ASCII)
_UNIT_SECONDS = {"d": DAY, "h": HOUR, "m": MINUTE, "s": SECOND}


_SHOWABLE = re.compile(r"[0-9a-z .,/+\-]{0,24}", re.ASCII)


def _shown(text: str) -> str:
    """``text`` for an error message: quoted when it is short and could be a duration or a rate (``'soon'``,
    ``'5/fortnight'``); otherwise only its length - it may be a secret pasted into the wrong key."""
    return repr(text) if _SHOWABLE.fullmatch(text) else f"the text given ({len(text)} characters)"


def parse_duration(value: object) -> float:
    """``"10m"``, ``"1h30m"``, ``"45s"``, ``"2d"`` or a number of seconds → seconds (finite, above zero).

    Units appear at most once each, in the order d, h, m, s. Text longer than ``MAX_DURATION_TEXT`` is
    refused before any pattern runs on it.
    """
    problem = "expected a duration such as '10m' or a number of seconds"
    if isinstance(value, bool):
        raise ValueError(problem)
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:  # an integer beyond a float: far above any bound
            seconds = math.inf
    elif isinstance(value, str):
        seconds = _duration_text(value)
    else:
        raise ValueError(problem)
    if math.isnan(seconds) or math.isinf(seconds):
        raise ValueError(f"must be a finite duration such as '10m' (got {_number(value)})")
    if seconds <= 0:
        raise ValueError("must be longer than zero")
    return seconds


def _duration_text(value: str) -> float:
    wrong = f"{_shown(value)} is not a duration (use e.g. '30s', '10m', '1h30m')"
    if len(value) > MAX_DURATION_TEXT or not _DURATION_TEXT.fullmatch(value):
        raise ValueError(wrong)
    parts = _DURATION_PART.findall(value)
    order = ["dhms".index(unit) for _, unit in parts]
    if order != sorted(set(order)):  # each unit at most once, largest first
        raise ValueError(wrong)
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)


def _number(value: object) -> str:
    """A number (or the text it came from) for an error message, short whatever its size."""
    if isinstance(value, str):
        return _shown(value)
    if isinstance(value, int) and abs(value) >= 10**24:
        return f"a number of about {int(value.bit_length() * math.log10(2))} digits"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def describe_seconds(seconds: float) -> str:
    """``90`` → ``"90s"``, ``3600`` → ``"1h"``, ``2592000`` → ``"30d"``, ``0.1`` → ``"0.1s"``."""
    for unit, size in (("d", DAY), ("h", HOUR), ("m", MINUTE)):
        if size <= seconds < 1e12 and (seconds / size).is_integer():
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


@dataclass(frozen=True, slots=True)
class Span:
    """A number from ``lo`` to ``hi``, both included."""

    lo: float
    hi: float


def within(span: Span, default: Any) -> Any:
    """The ``Field`` of a number bounded by ``span``."""
    return Field(default=default, ge=span.lo, le=span.hi)


def between(span: Span) -> Interval:
    """``Annotated`` metadata bounding a number by ``span`` (``tuple[Annotated[int, between(SPAN)], ...]``)."""
    return Interval(ge=span.lo, le=span.hi)


@dataclass(frozen=True, slots=True)
class DurationIn:
    """Before-validator: a duration (see ``parse_duration``) from ``lo`` to ``hi`` seconds."""

    lo: float
    hi: float

    def __call__(self, value: object) -> float:
        seconds = parse_duration(value)
        if not self.lo <= seconds <= self.hi:
            raise ValueError(f"must be from {describe_seconds(self.lo)} to {describe_seconds(self.hi)} "
                             f"(got {describe_seconds(seconds)})")
        return seconds


# -- durations (seconds) -------------------------------------------------------------------------------

SOURCE_INTERVAL = DurationIn(1 * SECOND, 30 * DAY)
"""[[sources]] interval. 1 s suits local files and test servers; be polite to real sites (minutes)."""
LEASE_TTL = DurationIn(1 * SECOND, 1 * HOUR)
"""[storage] lease_ttl: heartbeats every third of it; a crashed instance's work waits this long."""
HTTP_TIMEOUT = DurationIn(1 * SECOND, 10 * MINUTE)
"""[http] timeout, per read/write/pool wait (a whole fetch may take a few times this)."""
MAX_BACKOFF = DurationIn(1 * MINUTE, 30 * DAY)
"""[service] max_backoff: the longest delay between polls of a failing source."""
SHUTDOWN_TIMEOUT = DurationIn(1 * SECOND, 1 * HOUR)
"""[service] shutdown_timeout: in-flight sends' grace on SIGTERM."""
RETRY_BASE = DurationIn(0.1 * SECOND, 1 * DAY)
"""[delivery] retry_base: the first retry delay."""
RETRY_CAP = DurationIn(1 * SECOND, 7 * DAY)
"""[delivery] retry_cap: the longest retry delay."""
HEALTH_TIMEOUT = DurationIn(0.1 * SECOND, 1 * MINUTE)
"""[health] timeout: how long a probe waits for the database."""
EDIT_WINDOW = DurationIn(1 * MINUTE, 30 * DAY)
"""[[channels]] edit_window: how long after a message went out an edit of its post updates it."""
DELETE_WINDOW = DurationIn(1 * MINUTE, 30 * DAY)
"""[[channels]] delete_window: how long after a message went out its post's unpublishing removes it."""
THREADS_IMAGE_WAIT = DurationIn(1 * SECOND, 10 * MINUTE)
"""threads ``image_wait``: how long a publish waits for Meta to process an IMAGE container."""
MAX_AGE = DurationIn(1 * MINUTE, 365 * DAY)
"""[[subscriptions]] max_age: a post older than this when detected is not sent."""
PUSH_WINDOW = DurationIn(10 * SECOND, 1 * HOUR)
"""[push] window: how far a hook call's timestamp may be from now (either way)."""
PUSH_MIN_GAP = DurationIn(0.1 * SECOND, 1 * HOUR)
"""[push] min_gap: the shortest time from a source's last poll to a poll a push brings forward."""
WEBSUB_LEASE = DurationIn(5 * MINUTE, 366 * DAY)
"""[push] lease: the WebSub lease asked of a hub (the hub decides; what it grants is clamped the same)."""
WEBSUB_RENEW_BEFORE = DurationIn(1 * MINUTE, 30 * DAY)
"""[push] renew_before: how long before a lease ends it is renewed (at most half the lease)."""
RETENTION_PERIOD = DurationIn(1 * MINUTE, 100 * 365 * DAY)
"""[storage.retention] content, deliveries, audit, identity, every (tests and benches use minutes)."""
NOT_MODIFIED_DELAY = DurationIn(0.01 * SECOND, 1 * HOUR)
"""[service] not_modified_delay: how long a poll answered 304 may wait to be written with others."""

# -- numbers -------------------------------------------------------------------------------------------

PORT = Span(0, 65535)
"""[health] port, [admin] webhook_port; 0 picks a free port."""
JITTER = Span(0, 0.5)
"""[service] jitter, a fraction of the interval."""
HTTP_MAX_REDIRECTS = Span(0, 20)
HTTP_MAX_BYTES = Span(1024, 2**30)
"""[http] max_bytes: 1 KiB to 1 GiB per response body."""
HTTP_CONCURRENCY = Span(1, 1024)
HTTP_PER_HOST = Span(1, HTTP_CONCURRENCY.hi)
"""[http] per_host: polls against one host at a time (above ``concurrency`` it changes nothing)."""
BASELINE_DEPTH = Span(1, 1000)
BACKFILL = Span(0, 100)
BURST_LIMIT = Span(0, 100_000)
"""[service] and [[sources]] burst_limit: new posts in one poll before they are held (0: never held)."""
RAMP_AFTER = Span(0, 10_000_000)
"""[service] ramp_after: sources overdue at start-up before their polls are spread over their interval."""
NOT_MODIFIED_BATCH = Span(1, 10_000)
"""[service] not_modified_batch: polls answered 304 written in one transaction at most (1: each at once)."""
HOOK_MAX_BODY = Span(1024, 1024 * 1024)
"""[push] hook_max_body: bytes of a hook call's body (the WordPress plugin sends a few hundred)."""
NOTIFICATION_MAX_BODY = Span(1024, 64 * 1024 * 1024)
"""[push] notification_max_body: bytes of a WebSub notification (a "fat ping" carries feed entries)."""
MAX_ATTEMPTS = Span(1, 100)
DELIVERY_CONCURRENCY = Span(1, 256)
MAX_HASHTAGS = Span(0, 30)
EXCERPT_LENGTH = Span(0, 10_000)
"""Characters; every platform's message limit is far below (a Mastodon instance's is read at runtime)."""
MASTODON_MAX_CHARACTERS = Span(50, 100_000)
ADMIN_PAGE_SIZE = Span(1, 50)
RETENTION_BATCH = Span(1, 10_000)
"""[storage.retention] batch: posts (or rows) per prune transaction."""
TELEGRAM_USER_ID = Span(1, 2**63 - 1)
"""[admin] admin_ids: Telegram ids are positive 64-bit integers."""
TELEGRAM_CHAT_ID = Span(-(2**63), 2**63 - 1)
"""[admin] admin_chat_id: a 64-bit integer (and negative: a group; its own check says so)."""
TELEGRAM_THREAD_ID = Span(1, 2**31 - 1)
"""[[channels]] thread_id (Telegram): a forum topic's ``message_thread_id``, a positive message id."""

# -- rates ---------------------------------------------------------------------------------------------

RATE_COUNT = Span(1, 10_000)
"""Requests per window."""
RATE_WINDOW = DurationIn(1 * SECOND, 7 * DAY)
"""The window's length."""


def check_rate(value: object) -> str:
    """Before-validator for a rate such as ``"20/min"``: the text itself, once it parses within the bounds."""
    if not isinstance(value, str):
        raise ValueError(f"must be a rate in quotes ({RATE_SYNTAX})")
    try:
        count, seconds = parse_rate(value)
    except ValueError as exc:
        if _SHOWABLE.fullmatch(value):
            raise
        raise ValueError(f"{_shown(value)} is not a rate ({RATE_SYNTAX})") from exc
    if not RATE_COUNT.lo <= count <= RATE_COUNT.hi or not RATE_WINDOW.lo <= seconds <= RATE_WINDOW.hi:
        raise ValueError(f"{_shown(value)}: at most {RATE_COUNT.hi:g} requests per window, and windows from "
                         f"{describe_seconds(RATE_WINDOW.lo)} to {describe_seconds(RATE_WINDOW.hi)} ({RATE_SYNTAX})")
    return value


Rate = Annotated[str, BeforeValidator(check_rate)]
"""A validated rate (``ChannelOptions.rate_limit``, ``[delivery] account_limits`` and ``channel_limits``)."""


# -- subscription rules (bot.domain.rules holds the numbers: the CLI and the admin bot check the same) ----

RULE_ITEMS = rules.RULE_ITEMS
"""Most tags, keywords or sources in one list of a rule ([[subscriptions]], [[channels]] exclude_*)."""
RULE_PATTERNS = rules.RULE_PATTERNS
"""Most patterns in one [[subscriptions]] table."""
KEYWORD_CHARS = rules.KEYWORD_CHARS
PATTERN_CHARS = rules.PATTERN_CHARS


def _rule_item(parse: Any) -> Any:
    def check(value: str) -> str:
        try:
            parse(value)
        except RuleError as exc:
            raise ValueError(exc.reason) from None
        return value

    return AfterValidator(check)


RuleTag = Annotated[str, _rule_item(lambda v: rules.parse_tags([v], ""))]
"""A tag name in a rule: it needs letters or digits."""
RuleKeyword = Annotated[str, _rule_item(rules.parse_keyword)]
"""A keyword (``"Basra"``, ``"title:Basra"``): letters or digits, at most ``KEYWORD_CHARS``."""
RulePattern = Annotated[str, _rule_item(rules.parse_pattern)]
"""``FIELD=RE`` / ``FIELD!=RE``: at most ``PATTERN_CHARS``, and RE2 compiles it."""
# -- money (micro-dollars: bot.domain.budget) -----------------------------------------------------------

BUDGET_AMOUNT = Span(10_000, 1_000_000 * MICRO)
"""X channel ``budget`` and ``account_budget``: 0.01 to 1,000,000 USD per window."""
PRICE = Span(0, 100 * MICRO)
"""X channel ``price_*`` keys: 0 to 100 USD per request."""


def check_budgets(value: object) -> tuple[Limit, ...]:
    """Before-validator for a budget key: ``"5 USD/day"``, ``"5 USD/day, 100 USD/month"`` or an array of such,
    each amount within ``BUDGET_AMOUNT``."""
    limits = parse_limits(value)
    for lim in limits:
        if not BUDGET_AMOUNT.lo <= lim.amount <= BUDGET_AMOUNT.hi:
            raise ValueError(f"{lim}: a budget must be from {usd(int(BUDGET_AMOUNT.lo))} to "
                             f"{usd(int(BUDGET_AMOUNT.hi))} USD per window")
    return limits


def check_price(value: object) -> int:
    """Before-validator for a price: micro-dollars, within ``PRICE``."""
    micro = parse_money(value)
    if not PRICE.lo <= micro <= PRICE.hi:
        raise ValueError(f"must be from {usd(int(PRICE.lo))} to {usd(int(PRICE.hi))} USD per request "
                         f"(got {usd(micro)})")
    return micro


Budgets = Annotated[tuple[Limit, ...], BeforeValidator(check_budgets)]
"""A validated budget key: its limits, day first, at most one per window."""
Price = Annotated[int, BeforeValidator(check_price), between(PRICE)]
"""A validated price: micro-dollars per request (``check_price`` enforces ``PRICE`` in words; the interval
states it for pydantic and the bounds test)."""
