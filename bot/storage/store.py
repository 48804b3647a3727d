"""The repository: every read and write tagrelay makes, each method one transaction.

Rows are mapped to domain values here (``Post``, ``Subscription``) and plain
dataclasses for views. Core statements only (the ORM costs 2–13× on hot paths,
perf-baselines §3). The one method that matters most is ``record_poll``: the
new posts, their tags, their deliveries, any backfill and the source's new
cache state are written in ONE transaction, so a crash can neither lose a post
nor queue it twice.

Each method's body is one synchronous function over a SQLAlchemy ``Connection``
(``work``), run as one transaction by ``_write`` (or one read by ``_read``) on the
Store's ``Database`` (``bot.storage.database``): on a SQLite file, a dedicated
thread with a synchronous pysqlite connection (one thread hop per method instead
of one per statement); on PostgreSQL, the async engine through ``run_sync``
(asyncpg). The same function serves both dialects.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Integer,
    Row,
    String,
    Table,
    Text,
    Update,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql.base import Executable

from bot.domain.detect import pick_backfill
from bot.domain.models import DeliveryIntent, DeliveryStatus, Post, Subscription, Tag
from bot.domain.pacing import bucket_shape, reserve
from bot.errors import NotFoundError, StorageError
from bot.sources.base import CacheState
from bot.storage import tables as t
from bot.storage.database import Database, Work, open_database
from bot.storage.instance_lock import advisory_key, held_keys

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

T = TypeVar("T")

_CHUNK = 500
CONFIG_LOCK = 0x7461_6763  # "tagc": PostgreSQL advisory lock held while one instance applies the config
CHANNEL_LEASE = "channel:"
"""Prefix of the named lease an instance holds while it sends to a channel (shared mode)."""
_NO_LEASE: dict[str, Any] = {"lease_owner": None, "lease_expires_at": None}
"""Written with every poll record: the poll is over, so its source lease (shared mode) is released."""
_INTERRUPTED = ("interrupted while sending; the platform has no idempotency, so it was not "
                "re-sent automatically (use `tagrelay retry` if it did not arrive)")


def utc(value: datetime | None) -> datetime | None:
    """Re-attach UTC to naive datetimes coming back from SQLite."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


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
class ClaimedDelivery:
    id: int
    channel: str
    post: Post
    attempts: int
    status: DeliveryStatus
    uncertain_since: datetime | None = None
    """When an earlier attempt may have reached the platform unconfirmed (None: none did)."""


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
    """What ``record_poll`` wrote."""

    new_posts: int
    queued: int
    backfilled: int
    held: int = 0
    """Deliveries recorded ``held`` (a burst)."""
    hold_started: bool = False
    """The source had no held deliveries before this poll (admins are told once per hold)."""


@dataclass(frozen=True, slots=True)
class KnownIdentities:
    """Which identities and canonical links of a poll's posts are already stored for the source."""

    keys: set[str]
    links: set[str]


@dataclass(frozen=True, slots=True)
class HoldView:
    """A source's held burst: its deliveries waiting for an admin to release or drop them."""

    source: str
    posts: int
    deliveries: int
    since: datetime | None
    usual_new: float | None
    channels: tuple[str, ...] = ()


USUAL_WEIGHT = 0.2
"""Weight of a poll's new posts in a source's moving average (``usual_new``)."""


