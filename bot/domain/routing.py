"""Route posts to channels: one intent per (post, channel), however many tags match."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from bot.domain.models import DeliveryIntent, Post, Subscription


def channels_by_tag(subscriptions: Iterable[Subscription]) -> dict[str, frozenset[str]]:
    """Index subscriptions: tag slug → channels subscribed to it."""
    index: defaultdict[str, set[str]] = defaultdict(set)
    for sub in subscriptions:
        index[sub.tag_slug].add(sub.channel)
    return {slug: frozenset(chans) for slug, chans in index.items()}


def channels_for(post: Post, index: dict[str, frozenset[str]]) -> frozenset[str]:
    """Every channel that subscribes to at least one of the post's tags."""
    found: set[str] = set()
    for slug in post.tag_slugs:
        found |= index.get(slug, frozenset())
    return frozenset(found)


def route(posts: Iterable[Post], subscriptions: Iterable[Subscription]) -> tuple[DeliveryIntent, ...]:
    """Decide deliveries for new posts: a sorted tuple without duplicates."""
    index = channels_by_tag(subscriptions)
    intents = {
        DeliveryIntent(source=post.source, post_key=post.key, channel=channel)
        for post in posts
        for channel in channels_for(post, index)
    }
    return tuple(sorted(intents))
