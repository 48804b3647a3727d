"""JSON Feed 1.1 and 1.0 parsing with orjson."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.errors import FeedParseError
from bot.sources.jsonfeed import parse_jsonfeed

FEEDS = Path(__file__).resolve().parents[1] / "data" / "feeds"
EXPECTED: list[dict[str, Any]] = json.loads((FEEDS / "expected.json").read_text(encoding="utf-8"))


def feed(*items: Any, version: str = "https://jsonfeed.org/version/1.1", **top: Any) -> bytes:
    return json.dumps({"version": version, "title": "T", "items": list(items), **top}).encode()


def test_corpus_json_feed_matches_ground_truth() -> None:
    doc = parse_jsonfeed((FEEDS / "feed.json").read_bytes(), source="j")
    assert doc.parser == "orjson"
    assert doc.title == "Iraq protest against Iran’s meddling – Archive"
    assert len(doc.posts) == 10
    for post, want in zip(doc.posts, EXPECTED, strict=True):
        assert post.title == want["title"]
        assert post.url == want["url"]
        assert post.guid == want["guid"]
        assert list(post.tags) == want["tags"]
        assert post.published == datetime.fromisoformat(want["published"])
        assert post.updated == datetime.fromisoformat(want["updated"])
        assert post.content_html == want["content_html"]
        assert post.summary_html == want["excerpt_text"]
        assert post.image_url == want["image_url"]
        assert post.author == want["author"]


def test_version_1_0_with_singular_author() -> None:
    doc = parse_jsonfeed((FEEDS / "feed-1.0.json").read_bytes(), source="j")
    assert len(doc.posts) == 3
    assert doc.posts[0].author == EXPECTED[0]["author"]


def test_field_fallbacks_and_escaping() -> None:
    body = feed(
        {"id": 42, "external_url": "/outside", "title": "Iran&#8217;s &amp; co", "content_text": "a < b",
         "summary": "x & y", "date_modified": "2020-02-16T12:00:00+03:00", "banner_image": "/b.png",
         "tags": ["MEK", "MEK", 7, " Iraq "]},
        home_page_url="https://s.example/", authors=[{"name": "Feed Author"}],
    )
    post = parse_jsonfeed(body, source="j").posts[0]
    assert post.guid == "42"
    assert post.url == "https://s.example/outside"
    assert post.title == "Iran’s & co"
    assert post.content_html == "a &lt; b"
    assert post.summary_html == "x &amp; y"
    assert post.published == post.updated == datetime(2020, 2, 16, 9, 0, tzinfo=UTC)
    assert post.image_url == "https://s.example/b.png"
    assert post.tags == ("MEK", "Iraq")
    assert post.author == "Feed Author"


def test_no_summary_uses_content_and_image_falls_back_to_first_img() -> None:
    body = feed({"id": "a", "url": "https://s/a", "content_html": '<p><img src="https://s/i.jpg"></p>',
                 "date_published": "2020-02-16T09:30:00Z"})
    post = parse_jsonfeed(body, source="j").posts[0]
    assert post.summary_html == post.content_html
    assert post.image_url == "https://s/i.jpg"
    assert post.published == datetime(2020, 2, 16, 9, 30, tzinfo=UTC)
    assert post.title == ""


def test_empty_items_is_no_posts_and_junk_items_are_skipped() -> None:
    assert parse_jsonfeed(feed(), source="j").posts == ()
    doc = parse_jsonfeed(feed("junk", {"id": "1", "title": "ok"}, {"content_html": "<p>anonymous</p>"}),
                         source="j")
    assert [p.title for p in doc.posts] == ["ok"]
    assert doc.skipped == 2


@pytest.mark.parametrize(("body", "words"), [
    (b"<!DOCTYPE html><html><body>x</body></html>", "HTML page, not a JSON Feed"),
    (b"<rss version='2.0'><channel></channel></rss>", 'kind = "rss"'),
    (b"", "empty body"),
    (b"{not json", "not valid JSON"),
    (b'{"items": []}', "JSON that is not a JSON Feed"),
    (b'[{"id": 1, "title": {"rendered": "x"}, "link": "https://s/"}]', 'kind = "wordpress"'),
    (feed(items=None), "is not a list"),
])
def test_not_a_json_feed(body: bytes, words: str) -> None:
    with pytest.raises(FeedParseError) as info:
        parse_jsonfeed(body, source="jf")
    assert info.value.source == "jf"
    assert words in info.value.reason
