"""Spending budgets, pure: money in integer micro-dollars, the UTC windows, and whether a request fits.

A platform that charges per request (X, pay-per-use) lets a channel set budgets
(``budget = "5 USD/day"``, ``"100 USD/month"``, or both) for its own spending and
for its account's (every channel posting with the same credentials). Before each
request the delivery service reserves its price against every budget of the
channel, durably (``Store.reserve_spend``); a request that does not fit holds the
channel until the window that is full resets (``check`` says which). Windows are
calendar periods in UTC: the day from 00:00 UTC, the month from the 1st 00:00 UTC.

Money is an ``int`` of micro-dollars (``MICRO`` per US dollar) from the parse to
the database, so sums never drift (``0.1 + 0.2`` is 300000, exactly); text is
read through ``Decimal`` and a number from TOML through its shortest repr, so
``0.2`` in a file is 200000 and not 200000.00000000001.

Standard library only (the domain's rule): no clock, no I/O.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

from bot.domain.delivery import (
    CreditsExhausted,
    Outcome,
    OverBudget,
    Permanent,
    RateLimited,
    RenderFailed,
    Retryable,
)

MICRO = 1_000_000
"""Micro-dollars per US dollar: the unit of every amount here."""
MONEY_DECIMALS = 6
"""At most six decimal places (a micro-dollar); X's prices have three."""

BUDGET_SYNTAX = "write it like '5 USD/day' or '100 USD/month' (or '$5/day'), two as a list or separated by ','"
PRICE_SYNTAX = "a price in US dollars such as \"0.20\" (text) or 0.2 (a number), at most 6 decimal places"

_AMOUNT = r"\d{1,12}(?:\.\d{1,12})?"
_BUDGET = re.compile(rf"(\$)?\s*({_AMOUNT})\s*([A-Za-z]{{1,6}})?\s*/\s*([A-Za-z]{{1,12}})", re.ASCII)
_PRICE = re.compile(rf"(\$)?\s*({_AMOUNT})\s*([A-Za-z]{{1,6}})?", re.ASCII)
_SHOWABLE = re.compile(r"[0-9A-Za-z $.,/]{0,32}", re.ASCII)
_PERIODS = ("day", "month")


class Period(enum.Enum):
    """A budget's window: the UTC calendar day or the UTC calendar month."""

    DAY = "day"
    MONTH = "month"


def shown(text: str) -> str:
    """``text`` for an error message when it can only be a money value; else its length (it may be a
    secret pasted into the wrong key)."""
    return repr(text) if _SHOWABLE.fullmatch(text) else f"the text given ({len(text)} characters)"


def _micro(number: str, context: str) -> int:
    """A decimal number as micro-dollars, exactly (ValueError beyond six decimal places)."""
    try:
        value = Decimal(number)
    except InvalidOperation:
        raise ValueError(f"{context}: not a number") from None
    micro = value * MICRO
    if micro != micro.to_integral_value():
        raise ValueError(f"{context}: at most {MONEY_DECIMALS} decimal places (a millionth of a dollar)")
    return int(micro)


def _currency(code: str | None, context: str) -> None:
    if code is not None and code.upper() != "USD":
        raise ValueError(f"{context}: only USD (X bills in US dollars)")


def parse_money(value: object) -> int:
    """A price as micro-dollars: text (``"0.20"``, ``"0.20 USD"``, ``"$0.2"``) or a TOML number (``0.2``,
    ``1``). Negative, NaN, infinite or finer than a micro-dollar: ``ValueError``."""
    if isinstance(value, bool):
        raise ValueError(f"must be {PRICE_SYNTAX}, not a boolean")
    if isinstance(value, int):
        if abs(value) >= 10**12:
            raise ValueError(f"must be {PRICE_SYNTAX} (got a number far too large)")
        if value < 0:
            raise ValueError("must not be negative")
        return value * MICRO
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"must be a finite price (got {value})")
        if value < 0:
            raise ValueError("must not be negative")
        if value >= 10**12:
            raise ValueError(f"must be {PRICE_SYNTAX} (got {value:g}, far too large)")
        return _micro(repr(value), f"{value!r}")
    if not isinstance(value, str):
        raise ValueError(f"must be {PRICE_SYNTAX}")
    text = value.strip()
    match = _PRICE.fullmatch(text) if len(text) <= 40 else None
    if match is None:
        raise ValueError(f"{shown(text)} is not a price ({PRICE_SYNTAX})")
    _, number, code = match.groups()
    _currency(code, shown(text))
    return _micro(number, shown(text))


