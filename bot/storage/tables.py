"""The schema (Alembic's target). Core tables; rows are mapped in repositories.

Times are stored as timezone-aware UTC (``DateTime(timezone=True)``); on SQLite
they come back naive and repositories re-attach UTC.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)

PENDING_SQL = "status IN ('queued', 'failed')"
"""The waiting deliveries, spelled as in the partial index so queries written the same way can use it."""
UNPRUNED_SQL = "pruned_at IS NULL"
"""The posts that still hold their content (``ix_posts_unpruned``'s predicate)."""

# The partial indexes below declare their predicate for SQLite only. Migration 0003 creates them on
# both dialects with the same predicate; a ``postgresql_where`` here would make SQLAlchemy import the
# whole PostgreSQL dialect package (~2 MiB of resident memory) in every SQLite process.

TS = DateTime(timezone=True)
ID = BigInteger().with_variant(Integer(), "sqlite")  # INTEGER PRIMARY KEY is the rowid on SQLite

sources = Table(
    "sources",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("url", Text, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("resolved_url", Text),
    Column("resolved_kind", String(16)),
    Column("etag", Text),
    Column("last_modified", Text),
    Column("cursor", Text),
    Column("baseline_done", Boolean, nullable=False, default=False),
    Column("last_poll_at", TS),
    Column("last_success_at", TS),
    Column("last_outcome", String(16)),
    Column("last_error", Text),
    Column("consecutive_failures", Integer, nullable=False, default=0),
    Column("next_poll_at", TS),
    Column("lease_owner", String(128)),
    Column("lease_expires_at", TS),
    Column("created_at", TS, nullable=False),
    # guid churn: known posts that came back with a new guid for their known link (migration 0005)
    Column("guid_churn_last", Integer, nullable=False, default=0, server_default=text("0")),  # the last parsed poll
    Column("guid_churn_total", Integer, nullable=False, default=0, server_default=text("0")),
    Column("guid_churn_at", TS),  # when churn was last seen
    Column("usual_new", Float),  # moving average of new posts per poll that found some (bursts left out)
    # push triggers received (hook or WebSub, 0008): a poll that sees it move gets one more poll
    Column("push_requests", Integer, nullable=False, default=0, server_default=text("0")),
    # the last successful listing (a 200 that parsed; a 304 repeats the listing of the last one) (0013)
    Column("listed_at", TS),
    # the newest date (published, else first seen) of the posts whose identity retention removed (0013)
    Column("retired_before", TS),
    # a poll round reads only the sources due, and the earliest time to come (0014)
    Index("ix_sources_next_poll", "next_poll_at"),
)

posts = Table(
    "posts",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("source_id", ForeignKey("sources.id", ondelete="CASCADE"), nullable=False),
    Column("key", Text, nullable=False),
    Column("url", Text),
    Column("title", Text, nullable=False),
    Column("summary_html", Text, nullable=False, default=""),
    Column("content_html", Text, nullable=False, default=""),
    Column("image_url", Text),
    Column("author", Text),
    Column("published_at", TS),
    Column("first_seen_at", TS, nullable=False),
    Column("link_key", Text),  # the canonical link, the post's identity when its guid churns (0005)
    Column("image_alt", Text),  # the featured image's alt text (0006)
    # what a rendering can show, hashed: a known post seen with another hash was edited (0011)
    Column("content_hash", String(64)),
    Column("missing_since", TS),  # its URL first answered 404/410 (unpublishing not confirmed yet) (0011)
    Column("unpublished_at", TS),  # its unpublishing was confirmed (0011)
    Column("last_seen_at", TS),  # the last listing that showed it, refreshed at most daily (0013)
    Column("pruned_at", TS),  # its full content was dropped (retention; 0013): never backfilled
    UniqueConstraint("source_id", "key"),
    Index("ix_posts_source_published", "source_id", "published_at"),
    Index("ix_posts_url", "url"),
    Index("ix_posts_source_link", "source_id", "link_key"),
    Index("ix_posts_source_seen", "source_id", "last_seen_at"),  # identities a source no longer lists (0013)
    # the posts whose content a prune pass may drop, oldest first; pruned ones leave the index (0013)
    Index("ix_posts_unpruned", "first_seen_at", "id", sqlite_where=text(UNPRUNED_SQL)),
)

tags = Table(
    "tags",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("slug", String(255), nullable=False, unique=True),
    Column("name", String(255), nullable=False),
)

post_tags = Table(
    "post_tags",
    metadata,
    Column("post_id", ForeignKey("posts.id", ondelete="CASCADE"), primary_key=True),
    Column("tag_id", ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True),
    Index("ix_post_tags_tag", "tag_id", "post_id"),
)

channels = Table(
    "channels",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("platform", String(32), nullable=False),
    Column("target_override", Text),
    Column("paused", Boolean, nullable=False, default=False),
    Column("paused_reason", Text),
    Column("paused_at", TS),
    Column("hold_until", TS),
    Column("created_at", TS, nullable=False),
)

subscriptions = Table(
    "subscriptions",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("tag_slug", String(255), nullable=False),
    Column("tag_name", String(255), nullable=False),
    Column("channel_id", ForeignKey("channels.id", ondelete="CASCADE"), nullable=False),
    Column("backfill", Integer, nullable=False, default=0),
    Column("origin", String(16), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("rule", Text),  # the subscription's conditions as JSON (bot.domain.rules; 0007); NULL: none
    UniqueConstraint("tag_slug", "channel_id"),
    Index("ix_subscriptions_backfill", "backfill", sqlite_where=text("backfill > 0")),
)

backfills_done = Table(
    "backfills_done",
    metadata,
    Column("subscription_id", ForeignKey("subscriptions.id", ondelete="CASCADE"), primary_key=True),
    Column("source_id", ForeignKey("sources.id", ondelete="CASCADE"), primary_key=True),
    Column("done_at", TS, nullable=False),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("post_id", ForeignKey("posts.id", ondelete="CASCADE"), nullable=False),
    Column("channel_id", ForeignKey("channels.id", ondelete="CASCADE"), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", TS),
    Column("remote_id", Text),
    Column("remote_url", Text),
    Column("last_error", Text),
    Column("reason", String(32)),
    Column("claimed_by", String(128)),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    Column("sent_at", TS),
    Column("post_at", TS),  # the post's date (first seen if undated): the per-channel send order
    # when an attempt may have reached the platform unconfirmed (ambiguous answer, crash while sending)
    Column("uncertain_since", TS),
    # what a two-step publisher staged before publishing (Threads' media container id), committed first (0010)
    Column("staged", Text),
    # post | edit | delete: the message itself, an update of it, its removal (0011)
    Column("kind", String(8), nullable=False, default="post", server_default=text("'post'")),
    Column("rendered_hash", String(64)),  # what the message shows (a post's row; 0011)
    UniqueConstraint("post_id", "channel_id", "kind"),
    Index("ix_deliveries_due", "channel_id", "status", "next_attempt_at", "id"),
    Index("ix_deliveries_status", "status"),
    Index("ix_deliveries_channel_sent", "channel_id", "sent_at"),  # recently sent messages (0011)
    # claim_next walks this in order and stops at the first due row: O(log n), whatever the queue depth
    Index("ix_deliveries_pending", "channel_id", "post_at", "id",
          sqlite_where=text(PENDING_SQL)),
    Index("ix_deliveries_updated", "updated_at", "id"),  # settled records a prune pass may remove (0013)
)

rule_drops = Table(
    "rule_drops",
    metadata,
    # one row per (post, channel) a subscribed tag matched but a rule kept out (0007): `tagrelay explain`
    Column("post_id", ForeignKey("posts.id", ondelete="CASCADE"), primary_key=True),
    Column("channel_id", ForeignKey("channels.id", ondelete="CASCADE"), primary_key=True),
    Column("subscription", String(255)),  # the tag name of the subscription whose rule decided; NULL: the channel's
    Column("condition", String(32), nullable=False),
    Column("detail", Text, nullable=False),
    Column("at", TS, nullable=False),
    Index("ix_rule_drops_at", "at"),  # the ones a prune pass may remove (0013)
)

instance_leases = Table(
    "instance_leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("owner", String(128), nullable=False),
    Column("acquired_at", TS, nullable=False),
    Column("heartbeat_at", TS, nullable=False),
    Column("expires_at", TS, nullable=False),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("at", TS, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("via", String(16), nullable=False),
    Column("action", String(64), nullable=False),
    Column("detail", Text, nullable=False, default=""),
    Index("ix_audit_log_at", "at"),
)

rate_buckets = Table(
    "rate_buckets",
    metadata,
    Column("key", String(255), primary_key=True),
    Column("tokens", Float, nullable=False),
    Column("stamp", Float, nullable=False),  # epoch seconds of the last refill
)

instances = Table(
    "instances",
    metadata,
    Column("owner", String(128), primary_key=True),
    Column("version", String(32), nullable=False),
    Column("started_at", TS, nullable=False),
    Column("heartbeat_at", TS, nullable=False),
    Column("expires_at", TS, nullable=False),
)

spending = Table(
    "spending",
    metadata,
    # a budget's spending in one window (migration 0012): "channel:<name>" or "account:<account>"
    Column("budget", Text, primary_key=True),
    Column("period", String(8), primary_key=True),  # "day" | "month" (UTC)
    Column("window_start", String(10), primary_key=True),  # "2026-01-31" (a day) or "2026-01" (a month)
    Column("spent", BigInteger, nullable=False, default=0),  # micro-dollars reserved or charged in the window
    Column("reached_at", TS),  # the first request refused in the window (the admins are told once)
)

websub_subscriptions = Table(
    "websub_subscriptions",
    metadata,
    Column("source_id", ForeignKey("sources.id", ondelete="CASCADE"), primary_key=True),
    Column("hub_url", Text, nullable=False),
    Column("topic_url", Text, nullable=False),
    Column("state", String(16), nullable=False),  # pending|requested|active|denied|failed|dropped
    Column("requested_at", TS),  # the last subscription request sent to the hub
    Column("verified_at", TS),  # the hub's last verification of intent we confirmed
    Column("lease_seconds", Integer),
    Column("expires_at", TS),
    Column("renew_at", TS),  # when the next request is due (renewal, retry, or a lost verification)
    Column("attempts", Integer, nullable=False, default=0, server_default=text("0")),  # failed in a row
    Column("last_error", Text),
    Column("updated_at", TS, nullable=False),
    Index("ix_websub_subscriptions_renew_at", "renew_at"),
)
