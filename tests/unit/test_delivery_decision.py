"""The delivery decision table (``bot.domain.delivery``), row by row, without a database.

Every row of the table in the module's docstring (and docs/delivery.md) is one case below, compared
as a whole ``Decision``; hypothesis then checks the invariants behind "nothing lost, nothing twice":
never ``sent`` without the platform's word, an unsure send never re-queued where a resend could post
twice, attempts never past ``max_attempts``, a rate limit never counted as an attempt.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.domain.delivery import (
    IDEMPOTENCY_MARGIN,
    MAX_RATE_LIMIT_HOLD,
    Again,
    Ambiguous,
    Attempt,
    BeforeResend,
    ChannelFacts,
    ChatMigrated,
    CreditsExhausted,
    Decision,
    Duplicate,
    Failed,
    Found,
    InternalError,
    KeyExpired,
    Outcome,
    OverBudget,
    Permanent,
    PlatformTraits,
    Published,
    RateLimited,
    Rejected,
    RenderFailed,
    Retryable,
    SendAgain,
    before_resend,
    decide,
    hold_seconds,
)
from bot.domain.models import DeliveryStatus
from bot.domain.schedule import RetryPolicy

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MIDNIGHT = datetime(2026, 3, 2, tzinfo=UTC)
POLICY = RetryPolicy(base=10, cap=100, max_attempts=3)
CHANNEL = ChannelFacts("tg", POLICY)
MOVABLE = replace(CHANNEL, can_move=True)
AT_LEAST_ONCE = replace(CHANNEL, at_least_once=True)
TELEGRAM = PlatformTraits(idempotent=False)
MASTODON = PlatformTraits(idempotent=True, idempotency_window=3600.0, can_look_up=True)
FIRST = Attempt(1)
LAST = Attempt(3)
S = DeliveryStatus


def backoff(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


# (row, outcome, attempt, channel, traits, jitter, expected)
ROWS: list[tuple[str, Outcome, Attempt, ChannelFacts, PlatformTraits, float, Decision | SendAgain]] = [
    ("published", Published("42", "https://t.me/c/42"), FIRST, CHANNEL, TELEGRAM, 0.5,
     Decision(S.SENT, remote_id="42", remote_url="https://t.me/c/42")),
    ("published without an id", Published(None, None), FIRST, CHANNEL, TELEGRAM, 0.5, Decision(S.SENT)),
    ("duplicate", Duplicate("duplicate content"), FIRST, CHANNEL, TELEGRAM, 0.5,
     Decision(S.SENT, reason="duplicate", note="duplicate content")),
    ("found on the platform", Found("m-1", "https://m.example/@a/1"), Attempt(2, NOW - timedelta(hours=2)),
     CHANNEL, MASTODON, 0.5,
     Decision(S.SENT, reason="reconciled", remote_id="m-1", remote_url="https://m.example/@a/1",
              note="an earlier unconfirmed attempt had posted it: found on the platform")),
    ("rejected, plain not tried", Rejected("can't parse entities"), FIRST, CHANNEL, TELEGRAM, 0.5,
     SendAgain(Again.PLAIN)),
    ("rejected, plain tried", Rejected("too long"), replace(FIRST, plain_tried=True), CHANNEL, TELEGRAM, 0.5,
     Decision(S.DEAD, reason="rejected", error="too long")),
    ("render failed", RenderFailed("undefined variable"), FIRST, CHANNEL, TELEGRAM, 0.5,
     Decision(S.DEAD, reason="render", error="cannot render: undefined variable")),
    ("plain render failed", RenderFailed("no plain form", rejected="too long"), replace(FIRST, plain_tried=True),
     CHANNEL, TELEGRAM, 0.5, Decision(S.DEAD, reason="rejected", error="too long; no plain fallback: no plain form")),
    ("chat migrated, can move", ChatMigrated("chat migrated to -100", -100), FIRST, MOVABLE, TELEGRAM, 0.5,
     SendAgain(Again.MOVED)),
    ("chat migrated twice", ChatMigrated("chat migrated to -100", -100), replace(FIRST, moved=True), MOVABLE,
     TELEGRAM, 0.5, Decision(S.DEAD, reason="error", error="chat migrated to -100")),
    ("chat migrated, cannot move", ChatMigrated("chat migrated to -100", -100), FIRST, CHANNEL, TELEGRAM, 0.5,
     Decision(S.DEAD, reason="error", error="chat migrated to -100")),
    ("rate limited", RateLimited("rate limited; retry after 42s", 42.0), Attempt(2), CHANNEL, TELEGRAM, 0.5,
     Decision(S.QUEUED, reason="rate_limited", error="rate limited; retry after 42s", next_attempt_at=backoff(42),
              attempts_delta=-1, hold_until=backoff(42))),
    ("rate limited for ever", RateLimited("retry after inf", float("inf")), FIRST, CHANNEL, TELEGRAM, 0.5,
     Decision(S.QUEUED, reason="rate_limited", error="retry after inf", next_attempt_at=backoff(7 * 86400),
              attempts_delta=-1, hold_until=backoff(7 * 86400))),
    ("credentials", Permanent("token rejected (401)", credentials=True), FIRST, CHANNEL, TELEGRAM, 0.5,
     Decision(S.QUEUED, reason="paused", error="token rejected (401)", next_attempt_at=NOW, attempts_delta=-1,
              pause="token rejected (401)",
              notify="Channel tg paused (credentials): token rejected (401). "
                     "Its queue is kept; resume with /resume tg.")),
    ("permanent", Permanent("bot was kicked"), LAST, CHANNEL, TELEGRAM, 0.5,
     Decision(S.QUEUED, reason="paused", error="bot was kicked", next_attempt_at=NOW, attempts_delta=-1,
              pause="bot was kicked",
              notify="Channel tg paused (channel error): bot was kicked. Its queue is kept; resume with /resume tg.")),
    ("credits exhausted (402)", CreditsExhausted("X is out of credits"), FIRST, CHANNEL, TELEGRAM, 0.5,
     Decision(S.QUEUED, reason="paused", error="credits exhausted: X is out of credits", next_attempt_at=NOW,
              attempts_delta=-1, pause="credits exhausted: X is out of credits",
              notify="Channel tg paused (payment required): credits exhausted: X is out of credits. "
                     "Its queue is kept; resume with /resume tg.")),
    ("over budget, first refusal of the window", OverBudget("budget reached: …", MIDNIGHT, first=True), FIRST,
     CHANNEL, TELEGRAM, 0.5,
     Decision(S.QUEUED, reason="budget", error="budget reached: …", next_attempt_at=MIDNIGHT, attempts_delta=-1,
              hold_until=MIDNIGHT, notify="Channel tg: budget reached: …. Its posts wait in order; sending "
                                          "resumes at 2026-03-02 00:00 UTC.")),
    ("over budget, admins told already", OverBudget("budget reached: …", MIDNIGHT), Attempt(2), CHANNEL,
     TELEGRAM, 0.5,
     Decision(S.QUEUED, reason="budget", error="budget reached: …", next_attempt_at=MIDNIGHT, attempts_delta=-1,
              hold_until=MIDNIGHT)),
    ("over budget, the window is over already", OverBudget("budget reached: …", NOW - timedelta(seconds=1)),
     FIRST, CHANNEL, TELEGRAM, 0.5,
     Decision(S.QUEUED, reason="budget", error="budget reached: …", next_attempt_at=NOW, attempts_delta=-1,
              hold_until=NOW)),
    ("over budget, could never fit", OverBudget("costs more than the budget", MIDNIGHT, first=True, never=True),
     FIRST, CHANNEL, TELEGRAM, 0.5,
     Decision(S.QUEUED, reason="paused", error="costs more than the budget", next_attempt_at=NOW, attempts_delta=-1,
              pause="costs more than the budget",
              notify="Channel tg paused (budget): costs more than the budget. Its queue is kept; resume with "
                     "/resume tg.")),
    ("ambiguous, no resend", Ambiguous("read timeout"), FIRST, CHANNEL, TELEGRAM, 0.5,
     Decision(S.UNKNOWN, reason="ambiguous", error="read timeout", uncertain=True)),
    ("ambiguous, no resend, last attempt", Ambiguous("read timeout"), LAST, CHANNEL, TELEGRAM, 0.5,
     Decision(S.UNKNOWN, reason="ambiguous", error="read timeout", uncertain=True)),
    ("ambiguous, idempotent", Ambiguous("read timeout"), FIRST, CHANNEL, MASTODON, 0.0,
     Decision(S.FAILED, reason="retry", error="read timeout", next_attempt_at=backoff(5), uncertain=True,
              hold_until=backoff(5))),
    ("ambiguous, at least once", Ambiguous("read timeout"), Attempt(2), AT_LEAST_ONCE, TELEGRAM, 0.5,
     Decision(S.FAILED, reason="retry", error="read timeout", next_attempt_at=backoff(15), uncertain=True,
              hold_until=backoff(15))),
    ("ambiguous, resend, last attempt", Ambiguous("read timeout"), LAST, CHANNEL, MASTODON, 0.5,
     Decision(S.DEAD, reason="exhausted", error="read timeout (gave up after 3 attempts)", uncertain=True)),
    ("retryable", Retryable("HTTP 502"), FIRST, CHANNEL, TELEGRAM, 0.0,
     Decision(S.FAILED, reason="retry", error="HTTP 502", next_attempt_at=backoff(5), hold_until=backoff(5))),
    ("retryable, second attempt", Retryable("HTTP 502"), Attempt(2), CHANNEL, TELEGRAM, 0.999,
     Decision(S.FAILED, reason="retry", error="HTTP 502", next_attempt_at=backoff(10 + 10 * 0.999),
              hold_until=backoff(10 + 10 * 0.999))),
    ("retryable, last attempt", Retryable("HTTP 502"), LAST, CHANNEL, TELEGRAM, 0.5,
     Decision(S.DEAD, reason="exhausted", error="HTTP 502 (gave up after 3 attempts)")),
    ("internal error", InternalError("recording", "KeyError: 'id'"), FIRST, CHANNEL, TELEGRAM, 0.0,
     Decision(S.FAILED, reason="retry", error="internal error in the recording publisher: KeyError: 'id'",
              next_attempt_at=backoff(5), hold_until=backoff(5))),
    ("internal error, last attempt", InternalError("recording", "KeyError: 'id'"), LAST, CHANNEL, TELEGRAM, 0.5,
     Decision(S.DEAD, reason="exhausted",
              error="internal error in the recording publisher: KeyError: 'id' (gave up after 3 attempts)")),
    ("other error", Failed("message refused by a plugin"), FIRST, CHANNEL, TELEGRAM, 0.5,
     Decision(S.DEAD, reason="error", error="message refused by a plugin")),
    ("key expired", KeyExpired(), Attempt(2, NOW - timedelta(minutes=61)), CHANNEL, MASTODON, 0.5,
     Decision(S.UNKNOWN, reason="ambiguous",
              error="an attempt 61 min ago may have been posted, and the platform's idempotency key has "
                    "expired; check the channel, then `tagrelay retry` if it is missing")),
]


@pytest.mark.parametrize(("outcome", "attempt", "channel", "traits", "jitter", "expected"),
                         [row[1:] for row in ROWS], ids=[row[0] for row in ROWS])
def test_every_row_of_the_decision_table(outcome: Outcome, attempt: Attempt, channel: ChannelFacts,
                                         traits: PlatformTraits, jitter: float,
                                         expected: Decision | SendAgain) -> None:
    assert decide(outcome, attempt, channel, traits, now=NOW, jitter=jitter) == expected


def test_the_table_covers_every_kind_of_outcome() -> None:
    kinds = {type(row[1]) for row in ROWS}
    assert kinds == set(Outcome.__args__)


@pytest.mark.parametrize(("delay", "held"), [(0.0, 0.0), (-5.0, 0.0), (float("nan"), 0.0), (86400.0, 86400.0),
                                             (1e300, MAX_RATE_LIMIT_HOLD), (float("-inf"), 0.0)])
def test_a_platforms_wait_becomes_a_bounded_hold(delay: float, held: float) -> None:
    assert hold_seconds(delay) == held


# -- before a resend of an unsure delivery ----------------------------------------------------------

UNSURE = Attempt(2, NOW - timedelta(seconds=3600 - IDEMPOTENCY_MARGIN))


@pytest.mark.parametrize(("attempt", "traits", "expected"), [
    (Attempt(2), MASTODON, BeforeResend.SEND),  # nothing was unsure
    (UNSURE, TELEGRAM, BeforeResend.SEND),  # not idempotent: only at_least_once resends, and it may duplicate
    (UNSURE, PlatformTraits(idempotent=True), BeforeResend.SEND),  # a key that holds for ever
    (replace(UNSURE, uncertain_since=NOW - timedelta(seconds=3600 - IDEMPOTENCY_MARGIN - 1)), MASTODON,
     BeforeResend.SEND),  # the key still holds, with the margin
    (UNSURE, MASTODON, BeforeResend.LOOK_UP),  # from the margin on: ask the platform
    (replace(UNSURE, uncertain_since=NOW - timedelta(days=3)), MASTODON, BeforeResend.LOOK_UP),
    (UNSURE, replace(MASTODON, can_look_up=False), BeforeResend.GIVE_UP),  # cannot ask: unknown, for an operator
], ids=["sure", "not idempotent", "no window", "inside the window", "window ends", "long ago", "cannot look up"])
def test_before_resend(attempt: Attempt, traits: PlatformTraits, expected: BeforeResend) -> None:
    assert before_resend(attempt, traits, NOW) is expected


# -- invariants ------------------------------------------------------------------------------------

reasons = st.text(min_size=1, max_size=40)  # a PublishError always has one (its default message)
delays = st.floats(allow_nan=True, allow_infinity=True)
outcomes: st.SearchStrategy[Outcome] = st.one_of(
    st.builds(Published, st.none() | reasons, st.none() | reasons),
    st.builds(Duplicate, reasons),
    st.builds(Found, st.none() | reasons, st.none() | reasons),
    st.builds(Rejected, reasons),
    st.builds(RenderFailed, reasons, st.none() | reasons),
    st.builds(ChatMigrated, reasons, st.integers()),
    st.builds(RateLimited, reasons, delays),
    st.builds(Permanent, reasons, st.booleans()),
    st.builds(Ambiguous, reasons),
    st.builds(Retryable, reasons),
    st.builds(InternalError, reasons, reasons),
    st.builds(Failed, reasons),
    st.just(KeyExpired()),
)
policies = st.builds(RetryPolicy, base=st.floats(0.1, 86400), cap=st.floats(1, 7 * 86400),
                     max_attempts=st.integers(1, 100))
channels = st.builds(ChannelFacts, st.just("c"), policies, st.booleans(), st.booleans())
traits_ = st.builds(PlatformTraits, st.booleans(), st.none() | st.floats(0, 86400), st.booleans())
nows = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))
jitters = st.floats(0, 1, exclude_max=True)


@st.composite
def attempts(draw: st.DrawFn, max_attempts: int = 100) -> Attempt:
    return Attempt(draw(st.integers(1, max_attempts)),
                   draw(st.none() | st.timedeltas(timedelta(0), timedelta(days=30)).map(lambda d: NOW - d)),
                   draw(st.booleans()), draw(st.booleans()))


@given(outcomes, attempts(), channels, traits_, nows, jitters)
def test_decide_is_total_deterministic_and_consistent(outcome: Outcome, attempt: Attempt, channel: ChannelFacts,
                                                      traits: PlatformTraits, now: datetime, jitter: float) -> None:
    verdict = decide(outcome, attempt, channel, traits, now=now, jitter=jitter)
    assert verdict == decide(outcome, attempt, channel, traits, now=now, jitter=jitter)
    if isinstance(verdict, SendAgain):  # only a first rejection, or a first chat move the channel can follow
        assert (isinstance(outcome, Rejected) and not attempt.plain_tried) or (
            isinstance(outcome, ChatMigrated) and channel.can_move and not attempt.moved)
        return
    # never sent without the platform's word that the post is there
    assert (verdict.status is S.SENT) == isinstance(outcome, Published | Duplicate | Found)
    if verdict.status is not S.SENT:
        assert verdict.remote_id is None and verdict.remote_url is None and verdict.error
    # what stays in the queue is due again, and holds its channel until then (oldest post first)
    assert verdict.stops_channel == (verdict.status in (S.QUEUED, S.FAILED))
    if verdict.status in (S.QUEUED, S.FAILED):
        assert verdict.next_attempt_at is not None and verdict.next_attempt_at >= now
        assert verdict.pause is not None or verdict.hold_until == verdict.next_attempt_at
    else:
        assert verdict.next_attempt_at is None and verdict.hold_until is None and verdict.pause is None
    # a rate limit or a pause never counts an attempt; nothing else gives one back
    assert (verdict.attempts_delta == -1) == isinstance(outcome, RateLimited | Permanent)
    if isinstance(outcome, RateLimited):
        assert verdict.hold_until is not None and verdict.hold_until - now <= timedelta(seconds=MAX_RATE_LIMIT_HOLD)
    # the admins hear of every pause, and of nothing else
    assert (verdict.notify is not None) == (verdict.pause is not None) == isinstance(outcome, Permanent)


@given(attempts(), channels, traits_, nows, jitters, reasons)
def test_an_unsure_send_is_never_requeued_where_a_resend_could_post_twice(
        attempt: Attempt, channel: ChannelFacts, traits: PlatformTraits, now: datetime, jitter: float,
        reason: str) -> None:
    verdict = decide(Ambiguous(reason), attempt, channel, traits, now=now, jitter=jitter)
    assert isinstance(verdict, Decision) and verdict.uncertain
    if not (traits.idempotent or channel.at_least_once):
        assert verdict.status is S.UNKNOWN
    else:
        assert verdict.status in (S.FAILED, S.DEAD)


@given(st.lists(outcomes, min_size=1, max_size=150), policies, traits_, jitters, st.booleans())
def test_attempts_never_exceed_max_attempts(run: list[Outcome], policy: RetryPolicy, traits: PlatformTraits,
                                            jitter: float, at_least_once: bool) -> None:
    """One delivery through a run of outcomes, the way the store counts: a claim adds an attempt,
    the decision's ``attempts_delta`` moves it; a final status ends the run."""
    channel = ChannelFacts("c", policy, at_least_once=at_least_once, can_move=True)
    counted = 0
    attempt: Attempt | None = None
    for outcome in run:
        if attempt is None:
            counted += 1  # the claim
            assert counted <= policy.max_attempts
            attempt = Attempt(counted)
        verdict = decide(outcome, attempt, channel, traits, now=NOW, jitter=jitter)
        if isinstance(verdict, SendAgain):  # sent again at once: the same attempt, not a new claim
            attempt = replace(attempt, plain_tried=attempt.plain_tried or verdict.how is Again.PLAIN,
                              moved=attempt.moved or verdict.how is Again.MOVED)
            continue
        attempt = None
        counted += verdict.attempts_delta
        assert 0 <= counted <= policy.max_attempts
        if verdict.status.is_final:
            break


@given(st.integers(1, 10_000), st.floats(0.1, 86400), st.floats(1, 7 * 86400), jitters)
def test_a_backoff_is_between_half_and_all_of_its_ceiling(attempt: int, base: float, cap: float,
                                                          jitter: float) -> None:
    policy = RetryPolicy(base=base, cap=cap, max_attempts=100)
    ceiling = min(cap, base * 2.0 ** min(attempt - 1, 64))
    assert ceiling / 2 <= policy.delay_for(attempt, jitter) <= ceiling
