"""Detection and routing: no flood on first poll, one delivery per (post, channel)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.domain.detect import detect, pick_backfill, to_post
from bot.domain.models import DeliveryIntent, ParsedPost, Subscription
from bot.domain.routing import route
from bot.domain.tags import slugify

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def parsed(n: int, *tags: str) -> ParsedPost:
    return ParsedPost(title=f"Post {n}", url=f"https://a.example/{n}/", guid=f"p{n}", tags=tags,
                      published=T0 + timedelta(days=n))


def sub(tag: str, channel: str, backfill: int = 0) -> Subscription:
    return Subscription(slugify(tag), tag, channel, backfill)


SUBS = [sub("MEK", "tg"), sub("Iraq protest against Iran’s meddling", "tg"), sub("MEK", "masto")]


def test_first_poll_is_a_baseline_without_intents() -> None:
    d = detect("s", [parsed(1, "MEK"), parsed(2, "MEK")], set(), SUBS, first_poll=True)
    assert d.baseline
    assert d.intents == ()
    assert [p.key for p in d.new_posts] == ["p1", "p2"]


def test_new_post_with_overlapping_tags_gives_one_intent_per_channel() -> None:
    post = parsed(3, "MEK", "Iraq protest against Iran's meddling", "Iraq")
    d = detect("s", [post, parsed(1, "MEK")], {"p1"}, SUBS, first_poll=False)
    assert [p.key for p in d.new_posts] == ["p3"]
    assert d.intents == (DeliveryIntent("s", "p3", "masto"), DeliveryIntent("s", "p3", "tg"))


def test_known_posts_are_never_routed_again() -> None:
    d = detect("s", [parsed(1, "MEK")], {"p1"}, SUBS, first_poll=False)
    assert d.new_posts == () and d.intents == ()


def test_duplicate_entries_in_one_feed_count_once() -> None:
    d = detect("s", [parsed(4, "MEK"), parsed(4, "MEK")], set(), SUBS, first_poll=False)
    assert len(d.new_posts) == 1
    assert len(d.intents) == 2


def test_route_matches_case_and_apostrophe_variants() -> None:
    post = to_post("s", parsed(5, "IRAQ PROTEST AGAINST IRAN’S MEDDLING"))
    assert route([post], SUBS) == (DeliveryIntent("s", "p5", "tg"),)


def test_unsubscribed_tags_route_nowhere() -> None:
    assert route([to_post("s", parsed(6, "Sports"))], SUBS) == ()


def test_backfill_picks_latest_n_matching_oldest_first() -> None:
    posts = [to_post("s", parsed(n, "MEK" if n % 2 else "Other")) for n in range(1, 9)]
    chosen = pick_backfill(posts, sub("MEK", "tg", backfill=2))
    assert [p.key for p in chosen] == ["p5", "p7"]
    assert pick_backfill(posts, sub("MEK", "tg", backfill=0)) == []


# -- guid churn and bursts ------------------------------------------------------------------------


def churned(n: int, rev: int, *tags: str) -> ParsedPost:
    """Post n as a feed whose guids change on every request renders it the ``rev``-th time."""
    return ParsedPost(title=f"Post {n}", url=f"https://a.example/{n}/?utm_source=rss", guid=f"p{n}-r{rev}",
                      tags=tags, published=T0 + timedelta(days=n))


def test_a_new_guid_for_a_known_link_is_the_same_post_and_is_reported_as_churn() -> None:
    d = detect("s", [churned(7, 2, "MEK"), churned(8, 2, "MEK")], {"p7-r1"}, SUBS, first_poll=False,
               known_links={"https://a.example/7/"})
    assert [p.key for p in d.new_posts] == ["p8-r2"]
    assert [p.key for p in d.churned] == ["p7-r2"] and d.churned[0] in d.known_posts
    assert {i.post_key for i in d.intents} == {"p8-r2"}


def test_items_sharing_one_link_in_a_poll_are_told_apart_by_guid() -> None:
    """A live blog's updates (or items all linking to the home page) share a link: not churn."""
    live = [ParsedPost(title=f"Update {n}", url=f"https://a.example/live/#u{n}", guid=f"u{n}", tags=("MEK",))
            for n in (1, 2, 3)]
    d = detect("s", live, {"u1"}, SUBS, first_poll=False, known_links={"https://a.example/live/"})
    assert [p.key for p in d.new_posts] == ["u2", "u3"] and d.churned == ()


def test_a_poll_with_more_new_posts_than_the_limit_is_a_burst_but_a_baseline_never_is() -> None:
    posts = [parsed(n, "MEK") for n in range(1, 7)]
    assert not detect("s", posts[:5], set(), SUBS, first_poll=False, burst_limit=5).burst
    assert detect("s", posts, set(), SUBS, first_poll=False, burst_limit=5).burst
    assert not detect("s", posts, set(), SUBS, first_poll=False, burst_limit=0).burst  # 0: never
    assert not detect("s", posts, set(), SUBS, first_poll=True, burst_limit=1).burst
    assert not detect("s", posts, {f"p{n}" for n in range(1, 6)}, SUBS, first_poll=False, burst_limit=1).burst


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sets(st.integers(min_value=1, max_value=12), max_size=12), min_size=1, max_size=8))
def test_with_churning_guids_each_post_is_new_exactly_once(polls: list[set[int]]) -> None:
    """Whatever the feed shows on each request (any subset, guids renewed every time), a post is new once."""
    keys: set[str] = set()
    links: set[str] = set()
    published: list[int] = []
    for rev, shown in enumerate(polls):
        d = detect("s", [churned(n, rev, "MEK") for n in sorted(shown)], keys, SUBS, first_poll=False,
                   known_links=links)
        published += [int(p.title.split()[1]) for p in d.new_posts]
        keys |= {p.key for p in d.new_posts}  # what record_poll stores
        links |= {p.link_key for p in d.new_posts if p.link_key}
        assert len(d.churned) == len(shown) - len(d.new_posts)
    assert sorted(published) == sorted(set().union(*polls))