@dataclass(frozen=True, slots=True)
class Limit:
    """At most ``amount`` micro-dollars per ``period``."""

    period: Period
    amount: int

    def __str__(self) -> str:
        return f"{usd(self.amount)} USD/{self.period.value}"


def parse_limit(text: str) -> Limit:
    """``"5 USD/day"``, ``"$100/month"``, ``"0.50usd / day"`` → ``Limit``; anything else ``ValueError``."""
    cleaned = text.strip()
    match = _BUDGET.fullmatch(cleaned) if len(cleaned) <= 40 else None
    if match is None:
        raise ValueError(f"{shown(cleaned)} is not a budget ({BUDGET_SYNTAX})")
    dollar, number, code, period = match.groups()
    if dollar is None and code is None:
        raise ValueError(f"{shown(cleaned)}: name the currency, e.g. '{number} USD/{period}'")
    _currency(code, shown(cleaned))
    word = period.lower()
    if word not in _PERIODS:
        raise ValueError(f"{shown(cleaned)}: the window must be 'day' (a UTC day) or 'month' (a UTC calendar "
                         "month)")
    return Limit(Period(word), _micro(number, shown(cleaned)))


def parse_limits(value: object) -> tuple[Limit, ...]:
    """A budget key's value: one string (``"5 USD/day"`` or ``"5 USD/day, 100 USD/month"``) or an array of
    strings; at most one limit per window. Sorted day first."""
    if isinstance(value, str):
        parts = [p for p in re.split(r"[,;]", value) if p.strip()] if len(value) <= 200 else [value]
    elif isinstance(value, list | tuple):
        if not all(isinstance(v, str) for v in value):
            raise ValueError(f"must be text or an array of text ({BUDGET_SYNTAX})")
        parts = [str(v) for v in value]
    else:
        raise ValueError(f"must be text such as '5 USD/day' or an array of such ({BUDGET_SYNTAX})")
    if not parts:
        raise ValueError(f"names no budget ({BUDGET_SYNTAX}); leave the key out for none")
    limits = [parse_limit(p) for p in parts]
    periods = [lim.period for lim in limits]
    for period in Period:
        if periods.count(period) > 1:
            raise ValueError(f"two {period.value} budgets ({', '.join(str(x) for x in limits if x.period is period)}); "
                             "keep one")
    return tuple(sorted(limits, key=lambda lim: list(Period).index(lim.period)))


def usd(micro: int) -> str:
    """Micro-dollars as dollars: at least two decimals, more only when needed (``15000`` → ``"0.015"``,
    ``200000`` → ``"0.20"``, ``5000000`` → ``"5.00"``)."""
    sign = "-" if micro < 0 else ""
    whole, frac = divmod(abs(micro), MICRO)
    digits = f"{frac:06d}".rstrip("0")
    return f"{sign}{whole}.{digits.ljust(2, '0')}"


# -- windows -----------------------------------------------------------------------------------------


def window(period: Period, now: datetime) -> tuple[datetime, datetime]:
    """The UTC window holding ``now``: [start, end)."""
    at = now.astimezone(UTC)
    if period is Period.DAY:
        start = at.replace(hour=0, minute=0, second=0, microsecond=0)
        return start, start + timedelta(days=1)
    start = at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return start, end