class Store:
    """All database access. Open with ``Store.open(url)`` (or give it a ``Database``); call
    ``aclose`` at the end."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.dialect = database.dialect

    @classmethod
    def open(cls, url: str, *, create_dirs: bool = True) -> Store:
        """The store of a storage URL (see ``open_database``)."""
        return cls(open_database(url, create_dirs=create_dirs))

    @property
    def url(self) -> URL:
        return self.database.url

    @property
    def engine(self) -> AsyncEngine:
        """An ``AsyncEngine`` on this database, for migrations, ``db copy`` and tests (on a SQLite
        file it is made on first use: the service itself never needs one)."""
        return self.database.async_engine()

    def statement_engines(self) -> list[Engine]:
        """The synchronous engines the Store's statements run on (for ``before_cursor_execute``
        listeners)."""
        return self.database.sync_engines()

    async def aclose(self) -> None:
        """Close every connection (and, on SQLite, end the database thread). Safe to call twice."""
        await self.database.dispose()

    # -- helpers --------------------------------------------------------------------------

    async def _write(self, work: Work[T]) -> T:
        """Run ``work`` as one transaction, committed before this returns (rolled back if it raises)."""
        return await self.database.run(work, write=True)

    async def _read(self, work: Work[T]) -> T:
        """Run ``work`` on a connection without committing anything."""
        return await self.database.run(work, write=False)

    async def _execute(self, statement: Executable) -> None:
        """One statement as one transaction."""

        def work(conn: Connection) -> None:
            conn.execute(statement)

        await self._write(work)

    def _dialect_insert(self, table: Table) -> Any:
        """An INSERT with this dialect's ON CONFLICT clauses (the PostgreSQL dialect package is
        imported only on PostgreSQL: it costs ~2 MiB of resident memory)."""
        if self.dialect == "postgresql":
            from sqlalchemy.dialects import postgresql

            return postgresql.insert(table)
        return sqlite.insert(table)

    def _insert_ignore(self, table: Table, index: Sequence[str]) -> Any:
        return self._dialect_insert(table).on_conflict_do_nothing(index_elements=list(index))

    async def ping(self) -> None:
        try:
            await self._read(lambda conn: conn.execute(select(1)).scalar())
        except (SQLAlchemyError, OSError) as exc:
            raise StorageError(f"database unreachable: {type(exc).__name__}") from exc

    # -- configuration sync ---------------------------------------------------------------

    async def sync_config(
        self,
        sources: Sequence[tuple[str, str, str]],
        channels: Sequence[tuple[str, str]],
        subscriptions: Sequence[Subscription],
        now: datetime,
    ) -> None:
        """Apply the config file: sources (name, url, kind), channels (name, platform), and
        the config-declared subscriptions (origin "config"). Subscriptions made through the
        CLI or the bot are kept; config ones no longer in the file are removed."""

        def work(conn: Connection) -> None:
            if self.dialect == "postgresql":  # instances starting together apply it one after the other
                conn.execute(select(func.pg_advisory_xact_lock(CONFIG_LOCK)))
            existing = {r.name: r for r in conn.execute(select(t.sources)).all()}
            for name, url, kind in sources:
                row = existing.get(name)
                if row is None:
                    conn.execute(insert(t.sources).values(
                        name=name, url=url, kind=kind, baseline_done=False, consecutive_failures=0,
                        created_at=now))
                elif row.url != url or row.kind != kind:
                    # a moved source keeps its known posts (no re-delivery) but forgets validators
                    conn.execute(update(t.sources).where(t.sources.c.id == row.id).values(
                        url=url, kind=kind, resolved_url=None, resolved_kind=None, etag=None,
                        last_modified=None, cursor=None, next_poll_at=None))
            chans = {r.name: r for r in conn.execute(select(t.channels)).all()}
            for name, platform in channels:
                crow = chans.get(name)
                if crow is None:
                    conn.execute(insert(t.channels).values(
                        name=name, platform=platform, paused=False, created_at=now))
                elif crow.platform != platform:
                    conn.execute(update(t.channels).where(t.channels.c.id == crow.id).values(
                        platform=platform, target_override=None))
            ids = {r.name: r.id for r in conn.execute(select(t.channels.c.name, t.channels.c.id)).all()}
            wanted = {(s.tag_slug, ids[s.channel]) for s in subscriptions if s.channel in ids}
            rows = conn.execute(select(t.subscriptions)).all()
            have = {(r.tag_slug, r.channel_id): r for r in rows}
            for sub in subscriptions:
                key = (sub.tag_slug, ids[sub.channel])
                if key in have:
                    if have[key].origin == "config" and have[key].backfill != sub.backfill:
                        conn.execute(update(t.subscriptions).where(
                            t.subscriptions.c.id == have[key].id).values(backfill=sub.backfill))
                    continue
                conn.execute(insert(t.subscriptions).values(
                    tag_slug=sub.tag_slug, tag_name=sub.tag_name, channel_id=key[1], backfill=sub.backfill,
                    origin="config", created_at=now))
                have[key] = None  # type: ignore[assignment]
            for key, row in list(have.items()):
                if row is not None and row.origin == "config" and key not in wanted:
                    conn.execute(delete(t.subscriptions).where(t.subscriptions.c.id == row.id))

        await self._write(work)

    # -- sources --------------------------------------------------------------------------

    @staticmethod
    def _source_state(row: Row[Any], post_count: int = 0) -> SourceState:
        return SourceState(
            id=row.id, name=row.name, url=row.url, kind=row.kind,
            cache=CacheState(etag=row.etag, last_modified=row.last_modified, cursor=row.cursor,
                             resolved_url=row.resolved_url, resolved_kind=row.resolved_kind),
            baseline_done=bool(row.baseline_done), last_poll_at=utc(row.last_poll_at),
            last_success_at=utc(row.last_success_at), last_outcome=row.last_outcome,
            last_error=row.last_error, consecutive_failures=row.consecutive_failures or 0,
            next_poll_at=utc(row.next_poll_at), lease_owner=row.lease_owner, post_count=post_count,
            guid_churn_last=row.guid_churn_last or 0, guid_churn_total=row.guid_churn_total or 0,
            guid_churn_at=utc(row.guid_churn_at), usual_new=row.usual_new)

    async def source(self, name: str) -> SourceState:
        row = await self._read(lambda conn: conn.execute(_SOURCE, {"source_name": name}).first())
        if row is None:
            raise NotFoundError("source", name)
        return self._source_state(row)

    async def sources(self) -> list[SourceState]:
        counts = (
            select(t.posts.c.source_id, func.count().label("n")).group_by(t.posts.c.source_id).subquery()
        )
        query = (select(t.sources, func.coalesce(counts.c.n, 0).label("post_count"))
                 .outerjoin(counts, counts.c.source_id == t.sources.c.id)
                 .order_by(t.sources.c.name))
        rows = await self._read(lambda conn: conn.execute(query).all())
        return [self._source_state(r, r.post_count) for r in rows]

    async def known_keys(self, source_id: int, keys: Sequence[str]) -> set[str]:
        """Which of ``keys`` are already stored for the source (cost ∝ len(keys), not history)."""

        def work(conn: Connection) -> set[str]:
            found: set[str] = set()
            for part in _chunks(list(keys)):
                rows = conn.execute(select(t.posts.c.key).where(
                    t.posts.c.source_id == source_id, t.posts.c.key.in_(part)))
                found.update(r.key for r in rows)
            return found

        return await self._read(work)

    async def known_identities(self, source_id: int, posts: Sequence[Post]) -> KnownIdentities:
        """Which of the posts' keys and canonical links are stored for the source, in one read: index
        lookups (``source_id, key`` and ``ix_posts_source_link``), cost ∝ len(posts), not history."""
        keys = list(dict.fromkeys(p.key for p in posts))
        links = list(dict.fromkeys(p.link_key for p in posts if p.link_key is not None))

        def work(conn: Connection) -> KnownIdentities:
            found = KnownIdentities(set(), set())
            for part in _chunks(keys):
                found.keys.update(r.key for r in conn.execute(select(t.posts.c.key).where(
                    t.posts.c.source_id == source_id, t.posts.c.key.in_(part))))
            for part in _chunks(links):
                found.links.update(r.link_key for r in conn.execute(select(t.posts.c.link_key).where(
                    t.posts.c.source_id == source_id, t.posts.c.link_key.in_(part)).distinct()))
            return found

        return await self._read(work)

    async def record_not_modified(self, source_id: int, cache: CacheState, now: datetime,
                                  next_poll_at: datetime) -> None:
        params = {"nm_source_id": source_id, "nm_now": now, "nm_next_poll_at": next_poll_at,
                  **{f"nm_{key}": value for key, value in _cache_values(cache).items()}}

        def work(conn: Connection) -> None:
            conn.execute(_NOT_MODIFIED, params)

        await self._write(work)

    async def record_poll_failure(self, source_id: int, error: str, now: datetime,
                                  next_poll_at: datetime) -> int:
        """Keep the old cache state; count the failure. Returns the failure count."""

        def work(conn: Connection) -> int:
            conn.execute(update(t.sources).where(t.sources.c.id == source_id).values(
                last_poll_at=now, last_outcome="error", last_error=error[:2000],
                consecutive_failures=t.sources.c.consecutive_failures + 1, next_poll_at=next_poll_at, **_NO_LEASE))
            return int(conn.execute(select(t.sources.c.consecutive_failures).where(
                t.sources.c.id == source_id)).scalar_one())

        return await self._write(work)

    async def record_poll(
        self,
        source: SourceState,
        new_posts: Sequence[Post],
        intents: Sequence[DeliveryIntent],
        cache: CacheState,
        now: datetime,
        next_poll_at: datetime,
        *,
        baseline: bool,
        churned: int = 0,
        hold: bool = False,
        hold_note: str = "",
    ) -> PollRecord:
        """Write a successful poll atomically (see module docstring).

        ``churned``: known posts that came with a new guid (counted on the source for ``status``).
        ``hold``: the poll is a burst; its deliveries are recorded ``held`` (never sent until an
        admin releases them) and the hold is written to the audit log (``hold_note``) in the same
        transaction. Backfills are never held.
        """

        def work(conn: Connection) -> PollRecord:
            post_ids = self._insert_posts(conn, source.id, new_posts, now)
            pairs = [(post_ids[i.post_key], i.channel) for i in intents if i.post_key in post_ids]
            held, started = 0, False
            if hold and pairs:
                started = conn.execute(_HELD_OF_SOURCE, {"held_source_id": source.id}).first() is None
                held = self._queue(conn, pairs, now, status=DeliveryStatus.HELD)
                conn.execute(insert(t.audit_log).values(at=now, actor="tagrelay", via="poll", action="hold",
                                                        detail=f"{source.name}: {hold_note}"[:2000]))
                queued = 0
            else:
                queued = self._queue(conn, pairs, now)
            backfilled = self._backfill(conn, source, now)
            values: dict[str, Any] = {}
            if not baseline:
                values.update(guid_churn_last=churned, guid_churn_total=t.sources.c.guid_churn_total + churned)
                if churned:
                    values["guid_churn_at"] = now
                if new_posts and not hold:
                    usual = source.usual_new
                    n = len(new_posts)
                    values["usual_new"] = n if usual is None else usual + USUAL_WEIGHT * (n - usual)
            outcome = "baseline" if baseline else ("held" if held else ("new" if new_posts else "unchanged"))
            conn.execute(update(t.sources).where(t.sources.c.id == source.id).values(
                **_cache_values(cache), baseline_done=True, last_poll_at=now, last_success_at=now,
                last_outcome=outcome, last_error=None, consecutive_failures=0, next_poll_at=next_poll_at,
                **values, **_NO_LEASE))
            return PollRecord(new_posts=len(new_posts), queued=queued, backfilled=backfilled, held=held,
                              hold_started=started)

        return await self._write(work)

    def _tag_ids(self, conn: Connection, tags: Iterable[Tag]) -> dict[str, int]:
        unique = {tag.slug: tag for tag in tags}
        if not unique:
            return {}
        # in slug order: tags are shared by every source, and two polls inserting the same new tags
        # in different orders wait on each other's unique-index entries (a deadlock on PostgreSQL)
        conn.execute(self._insert_ignore(t.tags, ["slug"]),
                     [{"slug": s, "name": unique[s].name[:255]} for s in sorted(unique)])
        ids: dict[str, int] = {}
        for part in _chunks(list(unique)):
            rows = conn.execute(select(t.tags.c.slug, t.tags.c.id).where(t.tags.c.slug.in_(part)))
            ids.update({r.slug: r.id for r in rows})
        return ids

    def _insert_posts(self, conn: Connection, source_id: int, posts: Sequence[Post],
                      now: datetime) -> dict[str, int]:
        if not posts:
            return {}
        conn.execute(self._insert_ignore(t.posts, ["source_id", "key"]), [
            {"source_id": source_id, "key": p.key, "url": p.url, "title": p.title,
             "summary_html": p.summary_html, "content_html": p.content_html, "image_url": p.image_url,
             "author": p.author, "published_at": p.published, "first_seen_at": now, "link_key": p.link_key}
            for p in posts])
        ids: dict[str, int] = {}
        for part in _chunks([p.key for p in posts]):
            rows = conn.execute(select(t.posts.c.key, t.posts.c.id).where(
                t.posts.c.source_id == source_id, t.posts.c.key.in_(part)))
            ids.update({r.key: r.id for r in rows})
        tag_ids = self._tag_ids(conn, (tag for p in posts for tag in p.tags))
        links = [{"post_id": ids[p.key], "tag_id": tag_ids[tag.slug]} for p in posts for tag in p.tags]
        if links:
            conn.execute(self._insert_ignore(t.post_tags, ["post_id", "tag_id"]), links)
        return ids

    def _queue(self, conn: Connection, pairs: Sequence[tuple[int, str]], now: datetime, *,
               status: DeliveryStatus = DeliveryStatus.QUEUED) -> int:
        """Insert deliveries (``queued``, or ``held`` for a burst) with their send order (``post_at``)."""
        if not pairs:
            return 0
        chan_ids = {r.name: r.id for r in conn.execute(select(t.channels.c.name, t.channels.c.id))}
        rows = [{"post_id": post_id, "channel_id": chan_ids[channel], "status": status.value,
                 "attempts": 0, "next_attempt_at": now, "created_at": now, "updated_at": now}
                for post_id, channel in pairs if channel in chan_ids]
        if not rows:
            return 0
        stmt = self._insert_ignore(t.deliveries, ["post_id", "channel_id"]).returning(t.deliveries.c.id)
        result = conn.execute(stmt, rows)
        ids = [r.id for r in result.all()]  # rowcount is unreliable for executemany on asyncpg
        post_at = (select(func.coalesce(t.posts.c.published_at, t.posts.c.first_seen_at))
                   .where(t.posts.c.id == t.deliveries.c.post_id).scalar_subquery())
        for part in _chunks(ids):  # the send order, read by claim_next through ix_deliveries_pending
            conn.execute(update(t.deliveries).where(t.deliveries.c.id.in_(part)).values(post_at=post_at))
        return len(ids)

    def _backfill(self, conn: Connection, source: SourceState, now: datetime) -> int:
        """Queue each pending backfill of this source: the N latest matching posts per subscription."""
        pending = conn.execute(
            select(t.subscriptions.c.id, t.subscriptions.c.tag_slug, t.subscriptions.c.tag_name,
                   t.subscriptions.c.backfill, t.channels.c.name.label("channel"))
            .join(t.channels, t.channels.c.id == t.subscriptions.c.channel_id)
            .where(t.subscriptions.c.backfill > 0)
            .where(~select(t.backfills_done.c.subscription_id).where(
                t.backfills_done.c.subscription_id == t.subscriptions.c.id,
                t.backfills_done.c.source_id == source.id).exists())).all()
        total = 0
        for sub in pending:
            rows = conn.execute(
                select(t.posts.c.id, t.posts.c.key, t.posts.c.title, t.posts.c.published_at)
                .join(t.post_tags, t.post_tags.c.post_id == t.posts.c.id)
                .join(t.tags, t.tags.c.id == t.post_tags.c.tag_id)
                .where(t.posts.c.source_id == source.id, t.tags.c.slug == sub.tag_slug)
                .order_by(t.posts.c.published_at.desc().nulls_last(), t.posts.c.id.desc())
                .limit(sub.backfill)).all()
            tag = Tag(sub.tag_slug, sub.tag_name)
            candidates = [Post(key=r.key, source=source.name, title=r.title, url=None, summary_html="",
                               content_html="", tags=(tag,), published=utc(r.published_at), id=r.id)
                          for r in rows]
            chosen = pick_backfill(candidates, Subscription(sub.tag_slug, sub.tag_name, sub.channel,
                                                            sub.backfill))
            total += self._queue(conn, [(p.id, sub.channel) for p in chosen if p.id is not None], now)
            conn.execute(insert(t.backfills_done).values(
                subscription_id=sub.id, source_id=source.id, done_at=now))
        return total

    # -- channels -------------------------------------------------------------------------

    @staticmethod
    def _channel_state(row: Row[Any]) -> ChannelState:
        return ChannelState(id=row.id, name=row.name, platform=row.platform, paused=bool(row.paused),
                            paused_reason=row.paused_reason, paused_at=utc(row.paused_at),
                            hold_until=utc(row.hold_until), target_override=row.target_override)

    async def channel(self, name: str) -> ChannelState:
        row = await self._read(lambda conn: conn.execute(
            select(t.channels).where(t.channels.c.name == name)).first())
        if row is None:
            raise NotFoundError("channel", name)
        return self._channel_state(row)

    async def channels(self) -> list[ChannelState]:
        rows = await self._read(lambda conn: conn.execute(select(t.channels).order_by(t.channels.c.name)).all())
        return [self._channel_state(r) for r in rows]

    async def set_paused(self, name: str, paused: bool, reason: str | None, now: datetime) -> bool:
        """Pause or resume a channel. Returns False when it already was in that state."""

        def work(conn: Connection) -> bool:
            row = conn.execute(select(t.channels).where(t.channels.c.name == name)).first()
            if row is None:
                raise NotFoundError("channel", name)
            if bool(row.paused) == paused and (not paused or row.paused_reason == reason):
                return False
            conn.execute(update(t.channels).where(t.channels.c.id == row.id).values(
                paused=paused, paused_reason=reason if paused else None, paused_at=now if paused else None,
                hold_until=None if not paused else row.hold_until))
            return True

        return await self._write(work)

    async def set_hold(self, name: str, until: datetime | None) -> None:
        await self._execute(update(t.channels).where(t.channels.c.name == name).values(hold_until=until))

    async def set_target_override(self, name: str, target: str | None) -> None:
        await self._execute(update(t.channels).where(t.channels.c.name == name).values(target_override=target))

    # -- deliveries -----------------------------------------------------------------------

    async def due_channels(self, now: datetime, *, only: str | None = None) -> list[str]:
        """Channels with a queued/failed delivery due now, that are neither paused nor held."""
        chans, params = (_LIVE_CHANNELS, {"due_now": now}) if only is None else (
            _LIVE_CHANNEL, {"due_now": now, "due_name": only})

        def work(conn: Connection) -> list[str]:
            names: list[str] = []
            for chan in conn.execute(chans, params).all():
                if conn.execute(_DUE_DELIVERY, {"due_channel_id": chan.id, "due_now": now}).first() is not None:
                    names.append(chan.name)
            return sorted(names)

        return await self._read(work)

    async def next_due_at(self, exclude: Collection[str] = ()) -> datetime | None:
        """The earliest time a queued/failed delivery of an unpaused channel becomes due: for each
        channel its earliest delivery, or the end of its hold if that is later. ``exclude``: channels
        left out (those the caller is sending to already). Cost ∝ waiting deliveries, not history."""

        def work(conn: Connection) -> Any:
            stmt = _NEXT_DUE
            if exclude:
                stmt = stmt.where(t.channels.c.name.not_in(list(exclude)))
            return conn.execute(stmt).scalar()

        return utc(await self._read(work))

    async def has_due(self, channel: str, now: datetime) -> bool:
        """Is a delivery of this (unpaused, unheld) channel due now? Cheap; does not claim."""
        return channel in await self.due_channels(now, only=channel)

    async def claim_next(self, channel: str, now: datetime, owner: str) -> ClaimedDelivery | None:
        """Claim the channel's oldest due delivery (oldest post first) and mark it ``sending``.

        The transition is committed before this returns, i.e. before any request leaves.
        """
        return await self._write(lambda conn: self._claim(conn, channel, now, owner))

    async def finish(self, delivery_id: int, status: DeliveryStatus, now: datetime, *,
                     remote_id: str | None = None, remote_url: str | None = None,
                     error: str | None = None, next_attempt_at: datetime | None = None,
                     reason: str | None = None, attempts_delta: int = 0, uncertain: bool = False) -> None:
        """Record the outcome of a send (committed right after the answer). ``uncertain``: the attempt
        may have reached the platform (``uncertain_since`` keeps the first such time)."""
        outcome = _Outcome(delivery_id, status, now, remote_id=remote_id, remote_url=remote_url, error=error,
                           next_attempt_at=next_attempt_at, reason=reason, attempts_delta=attempts_delta,
                           uncertain=uncertain)
        await self._write(outcome.record)

    async def finish_and_claim_next(self, delivery_id: int, status: DeliveryStatus, now: datetime, *,
                                    channel: str, owner: str, remote_id: str | None = None,
                                    remote_url: str | None = None, error: str | None = None,
                                    next_attempt_at: datetime | None = None, reason: str | None = None,
                                    attempts_delta: int = 0, uncertain: bool = False) -> ClaimedDelivery | None:
        """``finish`` then ``claim_next`` on ``channel``, in ONE transaction.

        The outcome and the next delivery's ``sending`` are committed together, before this
        returns: an outcome is still committed before the next request leaves, and the next
        request still leaves only after its ``sending`` is committed. Returns the claimed
        delivery, or None when none is due (or the channel is paused or held); the outcome
        is recorded either way.
        """
        outcome = _Outcome(delivery_id, status, now, remote_id=remote_id, remote_url=remote_url, error=error,
                           next_attempt_at=next_attempt_at, reason=reason, attempts_delta=attempts_delta,
                           uncertain=uncertain)

        def work(conn: Connection) -> ClaimedDelivery | None:
            outcome.record(conn)
            return self._claim(conn, channel, now, owner)

        return await self._write(work)

    def _claim(self, conn: Connection, channel: str, now: datetime, owner: str) -> ClaimedDelivery | None:
        row = conn.execute(_claim_statement(self.dialect),
                           {"claim_channel": channel, "claim_now": now, "claim_owner": owner}).first()
        if row is None:
            return None
        return ClaimedDelivery(id=row.id, channel=channel, post=self._load_post(conn, row.post_id),
                               attempts=row.attempts, status=DeliveryStatus.SENDING,
                               uncertain_since=utc(row.uncertain_since))

    @staticmethod
    def _load_post(conn: Connection, post_id: int) -> Post:
        r = conn.execute(_POST, {"load_post_id": post_id}).one()
        tags = tuple(Tag(tr.slug, tr.name) for tr in conn.execute(_POST_TAGS, {"load_post_id": post_id}))
        return Post(key=r.key, source=r.source_name, title=r.title, url=r.url, summary_html=r.summary_html or "",
                    content_html=r.content_html or "", tags=tags, published=utc(r.published_at),
                    image_url=r.image_url, author=r.author, id=r.id)

    async def recover_sending(self, now: datetime, *, resend_channels: set[str], owner: str | None = None
                              ) -> tuple[int, int]:
        """After a crash: ``sending`` rows go back to ``queued`` on channels whose publisher is
        idempotent (or configured at-least-once), else to ``unknown``. Returns (requeued, unknown).
        With ``owner`` only that owner's claims are touched."""

        def work(conn: Connection) -> tuple[int, int]:
            cond: list[ColumnElement[bool]] = [t.deliveries.c.status == DeliveryStatus.SENDING.value]
            if owner is not None:
                cond.append(t.deliveries.c.claimed_by == owner)
            rows = conn.execute(
                select(t.deliveries.c.id, t.channels.c.name)
                .join(t.channels, t.channels.c.id == t.deliveries.c.channel_id).where(and_(*cond))).all()
            requeue = [r.id for r in rows if r.name in resend_channels]
            unknown = [r.id for r in rows if r.name not in resend_channels]
            for part in _chunks(requeue):
                conn.execute(update(t.deliveries).where(t.deliveries.c.id.in_(part)).values(
                    status=DeliveryStatus.QUEUED.value, next_attempt_at=now, claimed_by=None, updated_at=now,
                    attempts=t.deliveries.c.attempts - 1, uncertain_since=_UNCERTAIN_SINCE_CLAIM))
            for part in _chunks(unknown):
                conn.execute(update(t.deliveries).where(t.deliveries.c.id.in_(part)).values(
                    status=DeliveryStatus.UNKNOWN.value, claimed_by=None, updated_at=now, reason="interrupted",
                    last_error="interrupted while sending; the platform has no idempotency, so it was not "
                               "re-sent automatically (use `tagrelay retry` if it did not arrive)"))
            return len(requeue), len(unknown)

        return await self._write(work)

    async def requeue(self, now: datetime, *, channel: str | None = None, delivery_id: int | None = None,
                      statuses: Sequence[DeliveryStatus] = (DeliveryStatus.FAILED, DeliveryStatus.DEAD,
                                                            DeliveryStatus.UNKNOWN)) -> int:
        """Put failed/dead/unknown deliveries back in the queue (admin ``retry``)."""

        def work(conn: Connection) -> int:
            cond: list[ColumnElement[bool]] = [t.deliveries.c.status.in_([s.value for s in statuses])]
            if delivery_id is not None:
                exists = conn.execute(select(t.deliveries.c.id).where(t.deliveries.c.id == delivery_id)).first()
                if exists is None:
                    raise NotFoundError("delivery", str(delivery_id))
                cond.append(t.deliveries.c.id == delivery_id)
            if channel is not None:
                chan = conn.execute(select(t.channels.c.id).where(t.channels.c.name == channel)).first()
                if chan is None:
                    raise NotFoundError("channel", channel)
                cond.append(t.deliveries.c.channel_id == chan.id)
            result = conn.execute(update(t.deliveries).where(and_(*cond)).values(
                status=DeliveryStatus.QUEUED.value, next_attempt_at=now, attempts=0, updated_at=now,
                reason="retry"))
            return int(result.rowcount or 0)

        return await self._write(work)

    # -- held bursts ---------------------------------------------------------------------

    async def holds(self) -> list[HoldView]:
        """Each source's held burst (only sources that have one). Reads only the held deliveries
        (``ix_deliveries_status``), never the delivery history."""
        held = t.deliveries.c.status == DeliveryStatus.HELD.value
        joined = (t.deliveries.join(t.posts, t.posts.c.id == t.deliveries.c.post_id)
                  .join(t.sources, t.sources.c.id == t.posts.c.source_id))
        per_source = (select(t.sources.c.name, t.sources.c.usual_new,
                             func.count(func.distinct(t.deliveries.c.post_id)).label("posts"),
                             func.count().label("n"), func.min(t.deliveries.c.created_at).label("since"))
                      .select_from(joined).where(held)
                      .group_by(t.sources.c.id, t.sources.c.name, t.sources.c.usual_new).order_by(t.sources.c.name))
        per_channel = (select(t.sources.c.name.label("source"), t.channels.c.name.label("channel"))
                       .select_from(joined.join(t.channels, t.channels.c.id == t.deliveries.c.channel_id))
                       .where(held).distinct())

        def work(conn: Connection) -> tuple[Sequence[Any], Sequence[Any]]:
            return conn.execute(per_source).all(), conn.execute(per_channel).all()

        rows, chans = await self._read(work)
        by_source: dict[str, list[str]] = {}
        for r in chans:
            by_source.setdefault(r.source, []).append(r.channel)
        return [HoldView(source=r.name, posts=int(r.posts), deliveries=int(r.n), since=utc(r.since),
                         usual_new=r.usual_new, channels=tuple(sorted(by_source.get(r.name, ()))))
                for r in rows]

    async def release_hold(self, source: str, now: datetime) -> int:
        """A source's held deliveries become ``queued`` (due now; sent paced, oldest post first).
        Returns how many. Raises ``NotFoundError`` for an unknown source."""
        return await self._end_hold(source, {
            "status": DeliveryStatus.QUEUED.value, "next_attempt_at": now, "updated_at": now, "reason": "released"})

    async def drop_hold(self, source: str, now: datetime) -> int:
        """A source's held deliveries become ``dropped``: recorded, never sent. Returns how many."""
        return await self._end_hold(source, {
            "status": DeliveryStatus.DROPPED.value, "next_attempt_at": None, "updated_at": now,
            "reason": "dropped", "last_error": "a held burst, dropped by an admin; never sent"})

    async def _end_hold(self, source: str, values: dict[str, Any]) -> int:
        def work(conn: Connection) -> int:
            row = conn.execute(select(t.sources.c.id).where(t.sources.c.name == source)).first()
            if row is None:
                raise NotFoundError("source", source)
            of_source = select(t.posts.c.id).where(t.posts.c.source_id == row.id)
            result = conn.execute(update(t.deliveries).where(
                t.deliveries.c.status == DeliveryStatus.HELD.value, t.deliveries.c.post_id.in_(of_source))
                .values(values))
            return int(result.rowcount or 0)

        return await self._write(work)

    async def deliveries(self, *, status: str | None = None, channel: str | None = None,
                         limit: int = 50, ids: Sequence[int] | None = None) -> list[DeliveryView]:
        query = (
            select(t.deliveries, t.channels.c.name.label("channel"), t.channels.c.platform,
                   t.posts.c.title, t.posts.c.url, t.posts.c.published_at, t.sources.c.name.label("source"))
            .join(t.channels, t.channels.c.id == t.deliveries.c.channel_id)
            .join(t.posts, t.posts.c.id == t.deliveries.c.post_id)
            .join(t.sources, t.sources.c.id == t.posts.c.source_id)
            .order_by(t.deliveries.c.id.desc()).limit(limit)
        )
        if status:
            query = query.where(t.deliveries.c.status == status)
        if channel:
            query = query.where(t.channels.c.name == channel)
        if ids is not None:
            query = query.where(t.deliveries.c.id.in_(list(ids)))
        rows = await self._read(lambda conn: conn.execute(query).all())
        return [DeliveryView(
            id=r.id, channel=r.channel, platform=r.platform, status=r.status, attempts=r.attempts,
            post_title=r.title, post_url=r.url, source=r.source, published=utc(r.published_at),
            next_attempt_at=utc(r.next_attempt_at), remote_id=r.remote_id, remote_url=r.remote_url,
            last_error=r.last_error, created_at=utc(r.created_at), updated_at=utc(r.updated_at),
            sent_at=utc(r.sent_at)) for r in rows]

    async def channel_counts(self, now: datetime) -> list[ChannelCounts]:
        day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)

        def work(conn: Connection) -> tuple[Sequence[Any], ...]:
            chans = conn.execute(select(t.channels).order_by(t.channels.c.name)).all()
            counts = conn.execute(
                select(t.deliveries.c.channel_id, t.deliveries.c.status, func.count().label("n"))
                .group_by(t.deliveries.c.channel_id, t.deliveries.c.status)).all()
            oldest = conn.execute(
                select(t.deliveries.c.channel_id, func.min(t.deliveries.c.created_at).label("oldest"))
                .where(t.deliveries.c.status.in_([DeliveryStatus.QUEUED.value, DeliveryStatus.FAILED.value,
                                                  DeliveryStatus.SENDING.value]))
                .group_by(t.deliveries.c.channel_id)).all()
            today = conn.execute(
                select(t.deliveries.c.channel_id, func.count().label("n"))
                .where(t.deliveries.c.status == DeliveryStatus.SENT.value, t.deliveries.c.sent_at >= day_start)
                .group_by(t.deliveries.c.channel_id)).all()
            return chans, counts, oldest, today

        chans, counts, oldest, today = await self._read(work)
        by_chan: dict[int, dict[str, int]] = {}
        for row in counts:
            by_chan.setdefault(row.channel_id, {})[row.status] = row.n
        old = {r.channel_id: utc(r.oldest) for r in oldest}
        sent_today = {r.channel_id: r.n for r in today}
        return [ChannelCounts(channel=c.name, platform=c.platform, paused=bool(c.paused),
                              paused_reason=c.paused_reason, hold_until=utc(c.hold_until),
                              counts=by_chan.get(c.id, {}), oldest_queued=old.get(c.id),
                              sent_today=sent_today.get(c.id, 0)) for c in chans]

    async def queue_depths(self) -> dict[str, tuple[int, datetime | None]]:
        """Per channel: deliveries waiting (queued + failed), and when the oldest waiting or in-flight
        one was created. Reads only those rows (partial index), never the delivery history, so it is
        cheap enough for every delivery round and every metrics scrape."""

        def work(conn: Connection) -> tuple[dict[int, str], Sequence[Any], Sequence[Any]]:
            names = {r.id: r.name for r in conn.execute(_CHANNEL_NAMES).all()}
            return names, conn.execute(_WAITING).all(), conn.execute(_SENDING).all()

        names, waiting, sending = await self._read(work)
        out: dict[str, tuple[int, datetime | None]] = {name: (0, None) for name in names.values()}
        for r in waiting:
            out[names[r.channel_id]] = (int(r.n), utc(r.oldest))
        for r in sending:
            depth, oldest = out[names[r.channel_id]]
            began = utc(r.oldest)
            out[names[r.channel_id]] = (depth, began if oldest is None or (began and began < oldest) else oldest)
        return out

    # -- subscriptions & tags -------------------------------------------------------------

    async def subscriptions(self, channel: str | None = None) -> list[tuple[Subscription, str]]:
        """Subscriptions with their origin ("config", "cli", "bot")."""
        query = (select(t.subscriptions, t.channels.c.name.label("channel"))
                 .join(t.channels, t.channels.c.id == t.subscriptions.c.channel_id)
                 .order_by(t.subscriptions.c.tag_slug, t.channels.c.name))
        if channel:
            query = query.where(t.channels.c.name == channel)
        rows = await self._read(lambda conn: conn.execute(query).all())
        return [(Subscription(r.tag_slug, r.tag_name, r.channel, r.backfill), r.origin) for r in rows]

    async def subscriptions_for_tags(self, slugs: Iterable[str]) -> list[Subscription]:
        """The subscriptions to any of these tags (an index lookup per tag, however many exist)."""
        wanted = sorted(set(slugs))
        if not wanted:
            return []

        def work(conn: Connection) -> list[Subscription]:
            out: list[Subscription] = []
            for part in _chunks(wanted):
                rows = conn.execute(
                    select(t.subscriptions.c.tag_slug, t.subscriptions.c.tag_name, t.subscriptions.c.backfill,
                           t.channels.c.name.label("channel"))
                    .join(t.channels, t.channels.c.id == t.subscriptions.c.channel_id)
                    .where(t.subscriptions.c.tag_slug.in_(part))).all()
                out.extend(Subscription(r.tag_slug, r.tag_name, r.channel, r.backfill) for r in rows)
            return out

        return sorted(await self._read(work), key=lambda s: (s.tag_slug, s.channel))

    async def add_subscription(self, sub: Subscription, origin: str, now: datetime) -> bool:
        """Returns False when it already existed."""

        def work(conn: Connection) -> bool:
            chan = conn.execute(select(t.channels.c.id).where(t.channels.c.name == sub.channel)).first()
            if chan is None:
                raise NotFoundError("channel", sub.channel)
            result = conn.execute(self._insert_ignore(t.subscriptions, ["tag_slug", "channel_id"]).values(
                tag_slug=sub.tag_slug, tag_name=sub.tag_name, channel_id=chan.id, backfill=sub.backfill,
                origin=origin, created_at=now))
            return bool(result.rowcount)

        return await self._write(work)

    async def remove_subscription(self, tag_slug: str, channel: str) -> bool:
        def work(conn: Connection) -> bool:
            chan = conn.execute(select(t.channels.c.id).where(t.channels.c.name == channel)).first()
            if chan is None:
                raise NotFoundError("channel", channel)
            result = conn.execute(delete(t.subscriptions).where(
                t.subscriptions.c.tag_slug == tag_slug, t.subscriptions.c.channel_id == chan.id))
            return bool(result.rowcount)

        return await self._write(work)

    async def tags(self, search: str | None = None, limit: int | None = None, offset: int = 0) -> list[TagCount]:
        query = (select(t.tags.c.slug, t.tags.c.name, func.count(t.post_tags.c.post_id).label("n"))
                 .outerjoin(t.post_tags, t.post_tags.c.tag_id == t.tags.c.id)
                 .group_by(t.tags.c.id, t.tags.c.slug, t.tags.c.name)
                 .order_by(func.count(t.post_tags.c.post_id).desc(), t.tags.c.slug).offset(offset))
        if search:
            pattern = f"%{search.lower()}%"
            query = query.where(or_(func.lower(t.tags.c.name).like(pattern), t.tags.c.slug.like(pattern)))
        if limit is not None:
            query = query.limit(limit)
        rows = await self._read(lambda conn: conn.execute(query).all())
        return [TagCount(r.slug, r.name, r.n) for r in rows]

    async def tag(self, slug: str) -> TagCount | None:
        query = (select(t.tags.c.slug, t.tags.c.name, func.count(t.post_tags.c.post_id).label("n"))
                 .outerjoin(t.post_tags, t.post_tags.c.tag_id == t.tags.c.id)
                 .where(t.tags.c.slug == slug).group_by(t.tags.c.id, t.tags.c.slug, t.tags.c.name))
        row = await self._read(lambda conn: conn.execute(query).first())
        return TagCount(row.slug, row.name, row.n) if row else None

    async def latest_post(self, *, tag_slug: str | None = None, url: str | None = None) -> Post | None:
        """The newest post with a tag, or the post at a URL (for ``preview``)."""
        query = select(t.posts.c.id).order_by(t.posts.c.published_at.desc().nulls_last(), t.posts.c.id.desc())
        if tag_slug is not None:
            query = (query.join(t.post_tags, t.post_tags.c.post_id == t.posts.c.id)
                     .join(t.tags, t.tags.c.id == t.post_tags.c.tag_id).where(t.tags.c.slug == tag_slug))
        if url is not None:
            query = query.where(t.posts.c.url == url)

        def work(conn: Connection) -> Post | None:
            row = conn.execute(query.limit(1)).first()
            if row is None:
                return None
            return self._load_post(conn, row.id)

        return await self._read(work)

    # -- named leases -------------------------------------------------------------------

    async def release_lease(self, name: str, owner: str) -> None:
        await self._execute(delete(t.instance_leases).where(
            t.instance_leases.c.name == name, t.instance_leases.c.owner == owner))

    # -- several instances on one database (PostgreSQL) -----------------------------------
    #
    # On PostgreSQL any number of instances share the database: each registers in
    # ``instances`` and renews a heartbeat; a source is polled under a lease
    # (``sources.lease_owner/lease_expires_at``), a channel is sent to under a named
    # lease (``instance_leases`` row ``channel:<name>``), and whoever sees an instance dead
    # (its heartbeat expired, or its session advisory lock gone: ``bot.storage.instance_lock``)
    # recovers its in-flight deliveries. Every step is one statement or one short
    # transaction, safe against the other instances doing the same.

    async def register_instance(self, owner: str, version: str, now: datetime, ttl: float) -> None:
        expires = now + timedelta(seconds=ttl)

        def work(conn: Connection) -> None:
            conn.execute(delete(t.instances).where(t.instances.c.owner == owner))
            conn.execute(insert(t.instances).values(owner=owner, version=version[:32], started_at=now,
                                                    heartbeat_at=now, expires_at=expires))

        await self._write(work)

    async def heartbeat_instance(self, owner: str, now: datetime, ttl: float) -> bool:
        """Renew this instance's registration. False: it had expired and was taken over."""
        stmt = update(t.instances).where(t.instances.c.owner == owner).values(
            heartbeat_at=now, expires_at=now + timedelta(seconds=ttl))
        return await self._write(lambda conn: bool(conn.execute(stmt).rowcount))

    async def unregister_instance(self, owner: str) -> None:
        """A clean stop: drop the registration and every lease this instance holds."""

        def work(conn: Connection) -> None:
            conn.execute(update(t.sources).where(t.sources.c.lease_owner == owner).values(
                lease_owner=None, lease_expires_at=None))
            conn.execute(delete(t.instance_leases).where(t.instance_leases.c.owner == owner))
            conn.execute(delete(t.instances).where(t.instances.c.owner == owner))

        await self._write(work)

    async def live_instances(self, now: datetime) -> int:
        """How many registered instances have not expired (shared mode)."""
        stmt = select(func.count()).select_from(t.instances).where(t.instances.c.expires_at > now)
        return int(await self._read(lambda conn: conn.execute(stmt).scalar() or 0))

    async def instances(self) -> list[InstanceInfo]:
        """Registered instances with what each holds (sources being polled, channels being sent to)."""

        def work(conn: Connection) -> tuple[Sequence[Any], ...]:
            rows = conn.execute(select(t.instances).order_by(t.instances.c.started_at)).all()
            held = conn.execute(select(t.sources.c.lease_owner, t.sources.c.name)
                                .where(t.sources.c.lease_owner.is_not(None))
                                .order_by(t.sources.c.name)).all()
            leases = conn.execute(select(t.instance_leases.c.owner, t.instance_leases.c.name)
                                  .where(t.instance_leases.c.name.like(f"{CHANNEL_LEASE}%"))
                                  .order_by(t.instance_leases.c.name)).all()
            return rows, held, leases

        rows, held, leases = await self._read(work)
        sources: dict[str, list[str]] = {}
        for r in held:
            sources.setdefault(r.lease_owner, []).append(r.name)
        channels: dict[str, list[str]] = {}
        for r in leases:
            channels.setdefault(r.owner, []).append(r.name[len(CHANNEL_LEASE):])
        out = []
        for r in rows:
            started, heartbeat, expires = utc(r.started_at), utc(r.heartbeat_at), utc(r.expires_at)
            assert started is not None and heartbeat is not None and expires is not None
            out.append(InstanceInfo(owner=r.owner, version=r.version, started_at=started, heartbeat_at=heartbeat,
                                    expires_at=expires, sources=tuple(sources.get(r.owner, ())),
                                    channels=tuple(channels.get(r.owner, ()))))
        return out

    async def unlocked_instances(self, version: str, *, exclude: str) -> list[str]:
        """Registered instances of ``version`` (other than ``exclude``) whose advisory lock no session
        holds: dead, whatever their heartbeat says (PostgreSQL; see ``bot.storage.instance_lock``)."""
        return await self._read(lambda conn: self._unlocked(conn, version, exclude))

    def _unlocked(self, conn: Connection, version: str, exclude: str | None) -> list[str]:
        if self.dialect != "postgresql":
            return []
        rows = conn.execute(select(t.instances.c.owner).where(
            t.instances.c.version == version[:32], t.instances.c.owner != (exclude or ""))).all()
        if not rows:
            return []
        held = held_keys(conn)
        return [r.owner for r in rows if advisory_key(r.owner) not in held]

    async def reap_instances(self, now: datetime, *, resend_channels: set[str], lock_version: str | None = None,
                             me: str | None = None) -> tuple[list[str], int, int]:
        """Take over the work of instances whose heartbeat expired, and (with ``lock_version``) at once of
        those of that version whose advisory lock is gone (``unlocked_instances``; never ``me``).

        Their registrations are deleted (one statement, so two reapers never both act on
        one), their source and channel leases freed, and every ``sending`` delivery whose
        claimer is no longer registered is recovered like ``recover_sending`` does:
        requeued on channels in ``resend_channels``, else ``unknown``. Returns
        (dead owners, requeued, unknown).
        """

        def work(conn: Connection) -> tuple[list[str], int, int]:
            gone: ColumnElement[bool] = t.instances.c.expires_at < now
            unlocked = self._unlocked(conn, lock_version, me) if lock_version is not None else []
            if unlocked:
                gone = or_(gone, t.instances.c.owner.in_(unlocked))
            dead = [r.owner for r in conn.execute(
                delete(t.instances).where(gone).returning(t.instances.c.owner)).all()]
            if dead:
                conn.execute(update(t.sources).where(t.sources.c.lease_owner.in_(dead)).values(
                    lease_owner=None, lease_expires_at=None))
                conn.execute(delete(t.instance_leases).where(t.instance_leases.c.owner.in_(dead),
                                                             t.instance_leases.c.name != "main"))
            orphan = and_(
                t.deliveries.c.status == DeliveryStatus.SENDING.value,
                ~select(t.instances.c.owner).where(t.instances.c.owner == t.deliveries.c.claimed_by).exists())
            resend_ids = select(t.channels.c.id).where(t.channels.c.name.in_(sorted(resend_channels)))
            requeued = conn.execute(update(t.deliveries).where(
                orphan, t.deliveries.c.channel_id.in_(resend_ids)).values(
                status=DeliveryStatus.QUEUED.value, next_attempt_at=now, claimed_by=None, updated_at=now,
                attempts=t.deliveries.c.attempts - 1, uncertain_since=_UNCERTAIN_SINCE_CLAIM,
            ).returning(t.deliveries.c.id))
            n_requeued = len(requeued.all())
            unknown = conn.execute(update(t.deliveries).where(
                orphan, t.deliveries.c.channel_id.not_in(resend_ids)).values(
                status=DeliveryStatus.UNKNOWN.value, claimed_by=None, updated_at=now, reason="interrupted",
                last_error=_INTERRUPTED).returning(t.deliveries.c.id))
            n_unknown = len(unknown.all())
            return dead, n_requeued, n_unknown

        return await self._write(work)

    async def claim_sources(self, owner: str, now: datetime, ttl: float, names: Sequence[str], *,
                            limit: int, due_only: bool = True) -> list[str]:
        """Lease up to ``limit`` of the named sources for polling by ``owner``.

        A source is claimable when no live lease is on it and (with ``due_only``) its
        ``next_poll_at`` has come. ``record_poll``/``record_not_modified``/
        ``record_poll_failure`` release the lease; ``release_sources`` releases it
        when a poll ends without a record. On PostgreSQL the rows are picked with
        ``FOR UPDATE SKIP LOCKED``, so concurrent claimers never block each other and
        never get the same source.
        """
        if not names or limit <= 0:
            return []
        cond: list[ColumnElement[bool]] = [
            t.sources.c.name.in_(list(names)),
            # not even our own live lease: that source is being polled by this very instance right now
            or_(t.sources.c.lease_owner.is_(None), t.sources.c.lease_expires_at < now)]
        if due_only:
            cond.append(or_(t.sources.c.next_poll_at.is_(None), t.sources.c.next_poll_at <= now))
        pick = (select(t.sources.c.id).where(*cond)
                .order_by(t.sources.c.next_poll_at.asc().nulls_first(), t.sources.c.id).limit(limit))
        if self.dialect == "postgresql":
            pick = pick.with_for_update(skip_locked=True)
        # one statement: on SQLite it runs under the write lock, so two claimers cannot both pick a row
        claim = update(t.sources).where(t.sources.c.id.in_(pick.scalar_subquery())).values(
            lease_owner=owner, lease_expires_at=now + timedelta(seconds=ttl)).returning(t.sources.c.name)
        rows = await self._write(lambda conn: conn.execute(claim).all())
        return sorted(r.name for r in rows)

    async def release_sources(self, owner: str, names: Sequence[str] | None = None) -> None:
        cond: list[ColumnElement[bool]] = [t.sources.c.lease_owner == owner]
        if names is not None:
            cond.append(t.sources.c.name.in_(list(names)))
        await self._execute(update(t.sources).where(*cond).values(lease_owner=None, lease_expires_at=None))

    async def next_poll_due(self, names: Sequence[str]) -> datetime | None:
        """When the earliest of the named sources is due (None: one is due now or never polled)."""

        def work(conn: Connection) -> tuple[bool, Any]:
            never = conn.execute(select(t.sources.c.id).where(
                t.sources.c.name.in_(list(names)), t.sources.c.next_poll_at.is_(None)).limit(1)).first()
            if never is not None:
                return True, None
            return False, conn.execute(select(func.min(t.sources.c.next_poll_at)).where(
                t.sources.c.name.in_(list(names)))).scalar()

        never, value = await self._read(work)
        return None if never else utc(value)

    async def try_lease(self, name: str, owner: str, now: datetime, ttl: float) -> bool:
        """Take or renew the named lease unless another owner's is still alive. One statement."""
        expires = now + timedelta(seconds=ttl)
        ins = self._dialect_insert(t.instance_leases)
        stmt = ins.values(name=name, owner=owner, acquired_at=now, heartbeat_at=now, expires_at=expires)
        upsert = stmt.on_conflict_do_update(
            index_elements=["name"],
            set_={"owner": stmt.excluded.owner, "heartbeat_at": stmt.excluded.heartbeat_at,
                  "expires_at": stmt.excluded.expires_at,
                  "acquired_at": case((t.instance_leases.c.owner == stmt.excluded.owner,
                                       t.instance_leases.c.acquired_at), else_=stmt.excluded.acquired_at)},
            where=or_(t.instance_leases.c.owner == stmt.excluded.owner, t.instance_leases.c.expires_at < now),
        ).returning(t.instance_leases.c.owner)
        row = await self._write(lambda conn: conn.execute(upsert).first())
        return row is not None and row.owner == owner

    # -- pacing ---------------------------------------------------------------------------

    async def reserve_tokens(self, buckets: Sequence[tuple[str, float, float]], now: float) -> float:
        """Take one token from each bucket (key, capacity, period in seconds), persisted.

        Returns how long the caller must wait before sending (0: now). Reservations
        queue up (tokens may go negative), so concurrent callers, in this process or
        in another instance sharing the database, never get the same slot. Row locks
        (PostgreSQL) or SQLite's single writer serialise the read-modify-write.
        """
        if not buckets:
            return 0.0

        def work(conn: Connection) -> float:
            wait = 0.0
            for key, capacity, per in sorted(buckets):
                query = select(t.rate_buckets).where(t.rate_buckets.c.key == key)
                if self.dialect == "postgresql":
                    conn.execute(self._insert_ignore(t.rate_buckets, ["key"]).values(
                        key=key, tokens=bucket_shape(capacity, per)[0], stamp=now))
                    query = query.with_for_update()
                row = conn.execute(query).first()
                if row is None:
                    tokens, stamp = bucket_shape(capacity, per)[0], now
                    conn.execute(insert(t.rate_buckets).values(key=key, tokens=tokens, stamp=stamp))
                else:
                    tokens, stamp = float(row.tokens), float(row.stamp)
                burst, rate = bucket_shape(capacity, per)
                tokens, stamp, delay = reserve(min(tokens, burst), stamp, now, burst, rate)
                conn.execute(update(t.rate_buckets).where(t.rate_buckets.c.key == key).values(
                    tokens=tokens, stamp=stamp))
                wait = max(wait, delay)
            return wait

        return await self._write(work)

    # -- audit ----------------------------------------------------------------------------

    async def audit(self, actor: str, via: str, action: str, detail: str, now: datetime) -> None:
        await self._execute(insert(t.audit_log).values(at=now, actor=actor[:128], via=via, action=action,
                                                       detail=detail))

    async def audit_entries(self, limit: int = 50) -> list[AuditEntry]:
        rows = await self._read(lambda conn: conn.execute(
            select(t.audit_log).order_by(t.audit_log.c.id.desc()).limit(limit)).all())
        return [AuditEntry(at=utc(r.at) or r.at, actor=r.actor, via=r.via, action=r.action, detail=r.detail)
                for r in rows]

    # -- runtime: new queries --
    # (added by the runtime reshaping, issue 16; the lead moves them next to their aggregate at merge)

    async def poll_schedule(self, names: Sequence[str]) -> dict[str, datetime | None]:
        """``next_poll_at`` of each named source that exists (None: never polled, or its URL changed):
        what the poll driver needs to tell which sources are due and when to wake. One read of the
        ``sources`` rows, no post counts: cost ∝ sources, not history."""
        if not names:
            return {}
        query = select(t.sources.c.name, t.sources.c.next_poll_at).where(t.sources.c.name.in_(list(names)))
        rows = await self._read(lambda conn: conn.execute(query).all())
        return {r.name: utc(r.next_poll_at) for r in rows}


