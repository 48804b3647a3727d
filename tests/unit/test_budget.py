"""Spending budgets, pure (``bot.domain.budget``): money in integer micro-dollars without drift, the UTC
windows, whether a request fits, which outcomes stay charged, and the budgets' keys refused with the key
named (``channels[i].budget``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from bot.bootstrap import validate_service_config
from bot.domain.budget import (
    MICRO,
    ChannelSpending,
    Counter,
    Limit,
    Period,
    Prices,
    SpendingConflict,
    budget_lines,
    check,
    keeps_charge,
    merge_spending,
    parse_limit,
    parse_limits,
    parse_money,
    refusal_reason,
    usd,
    window,
    window_key,
)
from bot.domain.delivery import (
    Ambiguous,
    CreditsExhausted,
    Duplicate,
    Failed,
    Found,
    InternalError,
    KeyExpired,
    Outcome,
    OverBudget,
    Permanent,
    Published,
    RateLimited,
    Rejected,
    RenderFailed,
    Retryable,
)
from bot.errors import ConfigError
from bot.publishers.x import XOptions
from bot.render.message import RenderedMessage
from bot.settings import Secrets

NOW = datetime(2026, 3, 14, 15, 9, 26, tzinfo=UTC)
micro_amounts = st.integers(0, 10**12 * MICRO - 1)
instants = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 12, 31),
                        timezones=st.just(UTC))


# -- money ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("given_", "micro"), [
    ("0.20", 200_000), ("0.2", 200_000), (0.2, 200_000), ("$0.015", 15_000), ("0.015 USD", 15_000),
    ("0.015usd", 15_000), (0.015, 15_000), (1, 1_000_000), (0, 0), ("0", 0), ("100", 100_000_000),
    (0.1, 100_000), ("0.000001", 1),
])
def test_prices_are_read_exactly(given_: object, micro: int) -> None:
    assert parse_money(given_) == micro


@pytest.mark.parametrize("bad", ["0.0000001", 1e-7, -0.2, -1, "-0.2", "abc", "0.2 EUR", float("nan"), float("inf"),
                                 True, None, [0.2], "1e3", "0,20"])
def test_impossible_prices_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match=r"price|negative|decimal|boolean|finite|USD|number"):
        parse_money(bad)


@given(micro_amounts)
def test_every_amount_survives_its_own_text(micro: int) -> None:
    assert parse_money(usd(micro)) == micro
    assert Decimal(usd(micro)) * MICRO == micro


@given(st.lists(st.sampled_from(["0.1", "0.2", "0.015", "0.005", "0.3", "0.07"]), max_size=200))
def test_sums_of_prices_never_drift(texts: list[str]) -> None:
    """Floats drift (0.1 + 0.2 != 0.3); micro-dollars sum exactly what Decimal does."""
    assert sum(parse_money(t) for t in texts) == int(sum((Decimal(t) for t in texts), Decimal(0)) * MICRO)
    assert sum(parse_money(float(t)) for t in texts) == sum(parse_money(t) for t in texts)


def test_usd_shows_two_decimals_and_more_only_when_needed() -> None:
    assert [usd(m) for m in (0, 15_000, 200_000, 5_000_000, 1, 1_234_567)] == [
        "0.00", "0.015", "0.20", "5.00", "0.000001", "1.234567"]


# -- budget keys ------------------------------------------------------------------------------------------


def test_budgets_are_read_as_text_a_list_or_both_in_one_string() -> None:
    day, month = Limit(Period.DAY, 5 * MICRO), Limit(Period.MONTH, 100 * MICRO)
    assert parse_limits("5 USD/day") == (day,)
    assert parse_limits("$100/month") == (month,)
    assert parse_limits("100 USD/month, 5 USD/day") == (day, month)  # day first
    assert parse_limits(["5 USD/day", "100 usd / month"]) == (day, month)
    assert parse_limit("0.50 USD/day") == Limit(Period.DAY, 500_000)


@pytest.mark.parametrize(("bad", "words"), [
    ("5/day", "name the currency"), ("5 EUR/day", "only USD"), ("5 USD/week", "'day'"),
    ("5 USD/day, 6 USD/day", "two day budgets"), ("", "names no budget"), ([], "names no budget"),
    ("lots", "is not a budget"), (5, "must be text"), (["5 USD/day", 5], "array of text"),
    ("0.0000001 USD/day", "6 decimal places"),
])
def test_impossible_budgets_are_refused_in_words(bad: object, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_limits(bad)


@given(st.sampled_from(list(Period)), st.integers(1, 10**6 * MICRO))
def test_a_limit_reads_back_from_its_own_text(period: Period, amount: int) -> None:
    lim = Limit(period, amount)
    assert parse_limit(str(lim)) == lim


def test_a_secret_pasted_into_a_budget_is_not_repeated() -> None:
    token = "1234567890:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw_pasted_by_mistake"
    with pytest.raises(ValueError, match="is not a budget") as caught:
        parse_limits(token)
    assert token not in str(caught.value) and "AAHdq" not in str(caught.value)


# -- windows ----------------------------------------------------------------------------------------------


@given(instants, st.sampled_from(list(Period)))
def test_the_window_holds_now_and_the_next_starts_where_it_ends(now: datetime, period: Period) -> None:
    start, end = window(period, now)
    assert start <= now < end
    assert window(period, end)[0] == end  # the next window starts exactly at the end
    assert window(period, end - timedelta(microseconds=1)) == (start, end)
    if period is Period.DAY:
        assert end - start == timedelta(days=1) and window_key(period, now) == start.strftime("%Y-%m-%d")
    else:
        assert start.day == 1 and end.day == 1 and 28 <= (end - start).days <= 31
        assert window_key(period, now) == start.strftime("%Y-%m")


def test_windows_are_utc_whatever_the_clock_zone() -> None:
    from zoneinfo import ZoneInfo

    evening_in_new_york = datetime(2026, 12, 31, 20, 0, tzinfo=ZoneInfo("America/New_York"))  # 01:00 UTC, Jan 1
    assert window(Period.DAY, evening_in_new_york) == (datetime(2027, 1, 1, tzinfo=UTC),
                                                       datetime(2027, 1, 2, tzinfo=UTC))
    assert window(Period.MONTH, datetime(2026, 12, 31, 23, 59, tzinfo=UTC))[1] == datetime(2027, 1, 1, tzinfo=UTC)


# -- does a request fit ------------------------------------------------------------------------------------


def counter(limit: int, spent: int, period: Period = Period.DAY, budget: str = "channel:x") -> Counter:
    return Counter(budget, Limit(period, limit), window_key(period, NOW), spent, window(period, NOW)[1])


@given(st.integers(1, 10**9), st.lists(st.integers(0, 10**8), max_size=60))
@example(500_000, [200_000, 200_000, 200_000])
def test_reservations_never_exceed_the_budget_and_refuse_only_what_does_not_fit(limit: int, costs: list[int]) -> None:
    """The arithmetic of a sequence of reservations against one budget: every accepted cost fits, the sum
    never passes the limit, and a refused cost really would have passed it."""
    spent = 0
    for cost in costs:
        refusal = check([counter(limit, spent)], cost)
        if refusal is None:
            spent += cost
            assert spent <= limit
        else:
            assert spent + cost > limit
            assert refusal.never == (cost > limit)
            assert refusal.resumes_at == window(Period.DAY, NOW)[1]
    assert spent <= limit


@given(st.lists(st.tuples(st.integers(1, 10**8), st.integers(0, 10**8), st.sampled_from(list(Period))),
                min_size=1, max_size=6), st.integers(0, 10**8))
def test_a_request_fits_only_when_it_fits_every_budget(budgets: list[tuple[int, int, Period]], cost: int) -> None:
    counters = [counter(limit, spent, period, f"b{i}") for i, (limit, spent, period) in enumerate(budgets)]
    refusal = check(counters, cost)
    over = [c for c in counters if c.spent + cost > c.limit.amount]
    if not over:
        assert refusal is None
    else:
        assert refusal is not None and list(refusal.over) == over
        assert refusal.resumes_at == max(c.end for c in over)  # the latest full window


def test_the_reason_names_each_full_budget_and_the_cost() -> None:
    refusal = check([counter(500_000, 400_000), counter(100 * MICRO, 1 * MICRO, Period.MONTH, "account:a")], 200_000)
    assert refusal is not None
    assert refusal_reason(refusal, {"channel:x": "channel x"}) == (
        "budget reached: channel x 0.50 USD/day (0.40 USD spent, 0.10 left); the next post costs 0.20 USD")
    never = check([counter(100_000, 0)], 200_000)
    assert never is not None and never.never
    assert "more than the whole budget" in refusal_reason(never, {})


# -- what stays charged -------------------------------------------------------------------------------------

CHARGED: list[tuple[Outcome, bool]] = [
    (Published("1", None), True), (Duplicate("dup"), True), (Found("1", None), True),
    (Ambiguous("read timeout"), True), (KeyExpired(), True), (Rejected("too long"), True),
    (Retryable("503"), True), (Permanent("forbidden"), True), (InternalError("x", "KeyError"), True),
    (Failed("odd"), True),
    (Retryable("connection refused", sent=False), False), (Permanent("unusable URL", sent=False), False),
    (RateLimited("429", 900), False), (CreditsExhausted("402"), False), (Permanent("401", credentials=True), False),
    (RenderFailed("template"), False), (OverBudget("full", NOW), False),
]


@pytest.mark.parametrize(("outcome", "charged"), CHARGED, ids=[f"{type(o).__name__}-{c}" for o, c in CHARGED])
def test_a_reservation_stays_counted_when_the_request_may_have_been_billed(outcome: Outcome, charged: bool) -> None:
    assert keeps_charge(outcome) is charged


# -- the plans of several channels ---------------------------------------------------------------------------

PRICES = Prices(200_000, 15_000)


def terms(channel: str, account: str, own: tuple[Limit, ...] = (), shared: tuple[Limit, ...] = ()) -> ChannelSpending:
    return ChannelSpending(channel, own, account, shared, PRICES)


def test_an_account_budget_set_on_one_channel_binds_every_channel_of_the_account() -> None:
    day = (Limit(Period.DAY, MICRO),)
    plans = merge_spending([terms("a", "acct1", shared=day), terms("b", "acct1"), terms("c", "acct2"),
                            terms("d", "acct2", own=day), None])
    assert set(plans) == {"a", "b", "d"}  # c: no budget of its own, none on its account
    assert [b.key for b in plans["b"].budgets] == ["account:acct1"]
    assert plans["a"].budgets == plans["b"].budgets
    assert [b.key for b in plans["d"].budgets] == ["channel:d"]
    lines = budget_lines(plans["b"], {("account:acct1", Period.DAY): (300_000, None)}, NOW)
    assert [(line.spent, line.left, line.reached) for line in lines] == [(300_000, 700_000, False)]


def test_two_different_budgets_for_one_account_are_a_conflict_naming_the_later_channel() -> None:
    with pytest.raises(SpendingConflict) as caught:
        merge_spending([terms("a", "acct", shared=(Limit(Period.DAY, MICRO),)), terms("b", "acct"),
                        terms("c", "acct", shared=(Limit(Period.DAY, 2 * MICRO),))])
    assert caught.value.index == 2 and "'a'" in str(caught.value)


# -- the keys of an X channel, as the configuration loads them -------------------------------------------------

ENV = {"X_CONSUMER_KEY": "ck", "X_CONSUMER_SECRET": "cs", "X_ACCESS_TOKEN": "at", "X_ACCESS_TOKEN_SECRET": "ats",
       "OTHER_TOKEN": "ot", "OTHER_SECRET": "os"}


def load(*channels: dict[str, Any]) -> Any:
    raw = {"channels": [{"platform": "x", **c} for c in channels]}
    return validate_service_config(raw, path=Path("/nowhere/t.toml"), secrets=Secrets(environ=ENV))


@pytest.mark.parametrize(("table", "key", "words"), [
    ({"budget": "0.10 USD/day"}, "channels[0].budget", "less than one post (0.20 USD)"),
    ({"budget": "5 EUR/day"}, "channels[0].budget", "only USD"),
    ({"budget": "5 USD/fortnight"}, "channels[0].budget", "'day'"),
    ({"budget": ["5 USD/day", "6 USD/day"]}, "channels[0].budget", "two day budgets"),
    ({"budget": "9999999 USD/day"}, "channels[0].budget", "from 0.01 to 1000000.00 USD"),
    ({"account_budget": "0.01 USD/month"}, "channels[0].account_budget", "less than one post"),
    ({"price_post": -0.015}, "channels[0].price_post", "negative"),
    ({"price_post_with_url": "0.2000001"}, "channels[0].price_post_with_url", "6 decimal places"),
    ({"price_media_upload": 500}, "channels[0].price_media_upload", "0.00 to 100.00 USD"),
    ({"price_media_metadata": float("nan")}, "channels[0].price_media_metadata", "finite"),
    ({"price_post_with_url": "1.00", "budget": "0.50 USD/day"}, "channels[0].budget", "less than one post (1.00"),
])
def test_bad_spending_keys_name_the_key(table: dict[str, Any], key: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load({"name": "x-main", **table})
    assert caught.value.key == key and words in caught.value.reason


def test_channels_of_one_account_must_agree_on_its_budget() -> None:
    with pytest.raises(ConfigError) as caught:
        load({"name": "a", "account_budget": "5 USD/day"},
             {"name": "b", "access_token_env": "OTHER_TOKEN", "access_token_secret_env": "OTHER_SECRET",
              "account_budget": "7 USD/day"},  # another account: fine
             {"name": "c", "account_budget": "6 USD/day"})
    assert caught.value.key == "channels[2].account_budget" and "'a'" in caught.value.reason


def test_the_defaults_are_xs_price_list_and_a_message_costs_what_it_sends() -> None:
    config = load({"name": "x-main", "budget": "5 USD/day, 100 USD/month"})
    options = config.channels[0]
    assert isinstance(options, XOptions)
    assert (options.price_post_with_url, options.price_post, options.price_media_upload,
            options.price_media_metadata) == (200_000, 15_000, 0, 5_000)
    with_link = RenderedMessage(text="Title\n\nhttps://example.org/a/", link="https://example.org/a/")
    plain = RenderedMessage(text="Just words", link=None)
    image = RenderedMessage(text="Title https://example.org/a/", link="https://example.org/a/",
                            image_url="https://example.org/a.jpg", image_alt="a cat")
    assert options.cost_of(with_link) == 200_000
    assert options.cost_of(plain) == 15_000
    assert options.cost_of(image) == 205_000  # + upload (0) + alt text (0.005)
    assert options.budget_account() == "x:https://api.x.com:X_ACCESS_TOKEN"
    bearer = load({"name": "b", "bearer_token_env": "OTHER_TOKEN"}).channels[0]
    assert isinstance(bearer, XOptions) and bearer.budget_account() == "x:https://api.x.com:OTHER_TOKEN"
