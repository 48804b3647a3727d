"""``DiscordLimits``: Discord's rate-limit headers and the invalid-request cap, without a network."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.publishers.discord.limits import (
    INVALID_REQUEST_BUDGET,
    MAX_BUCKET_WAIT,
    DiscordLimits,
    seconds_to_reset,
)

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
A, B = "POST 1198765432109876543", "POST 1198765432109876544"


def spent(after: str = "1.5", bucket: str = "abc") -> dict[str, str]:
    return {"x-ratelimit-remaining": "0", "x-ratelimit-reset-after": after, "x-ratelimit-bucket": bucket}


def test_a_spent_bucket_waits_until_its_reset_to_the_microsecond() -> None:
    limits = DiscordLimits()
    limits.observe(A, 200, spent("1.234567"), NOW)
    wait = limits.wait_before(A, NOW)
    assert wait is not None and wait.seconds == 1.234567 and "bucket" in wait.why
    assert limits.wait_before(A, NOW + timedelta(seconds=1.234566)) is not None
    assert limits.wait_before(A, NOW + timedelta(seconds=1.234567)) is None


def test_buckets_are_per_webhook_even_with_the_same_bucket_hash() -> None:
    limits = DiscordLimits()
    limits.observe(A, 200, spent(), NOW)
    limits.observe(B, 200, {**spent(), "x-ratelimit-remaining": "4"}, NOW)
    assert limits.wait_before(A, NOW) is not None
    assert limits.wait_before(B, NOW) is None


def test_remaining_left_means_go() -> None:
    limits = DiscordLimits()
    limits.observe(A, 200, {**spent(), "x-ratelimit-remaining": "1"}, NOW)
    assert limits.wait_before(A, NOW) is None


def test_the_epoch_reset_is_used_without_reset_after() -> None:
    headers = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": f"{NOW.timestamp() + 3:.3f}"}
    assert seconds_to_reset(headers, NOW) == pytest.approx(3.0)


@pytest.mark.parametrize("value", ["nan", "-1", "inf", "soon", "", "1e999", "0x10"])
def test_hostile_header_values_are_ignored_or_capped(value: str) -> None:
    limits = DiscordLimits()
    limits.observe(A, 200, spent(value), NOW)
    wait = limits.wait_before(A, NOW)
    assert wait is None or 0 < wait.seconds <= MAX_BUCKET_WAIT


@given(st.dictionaries(st.sampled_from(["x-ratelimit-remaining", "x-ratelimit-reset-after", "x-ratelimit-reset",
                                        "x-ratelimit-bucket", "x-ratelimit-scope"]), st.text(max_size=40)),
       st.sampled_from([200, 401, 403, 429, 500]))
def test_any_headers_leave_a_sane_state(headers: dict[str, str], status: int) -> None:
    limits = DiscordLimits()
    limits.observe(A, status, headers, NOW)
    wait = limits.wait_before(A, NOW)
    assert wait is None or 0 <= wait.seconds <= MAX_BUCKET_WAIT


def test_a_global_limit_holds_every_route() -> None:
    limits = DiscordLimits()
    limits.rate_limited(A, 2.5, NOW, is_global=True)
    for route in (A, B, "GET 1198765432109876544"):
        wait = limits.wait_before(route, NOW + timedelta(seconds=1))
        assert wait is not None and wait.seconds == 1.5 and "global" in wait.why
    assert limits.wait_before(B, NOW + timedelta(seconds=2.5)) is None


def test_a_429_holds_its_route_for_the_longer_of_header_and_body() -> None:
    limits = DiscordLimits()
    limits.observe(A, 429, spent("9"), NOW)
    limits.rate_limited(A, 3.0, NOW, is_global=False)
    wait = limits.wait_before(A, NOW)
    assert wait is not None and wait.seconds == 9.0


def test_invalid_requests_are_counted_in_a_sliding_window() -> None:
    limits = DiscordLimits(budget=3, window=600)
    for i, status in enumerate([401, 403, 429]):
        assert limits.wait_before(A, NOW) is None
        limits.observe(A, status, {}, NOW + timedelta(seconds=i))
    wait = limits.wait_before(B, NOW + timedelta(seconds=10))  # every route: Cloudflare bans the address
    assert wait is not None and wait.seconds == 590 and "Cloudflare" in wait.why
    assert limits.wait_before(B, NOW + timedelta(seconds=600)) is None
    assert limits.invalid_in_window(NOW + timedelta(seconds=600)) == 2


@pytest.mark.parametrize(("status", "scope", "counted"), [
    (429, "shared", False), (429, "user", True), (429, "", True), (401, "", True), (403, "", True),
    (404, "", False), (400, "", False), (500, "", False), (200, "", False),
])
def test_what_counts_as_invalid(status: int, scope: str, counted: bool) -> None:
    limits = DiscordLimits()
    limits.observe(A, status, {"x-ratelimit-scope": scope}, NOW)
    assert limits.invalid_total == int(counted)


def test_the_budget_is_a_tenth_of_cloudflares_threshold() -> None:
    assert INVALID_REQUEST_BUDGET == 1000
    limits = DiscordLimits()
    for i in range(5000):
        limits.observe(A, 401, {}, NOW + timedelta(milliseconds=i))
    assert limits.invalid_in_window(NOW + timedelta(seconds=5)) <= 2 * INVALID_REQUEST_BUDGET  # memory bounded
    assert limits.wait_before(A, NOW + timedelta(seconds=5)) is not None
