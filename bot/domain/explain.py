"""Why a post was (not) sent to each channel: ``tagrelay explain`` and the admin bot's ``/explain``. Pure.

Storage keeps a delivery for every (post, channel) that was routed and a ``rule_drops`` row for every
one a rule kept out (with the rule and condition, as they were when the post was detected). The rest
is worked out here from what the channel subscribes to now: no subscribed tag, or a subscription (or
the channel) that came after the post.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from bot.domain.models import Post
from bot.domain.state import SubscriptionView


@dataclass(frozen=True, slots=True)
class DeliveryFact:
    id: int
    status: str
    created_at: datetime | None


@dataclass(frozen=True, slots=True)
class DropFact:
    subscription: str | None
    """The tag name of the subscription whose rule kept the post out; None: the channel's exclusions."""
    condition: str
    detail: str
    at: datetime | None


@dataclass(frozen=True, slots=True)
class ExplainFacts:
    """What storage knows about one post and the channels (``Store.explain_facts``)."""

    post: Post
    first_seen: datetime | None
    channels: dict[str, datetime | None]
    """Every channel storage knows, with when it was added."""
    deliveries: dict[str, DeliveryFact]
    drops: dict[str, DropFact]
    subscriptions: tuple[SubscriptionView, ...]
    """The subscriptions (of any channel) to the post's tags, as they are now."""


@dataclass(frozen=True, slots=True)
class ChannelAnswer:
    """Why the post was or was not sent to one channel."""

    channel: str
    outcome: str
    """The delivery's status (``sent``, ``queued``, ``failed``, ``held``, ``dropped``…) when it was
    routed; ``filtered`` when a rule kept it out; ``no subscribed tag``; ``not routed``."""
    reason: str
    subscription: str | None = None
    """The subscription that matched (routed) or whose rule decided (filtered)."""
    condition: str | None = None
    """The condition that kept it out (filtered)."""
    later: str | None = None
    """What an edit or an unpublishing of the post does there (``bot.domain.lifecycle.describe_policy``)."""


def _ago(when: datetime | None) -> str:
    return f" ({when:%Y-%m-%d %H:%M} UTC)" if when is not None else ""


def explain(facts: ExplainFacts, channels: Sequence[str]) -> list[ChannelAnswer]:
    """One answer per channel of ``channels`` (the configured ones, or the one asked about)."""
    answers: list[ChannelAnswer] = []
    tags = ", ".join(t.name for t in facts.post.tags)
    for channel in channels:
        mine = [v for v in facts.subscriptions if v.subscription.channel == channel
                and v.subscription.tag_slug in facts.post.tag_slugs]
        delivery = facts.deliveries.get(channel)
        drop = facts.drops.get(channel)
        if delivery is not None:
            before = [v for v in mine if v.created_at is None or delivery.created_at is None
                      or v.created_at <= delivery.created_at]  # the ones that existed when it was routed
            via = f"subscription {', '.join(v.subscription.tag_name for v in before)}" if before \
                else "a subscription since removed"
            answers.append(ChannelAnswer(channel, delivery.status, f"routed by {via}; delivery {delivery.id} is "
                                         f"{delivery.status}{_ago(delivery.created_at)}",
                                         subscription=before[0].subscription.tag_name if before else None))
        elif drop is not None:
            who = f"subscription {drop.subscription}'s" if drop.subscription is not None else "the channel's own"
            answers.append(ChannelAnswer(channel, "filtered", f"kept out by {who} {drop.condition}: {drop.detail}"
                                         f"{_ago(drop.at)}", subscription=drop.subscription, condition=drop.condition))
        elif not mine:
            what = f"none of its tags ({tags}) is" if tags else "it has no tags, so no tag is"
            answers.append(ChannelAnswer(channel, "no subscribed tag", f"{what} subscribed by this channel"))
        else:
            answers.append(ChannelAnswer(channel, "not routed", _not_routed(facts, channel, mine),
                                         subscription=mine[0].subscription.tag_name))
    return answers


def _not_routed(facts: ExplainFacts, channel: str, mine: Sequence[SubscriptionView]) -> str:
    seen = facts.first_seen
    later = [v for v in mine if seen is not None and v.created_at is not None and v.created_at > seen]
    if len(later) == len(mine):
        return (f"subscription {', '.join(v.subscription.tag_name for v in later)} was made after the post was "
                "detected; subscriptions and rules apply to posts detected after them (a backfill can send "
                "older ones)")
    added = facts.channels.get(channel)
    if seen is not None and added is not None and added > seen:
        return "the channel was added after the post was detected"
    return ("the post was recorded by its source's first poll (a baseline sends nothing), or before this "
            "subscription reached it")