def window_key(period: Period, now: datetime) -> str:
    """The window as stored: ``2026-01-31`` for a day, ``2026-01`` for a month."""
    start, _ = window(period, now)
    return start.strftime("%Y-%m-%d" if period is Period.DAY else "%Y-%m")


# -- what a channel may spend -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Prices:
    """What each kind of request costs, in micro-dollars."""

    post_with_url: int
    post: int
    media_upload: int = 0
    media_metadata: int = 0

    def post_cost(self, *, has_url: bool, image: bool = False, alt_text: bool = False) -> int:
        """One post: the post itself (with or without a URL), plus its image's upload and alt text."""
        cost = self.post_with_url if has_url else self.post
        if image:
            cost += self.media_upload + (self.media_metadata if alt_text else 0)
        return cost


@dataclass(frozen=True, slots=True)
class ChannelSpending:
    """What one channel's options say: its own budgets, its account (the credentials it posts with) and
    the account's budgets, and the prices."""

    channel: str
    limits: tuple[Limit, ...]
    account: str
    account_limits: tuple[Limit, ...]
    prices: Prices


@dataclass(frozen=True, slots=True)
class Budget:
    """One budget: its key in the database (``channel:NAME``, ``account:ACCOUNT``), what ``status`` calls it,
    and its limits."""

    key: str
    label: str
    limits: tuple[Limit, ...]

    @property
    def scope(self) -> str:
        return self.key.split(":", 1)[0]


@dataclass(frozen=True, slots=True)
class SpendingPlan:
    """Every budget a channel's requests count against, and its prices."""

    channel: str
    budgets: tuple[Budget, ...]
    prices: Prices

    def limits(self) -> list[tuple[str, Limit]]:
        """(budget key, limit) for each limit of each budget."""
        return [(b.key, lim) for b in self.budgets for lim in b.limits]


class SpendingConflict(ValueError):
    """Two channels posting with one account name different account budgets. ``index``: the later
    channel's position among those given."""

    def __init__(self, index: int, message: str) -> None:
        self.index = index
        super().__init__(message)


def channel_key(channel: str) -> str:
    return f"channel:{channel}"


def account_key(account: str) -> str:
    return f"account:{account}"


def merge_spending(terms: Sequence[ChannelSpending | None]) -> dict[str, SpendingPlan]:
    """Each channel's plan: its own budgets, and its account's, which bind every channel posting with that
    account as soon as one of them sets them (they must agree: else ``SpendingConflict``). A channel with
    no budget of either kind has no plan (nothing is reserved for it)."""
    account_limits: dict[str, tuple[Limit, ...]] = {}
    first: dict[str, str] = {}
    members: dict[str, list[str]] = {}
    for index, term in enumerate(terms):
        if term is None:
            continue
        members.setdefault(term.account, []).append(term.channel)
        if not term.account_limits:
            continue
        known = account_limits.get(term.account)
        if known is not None and known != term.account_limits:
            raise SpendingConflict(index, f"differs from channel {first[term.account]!r} "
                                          f"({', '.join(str(x) for x in known)}), which posts with the same "
                                          "account (the same credential variables): give both the same value, "
                                          "or set it on one of them only")
        account_limits[term.account] = term.account_limits
        first.setdefault(term.account, term.channel)
    plans: dict[str, SpendingPlan] = {}
    for term in terms:
        if term is None:
            continue
        budgets: list[Budget] = []
        if term.limits:
            budgets.append(Budget(channel_key(term.channel), f"channel {term.channel}", term.limits))
        shared = account_limits.get(term.account)
        if shared:
            names = ", ".join(members[term.account])
            budgets.append(Budget(account_key(term.account), f"account of {names}", shared))
        if budgets:
            plans[term.channel] = SpendingPlan(term.channel, tuple(budgets), term.prices)
    return plans


# -- does a request fit --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Counter:
    """A budget's spending in its current window: ``spent`` micro-dollars of ``limit`` until ``end``."""

    budget: str
    limit: Limit
    window: str
    spent: int
    end: datetime
    reached_at: datetime | None = None
    """When a request was first refused in this window (None: none was)."""

    @property
    def left(self) -> int:
        return max(0, self.limit.amount - self.spent)


