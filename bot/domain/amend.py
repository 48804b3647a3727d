"""The decision table of an edit or a deletion: what the outcome of one attempt means. Pure.

An ``edit`` or ``delete`` delivery (``DeliveryKind``) runs through the same states as a post
(queued → sending → sent | failed | dead) and is recorded the same way (``Decision``, one store call).
What differs is what an outcome means. Both are safe to repeat: an edit sets the same content again
(Telegram answers "message is not modified", the Mastodon publisher reads the status first), and a
deletion of a message that is gone finds it gone. So an attempt whose answer was lost is simply
retried, on every platform, and a crash while ``sending`` puts the delivery back in the queue.

The rows (``decide_change``)::

    outcome                  kind     status  reason       note
    Changed                  both     sent    —            the message now shows the post's content / is gone
    Unchanged                edit     sent    unchanged    the message already shows this rendering: no request
    Done(note)               both     sent    already      an earlier attempt had done it (not modified; gone)
    Gone (MessageGoneError)  delete   sent    already      nothing left to delete
    Gone                     edit     dead    gone         the message was deleted on the platform
    Refused                  both     dead    refused      e.g. Telegram's "message can't be deleted"
    Rejected                 edit     (send again: plain), then dead rejected   like a post
    Rejected                 delete   dead    refused
    Unsupported              both     dead    unsupported  the platform has no edit / delete
    NoMessage                both     dead    no_message   the post delivery left no message to change
    TooOld(limit)            delete   dead    too_old      the platform deletes only within ``limit``; admins told
    Ambiguous                both     as Retryable (a repeat is safe)
    RateLimited / Permanent / Retryable / InternalError / Failed / RenderFailed: as for a post (``decide``)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot.domain.delivery import (
    Ambiguous,
    Attempt,
    ChannelFacts,
    Decision,
    Outcome,
    PlatformTraits,
    Rejected,
    Retryable,
    SendAgain,
    decide,
)
from bot.domain.models import DeliveryKind, DeliveryStatus


@dataclass(frozen=True, slots=True)
class Changed:
    """The platform edited the message, or deleted it."""


@dataclass(frozen=True, slots=True)
class Unchanged:
    """The new rendering hashes the same as what the message shows: nothing to send."""


@dataclass(frozen=True, slots=True)
class Done:
    """The platform says it is done already (Telegram "message is not modified"; the Mastodon status
    already holds this text; X "deleted": false)."""

    note: str


@dataclass(frozen=True, slots=True)
class Gone:
    """The message is not on the platform (any more)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Refused:
    """The platform will not change this message (the channel itself is fine)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Unsupported:
    """The channel's platform has no edit (or no delete)."""

    platform: str


@dataclass(frozen=True, slots=True)
class NoMessage:
    """The post delivery left no message to change (not sent, or sent without the platform's id)."""

    reason: str


@dataclass(frozen=True, slots=True)
class TooOld:
    """The platform deletes a message only within ``limit`` seconds of sending; this one is ``age`` old."""

    limit: float
    age: float


ChangeOutcome = Changed | Unchanged | Done | Gone | Refused | Unsupported | NoMessage | TooOld | Outcome


def too_old(sent_at: datetime | None, limit: float | None, now: datetime) -> TooOld | None:
    """``TooOld`` when the platform's deletion limit (seconds; None: none) has passed since ``sent_at``."""
    if limit is None or sent_at is None:
        return None
    age = (now - sent_at).total_seconds()
    return TooOld(limit, age) if age > limit else None


def _span(seconds: float) -> str:
    hours = seconds / 3600
    return f"{hours:.0f} h" if hours < 72 else f"{hours / 24:.0f} days"


def decide_change(kind: DeliveryKind, outcome: ChangeOutcome, attempt: Attempt, channel: ChannelFacts,
                  traits: PlatformTraits, *, now: datetime, jitter: float) -> Decision | SendAgain:
    """The table (module docstring). ``kind``: ``EDIT`` or ``DELETE``."""
    editing = kind is DeliveryKind.EDIT
    what = "edit" if editing else "deletion"
    match outcome:
        case Changed():
            return Decision(DeliveryStatus.SENT)
        case Unchanged():
            return Decision(DeliveryStatus.SENT, reason="unchanged",
                            note="the message already shows this content: nothing sent")
        case Done(note):
            return Decision(DeliveryStatus.SENT, reason="already", note=note)
        case Gone(reason) if not editing:
            return Decision(DeliveryStatus.SENT, reason="already", note=f"already gone: {reason}")
        case Gone(reason):
            return Decision(DeliveryStatus.DEAD, reason="gone", error=f"nothing to edit: {reason}")
        case Refused(reason):
            return Decision(DeliveryStatus.DEAD, reason="refused", error=reason)
        case Rejected(reason) if not editing:
            return Decision(DeliveryStatus.DEAD, reason="refused", error=reason)
        case Unsupported(platform):
            return Decision(DeliveryStatus.DEAD, reason="unsupported",
                            error=f"{platform} has no {'edit' if editing else 'delete'} this channel can use")
        case NoMessage(reason):
            return Decision(DeliveryStatus.DEAD, reason="no_message", error=f"no {what}: {reason}")
        case TooOld(limit, age):
            text = (f"the platform deletes a message only within {_span(limit)} of sending, and this one was "
                    f"sent {_span(age)} ago: delete it by hand")
            return Decision(DeliveryStatus.DEAD, reason="too_old", error=text,
                            notify=f"Channel {channel.name}: a deletion could not be made ({text}).")
        case Ambiguous(reason):
            return decide(Retryable(f"{reason} (a repeat is safe: the {what} is checked)"), attempt,
                          channel, traits, now=now, jitter=jitter)
        case _:
            # as for a post; a chat move is not followed for a change (can_move off: ``dead``)
            facts = ChannelFacts(channel.name, channel.policy, channel.at_least_once)
            return decide(outcome, attempt, facts, traits, now=now, jitter=jitter)
