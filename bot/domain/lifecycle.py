"""A post's life after it went out, pure: when an edit or a deletion reaches a channel, and what a retraction does.

Three decisions, each over the facts of one post's deliveries (``DeliveryFact``, one per existing row)
and each channel's policy (``ChannelLifecycle``, from its ``on_edit`` / ``edit_window`` / ``on_delete`` /
``delete_window`` options and what its publisher can do):

* ``plan_edit``: a known post came back with another ``content_hash`` (``content_hash``: what a rendering
  can show, never feed noise such as dates, counters or the guid). Per channel, the message is updated
  (an ``edit`` delivery queued, or re-armed when an earlier edit is over) only when the post delivery
  went out (``sent`` with the platform's id, or ``sending`` now), the channel wants edits, its platform
  can edit, and the window since it was sent is open. A post delivery that has not gone out yet sends
  the new content itself. An edit already queued sends the newest content when its turn comes (ten
  edits in a minute make one update); an edit in flight makes the poll ``defer`` recording the new hash,
  so the next poll sees the change again and updates once more.
* ``plan_unpublished``: the post was taken down on the site (``bot.domain.unpublish`` confirms it). On a
  channel with ``on_delete = "delete"``: a message that went out within ``delete_window`` gets a
  ``delete`` delivery; a delivery that has not gone out yet is cancelled (``dropped``), with any edit
  waiting for it.
* ``plan_retract``: an admin retracts the post (``tagrelay retract``, ``/retract``): on the channels
  named (all by default) every message that went out is deleted where the platform can delete, whatever
  the options and windows, and everything not sent yet is cancelled.

Never touched: a message tagrelay did not send (only the ``remote_id`` of a ``post`` delivery is ever
named), and a delivery in flight (``sending``) is never cancelled: a deletion is queued after it.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.domain.models import DeliveryKind, DeliveryStatus, Post

DEFAULT_EDIT_WINDOW = 48 * 3600.0
"""Seconds after a message went out during which an edit of the post updates it (``edit_window``)."""
DEFAULT_DELETE_WINDOW = 48 * 3600.0
"""Seconds after a message went out during which the post's unpublishing removes it (``delete_window``)."""

_PENDING = frozenset({DeliveryStatus.QUEUED, DeliveryStatus.FAILED, DeliveryStatus.HELD})
"""A delivery that has not gone out yet (it renders the post's content when its turn comes)."""
_OUT = frozenset({DeliveryStatus.SENT, DeliveryStatus.SENDING})
"""A delivery that went out, or is going out now."""


def content_hash(*, title: str, url: str | None, summary_html: str, content_html: str, image_url: str | None,
                 image_alt: str | None, author: str | None) -> str:
    """The hash of what a rendering of the post can show: title, link, excerpt (the summary; the content
    only when there is no summary, as ``bot.render.text.excerpt_of`` falls back to it), featured image
    and its text, author. Not the dates, not the guid, not the tags (a tag change neither re-routes a
    post nor edits it)."""
    content = content_html if not _visible(summary_html) else ""
    parts = (title, url or "", summary_html, content, image_url or "", image_alt or "", author or "")
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8", "surrogatepass")).hexdigest()
    return digest[:40]


REPLACEMENT = "\ufffd"
"""What a byte a document could not decode became (``bot.sources.integrity``)."""


def shows_damage(post: Post) -> bool:
    """Does a field a rendering can show hold U+FFFD (a damaged document, not an editor's change)?"""
    return any(REPLACEMENT in (value or "") for value in (post.title, post.url, post.summary_html, post.content_html,
                                                         post.image_alt, post.author))


def _visible(html: str) -> bool:
    """Does an HTML fragment hold any text (markup and whitespace aside)? Linear, no regex."""
    inside = False
    for char in html:
        if char == "<":
            inside = True
        elif char == ">":
            inside = False
        elif not inside and not char.isspace():
            return True
    return False


@dataclass(frozen=True, slots=True)
class ChannelLifecycle:
    """A channel's policy for a post's later life: its options, and what its publisher can do."""

    on_edit: bool = True
    """``on_edit = "update"``."""
    edit_window: float = DEFAULT_EDIT_WINDOW
    can_edit: bool = False
    """The channel's publisher has the ``Edits`` ability (X has no edit API)."""
    on_delete: bool = False
    """``on_delete = "delete"``."""
    delete_window: float = DEFAULT_DELETE_WINDOW
    can_delete: bool = False
    """The channel's publisher has the ``Deletes`` ability."""

    @property
    def edits(self) -> bool:
        return self.on_edit and self.can_edit

    @property
    def deletes(self) -> bool:
        return self.on_delete and self.can_delete


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:g} h" if seconds < 72 * 3600 else f"{seconds / 86400:g} d"


def describe_policy(policy: ChannelLifecycle, platform: str) -> str:
    """What an edit and an unpublishing of a sent post do on a channel, in words (``explain``)."""
    if not policy.on_edit:
        edits = "edits ignored (on_edit = ignore)"
    elif not policy.can_edit:
        edits = f"edits not sent ({platform} has no edit)"
    else:
        edits = f"edits update it for {_hours(policy.edit_window)}"
    if not policy.on_delete:
        deletes = "left if unpublished (on_delete = ignore)"
    elif not policy.can_delete:
        deletes = f"left if unpublished ({platform} cannot delete)"
    else:
        deletes = f"deleted if unpublished within {_hours(policy.delete_window)}"
    return f"{edits}; {deletes}"


