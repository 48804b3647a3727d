"""A poll's record: the one read its decision needs (``poll_facts``) and the one write that applies the
decision (``apply_poll``), plus the records of a poll that changed nothing or failed.

The decision itself is ``bot.domain.plan.plan_poll``, pure: this module reads what it needs and
writes what it says. ``apply_poll`` writes the new posts, their tags, their deliveries, the backfills
and the source's new cache state in ONE transaction, so a crash can neither lose a post nor queue it
twice.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Integer, bindparam, case, insert, literal, or_, select, update

from bot.domain.detect import classify
from bot.domain.lifecycle import ChannelLifecycle
from bot.domain.models import DeliveryStatus, Post, Subscription, Tag
from bot.domain.plan import BACKFILL_SCAN, PendingBackfill, PollFacts, PollPlan
from bot.domain.rules import rule_from_json
from bot.domain.state import CacheState, PollRecord, SourceState
from bot.storage import tables as t
from bot.storage.audit import audit_row
from bot.storage.base import NO_LEASE, StoreBase, cache_values, chunks, insert_ignore, utc
from bot.storage.deliveries import queue_deliveries, read_channel_ids
from bot.storage.lifecycle import apply_edits
from bot.storage.posts import insert_posts, load_posts, read_known
from bot.storage.subscriptions import read_subscriptions_for_tags

# built once: every unchanged poll and every poll with a burst runs these
_HELD_OF_SOURCE = (select(t.deliveries.c.id).join(t.posts, t.posts.c.id == t.deliveries.c.post_id)
                   .where(t.deliveries.c.status == DeliveryStatus.HELD.value,
                          t.posts.c.source_id == bindparam("held_source_id", type_=t.ID)).limit(1))
"""Does the source have a held burst already (``apply_poll``: admins are told once per hold)?"""
_NOT_MODIFIED = update(t.sources).where(t.sources.c.id == bindparam("nm_source_id", type_=t.ID)).values(
    **{key: bindparam(f"nm_{key}", type_=t.sources.c[key].type) for key in cache_values(CacheState())},
    last_poll_at=bindparam("nm_now", type_=t.TS), last_success_at=bindparam("nm_now", type_=t.TS),
    last_outcome="not_modified", last_error=None, consecutive_failures=0,
    next_poll_at=bindparam("nm_next_poll_at", type_=t.TS), **NO_LEASE)
"""``record_not_modified``: the validators, the poll's time and the next one (parameters ``nm_*``)."""
_NOT_MODIFIED_MANY = update(t.sources).where(t.sources.c.id == bindparam("nm_source_id", type_=t.ID)).values(
    **{key: bindparam(f"nm_{key}", type_=t.sources.c[key].type) for key in cache_values(CacheState())},
    last_poll_at=bindparam("nm_now", type_=t.TS), last_success_at=bindparam("nm_now", type_=t.TS),
    last_outcome="not_modified", last_error=None, consecutive_failures=0,
    # a push counted since the poll began (its record waited in the buffer meanwhile) keeps the time it set
    next_poll_at=case((t.sources.c.push_requests == bindparam("nm_pushes", type_=Integer),
                       bindparam("nm_next_poll_at", type_=t.TS)), else_=t.sources.c.next_poll_at),
    **NO_LEASE)
"""``record_not_modified_many``: ``_NOT_MODIFIED`` for a record that waited in the poller's buffer, one
executemany for many sources; ``nm_pushes`` is the push count the poll started with."""


@dataclass(frozen=True, slots=True)
class NotModifiedRecord:
    """What a poll answered 304 (or an unchanged file) writes to its source's row."""

    source_id: int
    source: str
    cache: CacheState
    """The validators to send next time (the previous ones where the answer repeated none)."""
    at: datetime
    next_poll_at: datetime
    push_requests: int = 0
    """The source's push count as the poll found it (``SourceState.push_requests``)."""

    def params(self) -> dict[str, Any]:
        return {"nm_source_id": self.source_id, "nm_now": self.at, "nm_next_poll_at": self.next_poll_at,
                "nm_pushes": self.push_requests,
                **{f"nm_{key}": value for key, value in cache_values(self.cache).items()}}
