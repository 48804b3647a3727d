"""The poll's decision, pure: from the posts a poll read and what storage knew, what to write.

The poll path is: normalise once (``bot.domain.detect.normalise``) → ONE read of what the decision
needs (``PollFacts``: ``Store.poll_facts``) → ``plan_poll`` (this module: no I/O, no clock) → ONE
write that applies the ``PollPlan`` in one transaction (``Store.apply_poll``). Storage decides
nothing: which posts are new, which deliveries they make, which backfills run, whether the poll is
a burst to hold, the source's usual volume and which known posts were edited are all decided here
(what an edit does on each channel is ``bot.domain.lifecycle.plan_edit``, applied by the same write).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from bot.domain.detect import detect_posts, hold_message, newest_first
from bot.domain.lifecycle import shows_damage
from bot.domain.models import DeliveryIntent, Post, Subscription
from bot.domain.routing import RuleDrop, verdict
from bot.domain.rules import PostText, Rule

USUAL_WEIGHT = 0.2
"""Weight of a poll's new posts in a source's moving average (``usual_new``)."""
BACKFILL_SCAN = 3
"""A backfill under a rule (the subscription's or the channel's) looks at up to this many times its N
latest posts with the tag for N that pass; if fewer pass, it sends fewer."""


@dataclass(frozen=True, slots=True)
class PendingBackfill:
    """A subscription whose backfill from this source has not run yet, with the source's stored posts
    that can fill it: up to ``subscription.backfill`` of its latest posts carrying the tag (``BACKFILL_SCAN``
    times as many when a rule may keep some out), newest first (undated last; among equal dates the most
    recently stored first), each with its ``id``."""

    subscription_id: int
    subscription: Subscription
    stored: tuple[Post, ...] = ()


@dataclass(frozen=True, slots=True, order=True)
class BackfillDelivery:
    """Decided: a backfill sends post ``post_key`` of ``source`` to ``channel`` once. ``post_id``: the
    stored post's id (None: a post of this very poll, stored by the same write)."""

    source: str
    post_key: str
    channel: str
    post_id: int | None = None


@dataclass(frozen=True, slots=True)
class PollFacts:
    """What a poll's decision needs from storage, read at once (``Store.poll_facts``)."""

    known_keys: Collection[str]
    """The poll's identities already stored for the source."""
    known_links: Collection[str] = ()
    """The poll's canonical links already stored for the source (guid churn)."""
    subscriptions: tuple[Subscription, ...] = ()
    """At least the subscriptions to every tag of the poll's new posts."""
    backfills: tuple[PendingBackfill, ...] = ()
    """The subscriptions whose backfill from this source is still to run."""
    content_hashes: Mapping[str, str | None] = field(default_factory=dict)
    """The stored ``content_hash`` of each of the poll's known identities (None: not recorded yet)."""


@dataclass(frozen=True, slots=True)
class PollPlan:
    """What one successful poll writes (``Store.apply_poll``), decided by ``plan_poll``."""

    new_posts: tuple[Post, ...]
    """Posts to store, in feed order."""
    churned: tuple[Post, ...]
    """Known posts that came with a new guid for their known link: stored already, counted on the source."""
    intents: tuple[DeliveryIntent, ...]
    """The new posts' deliveries (``held`` when ``hold``), one per (post, channel)."""
    backfills: tuple[BackfillDelivery, ...]
    """Backfill deliveries (never held), oldest post first per subscription: none repeats an intent or
    another backfill's (post, channel)."""
    backfills_done: tuple[int, ...]
    """Subscriptions (ids) whose backfill from this source is done with this poll."""

    baseline: bool
    """The source's first poll: everything is recorded as known, nothing is routed."""
    burst: bool
    """More new posts than the source's burst limit."""
    hold: bool
    """The intents are recorded ``held`` (a burst that has deliveries); the hold is audited."""
    hold_note: str
    """What the audit log, ``status`` and the admins are told about the burst ("" if none)."""
    usual_new: float | None
    """The source's new moving average of new posts per poll (None: it stays as it is)."""
    drops: tuple[RuleDrop, ...] = ()
    """(post, channel) pairs a subscribed tag matched but a rule kept out (new posts and backfills), with
    the reason: kept for ``tagrelay explain``."""
    edited: tuple[Post, ...] = ()
    """Known posts whose content changed (``content_hash``): stored anew, and their messages updated where
    ``bot.domain.lifecycle.plan_edit`` says so (``Store.apply_poll``, in the same transaction)."""
    rehashed: tuple[Post, ...] = ()
    """Known posts stored before their content hash was: stored anew (content and hash), nothing edited."""
    seen_keys: tuple[str, ...] = ()
    """The identities of the poll's known posts: the listing showed them (their ``last_seen_at``)."""
    seen_links: tuple[str, ...] = ()
    """The canonical links of the poll's churned posts (known by link: the stored row has the old key)."""
    returned: tuple[Post, ...] = ()
    """Posts unknown to storage but dated at or before the source's ``retired_before``: retention removed
    their identity, and the source lists them again. Stored (in ``new_posts``) as known, never routed."""

    @property
    def outcome(self) -> str:
        """baseline | held | new | unchanged: the source's ``last_outcome``."""
        if self.baseline:
            return "baseline"
        if self.hold:
            return "held"
        return "new" if len(self.new_posts) > len(self.returned) else "unchanged"


