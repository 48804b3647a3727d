"""What storage knows, as plain values: a source's and a channel's state, the views the CLI, the admin
bot and the health server show, and what a poll record wrote.

Storage (``bot.storage``) maps its rows to these; services, the CLI and the admin bot name them from
here, without importing storage. Frozen, slotted, stdlib only. All datetimes are timezone-aware UTC.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from bot.domain.models import DeliveryKind, DeliveryStatus, Post, Subscription

CHANNEL_LEASE = "channel:"
"""Prefix of the named lease an instance holds while it sends to a channel (shared mode)."""


@dataclass(frozen=True, slots=True)
class CacheState:
    """Per-source memory between polls (validators, cursor, what ``auto`` discovered)."""

    etag: str | None = None
    last_modified: str | None = None
    cursor: str | None = None
    resolved_url: str | None = None
    resolved_kind: str | None = None

    def but(self, **changes: str | None) -> CacheState:
        return replace(self, **changes)


@dataclass(frozen=True, slots=True)
class SourceState:
    id: int
    name: str
    url: str
    kind: str
    cache: CacheState
    baseline_done: bool
    last_poll_at: datetime | None
    last_success_at: datetime | None
    last_outcome: str | None
    last_error: str | None
    consecutive_failures: int
    next_poll_at: datetime | None
    lease_owner: str | None
    post_count: int = 0
    guid_churn_last: int = 0
    """Posts of the last parsed poll that came with a new guid for a known link."""
    guid_churn_total: int = 0
    guid_churn_at: datetime | None = None
    usual_new: float | None = None
    """Moving average of new posts per poll that found some (held bursts left out)."""
    push_requests: int = 0
    """Push triggers received so far (``bot.services.push``): a poll that sees it move gets one more."""
    retired_before: datetime | None = None
    """The newest date (published, else first seen) of the posts whose identity retention removed: a
    dated post at or before it that the source lists again is recorded, never sent again
    (``bot.domain.plan.plan_poll``)."""


@dataclass(frozen=True, slots=True)
class DueSource:
    """A source due by a round's time, as the round reads it: only what deciding needs (its whole row is
    read for the few the round starts: ``Store.source_states``)."""

    name: str
    next_poll_at: datetime | None
    resolved_url: str | None = None


@dataclass(frozen=True, slots=True)
class DueSources:
    """What a poll round reads (``Store.due_sources``): the sources due by a time (never polled, or their
    ``next_poll_at`` at or before it) and the earliest ``next_poll_at`` after it (None: none)."""

    rows: tuple[DueSource, ...]
    next_at: datetime | None


@dataclass(frozen=True, slots=True)
class ChannelState:
    id: int
    name: str
    platform: str
    paused: bool
    paused_reason: str | None
    paused_at: datetime | None
    hold_until: datetime | None
    target_override: str | None


@dataclass(frozen=True, slots=True)
class SentMessage:
    """The message a post delivery made on its channel, as an edit or a deletion of it needs it: the
    platform's id (None: it gave none), when it went out, what it shows (``rendered_hash``), and the post
    delivery's row and status."""

    delivery_id: int
    status: DeliveryStatus
    remote_id: str | None
    sent_at: datetime | None
    rendered_hash: str | None


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    id: int
    channel: str
    post: Post
    attempts: int
    status: DeliveryStatus
    uncertain_since: datetime | None = None
    """When an earlier attempt may have reached the platform unconfirmed (None: none did)."""
    staged: str | None = None
    """What an earlier attempt staged on the platform before publishing (``PublishesStaged``; None: nothing)."""
    kind: DeliveryKind = DeliveryKind.POST
    target: SentMessage | None = None
    """An edit's or a deletion's message (the post delivery of the same post and channel; None: none)."""


@dataclass(frozen=True, slots=True)
class DeliveryView:
    id: int
    channel: str
    platform: str
    status: str
    attempts: int
    post_title: str
    post_url: str | None
    source: str
    published: datetime | None
    next_attempt_at: datetime | None
    remote_id: str | None
    remote_url: str | None
    last_error: str | None
    created_at: datetime | None
    updated_at: datetime | None
    sent_at: datetime | None
    staged: str | None = None
    """What a two-step publisher staged for it before publishing (Threads: the media container id)."""
    kind: str = DeliveryKind.POST.value
    """post | edit | delete"""
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class TagCount:
    slug: str
    name: str
    posts: int


@dataclass(frozen=True, slots=True)
class ChannelCounts:
    channel: str
    platform: str
    paused: bool
    paused_reason: str | None
    hold_until: datetime | None
    counts: dict[str, int]
    oldest_queued: datetime | None
    sent_today: int


@dataclass(frozen=True, slots=True)
class AuditEntry:
    at: datetime
    actor: str
    via: str
    action: str
    detail: str


@dataclass(frozen=True, slots=True)
class InstanceInfo:
    """A registered instance (shared mode) and what it holds right now."""

    owner: str
    version: str
    started_at: datetime
    heartbeat_at: datetime
    expires_at: datetime
    sources: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PollRecord:
    """What a poll record wrote (``Store.apply_poll``)."""

    new_posts: int
    queued: int
    backfilled: int
    held: int = 0
    """Deliveries recorded ``held`` (a burst)."""
    hold_started: bool = False
    """The source had no held deliveries before this poll (admins are told once per hold)."""
    edited: int = 0
    """Known posts whose content changed (stored anew)."""
    edits: int = 0
    """Edit deliveries queued (or re-armed) for them."""


@dataclass(frozen=True, slots=True)
class KnownIdentities:
    """Which identities and canonical links of a poll's posts are already stored for the source."""

    keys: set[str]
    links: set[str]
    hashes: dict[str, str | None] = field(default_factory=dict)
    """The stored ``content_hash`` of each known identity (None: not recorded yet)."""


@dataclass(frozen=True, slots=True)
class HoldView:
    """A source's held burst: its deliveries waiting for an admin to release or drop them."""

    source: str
    posts: int
    deliveries: int
    since: datetime | None
    usual_new: float | None
    channels: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SubscriptionView:
    """A stored subscription (with its rule), where it came from ("config", "cli", "telegram") and when."""

    subscription: Subscription
    origin: str
    created_at: datetime | None
