"""Retention, pure: what the database may forget, and when, without breaking "nothing lost, nothing twice".

Given the ``[storage.retention]`` periods and ``now`` (no clock is read here), these rules say what a
prune pass (``bot.services.pruner``, applied by ``bot.storage.retention``) may remove:

- **content** (``content_html``, ``summary_html``, ``image_alt``) of a post once ``content`` has passed
  since it was first seen and none of its deliveries may still render it: every one is ``sent`` or
  ``dropped`` (``queued``, ``sending``, ``failed`` and ``held`` render it when their turn comes; ``dead``
  and ``unknown`` may be retried by an admin). What identifies the post and detects its edits stays:
  ``key``, ``link_key``, ``url``, ``title``, ``content_hash``, its tags. A pruned post is never backfilled.
- **delivery records** once settled (``sent``, ``dead``, ``dropped``, ``unknown``) and not updated for
  ``deliveries`` (at least the longest ``edit_window``/``delete_window`` of the channels: an edit or an
  unpublishing needs the sent message's row); never a pending one, nor one whose post has a pending edit
  or deletion on the same channel (it names the message that record holds). ``rule_drops`` older than ``deliveries``.
- **audit log** entries older than ``audit``.
- **a post's identity** (its row: the last thing that keeps it from being sent again) only when it has no
  delivery row left and its source was listed successfully (a 200 that parsed: ``sources.listed_at``)
  more than ``identity`` after the post was last seen on a listing (``posts.last_seen_at``): the source
  had been answering for that long without listing it. A source that fails, or answers only ``304``,
  keeps every identity (a 304 says the listing is the one of the last 200, whose posts were seen then).
  A WordPress REST source is never pruned of identities: it lists what *changed* since its cursor, so an
  edit can bring back any post, however old.

``last_seen_at`` is refreshed by a poll's write only when older than ``seen_refresh`` (at most a day, at
most half of ``identity``): a post on the latest listing is therefore always younger than
``listed_at - identity``, whatever the poll volume.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import datetime, timedelta

from bot.domain.models import DeliveryStatus

DAY = 86400.0

RENDERED = frozenset({DeliveryStatus.SENT, DeliveryStatus.DROPPED})
"""A delivery in one of these states will never render its post again (its content may go)."""
SETTLED = frozenset({DeliveryStatus.SENT, DeliveryStatus.DEAD, DeliveryStatus.DROPPED, DeliveryStatus.UNKNOWN})
"""A delivery in one of these states is over: its record may go after the ``deliveries`` period."""
PENDING = frozenset(DeliveryStatus) - SETTLED
"""Never removed, nor the content of its post: queued, sending, failed, held."""
LISTS_CHANGES_ONLY = frozenset({"wordpress"})
"""Source kinds whose listing is what changed since a cursor: any post may come back (identities kept)."""


@dataclass(frozen=True, slots=True)
class Retention:
    """The ``[storage.retention]`` periods, in seconds."""

    content: float = 30 * DAY
    deliveries: float = 180 * DAY
    audit: float = 365 * DAY
    identity: float = 365 * DAY


@dataclass(frozen=True, slots=True)
class Cutoffs:
    """A pass's bounds, computed once from ``now``."""

    now: datetime
    content: datetime
    """Posts first seen before this may lose their content."""
    deliveries: datetime
    """Settled deliveries updated before this, and rule drops recorded before this, may go."""
    audit: datetime
    """Audit entries before this may go."""
    identity: timedelta
    """A post may go when its source was listed more than this after the post was last seen."""


def cutoffs(retention: Retention, now: datetime, *, longest_window: float = 0.0) -> Cutoffs:
    """The bounds of a pass at ``now``. ``longest_window``: the channels' longest ``edit_window`` or
    ``delete_window`` (seconds): sent messages stay editable and deletable that long, whatever
    ``deliveries`` says."""
    return Cutoffs(now=now, content=now - timedelta(seconds=retention.content),
                   deliveries=now - timedelta(seconds=max(retention.deliveries, longest_window)),
                   audit=now - timedelta(seconds=retention.audit),
                   identity=timedelta(seconds=retention.identity))


def seen_refresh(identity: float) -> float:
    """Seconds a post's ``last_seen_at`` may lag behind the listing that showed it: at most a day (one
    UPDATE per poll at most, and rarely one at all), less than ``identity`` (half of it), so a post on the
    latest listing is never old enough to lose its identity."""
    return min(DAY, identity / 2)


def content_may_go(first_seen: datetime, pruned: bool, statuses: Iterable[DeliveryStatus], cut: Cutoffs) -> bool:
    """May this post's content be dropped now? ``statuses``: every delivery of the post (any kind)."""
    return not pruned and first_seen < cut.content and all(s in RENDERED for s in statuses)


def delivery_may_go(status: DeliveryStatus, updated_at: datetime, cut: Cutoffs, *, sibling_pending: bool = False
                    ) -> bool:
    """May this delivery record be removed now? ``sibling_pending``: another delivery of the same post and
    channel is still pending (an edit or a deletion names the message this record holds: it stays)."""
    return status in SETTLED and updated_at < cut.deliveries and not sibling_pending


def identity_cutoff(listed_at: datetime | None, kind: str, cut: Cutoffs) -> datetime | None:
    """Posts of a source last seen before this may lose their identity (None: none may): the source's
    last successful listing minus ``identity``."""
    if listed_at is None or kind in LISTS_CHANGES_ONLY:
        return None
    return listed_at - cut.identity


def identity_may_go(last_seen: datetime | None, listed_at: datetime | None, kind: str, deliveries: int,
                    cut: Cutoffs) -> bool:
    """May this post's row go? ``deliveries``: how many delivery rows it still has (any state)."""
    if deliveries or last_seen is None:
        return False
    bound = identity_cutoff(listed_at, kind, cut)
    return bound is not None and last_seen < bound


@dataclass(frozen=True, slots=True)
class PruneCounts:
    """What a pass removed (or, dry, would remove), per kind."""

    content: int = 0
    """Posts whose content was dropped."""
    deliveries: int = 0
    rule_drops: int = 0
    audit: int = 0
    identities: int = 0
    """Post rows removed (with their tags' links)."""

    @property
    def total(self) -> int:
        return self.content + self.deliveries + self.rule_drops + self.audit + self.identities

    def plus(self, **more: int) -> PruneCounts:
        values = {f.name: getattr(self, f.name) + more.get(f.name, 0) for f in fields(self)}
        return PruneCounts(**values)

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def detail(self) -> str:
        """``content=3 deliveries=0 …``: the audit line (``parse_detail`` reads it back)."""
        return " ".join(f"{name}={value}" for name, value in self.as_dict().items())


_PAIR = re.compile(r"(\w+)=(\d+)")


def parse_detail(text: str) -> PruneCounts:
    """The counts of a ``PruneCounts.detail`` line (unknown names ignored)."""
    known = {f.name for f in fields(PruneCounts)}
    return PruneCounts(**{k: int(v) for k, v in _PAIR.findall(text) if k in known})


@dataclass(frozen=True, slots=True)
class PruneRecord:
    """The last prune that was recorded (audit log, action ``prune``)."""

    at: datetime
    counts: PruneCounts
    actor: str