def next_usual(usual: float | None, new_posts: int) -> float:
    """The moving average of new posts per poll after a poll that found ``new_posts`` (> 0)."""
    return float(new_posts) if usual is None else usual + USUAL_WEIGHT * (new_posts - usual)


def plan_backfills(new_posts: Sequence[Post], pending: Iterable[PendingBackfill],
                   intents: Iterable[DeliveryIntent], *, now: datetime | None = None,
                   channel_rules: Mapping[str, Rule] | None = None
                   ) -> tuple[tuple[BackfillDelivery, ...], tuple[int, ...]]:
    """(deliveries, subscriptions done) of the pending backfills (``backfills_with_drops``)."""
    chosen, done, _ = backfills_with_drops(new_posts, pending, intents, now=now, channel_rules=channel_rules)
    return chosen, done


def backfills_with_drops(new_posts: Sequence[Post], pending: Iterable[PendingBackfill],
                         intents: Iterable[DeliveryIntent], *, now: datetime | None = None,
                         channel_rules: Mapping[str, Rule] | None = None
                         ) -> tuple[tuple[BackfillDelivery, ...], tuple[int, ...], tuple[RuleDrop, ...]]:
    """(deliveries, subscriptions done, rule drops) of the pending backfills: for each, its N latest posts
    among the stored ones and this poll's new ones that pass its rule and its channel's exclusions, oldest
    first (a newer post a rule kept out is a drop); a (post, channel) pair already in ``intents`` or
    picked by an earlier backfill is not repeated. Every pending backfill is done, even one that found
    nothing (a backfill runs once, at the first poll after its subscription was made)."""
    taken = {(i.post_key, i.channel) for i in intents}
    rules = channel_rules or {}
    chosen: list[BackfillDelivery] = []
    drops: dict[tuple[str, str], RuleDrop] = {}
    done: list[int] = []
    for backfill in pending:
        sub = backfill.subscription
        # newest-stored first among equal dates, as the stored candidates are: this poll's posts are
        # stored after every earlier one, in feed order
        fresh = [p for p in reversed(new_posts) if sub.tag_slug in p.tag_slugs]
        picked: list[Post] = []
        for post in newest_first(p for p in [*fresh, *backfill.stored] if sub.tag_slug in p.tag_slugs):
            if len(picked) >= sub.backfill:
                break
            decided = verdict(post, PostText(post), [sub], rules.get(sub.channel), now)
            if decided.sent:
                picked.append(post)
            elif (post.key, sub.channel) not in taken:
                drops.setdefault((post.key, sub.channel), decided.drop(post, sub.channel))
        for post in reversed(picked):
            if (post.key, sub.channel) not in taken:
                taken.add((post.key, sub.channel))
                drops.pop((post.key, sub.channel), None)
                chosen.append(BackfillDelivery(source=post.source, post_key=post.key, channel=sub.channel,
                                               post_id=post.id))
        done.append(backfill.subscription_id)
    return tuple(chosen), tuple(done), tuple(drops.values())


