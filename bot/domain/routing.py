"""Route posts to channels: one intent per (post, channel), however many subscriptions match.

A channel gets a post when at least one of its subscriptions to the post's tags lets it through
(``bot.domain.rules``: the subscription's rule) and the channel's own exclusions (``[[channels]]
exclude_tags``/``exclude_keywords``) do not keep it out. When a subscribed tag matched but every
such subscription's rule (or the channel's) kept the post out, the routing says why: one
``RuleDrop`` per (post, channel), which storage keeps for ``tagrelay explain``. A (post, channel)
with no subscribed tag gets neither (``explain`` works that out when asked).

Rules are evaluated once per post, when it is detected (``now``); each post's text is made once
(``PostText``), whatever the number of subscriptions that look at it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from bot.domain.models import DeliveryIntent, Post, Subscription
from bot.domain.rules import Miss, PostText, Rule, check, check_channel, rule_to_json

DETAIL_CHARS = 1_000
"""A drop's ``detail`` is cut to this (several subscriptions' reasons in one)."""


@dataclass(frozen=True, slots=True, order=True)
class RuleDrop:
    """Decided: a rule kept post ``post_key`` of ``source`` from ``channel``. ``subscription`` is the
    tag name of the subscription whose rule decided (None: the channel's own exclusions), ``condition``
    the condition that failed, ``detail`` what about the post made it fail (and, when several
    subscriptions matched, why each of the others did not take it either). ``post_id``: the stored
    post's id (None: a post of this very poll)."""

    source: str
    post_key: str
    channel: str
    subscription: str | None
    condition: str
    detail: str
    post_id: int | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether one channel gets one post: ``sent`` by ``subscription`` (the first, by tag, whose rule lets
    it through), or kept out by ``miss`` of ``subscription`` (None there: the channel's exclusions)."""

    sent: bool
    subscription: Subscription | None
    miss: Miss | None = None
    others: tuple[tuple[Subscription, Miss], ...] = ()
    """The other matching subscriptions that kept it out too (a drop only)."""

    def drop(self, post: Post, channel: str) -> RuleDrop:
        assert self.miss is not None
        detail = self.miss.detail
        if self.others:
            detail += "; " + "; ".join(f"subscription {s.tag_name}: {m.condition}: {m.detail}" for s, m in self.others)
        return RuleDrop(source=post.source, post_key=post.key, channel=channel,
                        subscription=self.subscription.tag_name if self.subscription else None,
                        condition=self.miss.condition, detail=detail[:DETAIL_CHARS], post_id=post.id)


def verdict(post: Post, text: PostText, subscriptions: Sequence[Subscription], channel_rule: Rule | None,
            now: datetime | None) -> Verdict:
    """The decision for one (post, channel): ``subscriptions`` are the channel's subscriptions to tags the
    post carries (at least one), in tag order; ``channel_rule`` the channel's exclusions."""
    assert subscriptions, "a verdict needs at least one subscription whose tag the post carries"
    kept_out = check_channel(channel_rule, post, text)
    if kept_out is not None:
        return Verdict(False, None, kept_out)
    misses: list[tuple[Subscription, Miss]] = []
    for sub in subscriptions:
        miss = check(sub.rule, post, text, now)
        if miss is None:
            return Verdict(True, sub)
        misses.append((sub, miss))
    (first, miss), *others = misses
    return Verdict(False, first, miss, tuple(others))


def by_channel_and_tag(subscriptions: Iterable[Subscription]) -> dict[str, dict[str, list[Subscription]]]:
    """Index subscriptions: tag slug → channel → its subscriptions to that tag (each once, in one order
    whatever the order given: storage has one per tag and channel, but the decision must not depend on it)."""
    index: defaultdict[str, defaultdict[str, list[Subscription]]] = defaultdict(lambda: defaultdict(list))
    for sub in sorted(set(subscriptions), key=lambda s: (s.tag_slug, s.channel, rule_to_json(s.rule) or "",
                                                         s.tag_name, s.backfill)):
        index[sub.tag_slug][sub.channel].append(sub)
    return {slug: dict(chans) for slug, chans in index.items()}


def matching(post: Post, index: Mapping[str, Mapping[str, list[Subscription]]]) -> dict[str, list[Subscription]]:
    """Channel → its subscriptions to the post's tags, in tag order."""
    found: defaultdict[str, list[Subscription]] = defaultdict(list)
    for slug in sorted(post.tag_slugs):
        for channel, subs in index.get(slug, {}).items():
            found[channel].extend(subs)
    return dict(found)


@dataclass(frozen=True, slots=True)
class Routing:
    """What routing decided for a set of posts: sorted, without duplicates."""

    intents: tuple[DeliveryIntent, ...]
    drops: tuple[RuleDrop, ...] = ()


def decide(posts: Iterable[Post], subscriptions: Iterable[Subscription], *, now: datetime | None = None,
           channel_rules: Mapping[str, Rule] | None = None) -> Routing:
    """Deliveries (and rule drops) for new posts detected at ``now`` (None: ``max_age`` is not checked)."""
    index = by_channel_and_tag(subscriptions)
    rules = channel_rules or {}
    intents: set[DeliveryIntent] = set()
    drops: set[RuleDrop] = set()
    for post in posts:
        text = PostText(post)
        for channel, subs in matching(post, index).items():
            decided = verdict(post, text, subs, rules.get(channel), now)
            if decided.sent:
                intents.add(DeliveryIntent(source=post.source, post_key=post.key, channel=channel))
            else:
                drops.add(decided.drop(post, channel))
    return Routing(tuple(sorted(intents)), tuple(sorted(drops)))


def route(posts: Iterable[Post], subscriptions: Iterable[Subscription], *, now: datetime | None = None,
          channel_rules: Mapping[str, Rule] | None = None) -> tuple[DeliveryIntent, ...]:
    """Decide deliveries for new posts: a sorted tuple without duplicates (``decide``'s intents)."""
    return decide(posts, subscriptions, now=now, channel_rules=channel_rules).intents
