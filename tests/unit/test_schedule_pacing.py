"""Timing decisions: retry backoff, source backoff, token buckets, rate strings."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.domain.pacing import TokenBucket, parse_rate
from bot.domain.schedule import RetryPolicy, fair_share, jittered, source_backoff


@given(st.integers(min_value=1, max_value=40), st.integers(min_value=0, max_value=2**32))
def test_retry_delay_is_bounded_and_grows(attempt: int, seed: int) -> None:
    policy = RetryPolicy(base=30, cap=3600, max_attempts=8)
    delay = policy.delay(attempt, random.Random(seed))
    ceiling = min(3600, 30 * 2 ** (attempt - 1))
    assert ceiling / 2 <= delay <= ceiling


def test_retry_policy_exhausts() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert not policy.exhausted(2)
    assert policy.exhausted(3)


def test_source_backoff_doubles_and_caps() -> None:
    assert source_backoff(600, 0) == 600
    assert source_backoff(600, 1) == 600
    assert source_backoff(600, 3) == 2400
    assert source_backoff(600, 30, cap=3600) == 3600


def test_jitter_stays_within_fraction() -> None:
    rng = random.Random(1)
    values = [jittered(100, 0.1, rng) for _ in range(200)]
    assert min(values) >= 90 and max(values) <= 110
    assert len(set(values)) > 100


def test_token_bucket_allows_a_small_burst_then_paces() -> None:
    bucket = TokenBucket(count=20, per=60.0)  # burst 5, then 15 more per minute: one every 4 s
    assert [bucket.reserve(0.0) for _ in range(5)] == [0, 0, 0, 0, 0]
    assert bucket.reserve(0.0) == pytest.approx(4.0)
    assert bucket.reserve(0.0) == pytest.approx(8.0)
    assert bucket.reserve(100.0) == 0


def test_one_per_second_is_even_spacing() -> None:
    bucket = TokenBucket(count=1, per=1.0)
    assert [bucket.reserve(0.0) for _ in range(3)] == [0, pytest.approx(1.0), pytest.approx(2.0)]


@given(st.integers(min_value=1, max_value=300), st.sampled_from([1.0, 60.0, 300.0, 900.0]),
       st.lists(st.floats(min_value=0, max_value=50), min_size=1, max_size=80))
def test_token_bucket_never_exceeds_count_in_any_window(count: int, per: float, gaps: list[float]) -> None:
    bucket = TokenBucket(count=count, per=per)
    now = 0.0
    sends: list[float] = []
    for gap in gaps:
        now += gap
        sends.append(now + bucket.reserve(now))
    sends.sort()
    for i, start in enumerate(sends):
        in_window = sum(1 for s in sends[i:] if s < start + per - 1e-9)
        assert in_window <= count


@pytest.mark.parametrize(("text", "value"), [("1/s", (1, 1)), ("20/min", (20, 60)), ("300/5min", (300, 300)),
                                             ("100/15m", (100, 900)), ("30/s", (30, 1))])
def test_parse_rate(text: str, value: tuple[float, float]) -> None:
    assert parse_rate(text) == value


@pytest.mark.parametrize("text", ["", "5", "x/s", "5/fortnight", "0/s"])
def test_parse_rate_rejects_nonsense(text: str) -> None:
    with pytest.raises(ValueError, match=r"rate|unit|positive|could not convert"):
        parse_rate(text)


@given(due=st.integers(0, 500), live=st.integers(0, 50), concurrency=st.integers(1, 64))
def test_fair_share_covers_every_due_channel_without_exceeding_the_limit(due: int, live: int,
                                                                          concurrency: int) -> None:
    share = fair_share(due, live, concurrency)
    if due == 0:
        assert share == 0
        return
    assert 1 <= share <= concurrency
    instances = max(1, live)
    if share < concurrency:  # not capped: together the instances cover every channel, with no spare slot
        assert share * instances >= due
        assert (share - 1) * instances < due
    assert fair_share(due, 1, concurrency) == min(due, concurrency)  # alone: as before, the limit only
