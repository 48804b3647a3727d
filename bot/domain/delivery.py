"""The delivery decision table: what the outcome of one send means for the delivery and its channel.

Pure (standard library only, no clock, no randomness of its own): ``decide(outcome, attempt, channel,
traits, now=..., jitter=...)`` returns either a ``Decision`` (the delivery's new status, error, next
attempt, attempt counter, and the channel's hold / pause / admin notice), which the delivery service
applies with ONE store call (``Store.apply_decision``), or ``SendAgain`` (send the same delivery again
at once: the plain rendering, or the chat's new id), which writes nothing.

The rows (docs/delivery.md, "What happens on each error", is the same table in words)::

    outcome                   condition                          status   attempt  channel      reason
    Published                 —                                  sent     counted  —            —
    Duplicate                 —                                  sent     counted  —            duplicate
    Found (reconciled)        —                                  sent     counted  —            reconciled
    Rejected                  plain rendering not tried yet      (send again: plain)
    Rejected                  plain rendering tried              dead     counted  —            rejected
    RenderFailed              first rendering                    dead     counted  —            render
    RenderFailed              plain rendering after a rejection  dead     counted  —            rejected
    ChatMigrated              channel can move, not moved yet    (send again: the new chat)
    ChatMigrated              otherwise                          dead     counted  —            error
    RateLimited(delay)        —                                  queued   not      held ≤ 7 d   rate_limited
    Permanent                 —                                  queued   not      paused       paused
    CreditsExhausted (402)    —                                  queued   not      paused       paused
    OverBudget                it could never fit the budget      queued   not      paused       paused
    OverBudget                otherwise                          queued   not      held until   budget
                                                                                   the window resets
    Ambiguous                 no resend (not idempotent,         unknown  counted  —            ambiguous
                              not at_least_once)
    Ambiguous                 resend, attempts left              failed   counted  held backoff retry
    Retryable / InternalError attempts left                      failed   counted  held backoff retry
    Ambiguous / Retryable /   last attempt                       dead     counted  —            exhausted
      InternalError
    Failed (other errors)     —                                  dead     counted  —            error
    KeyExpired                —                                  unknown  counted  —            ambiguous

"counted": the claim's attempt stays counted; "not": the claim's attempt is given back
(``attempts_delta = -1``). An ``Ambiguous`` outcome marks the delivery ``uncertain`` (the post may
exist), so a resend after the platform's idempotency window is checked first (``before_resend``).
An ``OverBudget`` hold tells the admins only on the first refusal of its window (``first``); what an
outcome means for a spending reservation is ``bot.domain.budget.keeps_charge``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.domain.models import DeliveryStatus
from bot.domain.schedule import RetryPolicy

IDEMPOTENCY_MARGIN = 300.0
"""Seconds before the end of a platform's idempotency window from which a resend is treated as
unsafe (clocks differ, and the key's TTL starts when the platform saw the request)."""

MAX_RATE_LIMIT_HOLD = 7 * 86400.0
"""The longest a platform's "come back later" holds a channel (its delay is hostile input: ``inf`` or
``1e300`` must neither crash the run nor hold the channel for ever; X's longest limit is 24 hours)."""

# -- the outcome of one attempt ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Published:
    """The platform made the post and answered with its id (and URL, when it has one)."""

    remote_id: str | None
    url: str | None


@dataclass(frozen=True, slots=True)
class Duplicate:
    """The platform refused the post as one it already has (X's "duplicate content"): it is there."""

    note: str


@dataclass(frozen=True, slots=True)
class Found:
    """An earlier, unconfirmed attempt had made the post: found on the platform (``find_published``)."""

    remote_id: str | None
    url: str | None


@dataclass(frozen=True, slots=True)
class Rejected:
    """The platform refused this message (bad markup, too long)."""

    reason: str


@dataclass(frozen=True, slots=True)
class RenderFailed:
    """The message could not be rendered. ``rejected``: the platform's reason when this was the plain
    rendering asked for after a rejection (None: the first rendering)."""

    error: str
    rejected: str | None = None


@dataclass(frozen=True, slots=True)
class ChatMigrated:
    """Telegram moved the chat (a group became a supergroup) to ``new_chat_id``."""

    reason: str
    new_chat_id: int


@dataclass(frozen=True, slots=True)
class RateLimited:
    """The platform asked to wait ``delay`` seconds before the next call (a 429, a 5xx with Retry-After)."""

    reason: str
    delay: float


@dataclass(frozen=True, slots=True)
class Permanent:
    """The channel cannot post until an operator acts; ``credentials``: missing or rejected ones;
    ``sent``: False when the request never left (an unusable URL)."""

    reason: str
    credentials: bool = False
    sent: bool = True


@dataclass(frozen=True, slots=True)
class CreditsExhausted:
    """The platform refused the request for want of paid credits (X's 402): nothing posts until an
    operator adds credits."""

    reason: str


@dataclass(frozen=True, slots=True)
class OverBudget:
    """The channel's spending budget has no room for this request (nothing was sent). ``resumes_at``: when
    the full window resets; ``never``: the request costs more than a whole budget; ``first``: the first
    refusal of the window (the admins are told once)."""

    reason: str
    resumes_at: datetime
    first: bool = False
    never: bool = False


@dataclass(frozen=True, slots=True)
class Ambiguous:
    """The request left and no answer came: the post may or may not exist."""

    reason: str


@dataclass(frozen=True, slots=True)
class Retryable:
    """A transient failure before anything was posted (5xx, connection refused); ``sent``: False when the
    request never left this process (connection refused, connect timeout)."""

    reason: str
    sent: bool = True


@dataclass(frozen=True, slots=True)
class InternalError:
    """The publisher broke its contract (raised something not a ``PublishError``): treated as transient,
    so the delivery is retried rather than lost. ``error``: ``Type: message``."""

    platform: str
    error: str


@dataclass(frozen=True, slots=True)
class Failed:
    """Any other publish error: final for this delivery."""

    reason: str


@dataclass(frozen=True, slots=True)
class KeyExpired:
    """An earlier attempt may have posted, the platform's idempotency key has expired, and the platform
    cannot be asked (``before_resend`` said ``GIVE_UP``)."""


Outcome = (Published | Duplicate | Found | Rejected | RenderFailed | ChatMigrated | RateLimited | Permanent
           | CreditsExhausted | OverBudget | Ambiguous | Retryable | InternalError | Failed | KeyExpired)
"""The outcome of one attempt, as the delivery service observed it."""

# -- the facts the decision needs --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Attempt:
    """The delivery's attempt. ``number``: attempts counted so far, this one included (the claim counts
    it); ``uncertain_since``: when an earlier attempt may have reached the platform unconfirmed;
    ``plain_tried`` / ``moved``: this attempt already sent the plain rendering / followed a chat move."""

    number: int
    uncertain_since: datetime | None = None
    plain_tried: bool = False
    moved: bool = False


@dataclass(frozen=True, slots=True)
class ChannelFacts:
    """The channel's side: its name (for the admin notice), the retry policy, ``at_least_once`` (resend
    a send whose outcome is unknown, even without idempotency) and whether it can follow a chat move."""

    name: str
    policy: RetryPolicy
    at_least_once: bool = False
    can_move: bool = False


@dataclass(frozen=True, slots=True)
class PlatformTraits:
    """What the channel's publisher declares (``bot.publishers.api``): ``idempotent`` (a resend with the
    same key cannot post twice), for how long (``idempotency_window`` seconds; None: no limit), and
    whether it can look a post up (``find_published``)."""

    idempotent: bool
    idempotency_window: float | None = None
    can_look_up: bool = False


def resend_when_unsure(at_least_once: bool, traits: PlatformTraits) -> bool:
    """May a send whose outcome is unknown be sent again (the platform deduplicates, or the channel
    prefers a rare duplicate to a rare gap)?"""
    return traits.idempotent or at_least_once


# -- the decision ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Decision:
    """What to record, in one transaction: the delivery's new state and the channel's effects.

    ``attempts_delta`` moves the attempt counter the claim incremented (-1: the attempt is not counted);
    ``uncertain``: the attempt may have reached the platform (the store keeps the first such time);
    ``hold_until``: no delivery of the channel is sent before then; ``pause``: the channel is paused
    with this reason; ``notify``: the text for the admins (after the record); ``rendered_hash``: see there."""

    status: DeliveryStatus
    reason: str | None = None
    error: str | None = None
    next_attempt_at: datetime | None = None
    attempts_delta: int = 0
    uncertain: bool = False
    remote_id: str | None = None
    remote_url: str | None = None
    note: str | None = None
    hold_until: datetime | None = None
    pause: str | None = None
    notify: str | None = None
    rendered_hash: str | None = None
    """What the message shows now (``bot.render.message.message_hash``), recorded with a ``sent`` outcome:
    a later edit whose rendering hashes the same sends nothing."""

    @property
    def stops_channel(self) -> bool:
        """Is the channel held or paused now (its run ends here)?"""
        return self.hold_until is not None or self.pause is not None


class Again(enum.Enum):
    """How a delivery is sent again at once, in the same attempt."""

    PLAIN = "plain"
    """With the plain (safe, shorter) rendering, after the platform rejected the message."""
    MOVED = "moved"
    """To the chat's new id, after Telegram moved the chat."""


@dataclass(frozen=True, slots=True)
class SendAgain:
    """Nothing is recorded: the delivery is sent again at once (``how``)."""

    how: Again


def decide(outcome: Outcome, attempt: Attempt, channel: ChannelFacts, traits: PlatformTraits, *,
           now: datetime, jitter: float) -> Decision | SendAgain:
    """The decision table (module docstring). ``jitter``: a uniform draw in [0, 1) for the backoff."""
    match outcome:
        case Published(remote_id, url):
            return Decision(DeliveryStatus.SENT, remote_id=remote_id, remote_url=url)
        case Duplicate(note):
            return Decision(DeliveryStatus.SENT, reason="duplicate", note=note)
        case Found(remote_id, url):
            return Decision(DeliveryStatus.SENT, reason="reconciled", remote_id=remote_id, remote_url=url,
                            note="an earlier unconfirmed attempt had posted it: found on the platform")
        case Rejected(reason):
            if not attempt.plain_tried:
                return SendAgain(Again.PLAIN)
            return Decision(DeliveryStatus.DEAD, reason="rejected", error=reason)
        case RenderFailed(error, None):
            return Decision(DeliveryStatus.DEAD, reason="render", error=f"cannot render: {error}")
        case RenderFailed(error, rejected):
            return Decision(DeliveryStatus.DEAD, reason="rejected", error=f"{rejected}; no plain fallback: {error}")
        case ChatMigrated(reason, _):
            if channel.can_move and not attempt.moved:
                return SendAgain(Again.MOVED)
            return Decision(DeliveryStatus.DEAD, reason="error", error=reason)
        case RateLimited(reason, delay):
            until = now + timedelta(seconds=hold_seconds(delay))
            return Decision(DeliveryStatus.QUEUED, reason="rate_limited", error=reason, next_attempt_at=until,
                            attempts_delta=-1, hold_until=until)
        case Permanent(reason, credentials):
            return _pause(reason, "credentials" if credentials else "channel error", channel, now)
        case CreditsExhausted(reason):
            return _pause(f"credits exhausted: {reason}", "payment required", channel, now)
        case OverBudget(reason, _, _, True):
            return _pause(reason, "budget", channel, now)
        case OverBudget(reason, resumes_at, first, _):
            until = max(resumes_at, now)
            return Decision(DeliveryStatus.QUEUED, reason="budget", error=reason, next_attempt_at=until,
                            attempts_delta=-1, hold_until=until,
                            notify=f"Channel {channel.name}: {reason}. Its posts wait in order; sending resumes "
                                   f"at {until:%Y-%m-%d %H:%M} UTC." if first else None)
        case Ambiguous(reason):
            if not resend_when_unsure(channel.at_least_once, traits):
                return Decision(DeliveryStatus.UNKNOWN, reason="ambiguous", error=reason, uncertain=True)
            return _retry(reason, attempt, channel.policy, now=now, jitter=jitter, uncertain=True)
        case Retryable(reason):
            return _retry(reason, attempt, channel.policy, now=now, jitter=jitter, uncertain=False)
        case InternalError(platform, error):
            return _retry(f"internal error in the {platform} publisher: {error}", attempt, channel.policy,
                          now=now, jitter=jitter, uncertain=False)
        case Failed(reason):
            return Decision(DeliveryStatus.DEAD, reason="error", error=reason)
        case KeyExpired():
            since = attempt.uncertain_since or now
            minutes = round((now - since).total_seconds() / 60)
            return Decision(DeliveryStatus.UNKNOWN, reason="ambiguous",
                            error=f"an attempt {minutes} min ago may have been posted, and the platform's "
                                  "idempotency key has expired; check the channel, then `tagrelay retry` if it "
                                  "is missing")


def _pause(reason: str, kind: str, channel: ChannelFacts, now: datetime) -> Decision:
    """The channel is paused with ``reason`` (its queue kept, the attempt not counted); the admins are told."""
    return Decision(DeliveryStatus.QUEUED, reason="paused", error=reason, next_attempt_at=now, attempts_delta=-1,
                    pause=reason, notify=f"Channel {channel.name} paused ({kind}): {reason}. "
                                         f"Its queue is kept; resume with /resume {channel.name}.")


def hold_seconds(delay: float) -> float:
    """A platform's delay as a hold: at least 0 (NaN: 0), at most ``MAX_RATE_LIMIT_HOLD``."""
    if delay != delay:  # NaN
        return 0.0
    return min(max(0.0, delay), MAX_RATE_LIMIT_HOLD)


def _retry(reason: str, attempt: Attempt, policy: RetryPolicy, *, now: datetime, jitter: float,
           uncertain: bool) -> Decision:
    """A transient failure: ``failed`` with the whole channel held for the backoff (the platform is
    failing, and the oldest post must go first), or ``dead`` after the last attempt."""
    if policy.exhausted(attempt.number):
        return Decision(DeliveryStatus.DEAD, reason="exhausted", uncertain=uncertain,
                        error=f"{reason} (gave up after {attempt.number} attempts)")
    until = now + timedelta(seconds=policy.delay_for(attempt.number, jitter))
    return Decision(DeliveryStatus.FAILED, reason="retry", error=reason, next_attempt_at=until, uncertain=uncertain,
                    hold_until=until)


class BeforeResend(enum.Enum):
    """What to do before sending a delivery an earlier attempt of which may have reached the platform."""

    SEND = "send"
    """Nothing was unsure, or the platform's idempotency key still holds: the resend is safe."""
    LOOK_UP = "look_up"
    """The key has expired (or is about to): ask the platform whether the post is there."""
    GIVE_UP = "give_up"
    """The key has expired and the platform cannot be asked: ``KeyExpired`` (``unknown``, for an operator)."""


def before_resend(attempt: Attempt, traits: PlatformTraits, now: datetime) -> BeforeResend:
    """A resend with an expired idempotency key could post twice; inside the window (less a margin
    for clock skew, ``IDEMPOTENCY_MARGIN``) it is safe."""
    window = traits.idempotency_window
    if attempt.uncertain_since is None or not traits.idempotent or window is None:
        return BeforeResend.SEND
    if (now - attempt.uncertain_since).total_seconds() < window - IDEMPOTENCY_MARGIN:
        return BeforeResend.SEND
    return BeforeResend.LOOK_UP if traits.can_look_up else BeforeResend.GIVE_UP