def _cache_values(cache: CacheState) -> dict[str, str | None]:
    return {"etag": cache.etag, "last_modified": cache.last_modified, "cursor": cache.cursor,
            "resolved_url": cache.resolved_url, "resolved_kind": cache.resolved_kind}


# -- the hot paths: statements built once, executed with parameters --------------------------------------
#
# Building a Core statement (and its cache key) costs more CPU than SQLite takes to run it, so the
# statements of every delivery, delivery round and unchanged poll are built once, here.

_SOURCE = select(t.sources).where(t.sources.c.name == bindparam("source_name", type_=String))
_HELD_OF_SOURCE = (select(t.deliveries.c.id).join(t.posts, t.posts.c.id == t.deliveries.c.post_id)
                   .where(t.deliveries.c.status == DeliveryStatus.HELD.value,
                          t.posts.c.source_id == bindparam("held_source_id", type_=t.ID)).limit(1))
"""Does the source have a held burst already (``record_poll``: admins are told once per hold)?"""
_NOT_MODIFIED = update(t.sources).where(t.sources.c.id == bindparam("nm_source_id", type_=t.ID)).values(
    **{key: bindparam(f"nm_{key}", type_=t.sources.c[key].type) for key in _cache_values(CacheState())},
    last_poll_at=bindparam("nm_now", type_=t.TS), last_success_at=bindparam("nm_now", type_=t.TS),
    last_outcome="not_modified", last_error=None, consecutive_failures=0,
    next_poll_at=bindparam("nm_next_poll_at", type_=t.TS), **_NO_LEASE)
