"""The poll's pure plan (``bot.domain.plan``): what one poll writes, decided without a database.

The backfill model below is what the store used to decide inside its write (``Store._backfill``):
the N latest posts carrying the tag among everything stored for the source, this poll's new posts
included (newest first by date, undated last, the most recently stored first among equal dates),
queued oldest first, a (post, channel) pair that has a delivery already skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.domain.detect import normalise
from bot.domain.models import DeliveryIntent, ParsedPost, Post, Subscription, Tag
from bot.domain.plan import (
    USUAL_WEIGHT,
    BackfillDelivery,
    PendingBackfill,
    PollFacts,
    PollPlan,
    next_usual,
    plan_backfills,
    plan_poll,
)
from bot.domain.routing import route

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TAGS = ("a", "b", "c")
CHANNELS = ("x", "y")


def parsed(key: str, day: int | None, *tags: str) -> ParsedPost:
    return ParsedPost(title=f"Post {key}", url=f"https://a.example/{key}/", guid=key, tags=tags,
                      published=None if day is None else T0 + timedelta(days=day))


def stored_post(post_id: int, key: str, day: int | None, tag: str) -> Post:
    """A stored candidate as ``Store.poll_facts`` reads it: id, key, date, the subscription's tag."""
    return Post(key=key, source="s", title=f"Post {key}", url=None, summary_html="", content_html="",
                tags=(Tag(tag, tag),), published=None if day is None else T0 + timedelta(days=day), id=post_id)


def sub(tag: str, channel: str, backfill: int = 0) -> Subscription:
    return Subscription(tag, tag, channel, backfill)


def _newest_first(rows: Sequence[tuple[int, str, int | None]]) -> list[tuple[int, str, int | None]]:
    """ORDER BY published_at DESC NULLS LAST, id DESC (the candidates' query)."""
    dated = sorted((r for r in rows if r[2] is not None), key=lambda r: (r[2], r[0]), reverse=True)
    undated = sorted((r for r in rows if r[2] is None), key=lambda r: r[0], reverse=True)
    return dated + undated


# -- examples --------------------------------------------------------------------------------------


def test_a_baseline_routes_nothing_but_backfills_from_the_posts_it_stores() -> None:
    posts = normalise("s", [parsed(f"p{n}", n, "a") for n in range(1, 6)] + [parsed("q", 9, "b")])
    facts = PollFacts(known_keys=set(), subscriptions=(sub("a", "x", 2),),
                      backfills=(PendingBackfill(7, sub("a", "x", 2)),))
    plan = plan_poll("s", posts, facts, first_poll=True)
    assert plan.baseline and plan.intents == () and plan.outcome == "baseline"
    assert [p.key for p in plan.new_posts] == ["p1", "p2", "p3", "p4", "p5", "q"]
    assert plan.backfills == (BackfillDelivery("s", "p4", "x"), BackfillDelivery("s", "p5", "x"))  # oldest first
    assert plan.backfills_done == (7,)
    assert plan.usual_new is None  # a baseline is not a poll's usual volume


def test_a_backfill_mixes_stored_and_new_posts_and_never_repeats_an_intent() -> None:
    posts = normalise("s", [parsed("new", 10, "a")])
    stored = (stored_post(5, "old5", 5, "a"), stored_post(4, "old4", 4, "a"))
    facts = PollFacts(known_keys=set(), subscriptions=(sub("a", "x", 2),),
                      backfills=(PendingBackfill(1, sub("a", "x", 2), stored),))
    plan = plan_poll("s", posts, facts, first_poll=False)
    assert plan.intents == (DeliveryIntent("s", "new", "x"),)
    # the two latest are old5 and new; new has its intent already, so only old5 is backfilled
    assert plan.backfills == (BackfillDelivery("s", "old5", "x", post_id=5),)


def test_a_backfill_whose_tag_has_no_post_is_done_all_the_same() -> None:
    facts = PollFacts(known_keys=set(), backfills=(PendingBackfill(3, sub("c", "y", 5)),))
    plan = plan_poll("s", normalise("s", [parsed("p", 1, "a")]), facts, first_poll=False)
    assert plan.backfills == () and plan.backfills_done == (3,)


