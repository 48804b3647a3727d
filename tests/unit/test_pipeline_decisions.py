"""Pipelined delivery's pure decisions (``bot.domain.pipeline``) and the ``Deduplicates`` ability
(``bot.publishers.api.abilities``): which channels send in claimed groups, when a group commits, when it
hands its unsent deliveries back."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.domain.pipeline import (
    MIN_KEY_WINDOW,
    GroupPolicy,
    Step,
    after_answer,
    before_send,
    deduplicating_window,
    pipelined,
)
from bot.publishers.api import (
    Deduplicates,
    PublishResult,
    RenderedMessage,
    Stage,
    abilities,
)
from tests.unit.test_publisher_abilities import TodaysPublisher

POLICY = GroupPolicy(size=32, commit_every=8, commit_after=0.25, max_age=60.0)


class Plain(TodaysPublisher):
    """A third-party publisher written before the ability (required members only), idempotent."""

    idempotent = True


class Declared(Plain):
    deduplicates = True


class ShortWindow(Declared):
    idempotency_window = MIN_KEY_WINDOW - 1


class HourWindow(Declared):
    idempotency_window = 3600.0


class Staged(Declared):
    async def publish_staged(self, message: RenderedMessage, *, idempotency_key: str, staged: str | None,
                             stage: Stage) -> PublishResult:
        return PublishResult("1")


class DeclaredFalse(Plain):
    deduplicates = False


def test_a_publisher_without_the_ability_is_not_pipelined() -> None:
    assert not isinstance(Plain(), Deduplicates)
    assert abilities(Plain()).deduplicates is False  # idempotent alone is not enough: plugins opt in


@pytest.mark.parametrize(("publisher", "expected"), [
    (Declared(), True), (HourWindow(), True), (ShortWindow(), False), (Staged(), False), (DeclaredFalse(), False)])
def test_the_declared_ability_needs_a_long_key_window_and_no_staging(publisher: Plain, expected: bool) -> None:
    assert abilities(publisher).deduplicates is expected


def test_the_builtin_platforms_declare_what_their_platform_does() -> None:
    from bot.publishers.bluesky.publisher import BlueskyPublisher
    from bot.publishers.discord.publisher import DiscordPublisher
    from bot.publishers.mastodon import MastodonPublisher
    from bot.publishers.telegram import TelegramPublisher
    from bot.publishers.threads.publisher import ThreadsPublisher
    from bot.publishers.x import XPublisher

    for cls in (MastodonPublisher, BlueskyPublisher, XPublisher):
        assert getattr(cls, "deduplicates", False) is True, cls
    for cls in (TelegramPublisher, DiscordPublisher, ThreadsPublisher):
        assert getattr(cls, "deduplicates", False) is False, cls  # commit before each send stays


def test_key_windows() -> None:
    assert deduplicating_window(None)
    assert deduplicating_window(3600.0)
    assert deduplicating_window(MIN_KEY_WINDOW)
    assert not deduplicating_window(MIN_KEY_WINDOW - 0.5)
    assert POLICY.max_age + 300.0 < MIN_KEY_WINDOW  # a group stays far inside the window and its resend margin


@given(st.booleans(), st.booleans(), st.booleans())
def test_only_an_unpaced_deduplicating_channel_that_resends_is_pipelined(dedup: bool, resend: bool,
                                                                        paced: bool) -> None:
    assert pipelined(deduplicates=dedup, resend_when_unsure=resend, paced=paced) == (dedup and resend and not paced)


@given(held=st.integers(1, 100), held_for=st.floats(0, 1e6), left=st.integers(0, 100))
def test_a_decision_that_stops_the_channel_is_committed_at_once_and_stops_the_group(
        held: int, held_for: float, left: int) -> None:
    assert after_answer(held=held, held_for=held_for, stops_channel=True, left=left, policy=POLICY) is Step.STOP


@given(held=st.integers(1, 100), held_for=st.floats(0, 1e6), left=st.integers(0, 100))
def test_answers_wait_at_most_commit_every_answers_or_commit_after_seconds(held: int, held_for: float,
                                                                          left: int) -> None:
    step = after_answer(held=held, held_for=held_for, stops_channel=False, left=left, policy=POLICY)
    assert step is not Step.STOP
    must = left == 0 or held >= POLICY.commit_every or held_for >= POLICY.commit_after
    assert (step is Step.COMMIT) == must


def test_the_commit_rows() -> None:
    def step(held: int, held_for: float = 0.0, left: int = 10) -> Step:
        return after_answer(held=held, held_for=held_for, stops_channel=False, left=left, policy=POLICY)

    assert step(1) is Step.NEXT
    assert step(7) is Step.NEXT
    assert step(8) is Step.COMMIT  # every commit_every answers
    assert step(2, held_for=0.25) is Step.COMMIT  # or once the oldest held answer is commit_after old
    assert step(1, left=0) is Step.COMMIT  # and at the group's end


def test_one_at_a_time_commits_every_answer() -> None:
    one = GroupPolicy(size=1, commit_every=1)
    assert after_answer(held=1, held_for=0.0, stops_channel=False, left=5, policy=one) is Step.COMMIT


@given(age=st.floats(0, 1e6), stopping=st.booleans())
def test_a_group_sends_nothing_more_when_stopping_or_old(age: float, stopping: bool) -> None:
    assert before_send(stopping=stopping, group_age=age, policy=POLICY) == (not stopping and age < POLICY.max_age)


@pytest.mark.parametrize("kw", [{"size": 0}, {"commit_every": 0}, {"commit_after": -1.0}, {"max_age": float("nan")}])
def test_a_policy_out_of_bounds_is_refused(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="at least"):
        GroupPolicy(**kw)  # type: ignore[arg-type]
