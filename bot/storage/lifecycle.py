"""A post's later life in storage: edited content, edit and delete deliveries, unpublishing, retraction.

Storage decides nothing here either: each write reads the facts of the posts it concerns (their
deliveries, locked on PostgreSQL so that a concurrent claim cannot slip between the read and the
write), asks the pure plan (``bot.domain.lifecycle``) and writes what it says, in ONE transaction.
The helpers at module level serve ``Store.apply_poll`` (an edit is recorded with its poll); the mixin
holds the other writes: an edit's or a deletion's outcome (``apply_change``), the unpublishing watch
(``watched_posts``, ``record_unpublishing``) and a retraction (``retract``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, and_, func, insert, or_, select, update

from bot.domain.delivery import Decision
from bot.domain.identity import link_key
from bot.domain.lifecycle import ChannelLifecycle, DeletePlan, DeliveryFact, plan_edit, plan_retract, plan_unpublished
from bot.domain.models import DeliveryKind, DeliveryStatus, Post
from bot.domain.state import ClaimedDelivery
from bot.domain.unpublish import Verdict, Watched
from bot.storage import tables as t
from bot.storage.audit import audit_row
from bot.storage.base import StoreBase, chunks, insert_ignore, utc
from bot.storage.deliveries import _Outcome, channel_effects, read_channel_ids

_FINAL = (DeliveryStatus.SENT.value, DeliveryStatus.DEAD.value, DeliveryStatus.UNKNOWN.value,
          DeliveryStatus.DROPPED.value)
"""An edit or deletion in one of these states is over: a new one re-arms its row."""
_PENDING = (DeliveryStatus.QUEUED.value, DeliveryStatus.FAILED.value, DeliveryStatus.HELD.value)


def read_facts(conn: Connection, dialect: str, post_ids: Sequence[int], *, lock: bool = True
               ) -> dict[int, list[DeliveryFact]]:
    """Every delivery of the posts, per post. ``lock``: on PostgreSQL the rows are locked for the rest of
    the transaction (a claim of one of them waits, or has committed and is seen as ``sending``)."""
    out: dict[int, list[DeliveryFact]] = {pid: [] for pid in post_ids}
    for part in chunks(list(post_ids)):
        query = (select(t.deliveries.c.post_id, t.deliveries.c.kind, t.deliveries.c.status, t.deliveries.c.sent_at,
                        t.deliveries.c.remote_id, t.channels.c.name)
                 .join(t.channels, t.channels.c.id == t.deliveries.c.channel_id)
                 .where(t.deliveries.c.post_id.in_(part)).order_by(t.deliveries.c.id))
        if lock and dialect == "postgresql":
            query = query.with_for_update(of=t.deliveries)
        for r in conn.execute(query):
            out[r.post_id].append(DeliveryFact(channel=r.name, kind=DeliveryKind(r.kind),
                                               status=DeliveryStatus(r.status), sent_at=utc(r.sent_at),
                                               remote_id=r.remote_id))
    return out


def queue_changes(conn: Connection, dialect: str, post_id: int, channels: Sequence[str], kind: DeliveryKind,
                  now: datetime, chan_ids: Mapping[str, int], reason: str) -> int:
    """Queue an edit or a deletion of the post's message on each channel: a new row, or the existing one
    of that kind re-armed when it is over (a new edit after an earlier one was made). Its send order is
    the post's (``post_at``): after the post delivery itself, ahead of newer posts. Returns how many."""
    ids = [chan_ids[c] for c in channels if c in chan_ids]
    if not ids:
        return 0
    post_at = (select(func.coalesce(t.posts.c.published_at, t.posts.c.first_seen_at))
               .where(t.posts.c.id == post_id).scalar_subquery())
    rearmed = conn.execute(update(t.deliveries).where(
        t.deliveries.c.post_id == post_id, t.deliveries.c.channel_id.in_(ids), t.deliveries.c.kind == kind.value,
        t.deliveries.c.status.in_(_FINAL)).values(
        status=DeliveryStatus.QUEUED.value, attempts=0, next_attempt_at=now, updated_at=now, claimed_by=None,
        last_error=None, reason=reason, sent_at=None, uncertain_since=None).returning(t.deliveries.c.id)).all()
    inserted = conn.execute(insert_ignore(dialect, t.deliveries, ["post_id", "channel_id", "kind"])
                            .returning(t.deliveries.c.id),
                            [{"post_id": post_id, "channel_id": cid, "kind": kind.value,
                              "status": DeliveryStatus.QUEUED.value, "attempts": 0, "next_attempt_at": now,
                              "created_at": now, "updated_at": now, "reason": reason} for cid in ids]).all()
    fresh = [r.id for r in inserted]
    if fresh:
        conn.execute(update(t.deliveries).where(t.deliveries.c.id.in_(fresh)).values(post_at=post_at))
    return len(rearmed) + len(fresh)


