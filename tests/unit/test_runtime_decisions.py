"""The runtime's pure decisions (bot.domain.runtime): which sources are due, when the poll driver wakes,
which channels the delivery driver starts, and each instance's share of them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from bot.domain.runtime import (
    LEASED_RECHECK,
    PollPlan,
    channel_limit,
    channels_to_start,
    plan_polls,
    poll_wake,
    round_after_poll,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


# -- which sources are due --------------------------------------------------------------------------------


def order(names: str | list[str]) -> dict[str, int]:
    """The enabled sources, name → position in the configuration."""
    return {n: i for i, n in enumerate(names)}


def test_only_sources_whose_time_has_come_are_due_never_polled_ones_first() -> None:
    schedule = {"a": at(-10), "b": at(30), "c": None, "d": at(-300), "e": at(0)}
    plan = plan_polls(schedule, order("abcde"), busy=(), resting={}, now=NOW)
    # c: never polled (or its URL changed); then the longest overdue first
    assert plan.due == ("c", "d", "a", "e")
    assert plan.next_at == at(30)


def test_the_round_reads_only_what_is_due_and_the_earliest_time_to_come() -> None:
    """Issue 21: a round reads the due rows and ``later`` (the earliest stored time after them), not every
    source's row; a source missing from the rows is simply not due yet."""
    plan = plan_polls({"a": at(-10), "c": None}, order("abcd"), busy=(), resting={}, now=NOW, later=at(45))
    assert plan == PollPlan(("c", "a"), at(45))
    assert plan_polls({}, order("abcd"), busy=(), resting={}, now=NOW, later=at(45)) == PollPlan((), at(45))


def test_a_restart_polls_nothing_whose_next_poll_is_still_to_come() -> None:
    """Issue 21: a restart used to poll every source at once; the database now says what is due."""
    schedule = {"a": at(5), "b": at(600), "c": at(3600)}
    plan = plan_polls(schedule, order("abc"), busy=(), resting={}, now=NOW)
    assert plan.due == () and plan.next_at == at(5)


def test_sources_being_polled_are_neither_due_nor_a_wake_time() -> None:
    plan = plan_polls({"a": at(-1), "b": at(10)}, order("ab"), busy={"a", "b"}, resting={}, now=NOW)
    assert plan == PollPlan((), None)


def test_disabled_sources_are_never_due() -> None:
    plan = plan_polls({"a": None, "gone": None, "old": at(60)}, order("a"), busy=(), resting={}, now=NOW)
    assert plan == PollPlan(("a",), None)


def test_a_source_whose_poll_broke_rests_before_it_is_due_again() -> None:
    plan = plan_polls({"a": at(-1), "b": None}, order("ab"), busy=(), resting={"a": at(60), "b": at(-1)},
                      now=NOW)
    assert plan.due == ("b",)  # b's rest is over
    assert plan.next_at == at(60)


def full_schedule_plan(schedule: dict[str, datetime | None], enabled: list[str], busy: set[str],
                       resting: dict[str, datetime]) -> PollPlan:
    """The decision as it was made before issue 21, from every source's row (the reference)."""
    due: list[tuple[datetime | None, int, str]] = []
    later: list[datetime] = []
    for index, name in enumerate(enabled):
        if name in busy:
            continue
        when = schedule.get(name)
        rest = resting.get(name)
        if rest is not None and rest > NOW:
            when = rest if when is None else max(when, rest)
        if when is None or when <= NOW:
            due.append((when, index, name))
        else:
            later.append(when)
    due.sort(key=lambda d: (d[0] is not None, d[0] or NOW, d[1]))
    return PollPlan(tuple(n for _, _, n in due), min(later) if later else None)


@given(st.dictionaries(st.sampled_from("abcdefgh"), st.one_of(st.none(), st.integers(-3600, 3600)), max_size=8),
       st.sets(st.sampled_from("abcdefgh")), st.sets(st.sampled_from("abcdefgh")),
       st.dictionaries(st.sampled_from("abcdefgh"), st.integers(-60, 60), max_size=3))