def returning_posts(posts: Sequence[Post], facts: PollFacts, retired_before: datetime | None) -> tuple[Post, ...]:
    """The poll's posts storage does not know (neither identity nor link) that are dated at or before
    ``retired_before``: retention removed identities up to that date, so such a post may have been sent
    already. An undated post cannot be told apart and counts as new."""
    if retired_before is None:
        return ()
    return tuple(p for p in posts if p.published is not None and p.published <= retired_before
                 and p.key not in facts.known_keys
                 and (p.link_key is None or p.link_key not in facts.known_links))


def plan_poll(source: str, posts: Sequence[Post], facts: PollFacts, *, first_poll: bool, burst_limit: int = 0,
              usual_new: float | None = None, now: datetime | None = None,
              channel_rules: Mapping[str, Rule] | None = None, retired_before: datetime | None = None) -> PollPlan:
    """Decide what a poll of ``source`` writes. ``posts``: normalised, in feed order; ``first_poll``: the
    source has no baseline yet; ``burst_limit``: more new posts than this are held (0: never);
    ``usual_new``: the source's moving average so far; ``now``: when the posts were detected (the rules'
    ``max_age``; None: ages are not checked); ``channel_rules``: each channel's exclusions;
    ``retired_before``: the source's ``SourceState.retired_before`` (``returning_posts`` are stored, not
    routed, and count neither towards a burst nor the usual volume)."""
    returned = () if first_poll else returning_posts(posts, facts, retired_before)
    if returned:
        back = {p.key for p in returned}
        posts = [p for p in posts if p.key not in back]
    detection = detect_posts(posts, facts.known_keys, facts.subscriptions, first_poll=first_poll,
                             known_links=facts.known_links, burst_limit=burst_limit, now=now,
                             channel_rules=channel_rules)
    new = detection.new_posts
    backfills, done, backfill_drops = backfills_with_drops(new, facts.backfills, detection.intents, now=now,
                                                           channel_rules=channel_rules)
    hold = detection.burst and bool(detection.intents)
    usual = next_usual(usual_new, len(new)) if new and not detection.baseline and not detection.burst else None
    note = hold_message(source, len(new), usual_new, burst_limit) if detection.burst else ""
    edited, rehashed = changed_posts(detection.known_posts, facts.content_hashes)
    churned = {p.key for p in detection.churned}
    return PollPlan(new_posts=(*new, *returned), churned=detection.churned, intents=detection.intents,
                    backfills=backfills, returned=returned,
                    backfills_done=done, baseline=detection.baseline, burst=detection.burst, hold=hold,
                    hold_note=note, usual_new=usual, drops=_merge_drops(detection.drops, backfill_drops, backfills),
                    edited=edited, rehashed=rehashed,
                    seen_keys=tuple(p.key for p in detection.known_posts if p.key not in churned),
                    seen_links=tuple(p.link_key for p in detection.churned if p.link_key is not None))


def _merge_drops(detected: Iterable[RuleDrop], backfilled: Iterable[RuleDrop],
                 sent: Iterable[BackfillDelivery]) -> tuple[RuleDrop, ...]:
    """One drop per (post, channel), the detection's first; none for a pair a backfill sends anyway."""
    out: dict[tuple[str, str], RuleDrop] = {}
    for drop in (*detected, *backfilled):
        out.setdefault((drop.post_key, drop.channel), drop)
    for delivery in sent:
        out.pop((delivery.post_key, delivery.channel), None)
    return tuple(out.values())


def changed_posts(known: Iterable[Post], stored: Mapping[str, str | None]
                  ) -> tuple[tuple[Post, ...], tuple[Post, ...]]:
    """(edited, rehashed) among a poll's known posts: those whose ``content_hash`` differs from the stored
    one, and those stored without one (before it was recorded: their content is stored, nothing edited).
    A churned post (known by its link, not its identity) is neither, nor is one whose shown text holds
    U+FFFD (bytes a damaged document could not decode, ``bot.sources.integrity``: never sent as an edit;
    the stored content stays, and the repaired document compares equal again)."""
    edited: list[Post] = []
    rehashed: list[Post] = []
    for post in known:
        if post.key not in stored or post.content_hash is None or shows_damage(post):
            continue
        before = stored[post.key]
        if before is None:
            rehashed.append(post)
        elif before != post.content_hash:
            edited.append(post)
    return tuple(edited), tuple(rehashed)