def cancel_pending(conn: Connection, post_id: int, channels: Sequence[str], chan_ids: Mapping[str, int],
                   now: datetime, reason: str) -> int:
    """Mark the post's deliveries that have not gone out yet (post and edit kinds) ``dropped``."""
    ids = [chan_ids[c] for c in channels if c in chan_ids]
    if not ids:
        return 0
    result = conn.execute(update(t.deliveries).where(
        t.deliveries.c.post_id == post_id, t.deliveries.c.channel_id.in_(ids),
        t.deliveries.c.kind != DeliveryKind.DELETE.value, t.deliveries.c.status.in_(_PENDING)).values(
        status=DeliveryStatus.DROPPED.value, updated_at=now, next_attempt_at=None, reason=reason,
        last_error=f"cancelled: {reason}"))
    return int(result.rowcount or 0)


def store_content(conn: Connection, post_id: int, post: Post, *, record_hash: bool) -> None:
    """Store a known post's current content (what the next rendering shows); its hash unless deferred. A post
    whose content retention had dropped holds it again."""
    values: dict[str, object] = {
        "title": post.title, "url": post.url, "summary_html": post.summary_html, "content_html": post.content_html,
        "image_url": post.image_url, "image_alt": post.image_alt, "author": post.author, "link_key": post.link_key,
        "pruned_at": None}  # the content is back (retention may drop it again once its deliveries are done)
    if record_hash:
        values["content_hash"] = post.content_hash
    conn.execute(update(t.posts).where(t.posts.c.id == post_id).values(**values))


@dataclass(frozen=True, slots=True)
class EditsApplied:
    posts: int
    edits: int


def apply_edits(conn: Connection, dialect: str, source_id: int, source: str, edited: Sequence[Post],
                rehashed: Sequence[Post], policies: Mapping[str, ChannelLifecycle], now: datetime) -> EditsApplied:
    """A poll's edited posts (``PollPlan.edited``): their content stored, their messages updated where
    ``plan_edit`` says, each queued edit audited. ``rehashed``: stored anew, nothing edited."""
    posts = [*edited, *rehashed]
    if not posts:
        return EditsApplied(0, 0)
    ids: dict[str, int] = {}
    for part in chunks([p.key for p in posts]):
        ids.update({r.key: r.id for r in conn.execute(select(t.posts.c.key, t.posts.c.id).where(
            t.posts.c.source_id == source_id, t.posts.c.key.in_(part)))})
    for post in rehashed:
        if post.key in ids:
            store_content(conn, ids[post.key], post, record_hash=True)
    present = [p for p in edited if p.key in ids]
    facts = read_facts(conn, dialect, [ids[p.key] for p in present])
    chan_ids = read_channel_ids(conn) if present else {}
    queued = 0
    for post in present:
        post_id = ids[post.key]
        plan = plan_edit(facts[post_id], policies, now)
        store_content(conn, post_id, post, record_hash=not plan.defer)
        if plan.queue:
            queued += queue_changes(conn, dialect, post_id, plan.queue, DeliveryKind.EDIT, now, chan_ids, "edited")
            conn.execute(insert(t.audit_log).values(audit_row(
                "tagrelay", "poll", "edit", f"{source}: {post.title} ({post.url or post.key}) edited on the site; "
                f"updating {', '.join(plan.queue)}", now)))
    return EditsApplied(len(present), queued)