@dataclass(frozen=True, slots=True)
class Refusal:
    """A request of ``cost`` that does not fit: the budgets it would overspend (``over``), when the last of
    their windows resets (``resumes_at``), whether it could never fit (``never``: it costs more than a
    whole budget), and whether this is the first refusal of any of those windows (``first``: the admins
    are told once per window)."""

    cost: int
    over: tuple[Counter, ...]
    resumes_at: datetime
    never: bool
    first: bool = False


def check(counters: Iterable[Counter], cost: int) -> Refusal | None:
    """None when ``cost`` fits every budget (each ``spent + cost <= limit``), else the ``Refusal``."""
    over = tuple(c for c in counters if c.spent + cost > c.limit.amount)
    if not over:
        return None
    return Refusal(cost, over, max(c.end for c in over), any(cost > c.limit.amount for c in over))


@dataclass(frozen=True, slots=True)
class Reservation:
    """A reserved request: ``cost`` micro-dollars counted in each (budget, period, window) of ``rows``."""

    cost: int
    rows: tuple[tuple[str, Period, str], ...]


def refusal_reason(refusal: Refusal, labels: Mapping[str, str]) -> str:
    """The refusal in words, for the delivery's error, the log and the admins. ``labels``: budget key →
    what to call it."""
    parts = [f"{labels.get(c.budget, c.budget)} {c.limit} ({usd(c.spent)} USD spent, {usd(c.left)} left)"
             for c in refusal.over]
    if refusal.never:
        return (f"this post costs {usd(refusal.cost)} USD, more than the whole budget of "
                f"{'; '.join(parts)}: raise the budget or check the prices")
    return f"budget reached: {'; '.join(parts)}; the next post costs {usd(refusal.cost)} USD"


def keeps_charge(outcome: Outcome) -> bool:
    """Does a reserved request stay counted after this outcome? Yes when it reached the platform and may
    have been billed: a post made (or found, or refused as a duplicate), a lost answer (the post may
    exist: an ambiguous send counts, and so does its resend), a refusal of the content, a server error.
    No when nothing can have been billed: the request never left (``sent=False``), or the platform turned
    it away before doing anything billable: a rate limit (429), no credits (402), unknown credentials (401).
    """
    match outcome:
        case Retryable(_, False) | Permanent(_, _, False):
            return False
        case RateLimited() | CreditsExhausted() | OverBudget() | RenderFailed():
            return False
        case Permanent(_, True):
            return False
        case _:
            return True


# -- what status shows ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BudgetLine:
    """One limit of one budget in its current window, for ``status``, the admin bot and ``/metrics``."""

    budget: str
    label: str
    period: Period
    limit: int
    spent: int
    resets_at: datetime
    reached: bool
    """A request was refused in this window (the channel waits for ``resets_at``)."""

    @property
    def left(self) -> int:
        return max(0, self.limit - self.spent)

    def describe(self) -> str:
        when = "today" if self.period is Period.DAY else "this month"
        return (f"{self.label}: {usd(self.spent)} of {usd(self.limit)} USD spent {when}, {usd(self.left)} left"
                f"{' (reached)' if self.reached else ''}")


def budget_lines(plan: SpendingPlan, spent: Mapping[tuple[str, Period], tuple[int, datetime | None]],
                 now: datetime) -> list[BudgetLine]:
    """Each limit of ``plan`` in the window holding ``now``; ``spent``: (budget key, period) → (micro-dollars,
    first refusal) for the current windows (absent: nothing spent yet)."""
    lines = []
    for budget in plan.budgets:
        for lim in budget.limits:
            amount, reached_at = spent.get((budget.key, lim.period), (0, None))
            lines.append(BudgetLine(budget.key, budget.label, lim.period, lim.amount, amount,
                                    window(lim.period, now)[1], reached_at is not None))
    return lines
