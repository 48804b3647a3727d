"""Routing with rules: exactly one delivery per (post, channel), and a reason for every one a rule kept out.

Property tests (hypothesis) over random posts, subscriptions with random rules and random channel-wide
exclusions, against an oracle written from the definition.
"""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.domain.detect import to_post
from bot.domain.models import DeliveryIntent, ParsedPost, Post, Subscription
from bot.domain.plan import PendingBackfill, PollFacts, plan_poll
from bot.domain.routing import decide, route
from bot.domain.rules import PostText, Rule, RuleParts, check, check_channel
from bot.domain.tags import make_tag

NOW = datetime(2026, 5, 1, tzinfo=UTC)
TAGS = ["Iraq", "MEK", "Opinion", "Basra", "Sponsored"]
WORDS = ["Basra", "Mosul", "sponsored", "live", "Iran’s", "protest"]
CHANNELS = ["tg", "masto", "x"]


def make_post(n: int, tags: list[str], words: list[str], age_hours: int, source: str) -> Post:
    return to_post(source, ParsedPost(title=" ".join(words) or "Untitled", url=f"https://a.example/{n}/",
                                      guid=f"p{n}", tags=tuple(tags),
                                      published=NOW - timedelta(hours=age_hours)))


posts_st = st.lists(
    st.tuples(st.lists(st.sampled_from(TAGS), max_size=4), st.lists(st.sampled_from(WORDS), max_size=4),
              st.integers(0, 72), st.sampled_from(["archive", "other"])),
    max_size=8,
).map(lambda items: [make_post(n, *item) for n, item in enumerate(items)])

rules_st = st.none() | st.builds(
    lambda all_tags, none_tags, inc, exc, pats, age, srcs: RuleParts(
        all_tags=tuple(all_tags), none_tags=tuple(none_tags), include_keywords=tuple(inc),
        exclude_keywords=tuple(exc), patterns=tuple(pats), max_age=age, sources=tuple(srcs)).build(),
    st.lists(st.sampled_from(TAGS), max_size=2), st.lists(st.sampled_from(TAGS), max_size=2),
    st.lists(st.sampled_from([*WORDS, "title:Basra", "title:live"]), max_size=2),
    st.lists(st.sampled_from(WORDS), max_size=2),
    st.lists(st.sampled_from(["title=(?i)^live", "title!=Mosul", "title=(a+)+$"]), max_size=2),
    st.none() | st.sampled_from([3600.0, 86400.0]), st.lists(st.sampled_from(["archive", "other"]), max_size=1))


def make_sub(tag: str, channel: str, rule: Rule | None) -> Subscription:
    t = make_tag(tag)
    assert t is not None
    return Subscription(t.slug, t.name, channel, 0, rule)


subs_st = st.lists(st.builds(make_sub, st.sampled_from(TAGS), st.sampled_from(CHANNELS), rules_st), max_size=10)
channel_rules_st = st.dictionaries(st.sampled_from(CHANNELS), st.builds(
    lambda tags, kws: RuleParts(none_tags=tuple(tags), exclude_keywords=tuple(kws)).build() or Rule(),
    st.lists(st.sampled_from(TAGS), max_size=2), st.lists(st.sampled_from(WORDS), max_size=1)), max_size=3)


def oracle(posts: list[Post], subs: list[Subscription], channel_rules: dict[str, Rule]
           ) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """(sent, dropped) (post key, channel) pairs, from the definition: a channel gets a post when one of its
    subscriptions to the post's tags passes and its own exclusions do not keep it out."""
    sent: set[tuple[str, str]] = set()
    dropped: set[tuple[str, str]] = set()
    for post in posts:
        text = PostText(post)
        for channel in CHANNELS:
            mine = [s for s in subs if s.channel == channel and s.tag_slug in post.tag_slugs]
            if not mine:
                continue
            ok = check_channel(channel_rules.get(channel), post, text) is None and any(
                check(s.rule, post, text, NOW) is None for s in mine)
            (sent if ok else dropped).add((post.key, channel))
    return sent, dropped