def apply_removal(conn: Connection, dialect: str, post_id: int, plan: DeletePlan, now: datetime, reason: str
                  ) -> tuple[int, int]:
    """Write a removal plan for one post: (deletions queued, deliveries cancelled)."""
    chan_ids = read_channel_ids(conn)
    cancelled = cancel_pending(conn, post_id, plan.cancel, chan_ids, now, reason)
    queued = queue_changes(conn, dialect, post_id, plan.delete, DeliveryKind.DELETE, now, chan_ids, reason)
    return queued, cancelled


def describe_removal(plan: DeletePlan) -> str:
    """A removal plan in words (the audit line, the replies)."""
    parts = []
    if plan.delete:
        parts.append(f"deleting the message on {', '.join(plan.delete)}")
    if plan.cancel:
        parts.append(f"cancelling what has not gone out on {', '.join(plan.cancel)}")
    parts += [f"{channel} left as it is ({why.value})" for channel, why in plan.kept]
    return "; ".join(parts) or "nothing to do"


@dataclass(frozen=True, slots=True)
class Removal:
    """What removing one post did: its title and link, the plan, and how many rows it wrote."""

    post_id: int
    title: str
    url: str | None
    plan: DeletePlan
    queued: int
    cancelled: int

    @property
    def text(self) -> str:
        return describe_removal(self.plan)


_WATCHED = (
    select(t.posts.c.id, t.posts.c.key, t.posts.c.url, t.posts.c.published_at, t.posts.c.missing_since)
    .where(t.posts.c.unpublished_at.is_(None)))