@dataclass(frozen=True, slots=True)
class DeliveryFact:
    """One delivery of a post, as a plan needs it."""

    channel: str
    kind: DeliveryKind
    status: DeliveryStatus
    sent_at: datetime | None = None
    remote_id: str | None = None


def _by_channel(facts: Iterable[DeliveryFact]) -> dict[str, dict[DeliveryKind, DeliveryFact]]:
    out: dict[str, dict[DeliveryKind, DeliveryFact]] = {}
    for fact in facts:
        out.setdefault(fact.channel, {})[fact.kind] = fact
    return out


def _within(original: DeliveryFact, window: float, now: datetime) -> bool:
    """Is ``now`` within ``window`` seconds of when the message went out (one going out now: yes)?"""
    return original.sent_at is None or now - original.sent_at <= timedelta(seconds=window)


def _addressable(original: DeliveryFact) -> bool:
    """Did (or will) the post delivery leave a message tagrelay can name? ``sent`` without the platform's
    id (X's "duplicate content") cannot be edited or deleted."""
    return original.status is DeliveryStatus.SENDING or (original.status is DeliveryStatus.SENT
                                                          and original.remote_id is not None)


# -- edits ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EditPlan:
    """What a post's edit does: the channels whose ``edit`` delivery is queued (inserted, or re-armed), and
    whether the new content hash waits for the next poll (an edit of this post is in flight)."""

    queue: tuple[str, ...] = ()
    defer: bool = False


def plan_edit(facts: Sequence[DeliveryFact], policies: Mapping[str, ChannelLifecycle], now: datetime) -> EditPlan:
    """The channels an edited post's message is updated on (see the module docstring)."""
    queue: list[str] = []
    defer = False
    for channel, rows in sorted(_by_channel(facts).items()):
        original, edit = rows.get(DeliveryKind.POST), rows.get(DeliveryKind.EDIT)
        policy = policies.get(channel)
        if original is None or policy is None or not policy.edits or DeliveryKind.DELETE in rows:
            continue
        if original.status not in _OUT or not _addressable(original):
            continue  # not gone out yet (it sends the new content itself), or nothing to edit
        if not _within(original, policy.edit_window, now):
            continue
        if edit is not None and edit.status is DeliveryStatus.SENDING:
            defer = True  # it sends the older content: the next poll updates again
            continue
        if edit is not None and edit.status in _PENDING:
            continue  # queued already: it renders the newest content when its turn comes
        queue.append(channel)
    return EditPlan(tuple(queue), defer)


# -- deletions and retraction ---------------------------------------------------------------------


class Why(enum.StrEnum):
    """Why a channel's message stays (what ``plan_unpublished`` / ``plan_retract`` report for it)."""

    IGNORED = "on_delete is ignore"
    CANNOT = "the platform cannot delete"
    NO_ID = "the platform gave no id for the message"
    TOO_OLD = "sent before delete_window"
    NOT_SENT = "never sent"
    DELETING = "a deletion is under way or done"


@dataclass(frozen=True, slots=True)
class DeletePlan:
    """What removing a post from its channels does: ``delete`` deliveries queued (inserted or re-armed)
    per channel, the channels whose deliveries that have not gone out yet are cancelled (post and edit
    kinds), and per channel left alone, why."""

    delete: tuple[str, ...] = ()
    cancel: tuple[str, ...] = ()
    kept: tuple[tuple[str, Why], ...] = ()


def plan_unpublished(facts: Sequence[DeliveryFact], policies: Mapping[str, ChannelLifecycle],
                     now: datetime) -> DeletePlan:
    """A post taken down on the site: removed where its channel opts in, within its ``delete_window``."""
    return _plan_removal(facts, policies, now, retract=False)


def plan_retract(facts: Sequence[DeliveryFact], policies: Mapping[str, ChannelLifecycle], now: datetime,
                 channels: Iterable[str] | None = None) -> DeletePlan:
    """An admin retracts a post: on ``channels`` (None: every channel it has a delivery on), every
    message that went out is deleted where the platform can, and what has not gone out is cancelled."""
    wanted = None if channels is None else set(channels)
    return _plan_removal([f for f in facts if wanted is None or f.channel in wanted], policies, now, retract=True)


def _plan_removal(facts: Sequence[DeliveryFact], policies: Mapping[str, ChannelLifecycle], now: datetime, *,
                  retract: bool) -> DeletePlan:
    delete: list[str] = []
    cancel: list[str] = []
    kept: list[tuple[str, Why]] = []
    for channel, rows in sorted(_by_channel(facts).items()):
        original, removal = rows.get(DeliveryKind.POST), rows.get(DeliveryKind.DELETE)
        policy = policies.get(channel, ChannelLifecycle())
        if original is None:
            continue
        if not retract and not policy.on_delete:
            kept.append((channel, Why.IGNORED))
            continue
        pending = [r for r in rows.values() if r.kind is not DeliveryKind.DELETE and r.status in _PENDING]
        if pending:
            cancel.append(channel)
        if original.status not in _OUT:
            if not pending:
                kept.append((channel, Why.NOT_SENT))
            continue
        if not policy.can_delete:
            kept.append((channel, Why.CANNOT))
        elif not _addressable(original):
            kept.append((channel, Why.NO_ID))
        elif not retract and not _within(original, policy.delete_window, now):
            kept.append((channel, Why.TOO_OLD))
        elif removal is not None and not (retract and removal.status in (DeliveryStatus.DEAD, DeliveryStatus.DROPPED)):
            kept.append((channel, Why.DELETING))
        else:
            delete.append(channel)
    return DeletePlan(tuple(delete), tuple(cancel), tuple(kept))
