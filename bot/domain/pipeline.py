"""Pipelined delivery where the platform deduplicates: may a channel claim its deliveries in groups, and
when does a group commit the answers it holds or hand its unsent deliveries back.

Pure (standard library only; times are numbers the caller reads from its clock).

Why it is safe: on a platform that cannot deduplicate (Telegram, Discord) the claim of each delivery is
committed before its request leaves, so a crash leaves at most that one delivery in doubt (``unknown``).
Where the platform itself makes a second send of the same delivery harmless (Mastodon's Idempotency-Key,
Bluesky's record key derived from the delivery and read back first, X's refusal of duplicate content), a
crash is recovered by sending again with the same key, so a channel may claim a GROUP of its oldest due
deliveries in one transaction, send them one after the other (each as soon as the previous answer is in),
and commit their outcomes a few at a time:

* ``pipelined``: the channel uses groups (the publisher declares ``deduplicates``, an interrupted send may be
  sent again on the channel, and no pacing spaces its sends: a paced channel waits for each token anyway);
* ``deduplicating_window``: a platform whose key holds for less than ``MIN_KEY_WINDOW`` never uses groups
  (a group is bounded by ``GroupPolicy.max_age``, far inside the window);
* ``before_send``: send the group's next delivery, or hand the rest back (stopping; the group is older
  than ``max_age``, so a resend after a crash stays well inside the key's window);
* ``after_answer``: go on, commit what is held (every ``commit_every`` answers, or once the oldest held
  answer is ``commit_after`` seconds old, or at the group's end), or stop: a decision that holds or pauses
  the channel is committed at once, and the group's unsent deliveries go back to ``queued`` with their
  attempt uncounted, in the same transaction.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

GROUP_SIZE = 32
"""Deliveries a pipelined channel claims in one transaction."""
COMMIT_EVERY = 16
"""Answers held before their outcomes are committed (one transaction for all of them)."""
COMMIT_AFTER = 0.25
"""Seconds the oldest held answer may wait for its commit (checked after each answer)."""
MAX_GROUP_AGE = 60.0
"""Seconds after its claim from which a group sends nothing more: the rest goes back and is claimed again."""
MIN_KEY_WINDOW = 900.0
"""The shortest idempotency window (seconds) a platform must honour for groups: ``MAX_GROUP_AGE`` plus the
resend margin (``bot.domain.delivery.IDEMPOTENCY_MARGIN``, 300 s) many times over (Mastodon: 3,600 s)."""


@dataclass(frozen=True, slots=True)
class GroupPolicy:
    """The sizes and times of a pipelined channel's groups (the module constants by default)."""

    size: int = GROUP_SIZE
    commit_every: int = COMMIT_EVERY
    commit_after: float = COMMIT_AFTER
    max_age: float = MAX_GROUP_AGE

    def __post_init__(self) -> None:
        if self.size < 1 or self.commit_every < 1:
            raise ValueError("a group holds at least one delivery and commits at least every answer")
        if not (self.commit_after >= 0 and self.max_age >= 0):
            raise ValueError("commit_after and max_age are seconds, at least 0")


def deduplicating_window(window: float | None) -> bool:
    """Is an idempotency window (seconds; None: for ever) long enough for groups (``MIN_KEY_WINDOW``)?"""
    return window is None or window >= MIN_KEY_WINDOW


def pipelined(*, deduplicates: bool, resend_when_unsure: bool, paced: bool) -> bool:
    """Does the channel claim its deliveries in groups? Only where the platform deduplicates a resend
    (``deduplicates``: declared by the publisher, with a long enough key window and no staged publishing),
    a send interrupted by a crash is sent again on the channel (``resend_when_unsure``: without it, every
    delivery of a killed group would become ``unknown``), and no pacing spaces the sends."""
    return deduplicates and resend_when_unsure and not paced


class Step(enum.Enum):
    """What a group does after an answer."""

    NEXT = "next"
    """Send the group's next delivery; the answers held wait for a later commit."""
    COMMIT = "commit"
    """Commit the answers held (one transaction), then send the next."""
    STOP = "stop"
    """Commit the answers held and hand the group's unsent deliveries back, in one transaction; the run ends."""


def after_answer(*, held: int, held_for: float, stops_channel: bool, left: int, policy: GroupPolicy) -> Step:
    """After an answer (already counted in ``held``, the answers not committed yet; ``held_for``: seconds
    since the oldest of them; ``left``: the group's deliveries not sent yet). A decision that holds or
    pauses the channel stops the group at once; the group's last answer, ``commit_every`` answers, or an
    answer held ``commit_after`` seconds are committed."""
    if stops_channel:
        return Step.STOP
    if left == 0 or held >= policy.commit_every or held_for >= policy.commit_after:
        return Step.COMMIT
    return Step.NEXT


def before_send(*, stopping: bool, group_age: float, policy: GroupPolicy) -> bool:
    """May the group's next delivery be sent (``group_age``: seconds since the group was claimed)? Not while
    the service stops, nor once the group is ``max_age`` old (the rest is handed back and claimed anew)."""
    return not stopping and group_age < policy.max_age