_PENDING_BACKFILLS = (
    select(t.subscriptions.c.id, t.subscriptions.c.tag_slug, t.subscriptions.c.tag_name,
           t.subscriptions.c.backfill, t.subscriptions.c.rule, t.channels.c.name.label("channel"))
    .join(t.channels, t.channels.c.id == t.subscriptions.c.channel_id)
    .where(t.subscriptions.c.backfill > 0)
    .where(~select(t.backfills_done.c.subscription_id).where(
        t.backfills_done.c.subscription_id == t.subscriptions.c.id,
        t.backfills_done.c.source_id == bindparam("pb_source_id", type_=t.ID)).exists())
    .order_by(t.subscriptions.c.id))
"""The subscriptions whose backfill from the source (``pb_source_id``) has not run yet."""


def _read_pending_backfills(conn: Connection, source: SourceState,
                            ruled_channels: Collection[str] = ()) -> tuple[PendingBackfill, ...]:
    """Each pending backfill with the source's stored posts that can fill it: its N latest with the tag,
    or, when a rule may keep some out (the subscription's, or its channel's: ``ruled_channels``),
    ``BACKFILL_SCAN`` × N of them in full (text and tags: what the rule looks at)."""
    pending: list[PendingBackfill] = []
    for sub in conn.execute(_PENDING_BACKFILLS, {"pb_source_id": source.id}).all():
        rule = rule_from_json(sub.rule)
        full = rule is not None or sub.channel in ruled_channels
        rows = conn.execute(
            select(t.posts.c.id, t.posts.c.key, t.posts.c.title, t.posts.c.published_at)
            .join(t.post_tags, t.post_tags.c.post_id == t.posts.c.id)
            .join(t.tags, t.tags.c.id == t.post_tags.c.tag_id)
            .where(t.posts.c.source_id == source.id, t.tags.c.slug == sub.tag_slug,
                   t.posts.c.pruned_at.is_(None))  # a post whose content retention dropped cannot be rendered
            .order_by(t.posts.c.published_at.desc().nulls_last(), t.posts.c.id.desc())
            .limit(sub.backfill * (BACKFILL_SCAN if full else 1))).all()
        if full:
            stored = load_posts(conn, [r.id for r in rows])
        else:
            tag = Tag(sub.tag_slug, sub.tag_name)
            stored = tuple(Post(key=r.key, source=source.name, title=r.title, url=None, summary_html="",
                                content_html="", tags=(tag,), published=utc(r.published_at), id=r.id)
                           for r in rows)
        pending.append(PendingBackfill(sub.id, Subscription(sub.tag_slug, sub.tag_name, sub.channel, sub.backfill,
                                                            rule), stored))
    return tuple(pending)