"""``record_not_modified``: the validators, the poll's time and the next one (parameters ``nm_*``)."""

_LIVE_CHANNELS = select(t.channels.c.id, t.channels.c.name).where(
    t.channels.c.paused.is_(False),
    or_(t.channels.c.hold_until.is_(None), t.channels.c.hold_until <= bindparam("due_now", type_=t.TS)))
"""Channels neither paused nor held (``due_channels``)."""
_LIVE_CHANNEL = _LIVE_CHANNELS.where(t.channels.c.name == bindparam("due_name", type_=String))
_DUE_DELIVERY = select(t.deliveries.c.id).where(
    t.deliveries.c.channel_id == bindparam("due_channel_id", type_=t.ID),
    t.deliveries.c.status.in_([DeliveryStatus.QUEUED.value, DeliveryStatus.FAILED.value]),
    t.deliveries.c.next_attempt_at <= bindparam("due_now", type_=t.TS)).limit(1)
_WAITING_BY_CHANNEL = (
    select(t.deliveries.c.channel_id,
           func.min(func.coalesce(t.deliveries.c.next_attempt_at, t.deliveries.c.created_at)).label("due"))
    .where(text(t.PENDING_SQL)).group_by(t.deliveries.c.channel_id).subquery())
_NEXT_DUE = (
    select(func.min(case((t.channels.c.hold_until > _WAITING_BY_CHANNEL.c.due, t.channels.c.hold_until),
                         else_=_WAITING_BY_CHANNEL.c.due)))
    .select_from(_WAITING_BY_CHANNEL.join(t.channels, t.channels.c.id == _WAITING_BY_CHANNEL.c.channel_id))
    .where(t.channels.c.paused.is_(False)))