def test_a_burst_holds_its_intents_but_never_a_backfill() -> None:
    posts = normalise("s", [parsed(f"p{n}", n, "a") for n in range(1, 5)])
    facts = PollFacts(known_keys=set(), subscriptions=(sub("a", "x"), sub("b", "y", 1)),
                      backfills=(PendingBackfill(2, sub("b", "y", 1), (stored_post(1, "old", 0, "b"),)),))
    plan = plan_poll("s", posts, facts, first_poll=False, burst_limit=3, usual_new=1.0)
    assert plan.burst and plan.hold and plan.outcome == "held"
    assert len(plan.intents) == 4
    assert plan.backfills == (BackfillDelivery("s", "old", "y", post_id=1),)
    assert "burst of 4 new posts held (usual 1; limit 3)" in plan.hold_note
    assert plan.usual_new is None  # a held burst is left out of the usual volume


def test_a_burst_without_subscribers_holds_nothing() -> None:
    posts = normalise("s", [parsed(f"p{n}", n, "z") for n in range(1, 5)])
    plan = plan_poll("s", posts, PollFacts(known_keys=set(), subscriptions=(sub("a", "x"),)), first_poll=False,
                     burst_limit=3)
    assert plan.burst and not plan.hold and plan.outcome == "new"
    assert plan.usual_new is None


@pytest.mark.parametrize(("usual", "new", "expected"), [(None, 4, 4.0), (10.0, 5, 10.0 + USUAL_WEIGHT * -5)])
def test_the_usual_volume_is_a_moving_average_of_polls_with_new_posts(usual: float | None, new: int,
                                                                      expected: float) -> None:
    posts = normalise("s", [parsed(f"p{n}", n) for n in range(new)])
    plan = plan_poll("s", posts, PollFacts(known_keys=set()), first_poll=False, usual_new=usual)
    assert plan.usual_new == pytest.approx(expected) == next_usual(usual, new)
    unchanged = plan_poll("s", posts, PollFacts(known_keys={p.key for p in posts}), first_poll=False,
                          usual_new=usual)
    assert unchanged.outcome == "unchanged" and unchanged.usual_new is None and unchanged.new_posts == ()


def test_a_new_guid_for_a_known_link_is_churn_not_a_new_post() -> None:
    posts = normalise("s", [parsed("fresh-guid", 1, "a")])
    plan = plan_poll("s", posts, PollFacts(known_keys=set(), known_links={posts[0].link_key or ""},
                                           subscriptions=(sub("a", "x"),)), first_poll=False)
    assert plan.new_posts == () and plan.intents == () and [p.key for p in plan.churned] == ["fresh-guid"]


# -- the whole plan against the model of the write it replaces --------------------------------------

day = st.one_of(st.none(), st.integers(0, 6))
tagset = st.lists(st.sampled_from(TAGS), max_size=3, unique=True)


@st.composite
def polls(draw: st.DrawFn) -> tuple[list[tuple[str, int | None, list[str]]], list[tuple[str, int | None, list[str]]],
                                    list[Subscription], list[int], bool, int]:
    stored = [(f"s{i}", draw(day), draw(tagset)) for i in range(draw(st.integers(0, 6)))]
    fresh = [(f"n{i}", draw(day), draw(tagset)) for i in range(draw(st.integers(0, 6)))]
    pairs = draw(st.lists(st.tuples(st.sampled_from(TAGS), st.sampled_from(CHANNELS)), unique=True, max_size=6))
    subs = [sub(tag, chan, draw(st.integers(0, 3))) for tag, chan in pairs]
    pending = [i for i, s in enumerate(subs) if s.backfill > 0 and draw(st.booleans())]
    return stored, fresh, subs, pending, draw(st.booleans()), draw(st.integers(0, 4))


