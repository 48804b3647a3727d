"""Value types shared by every layer. Frozen, slotted, stdlib only.

Naming follows the pipeline: ``ParsedPost`` (what a source read) becomes a
``Post`` (what storage knows); routing decides ``DeliveryIntent`` values.
All datetimes are timezone-aware UTC.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.domain.routing import RuleDrop
    from bot.domain.rules import Rule


@dataclass(frozen=True, slots=True)
class Tag:
    """A tag with its display name and normalised slug (the matching key)."""

    slug: str
    name: str


@dataclass(frozen=True, slots=True)
class ParsedPost:
    """One entry as a source adapter read it, before identity and tags are normalised."""

    title: str
    url: str | None = None
    guid: str | None = None
    summary_html: str = ""
    content_html: str = ""
    tags: tuple[str, ...] = ()
    published: datetime | None = None
    updated: datetime | None = None
    image_url: str | None = None
    author: str | None = None
    image_alt: str | None = None
    """The featured image's text alternative (WordPress ``alt_text``, ``media:description``, ``<img alt>``)."""


@dataclass(frozen=True, slots=True)
class Post:
    """A post as storage knows it: identity, normalised tags, source name."""

    key: str
    source: str
    title: str
    url: str | None
    summary_html: str
    content_html: str
    tags: tuple[Tag, ...]
    published: datetime | None
    image_url: str | None = None
    author: str | None = None
    id: int | None = None
    link_key: str | None = None
    """The canonical link (``bot.domain.identity.link_key``): the post's identity when its guid churns."""
    image_alt: str | None = None
    """The featured image's text alternative, plain text (None: none known)."""
    content_hash: str | None = None
    """The hash of what a rendering can show (``bot.domain.lifecycle.content_hash``): a known post seen
    again with another one was edited. None: not known (a post stored before it was recorded)."""

    @property
    def tag_slugs(self) -> frozenset[str]:
        return frozenset(t.slug for t in self.tags)


@dataclass(frozen=True, slots=True)
class Subscription:
    """Posts tagged ``tag_slug`` go to ``channel``. ``backfill``: latest N on creation. ``rule``: the
    conditions a post must also meet (``bot.domain.rules``; None: every post with the tag)."""

    tag_slug: str
    tag_name: str
    channel: str
    backfill: int = 0
    rule: Rule | None = None


@dataclass(frozen=True, slots=True, order=True)
class DeliveryIntent:
    """Decided: post ``post_key`` of ``source`` goes to ``channel`` once."""

    source: str
    post_key: str
    channel: str


class DeliveryKind(enum.StrEnum):
    """What a delivery does on its channel: sends the post, updates the message it became, or removes it.

    Every kind goes through the same states (``DeliveryStatus``); a (post, channel) pair has at most one
    delivery of each kind. An edit or a deletion names the message the ``post`` delivery made
    (its ``remote_id``) and is never sent before it.
    """

    POST = "post"
    EDIT = "edit"
    DELETE = "delete"


class DeliveryStatus(enum.StrEnum):
    """Where a delivery stands.

    queued → sending → sent; sending → failed (retryable, has next attempt) →
    sending …; failed → dead after the last attempt; sending → unknown when the
    request left and no answer came on a platform without idempotency. A burst
    (``bot.domain.detect.is_burst``) is recorded ``held``: held → queued when an
    admin releases it, held → dropped (never sent) when an admin drops it.
    """

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    DEAD = "dead"
    UNKNOWN = "unknown"
    HELD = "held"
    DROPPED = "dropped"

    @property
    def is_final(self) -> bool:
        return self in (DeliveryStatus.SENT, DeliveryStatus.DEAD, DeliveryStatus.UNKNOWN, DeliveryStatus.DROPPED)


@dataclass(frozen=True, slots=True)
class Detection:
    """What one poll decided: posts to record, and intents to queue."""

    new_posts: tuple[Post, ...]
    known_posts: tuple[Post, ...]
    intents: tuple[DeliveryIntent, ...]
    baseline: bool = False
    backfilled: tuple[Subscription, ...] = field(default=())
    churned: tuple[Post, ...] = ()
    """Known posts that came with a new guid for their known link (guid churn): not new."""
    burst: bool = False
    """More new posts than the source's burst limit: their deliveries are held for an admin."""
    drops: tuple[RuleDrop, ...] = ()
    """(post, channel) pairs a subscribed tag matched but a rule kept out, with the reason."""