class PollsMixin(StoreBase):
    async def poll_facts(self, source: SourceState, posts: Sequence[Post], *,
                         ruled_channels: Collection[str] = ()) -> PollFacts:
        """Everything ``plan_poll`` needs about a poll's (normalised) posts, in ONE read: which of their
        identities and links the source has stored, the subscriptions (and rules) to the tags of those
        that are new, and the source's pending backfills with their candidates (``ruled_channels``: the
        channels with exclusions of their own). Cost ∝ the poll's posts, not history."""

        def work(conn: Connection) -> PollFacts:
            known = read_known(conn, source.id, posts)
            new = classify(posts, known.keys, known.links)[0]  # only what routing can match: ∝ new posts
            slugs = {slug for post in new for slug in post.tag_slugs}
            subs = read_subscriptions_for_tags(conn, slugs) if slugs else []
            return PollFacts(known_keys=known.keys, known_links=known.links, subscriptions=tuple(subs),
                             backfills=_read_pending_backfills(conn, source, ruled_channels),
                             content_hashes=known.hashes)

        return await self._read(work)

    async def apply_poll(self, source: SourceState, plan: PollPlan, cache: CacheState, now: datetime,
                         next_poll_at: datetime, lifecycle: Mapping[str, ChannelLifecycle] | None = None,
                         seen_before: datetime | None = None) -> PollRecord:
        """Write a successful poll as ``plan`` decided it, in ONE transaction: the new posts and their
        tags, their deliveries (``held`` when the plan holds the burst, the hold written to the audit log
        in the same transaction), the backfills (never held; each pending one marked done), the posts a
        rule kept from a channel (``rule_drops``) and the source's cache state, outcome, churn count and
        usual volume. Deliveries a (post, channel) pair already has are skipped, so nothing is ever queued
        twice. The edited posts' content is stored and their messages updated where
        ``bot.domain.lifecycle.plan_edit`` says (``lifecycle``: each channel's policy; none: no edit is
        sent), in the same transaction (``bot.storage.lifecycle.apply_edits``). The poll is the source's
        last listing (``listed_at``); its known posts' ``last_seen_at`` is refreshed where older than
        ``seen_before`` (``bot.domain.retention.seen_refresh``; None: now less a day), in one UPDATE."""
        seen_cut = seen_before if seen_before is not None else now - timedelta(days=1)

        def work(conn: Connection) -> PollRecord:
            post_ids = insert_posts(conn, self.dialect, source.id, plan.new_posts, now)
            chan_ids = read_channel_ids(conn) if plan.intents or plan.backfills or plan.drops else None  # one read
            pairs = [(post_ids[i.post_key], i.channel) for i in plan.intents if i.post_key in post_ids]
            held = queued = 0
            started = False
            if plan.hold:
                started = conn.execute(_HELD_OF_SOURCE, {"held_source_id": source.id}).first() is None
                held = queue_deliveries(conn, self.dialect, pairs, now, status=DeliveryStatus.HELD,
                                        channel_ids=chan_ids)
                conn.execute(insert(t.audit_log).values(
                    audit_row("tagrelay", "poll", "hold", f"{source.name}: {plan.hold_note}", now)))
            else:
                queued = queue_deliveries(conn, self.dialect, pairs, now, channel_ids=chan_ids)
            backfilled = self._apply_backfills(conn, source, plan, post_ids, chan_ids, now)
            if plan.drops and chan_ids is not None:
                _record_drops(conn, self.dialect, plan, post_ids, chan_ids, now)
            edits = apply_edits(conn, self.dialect, source.id, source.name, plan.edited, plan.rehashed,
                                lifecycle or {}, now)
            _refresh_seen(conn, source.id, plan, now, seen_cut)
            conn.execute(update(t.sources).where(t.sources.c.id == source.id).values(
                **cache_values(cache), baseline_done=True, last_poll_at=now, last_success_at=now, listed_at=now,
                last_outcome=plan.outcome, last_error=None, consecutive_failures=0, next_poll_at=next_poll_at,
                **_source_counters(plan, now), **NO_LEASE))
            return PollRecord(new_posts=len(plan.new_posts), queued=queued, backfilled=backfilled, held=held,
                              hold_started=started, edited=edits.posts, edits=edits.edits)

        return await self._write(work)

    def _apply_backfills(self, conn: Connection, source: SourceState, plan: PollPlan, post_ids: dict[str, int],
                         chan_ids: dict[str, int] | None, now: datetime) -> int:
        if not plan.backfills_done:
            return 0
        pairs: list[tuple[int, str]] = []
        renderable = _renderable(conn, [b.post_id for b in plan.backfills if b.post_id is not None])
        for backfill in plan.backfills:
            post_id = backfill.post_id if backfill.post_id is not None else post_ids.get(backfill.post_key)
            if post_id is not None and (backfill.post_id is None or post_id in renderable):
                pairs.append((post_id, backfill.channel))
        total = queue_deliveries(conn, self.dialect, pairs, now, channel_ids=chan_ids)
        for sub_id in plan.backfills_done:
            # only while the subscription still exists (it may have been removed since the read)
            conn.execute(insert_ignore(self.dialect, t.backfills_done, ["subscription_id", "source_id"]).from_select(
                ["subscription_id", "source_id", "done_at"],
                select(t.subscriptions.c.id, literal(source.id, t.ID), literal(now, t.TS))
                .where(t.subscriptions.c.id == sub_id)))
        return total

    async def record_not_modified(self, source_id: int, cache: CacheState, now: datetime,
                                  next_poll_at: datetime) -> None:
        params = {"nm_source_id": source_id, "nm_now": now, "nm_next_poll_at": next_poll_at,
                  **{f"nm_{key}": value for key, value in cache_values(cache).items()}}

        def work(conn: Connection) -> None:
            conn.execute(_NOT_MODIFIED, params)

        await self._write(work)

    async def record_not_modified_many(self, records: Sequence[NotModifiedRecord]) -> None:
        """Write many polls answered 304 in ONE transaction (``bot.services.poll_records``): one prebuilt
        UPDATE run for every record (executemany). A source whose push count moved since its poll began
        keeps the ``next_poll_at`` the push set; everything else is written as ``record_not_modified``
        writes it."""
        if not records:
            return
        params = [r.params() for r in records]

        def work(conn: Connection) -> None:
            conn.execute(_NOT_MODIFIED_MANY, params)

        await self._write(work)

    async def record_poll_failure(self, source_id: int, error: str, now: datetime,
                                  next_poll_at: datetime) -> int:
        """Keep the old cache state; count the failure. Returns the failure count."""

        def work(conn: Connection) -> int:
            conn.execute(update(t.sources).where(t.sources.c.id == source_id).values(
                last_poll_at=now, last_outcome="error", last_error=error[:2000],
                consecutive_failures=t.sources.c.consecutive_failures + 1, next_poll_at=next_poll_at, **NO_LEASE))
            return int(conn.execute(select(t.sources.c.consecutive_failures).where(
                t.sources.c.id == source_id)).scalar_one())

        return await self._write(work)


