"""``take_if_free``: the attempt bucket behind the Bluesky login limit (asking never queues, and at most
``count`` attempts are granted in any window of ``per`` seconds)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.domain.pacing import bucket_shape, take_if_free


def test_a_refused_ask_takes_nothing_and_the_told_time_is_granted() -> None:
    burst, rate = bucket_shape(48, 86400)
    assert (burst, rate) == (12, 36 / 86400)
    tokens, stamp = burst, 0.0
    for _ in range(12):
        tokens, stamp, wait = take_if_free(tokens, stamp, 0.0, burst, rate)
        assert wait == 0
    tokens, stamp, wait = take_if_free(tokens, stamp, 0.0, burst, rate)
    assert wait == 2400 and tokens == 0
    for _ in range(5):  # asking again and again does not push the time back (a queue would)
        tokens, stamp, again = take_if_free(tokens, stamp, 100.0, burst, rate)
        assert again == 2300
    tokens, stamp, wait = take_if_free(tokens, stamp, 2400.0, burst, rate)
    assert wait == 0


@settings(max_examples=200, deadline=None)
@given(count=st.integers(min_value=1, max_value=60), per=st.sampled_from([60.0, 300.0, 3600.0, 86400.0]),
       gaps=st.lists(st.floats(min_value=0, max_value=5000, allow_nan=False), min_size=1, max_size=300))
def test_never_more_than_count_in_any_window(count: int, per: float, gaps: list[float]) -> None:
    burst, rate = bucket_shape(count, per)
    tokens, stamp, now = burst, 0.0, 0.0
    granted: list[float] = []
    for gap in gaps:
        now += gap
        tokens, stamp, wait = take_if_free(tokens, stamp, now, burst, rate)
        assert wait >= 0 and tokens >= 0
        if wait == 0:
            granted.append(now)
    for i, start in enumerate(granted):
        assert sum(1 for t in granted[i:] if t < start + per) <= count
