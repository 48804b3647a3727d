"""Detection and routing: no flood on first poll, one delivery per (post, channel)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

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