def _renderable(conn: Connection, post_ids: Sequence[int]) -> set[int]:
    """Which of these stored posts still hold their content (a prune pass may have dropped it since the
    poll's read). On PostgreSQL the rows are share-locked: a prune pass skips them until this commits, or
    this waits for the pass and sees what it did."""
    found: set[int] = set()
    for part in chunks(list(post_ids)):
        found.update(conn.execute(select(t.posts.c.id).where(t.posts.c.id.in_(part), t.posts.c.pruned_at.is_(None))
                                  .with_for_update(read=True)).scalars())
    return found


def _refresh_seen(conn: Connection, source_id: int, plan: PollPlan, now: datetime, before: datetime) -> None:
    """The listing showed the poll's known posts: their ``last_seen_at`` becomes ``now`` where older than
    ``before`` (rarely any: at most one UPDATE per poll, by index)."""
    stale = or_(t.posts.c.last_seen_at.is_(None), t.posts.c.last_seen_at < before)
    if plan.seen_keys:
        for part in chunks(plan.seen_keys):
            conn.execute(update(t.posts).where(t.posts.c.source_id == source_id, t.posts.c.key.in_(part), stale)
                         .values(last_seen_at=now))
    if plan.seen_links:
        conn.execute(update(t.posts).where(t.posts.c.source_id == source_id, t.posts.c.link_key.in_(plan.seen_links),
                                           stale).values(last_seen_at=now))


def _record_drops(conn: Connection, dialect: str, plan: PollPlan, post_ids: dict[str, int],
                  chan_ids: dict[str, int], now: datetime) -> None:
    """One ``rule_drops`` row per (post, channel) a rule kept out (a pair that has one keeps it)."""
    rows = []
    for drop in plan.drops:
        post_id = drop.post_id if drop.post_id is not None else post_ids.get(drop.post_key)
        if post_id is not None and drop.channel in chan_ids:
            rows.append({"post_id": post_id, "channel_id": chan_ids[drop.channel], "subscription": drop.subscription,
                         "condition": drop.condition, "detail": drop.detail, "at": now})
    if rows:
        conn.execute(insert_ignore(dialect, t.rule_drops, ["post_id", "channel_id"]), rows)


def _source_counters(plan: PollPlan, now: datetime) -> dict[str, Any]:
    """The source's churn counters and usual volume after a poll (a baseline touches neither)."""
    if plan.baseline:
        return {}
    churned = len(plan.churned)
    values: dict[str, Any] = {"guid_churn_last": churned, "guid_churn_total": t.sources.c.guid_churn_total + churned}
    if churned:
        values["guid_churn_at"] = now
    if plan.usual_new is not None:
        values["usual_new"] = plan.usual_new
    return values