_CHANNEL_NAMES = select(t.channels.c.id, t.channels.c.name)
_WAITING = (select(t.deliveries.c.channel_id, func.count().label("n"),
                   func.min(t.deliveries.c.created_at).label("oldest"))
            .where(text(t.PENDING_SQL)).group_by(t.deliveries.c.channel_id))
_SENDING = (select(t.deliveries.c.channel_id, func.min(t.deliveries.c.created_at).label("oldest"))
            .where(t.deliveries.c.status == DeliveryStatus.SENDING.value)
            .group_by(t.deliveries.c.channel_id))

_POST = (select(t.posts, t.sources.c.name.label("source_name"))
         .join(t.sources, t.sources.c.id == t.posts.c.source_id)
         .where(t.posts.c.id == bindparam("load_post_id", type_=t.ID)))
_POST_TAGS = (select(t.post_tags.c.post_id, t.tags.c.slug, t.tags.c.name)
              .join(t.tags, t.tags.c.id == t.post_tags.c.tag_id)
              .where(t.post_tags.c.post_id == bindparam("load_post_id", type_=t.ID)).order_by(t.tags.c.id))


_UNCERTAIN_SINCE_CLAIM = func.coalesce(t.deliveries.c.uncertain_since, t.deliveries.c.updated_at)
"""A ``sending`` row put back after a crash: its request may have left at its claim (``updated_at``
before this UPDATE: SET expressions read the old row, on SQLite and PostgreSQL alike)."""