@settings(max_examples=300, deadline=None)
@given(posts=posts_st, subs=subs_st, channel_rules=channel_rules_st, seed=st.integers(0, 2**16))
def test_one_delivery_per_post_and_channel_and_a_reason_for_every_pair_a_rule_kept_out(
        posts: list[Post], subs: list[Subscription], channel_rules: dict[str, Rule], seed: int) -> None:
    routing = decide(posts, subs, now=NOW, channel_rules=channel_rules)
    sent = [(i.post_key, i.channel) for i in routing.intents]
    dropped = [(d.post_key, d.channel) for d in routing.drops]
    assert len(sent) == len(set(sent)) and len(dropped) == len(set(dropped))  # exactly one each
    assert not set(sent) & set(dropped)
    assert (set(sent), set(dropped)) == oracle(posts, subs, channel_rules)

    # the order of subscriptions, and repeating one, change nothing
    shuffled = list(subs) * 2
    random.Random(seed).shuffle(shuffled)
    assert decide(posts, shuffled, now=NOW, channel_rules=channel_rules) == routing

    # the reason names a condition that really fails for the subscription (or channel) named
    by_key = {p.key: p for p in posts}
    for drop in routing.drops:
        post = by_key[drop.post_key]
        if drop.subscription is None:
            found = [check_channel(channel_rules.get(drop.channel), post, PostText(post))]
        else:
            found = [check(s.rule, post, PostText(post), NOW) for s in subs
                     if s.channel == drop.channel and s.tag_name == drop.subscription and s.tag_slug in post.tag_slugs]
        assert any(f is not None and f.condition == drop.condition and drop.detail.startswith(f.detail)
                   for f in found)


@settings(max_examples=200, deadline=None)
@given(posts=posts_st, subs=subs_st, channel_rules=channel_rules_st)
def test_rules_only_ever_take_deliveries_away(posts: list[Post], subs: list[Subscription],
                                              channel_rules: dict[str, Rule]) -> None:
    bare = {(i.post_key, i.channel) for i in route(posts, [replace(s, rule=None) for s in subs])}
    ruled = decide(posts, subs, now=NOW, channel_rules=channel_rules)
    assert {(i.post_key, i.channel) for i in ruled.intents} <= bare
    assert {(i.post_key, i.channel) for i in ruled.intents} | {(d.post_key, d.channel) for d in ruled.drops} == bare


def test_one_matching_subscription_that_passes_is_enough_and_it_is_the_first_by_tag() -> None:
    post = make_post(1, ["Iraq", "MEK", "Opinion"], ["Basra"], 1, "archive")
    opinion_out = RuleParts(none_tags=("Opinion",)).build()
    subs = [make_sub("Iraq", "tg", opinion_out), make_sub("MEK", "tg", None)]
    assert route([post], subs, now=NOW) == (DeliveryIntent("archive", "p1", "tg"),)
    routing = decide([post], [subs[0], make_sub("MEK", "tg", RuleParts(max_age=60.0).build())], now=NOW)
    assert routing.intents == ()
    (drop,) = routing.drops
    assert (drop.subscription, drop.condition) == ("Iraq", "none_tags")
    assert drop.detail == ("it is tagged Opinion; subscription MEK: max_age: it was 1h old when detected, "
                           "over max_age 1m")


def test_the_channel_exclusions_win_over_every_subscription() -> None:
    post = make_post(1, ["Iraq", "Sponsored"], ["Basra"], 1, "archive")
    routing = decide([post], [make_sub("Iraq", "tg", None)], now=NOW,
                     channel_rules={"tg": RuleParts(none_tags=("Sponsored",)).build() or Rule()})
    assert routing.intents == ()
    assert [(d.subscription, d.condition, d.detail) for d in routing.drops] == [
        (None, "exclude_tags", "it is tagged Sponsored")]


def test_the_poll_plan_records_drops_of_new_posts_and_of_backfills_and_none_in_a_baseline() -> None:
    old = replace(make_post(1, ["Iraq", "Opinion"], ["Basra"], 5, "archive"), id=11)
    older = replace(make_post(2, ["Iraq"], ["Basra"], 6, "archive"), id=12)
    new = make_post(3, ["Iraq", "Opinion"], ["Mosul"], 0, "archive")
    rule = RuleParts(none_tags=("Opinion",)).build()
    sub = replace(make_sub("Iraq", "tg", rule), backfill=1)
    facts = PollFacts(known_keys=set(), subscriptions=(sub,), backfills=(PendingBackfill(7, sub, (old, older)),))
    plan = plan_poll("archive", [new], facts, first_poll=False, now=NOW)
    assert plan.intents == ()
    # the backfill takes the newest post that passes (p2), past the newer one the rule keeps out (p1)
    assert [(b.post_key, b.post_id) for b in plan.backfills] == [("p2", 12)]
    assert sorted((d.post_key, d.post_id, d.condition) for d in plan.drops) == [
        ("p1", 11, "none_tags"), ("p3", None, "none_tags")]
    baseline = plan_poll("archive", [new], facts, first_poll=True, now=NOW)
    # a first poll routes nothing; its backfill still scans (and records what its rule kept out)
    assert baseline.intents == () and [(b.post_key, b.post_id) for b in baseline.backfills] == [("p2", 12)]
    assert sorted(d.post_key for d in baseline.drops) == ["p1", "p3"]