@settings(max_examples=300, deadline=None)
@given(polls(), st.data())
def test_the_plan_gives_one_delivery_per_post_and_channel_and_backfills_as_the_store_did(
        poll: tuple[list[tuple[str, int | None, list[str]]], list[tuple[str, int | None, list[str]]],
                    list[Subscription], list[int], bool, int], data: st.DataObject) -> None:
    stored, fresh, subs, pending, first_poll, limit = poll
    ids = {key: i + 1 for i, (key, _d, _t) in enumerate(stored)}  # stored posts: ids 1..k
    # the feed: the new posts (in feed order) and some stored ones seen again, shuffled in
    again = data.draw(st.lists(st.sampled_from([s[0] for s in stored]), unique=True) if stored else st.just([]))
    feed_items = [(k, d, t) for k, d, t in fresh] + [(k, d, t) for k, d, t in stored if k in again]
    feed_items = data.draw(st.permutations(feed_items))
    posts = normalise("s", [parsed(k, d, *t) for k, d, t in feed_items])
    backfills = []
    for i in pending:
        s = subs[i]
        rows = [(ids[k], k, d) for k, d, t in stored if s.tag_slug in t]
        top = _newest_first(rows)[: s.backfill]
        backfills.append(PendingBackfill(100 + i, s, tuple(stored_post(pid, k, d, s.tag_slug) for pid, k, d in top)))
    facts = PollFacts(known_keys=set(ids), subscriptions=tuple(subs), backfills=tuple(backfills))
    plan = plan_poll("s", posts, facts, first_poll=first_poll, burst_limit=limit)

    new_keys = [p.key for p in posts if p.key not in ids]
    assert [p.key for p in plan.new_posts] == new_keys
    assert plan.baseline is first_poll
    assert plan.intents == (() if first_poll else route(plan.new_posts, subs))
    assert plan.burst is (not first_poll and limit > 0 and len(new_keys) > limit)
    assert plan.hold is (plan.burst and bool(plan.intents))

    # one delivery per (post, channel), across intents and backfills
    pairs = [(i.post_key, i.channel) for i in plan.intents] + [(b.post_key, b.channel) for b in plan.backfills]
    assert len(pairs) == len(set(pairs))

    # the model of the old write: this poll's posts stored after the others, in feed order
    all_ids = dict(ids)
    for key in new_keys:
        all_ids[key] = len(all_ids) + 1
    tags_of = {k: set(t) for k, _d, t in stored} | {p.key: set(p.tag_slugs) for p in plan.new_posts}
    days = {k: d for k, d, _t in stored} | {k: d for k, d, _t in feed_items}
    taken = {(i.post_key, i.channel) for i in plan.intents}
    expected: list[tuple[str, str, int | None]] = []
    for i in pending:
        s = subs[i]
        rows = [(pid, k, days[k]) for k, pid in all_ids.items() if s.tag_slug in tags_of[k]]
        for _pid, key, _d in reversed(_newest_first(rows)[: s.backfill]):
            if (key, s.channel) not in taken:
                taken.add((key, s.channel))
                expected.append((key, s.channel, ids.get(key)))
    assert [(b.post_key, b.channel, b.post_id) for b in plan.backfills] == expected
    assert plan.backfills_done == tuple(100 + i for i in pending)


def test_plan_backfills_alone_skips_pairs_the_intents_have() -> None:
    new = normalise("s", [parsed("n", 3, "a")])
    chosen, done = plan_backfills(new, [PendingBackfill(1, sub("a", "x", 1))], [DeliveryIntent("s", "n", "x")])
    assert chosen == () and done == (1,)


def test_the_outcome_word_follows_the_plan() -> None:
    base = PollPlan(new_posts=(), churned=(), intents=(), backfills=(), backfills_done=(), baseline=False,
                    burst=False, hold=False, hold_note="", usual_new=None)
    assert base.outcome == "unchanged"


def test_posts_dated_before_the_retired_identities_are_stored_not_routed_nor_counted() -> None:
    # retention removed identities of posts up to day 5; the feed lists days 3 and 5 again, an undated
    # post (cannot be told apart: new) and day 9 (new)
    posts = normalise("s", [parsed("back3", 3, "a"), parsed("back5", 5, "a"), parsed("undated", None, "a"),
                            parsed("fresh", 9, "a"), parsed("known", 2, "a")])
    facts = PollFacts(known_keys={"known"}, subscriptions=(sub("a", "x"),))
    retired = T0 + timedelta(days=5)
    plan = plan_poll("s", posts, facts, first_poll=False, burst_limit=2, retired_before=retired)
    assert sorted(p.key for p in plan.returned) == ["back3", "back5"]
    assert sorted(p.key for p in plan.new_posts) == ["back3", "back5", "fresh", "undated"]  # all stored
    assert sorted(i.post_key for i in plan.intents) == ["fresh", "undated"]
    assert not plan.burst and plan.outcome == "new"  # two new posts: within the limit of 2
    assert plan.usual_new == 2.0

    only_back = plan_poll("s", posts[:2], facts, first_poll=False, retired_before=retired)
    assert only_back.intents == () and only_back.outcome == "unchanged" and len(only_back.new_posts) == 2
    assert plan_poll("s", posts, facts, first_poll=False).returned == ()  # nothing retired: nothing held back