@functools.cache
def _claim_statement(dialect: str) -> Update:
    """``claim_next``'s statement (parameters ``claim_channel``, ``claim_now``, ``claim_owner``).

    One UPDATE … WHERE id = (the oldest due row) RETURNING: the channel check (not paused, not
    held), the pick (walking ix_deliveries_pending, its predicate spelled the same) and the claim
    are a single statement, atomic under SQLite's write lock and, on PostgreSQL, with the row
    locked by SKIP LOCKED, so two claimers never take the same delivery.
    """
    now = bindparam("claim_now", type_=t.TS)
    live_channel = select(t.channels.c.id).where(
        t.channels.c.name == bindparam("claim_channel", type_=String), t.channels.c.paused.is_(False),
        or_(t.channels.c.hold_until.is_(None), t.channels.c.hold_until <= now)).scalar_subquery()
    due = t.deliveries.alias("due")
    pick = (select(due.c.id)
            .where(due.c.channel_id == live_channel, text(t.PENDING_SQL), due.c.next_attempt_at <= now)
            .order_by(due.c.post_at, due.c.id).limit(1))
    if dialect == "postgresql":
        pick = pick.with_for_update(of=due, skip_locked=True)
    return (update(t.deliveries).where(t.deliveries.c.id == pick.scalar_subquery())
            .values(status=DeliveryStatus.SENDING.value, attempts=t.deliveries.c.attempts + 1,
                    claimed_by=bindparam("claim_owner", type_=String), updated_at=now)
            .returning(t.deliveries.c.id, t.deliveries.c.attempts, t.deliveries.c.post_id,
                       t.deliveries.c.uncertain_since))


