"""Post identity: guid, else canonical link, else a hash of title and date."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.domain.identity import canonical_url, post_key
from bot.domain.models import ParsedPost


def test_guid_wins() -> None:
    post = ParsedPost(title="T", url="https://a.example/x", guid=" https://a.example/?p=12 ")
    assert post_key(post) == "https://a.example/?p=12"


def test_canonical_link_strips_tracking_and_fragment() -> None:
    a = ParsedPost(title="T", url="HTTPS://Archive.Example.org:443/2020/01/post/?utm_source=rss&utm_medium=rss#more")
    b = ParsedPost(title="T", url="https://archive.example.org/2020/01/post/?fbclid=abc")
    assert post_key(a) == post_key(b) == "https://archive.example.org/2020/01/post/"


def test_meaningful_query_parameters_are_kept_in_order() -> None:
    assert canonical_url("https://x.example/?p=5&utm_campaign=z&lang=fa") == "https://x.example/?p=5&lang=fa"
    assert canonical_url("http://x.example:8080") == "http://x.example:8080/"


def test_hash_of_title_and_date_when_nothing_else() -> None:
    when = datetime(2020, 2, 16, tzinfo=UTC)
    a = post_key(ParsedPost(title=" Iraq Protests ", published=when))
    b = post_key(ParsedPost(title="Iraq Protests", published=when))
    c = post_key(ParsedPost(title="Iraq Protests", published=datetime(2020, 2, 17, tzinfo=UTC)))
    assert a == b
    assert a != c
    assert a.startswith("sha256:")