def test_reading_only_the_due_rows_decides_what_reading_every_row_did(
        times: dict[str, int | None], enabled: set[str], busy: set[str], rests: dict[str, int]) -> None:
    """The semantics kept: never polled = due, busy sources neither due nor a wake, resting ones wait.
    What the driver guarantees is assumed: every enabled source has a row (``sync_config`` writes them
    before the driver starts), and a busy or resting source's stored time has passed (it was due when its
    poll started; a poll that broke wrote nothing)."""
    names = sorted(enabled)
    schedule: dict[str, datetime | None] = {}
    for n in names:
        when = times.get(n)
        schedule[n] = None if when is None else at(-abs(when) if n in busy or n in rests else when)
    resting = {k: at(v) for k, v in rests.items()}
    rows = {n: w for n, w in schedule.items() if w is None or w <= NOW}  # Store.due_sources(NOW)
    to_come = [w for w in schedule.values() if w is not None and w > NOW]
    plan = plan_polls(rows, order(names), busy=busy, resting=resting, now=NOW,
                      later=min(to_come) if to_come else None)
    assert plan == full_schedule_plan(schedule, names, busy, resting)


@given(st.dictionaries(st.sampled_from("abcdefgh"), st.one_of(st.none(), st.integers(-3600, 3600)), max_size=8),
       st.sets(st.sampled_from("abcdefgh")), st.sets(st.sampled_from("abcdefgh")))
def test_every_enabled_idle_source_is_either_due_or_waited_for(times: dict[str, int | None], enabled: set[str],
                                                                busy: set[str]) -> None:
    names = sorted(enabled)
    schedule = {n: None if times.get(n) is None else at(times[n]) for n in names}  # type: ignore[operator]
    plan = plan_polls(schedule, order(names), busy=busy, resting={}, now=NOW)
    idle = [n for n in names if n not in busy]
    assert sorted(plan.due) == sorted(n for n in idle if schedule[n] is None or schedule[n] <= NOW)  # type: ignore[operator]
    later = [schedule[n] for n in idle if n not in plan.due]
    assert plan.next_at == (min(later) if later else None)  # type: ignore[type-var]
    assert plan.next_at is None or plan.next_at > NOW


# -- when the poll driver wakes ---------------------------------------------------------------------------


def test_wakes_at_the_next_due_time_when_everything_due_was_taken() -> None:
    plan = PollPlan(("a", "b"), at(90))
    assert poll_wake(plan, taken=2, free=4, now=NOW, recheck=None) == at(90)


def test_due_sources_left_for_lack_of_slots_wait_for_a_poll_to_end_not_for_a_timer() -> None:
    plan = PollPlan(("a", "b", "c"), None)
    assert poll_wake(plan, taken=2, free=2, now=NOW, recheck=None) is None  # no busy loop on a full house
    assert poll_wake(PollPlan(("a", "b", "c"), at(90)), taken=2, free=2, now=NOW, recheck=None) == at(90)


def test_due_sources_another_instance_holds_are_tried_again_soon_not_in_a_tight_loop() -> None:
    plan = PollPlan(("a", "b"), at(90))
    assert poll_wake(plan, taken=0, free=4, now=NOW, recheck=None) == at(LEASED_RECHECK)
    assert LEASED_RECHECK > 0


def test_several_instances_never_sleep_longer_than_the_recheck() -> None:
    assert poll_wake(PollPlan((), None), taken=0, free=4, now=NOW, recheck=2.0) == at(2)
    assert poll_wake(PollPlan((), at(1)), taken=0, free=4, now=NOW, recheck=2.0) == at(1)
    assert poll_wake(PollPlan((), at(600)), taken=0, free=4, now=NOW, recheck=2.0) == at(2)


def test_a_timed_wake_comes_no_sooner_than_the_gap_so_polls_due_within_it_start_together() -> None:
    """Issue 21: 10,000 sources at 10 minutes fall due every 60 ms; one round a second takes them."""
    assert poll_wake(PollPlan((), at(0.06)), taken=0, free=4, now=NOW, recheck=None, gap=1.0) == at(1)
    assert poll_wake(PollPlan((), at(90)), taken=0, free=4, now=NOW, recheck=None, gap=1.0) == at(90)
    assert poll_wake(PollPlan(("a",), at(0.06)), taken=0, free=4, now=NOW, recheck=None,
                     gap=1.0) == at(LEASED_RECHECK)  # another instance's: rechecked as before
    assert poll_wake(PollPlan((), None), taken=0, free=4, now=NOW, recheck=None, gap=1.0) is None


@given(st.one_of(st.none(), st.floats(0.001, 7200)), st.floats(0, 5), st.one_of(st.none(), st.floats(0.5, 5)))
def test_a_wake_is_never_before_the_next_time_nor_later_than_the_gap_after_it(
        next_in: float | None, gap: float, recheck: float | None) -> None:
    wake = poll_wake(PollPlan((), None if next_in is None else at(next_in)), taken=0, free=4, now=NOW,
                     recheck=recheck, gap=gap)
    if next_in is None:
        assert wake == (None if recheck is None else at(recheck))
        return
    assert wake is not None
    assert wake <= at(max(next_in, gap))
    assert recheck is not None or wake >= at(next_in)