@functools.cache
def _outcome_statement(sent: bool, counted: bool, uncertain: bool = False) -> Update:
    """``finish``'s UPDATE (parameters ``o_*``), one shape per kind of outcome: a sent one also records
    the remote post and when it was sent; a ``counted`` one moves the attempt counter; an ``uncertain``
    one (the attempt may have reached the platform) keeps the first such time in ``uncertain_since``."""
    now = bindparam("o_now", type_=t.TS)
    values: dict[str, Any] = {
        "status": bindparam("o_status", type_=String), "updated_at": now, "claimed_by": None,
        "last_error": bindparam("o_error", type_=Text), "reason": bindparam("o_reason", type_=String),
        "next_attempt_at": bindparam("o_next", type_=t.TS)}
    if sent:
        values.update(remote_id=bindparam("o_remote_id", type_=String),
                      remote_url=bindparam("o_remote_url", type_=Text), sent_at=now)
    if counted:
        values["attempts"] = t.deliveries.c.attempts + bindparam("o_delta", type_=Integer)
    if uncertain:
        values["uncertain_since"] = func.coalesce(t.deliveries.c.uncertain_since, now)
    return update(t.deliveries).where(t.deliveries.c.id == bindparam("o_id", type_=t.ID)).values(values)


@dataclass(frozen=True, slots=True)
class _Outcome:
    """The outcome of a send, as ``finish`` records it."""

    delivery_id: int
    status: DeliveryStatus
    now: datetime
    remote_id: str | None
    remote_url: str | None
    error: str | None
    next_attempt_at: datetime | None
    reason: str | None
    attempts_delta: int
    uncertain: bool = False

    def record(self, conn: Connection) -> None:
        sent = self.status is DeliveryStatus.SENT
        if sent:
            next_at = None
        elif self.status in (DeliveryStatus.FAILED, DeliveryStatus.QUEUED):
            next_at = self.next_attempt_at or self.now
        else:
            next_at = None
        params: dict[str, Any] = {
            "o_id": self.delivery_id, "o_status": self.status.value, "o_now": self.now,
            "o_error": self.error[:2000] if self.error else None, "o_reason": self.reason, "o_next": next_at}
        if sent:
            params.update(o_remote_id=self.remote_id, o_remote_url=self.remote_url)
        if self.attempts_delta:
            params["o_delta"] = self.attempts_delta
        conn.execute(_outcome_statement(sent, bool(self.attempts_delta), self.uncertain), params)