class LifecycleMixin(StoreBase):
    async def apply_change(self, claimed: ClaimedDelivery, decision: Decision, now: datetime, *,
                           shown_hash: str | None = None, audit: str | None = None) -> None:
        """Record an edit's or a deletion's outcome, in one transaction with its channel's effects (hold,
        pause), what the message shows now (``shown_hash``, on the post delivery's row, after an edit was
        made) and its audit line (``audit``)."""
        outcome = _Outcome(claimed.id, decision.status, now, remote_id=None, remote_url=None, error=decision.error,
                           next_attempt_at=decision.next_attempt_at, reason=decision.reason,
                           attempts_delta=decision.attempts_delta, uncertain=decision.uncertain)
        effects = channel_effects(decision, claimed.channel, now)
        target = claimed.target

        def work(conn: Connection) -> None:
            outcome.record(conn)
            for statement in effects:
                conn.execute(statement)
            if shown_hash is not None and target is not None:
                conn.execute(update(t.deliveries).where(t.deliveries.c.id == target.delivery_id)
                             .values(rendered_hash=shown_hash))
            if audit is not None:
                conn.execute(insert(t.audit_log).values(audit_row("tagrelay", "delivery", claimed.kind.value,
                                                                  audit, now)))

        await self._write(work)

    async def watched_posts(self, source_id: int, windows: Mapping[str, float], now: datetime) -> list[Watched]:
        """The source's posts whose unpublishing is watched: a message of theirs was sent within the
        window of one of ``windows``' channels (channel → ``delete_window`` seconds: the channels that
        delete), not confirmed gone yet, no deletion queued there yet. Reads the channels' recent sends
        (``ix_deliveries_channel_sent``), not the history."""
        if not windows:
            return []

        def work(conn: Connection) -> list[Watched]:
            chan_ids = read_channel_ids(conn)
            recent = [and_(t.deliveries.c.channel_id == chan_ids[name],
                           t.deliveries.c.sent_at >= now - timedelta(seconds=window))
                      for name, window in windows.items() if name in chan_ids]
            if not recent:
                return []
            removal = t.deliveries.alias("removal")
            sent = (select(t.deliveries.c.post_id).where(
                or_(*recent), t.deliveries.c.kind == DeliveryKind.POST.value,
                t.deliveries.c.status == DeliveryStatus.SENT.value, t.deliveries.c.remote_id.is_not(None),
                ~select(removal.c.id).where(removal.c.post_id == t.deliveries.c.post_id,
                                            removal.c.channel_id == t.deliveries.c.channel_id,
                                            removal.c.kind == DeliveryKind.DELETE.value).exists()))
            rows = conn.execute(_WATCHED.where(t.posts.c.source_id == source_id, t.posts.c.id.in_(sent))
                                .order_by(t.posts.c.id)).all()
            return [Watched(post_id=r.id, key=r.key, url=r.url, published=utc(r.published_at),
                            missing_since=utc(r.missing_since)) for r in rows]

        return await self._read(work)

    async def record_unpublishing(self, source: str, verdicts: Sequence[Verdict],
                                  policies: Mapping[str, ChannelLifecycle], now: datetime,
                                  evidence: Mapping[int, str]) -> list[Removal]:
        """Record what a poll's unpublishing checks found, in one transaction: each post's strike
        (``missing_since``) as it now stands, and for each confirmed post: ``unpublished_at``, its
        deletions and cancellations (``plan_unpublished``) and an audit line (``evidence``: what confirmed
        it, per post id)."""

        def work(conn: Connection) -> list[Removal]:
            removals: list[Removal] = []
            for verdict in verdicts:
                if not verdict.confirmed:
                    conn.execute(update(t.posts).where(t.posts.c.id == verdict.post.post_id)
                                 .values(missing_since=verdict.missing_since))
                    continue
                post_id = verdict.post.post_id
                conn.execute(update(t.posts).where(t.posts.c.id == post_id).values(
                    missing_since=verdict.missing_since, unpublished_at=now))
                facts = read_facts(conn, self.dialect, [post_id])[post_id]
                plan = plan_unpublished(facts, policies, now)
                queued, cancelled = apply_removal(conn, self.dialect, post_id, plan, now, "unpublished")
                title = conn.execute(select(t.posts.c.title).where(t.posts.c.id == post_id)).scalar_one()
                removal = Removal(post_id, title, verdict.post.url, plan, queued, cancelled)
                conn.execute(insert(t.audit_log).values(audit_row(
                    "tagrelay", "poll", "unpublished",
                    f"{source}: {title} ({verdict.post.url or verdict.post.key}) is gone from the site "
                    f"({evidence.get(post_id, 'confirmed')}): {removal.text}", now)))
                removals.append(removal)
            return removals

        return await self._write(work)

    async def posts_at(self, url: str) -> list[tuple[int, str, str]]:
        """The stored posts whose link is ``url``, as given or in its canonical form (tracking parameters
        and fragment aside: ``bot.domain.identity.link_key``): (id, title, source)."""
        canonical = link_key(url)

        def work(conn: Connection) -> list[tuple[int, str, str]]:
            match = t.posts.c.url == url if canonical is None else or_(t.posts.c.url == url,
                                                                         t.posts.c.link_key == canonical)
            rows = conn.execute(select(t.posts.c.id, t.posts.c.title, t.sources.c.name)
                                .join(t.sources, t.sources.c.id == t.posts.c.source_id)
                                .where(match).order_by(t.posts.c.id)).all()
            return [(r.id, r.title, r.name) for r in rows]

        return await self._read(work)

    async def retract(self, post_ids: Sequence[int], policies: Mapping[str, ChannelLifecycle], now: datetime, *,
                      channels: Sequence[str] | None, actor: str, via: str, apply: bool = True) -> list[Removal]:
        """Retract posts (``plan_retract``): delete every message of theirs that went out on ``channels``
        (None: all), cancel what has not gone out; audited as ``actor`` through ``via``. ``apply=False``:
        only say what it would do (nothing written)."""

        def work(conn: Connection) -> list[Removal]:
            removals: list[Removal] = []
            for post_id in post_ids:
                facts = read_facts(conn, self.dialect, [post_id], lock=apply)[post_id]
                plan = plan_retract(facts, policies, now, channels)
                queued = cancelled = 0
                if apply:
                    queued, cancelled = apply_removal(conn, self.dialect, post_id, plan, now, "retracted")
                row = conn.execute(select(t.posts.c.title, t.posts.c.url).where(t.posts.c.id == post_id)).one()
                removal = Removal(post_id, row.title, row.url, plan, queued, cancelled)
                if apply:
                    conn.execute(insert(t.audit_log).values(audit_row(
                        actor, via, "retract", f"{row.title} ({row.url}): {removal.text}", now)))
                removals.append(removal)
            return removals

        return await (self._write(work) if apply else self._read(work))