def test_alone_with_nothing_scheduled_there_is_no_timed_wake() -> None:
    assert poll_wake(PollPlan((), None), taken=0, free=4, now=NOW, recheck=None) is None


# -- whether a finished poll needs a round ----------------------------------------------------------------


def test_a_poll_whose_next_time_comes_after_the_planned_wake_needs_no_round() -> None:
    assert not round_after_poll(at(3600), wake=at(400), starved=False, in_round=False)
    assert not round_after_poll(at(400), wake=at(400), starved=False, in_round=False)  # that wake's round reads it


def test_a_poll_whose_next_time_comes_first_or_with_no_wake_planned_needs_a_round() -> None:
    assert round_after_poll(at(60), wake=at(400), starved=False, in_round=False)
    assert round_after_poll(at(60), wake=None, starved=False, in_round=False)


def test_a_free_slot_with_due_sources_waiting_a_broken_poll_or_a_round_meanwhile_need_a_round() -> None:
    assert round_after_poll(at(3600), wake=at(400), starved=True, in_round=False)
    assert round_after_poll(None, wake=at(400), starved=False, in_round=False)
    # the running round read the schedule while this poll ran: the wake it plans cannot know this time
    assert round_after_poll(at(3600), wake=at(400), starved=False, in_round=True)


@given(st.one_of(st.none(), st.integers(-10, 7200)), st.one_of(st.none(), st.integers(1, 7200)), st.booleans(),
       st.booleans())
def test_no_next_poll_is_ever_left_without_a_round_before_it(next_in: int | None, wake_in: int | None,
                                                             starved: bool, in_round: bool) -> None:
    """Either a round follows at once, or the planned wake comes no later than the source's next poll."""
    next_at = None if next_in is None else at(next_in)
    wake = None if wake_in is None else at(wake_in)
    if not round_after_poll(next_at, wake=wake, starved=starved, in_round=in_round):
        assert next_at is not None and wake is not None and wake <= next_at
        assert not starved and not in_round


# -- which channels the delivery driver starts ----------------------------------------------------------


def test_starts_due_channels_without_a_run_up_to_the_limit_in_the_given_order() -> None:
    started = channels_to_start(["c", "a", "b", "d"], {"a"}, {}, limit=3, clock=100.0)
    assert started == ["c", "b"]  # a has a run; 3 at once, one of them a's


def test_resting_channels_are_left_alone_until_their_time() -> None:
    resting = {"a": 101.0, "b": 100.0}
    assert channels_to_start(["a", "b"], set(), resting, limit=5, clock=100.0) == ["b"]
    assert channels_to_start(["a", "b"], set(), resting, limit=5, clock=101.0) == ["a", "b"]


def test_no_channel_starts_once_the_limit_is_reached_or_passed() -> None:
    assert channels_to_start(["a", "b"], {"x", "y"}, {}, limit=2, clock=0.0) == []
    assert channels_to_start(["a", "b"], {"x", "y", "z"}, {}, limit=2, clock=0.0) == []


@given(st.lists(st.sampled_from("abcdefgh"), unique=True), st.sets(st.sampled_from("abcdefgh")),
       st.integers(0, 10))
def test_never_a_second_run_and_never_over_the_limit(due: list[str], running: set[str], limit: int) -> None:
    started = channels_to_start(due, running, {}, limit=limit, clock=0.0)
    assert not set(started) & running
    assert len(started) + len(running) <= max(limit, len(running))
    assert started == [n for n in due if n not in running][:len(started)]  # in order, none skipped


# -- each instance's share ------------------------------------------------------------------------------


def test_alone_or_with_one_channel_the_limit_is_the_configured_concurrency() -> None:
    assert channel_limit(10, 1, 4) == 4
    assert channel_limit(1, 3, 4) == 4
    assert channel_limit(0, 3, 4) == 4


@given(st.integers(2, 500), st.integers(2, 20), st.integers(1, 64))
def test_the_live_instances_together_cover_every_busy_channel(busy: int, live: int, concurrency: int) -> None:
    share = channel_limit(busy, live, concurrency)
    assert 1 <= share <= concurrency
    assert share * live >= busy or share == concurrency  # nothing waits on an instance that is not there
