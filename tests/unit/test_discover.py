"""Discovery, pure: body sniffing, <link> discovery, and WordPress REST URL forms and cursors."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.sources.discover import Discovery, FeedLink, discover_links, not_a_feed_reason, sniff
from bot.sources.wordpress import Cursor, api_base, endpoint, parse_gmt

FEEDS = Path(__file__).resolve().parents[1] / "data" / "feeds"


# --- sniff ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["wp-rss.xml", "atom.xml", "bom.xml", "blank-lines.xml", "empty.xml",
                                  "truncated.xml", "latin1-declared-utf8.xml", "utf8-declared-cp1252.xml"])
def test_corpus_xml_sniffs_as_rss(name: str) -> None:
    assert sniff((FEEDS / name).read_bytes()) == "rss"


@pytest.mark.parametrize(("body", "kind"), [
    (b'<?xml version="1.0"?>\n<!-- generator -->\n<?xml-stylesheet href="s.xsl"?>\n<feed xmlns="x"/>', "rss"),
    (b'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY x "y">]><rss version="0.91"/>', "rss"),
    (b'<?xml version="1.0"?><rdf:RDF xmlns:rdf="r"></rdf:RDF>', "rss"),
    ('<?xml version="1.0" encoding="UTF-16"?><rss/>'.encode("utf-16"), "rss"),
    (b"<!DOCTYPE html>\n<html><head></head></html>", "html"),
    (b"<!doctype HTML><title>x</title>", "html"),
    (b"\n\n<html lang='en'><body/></html>", "html"),
    (b"<head><meta charset='utf-8'></head>", "html"),
    (b'{"version": "https://jsonfeed.org/version/1", "items": []}', "jsonfeed"),
    (b'\xef\xbb\xbf{"version": "https://jsonfeed.org/version/1.1"}', "jsonfeed"),
    (b'[{"id": 7, "guid": {"rendered": "x"}, "title": {"rendered": "t"}}]', "wordpress"),
    (b'{"name": "Site", "namespaces": ["oembed/1.0", "wp/v2"], "routes": {}}', "wp-index"),
    (b'{"code": "rest_no_route", "message": "No route"}', "json"),
    (b"[]", "json"),
    (b"[1, 2]", "json"),
    (b"", "empty"),
    (b" \r\n\t", "empty"),
    (b"\x89PNG\r\n", "unknown"),
    (b"{broken", "unknown"),
    (b"<foo/>", "unknown"),
])
def test_sniff(body: bytes, kind: str) -> None:
    assert sniff(body) == kind


def test_an_empty_json_list_with_wp_headers_is_wordpress() -> None:
    assert sniff(b"[]", "application/json", {"X-WP-Total": "0", "X-WP-TotalPages": "0"}) == "wordpress"


def test_body_wins_over_a_lying_content_type() -> None:
    feed = (FEEDS / "wp-rss.xml").read_bytes()
    assert sniff(feed, "text/html") == "rss"
    assert sniff(b"<!DOCTYPE html><html></html>", "application/rss+xml") == "html"
    assert sniff(b"<div>x</div>", "text/html") == "html"


def test_not_a_feed_reasons() -> None:
    assert "HTML page" in not_a_feed_reason("html", b"", expected="an RSS or Atom feed")
    assert "kind" not in not_a_feed_reason("html", b"", expected="x", hint=False)
    assert "starts with '\\x00garbage'" in not_a_feed_reason("unknown", b"\x00garbage", expected="x")


# --- discover_links -------------------------------------------------------------

PAGE = b"""<!DOCTYPE html><html><head>
<meta charset="utf-8">
<link rel='stylesheet' href='/style.css' />
<link rel="alternate" type="application/rss+xml" title="Archive &raquo; Comments Feed" href="/comments/feed/" />
<link rel="alternate" type="application/feed+json" title="JSON" href="feed/json" />
<link rel="alternate" type="application/rss+xml" title="Archive &raquo; Feed" href="/feed/" />
<link rel="alternate" type="application/json" href="/wp-json/wp/v2/tags/12" />
<link rel="https://api.w.org/" href="https://site.example/wp-json/" />
</head><body>
<link rel="alternate" type="application/atom+xml" href="/in-body/" />
</body></html>"""


def test_finds_rest_api_and_feeds_and_prefers_rest() -> None:
    found = discover_links(PAGE, "https://site.example/tag/iraq/")
    assert found.rest_api == "https://site.example/wp-json/"
    assert [f.url for f in found.feeds] == ["https://site.example/comments/feed/",
                                           "https://site.example/tag/iraq/feed/json",
                                           "https://site.example/feed/"]
    assert found.best() == ("wordpress", "https://site.example/wp-json/")


def test_without_rest_the_first_non_comments_rss_feed_wins_over_json_feed() -> None:
    found = Discovery(None, discover_links(PAGE, "https://site.example/").feeds)
    assert found.best() == ("rss", "https://site.example/feed/")


def test_json_feed_alone_and_comments_feed_as_a_last_resort() -> None:
    json_only = discover_links(b'<html><head><link rel="alternate" type="application/feed+json" href="/j">'
                               b"</head></html>", "https://s/")
    assert json_only.best() == ("jsonfeed", "https://s/j")
    comments = Discovery(None, (FeedLink("rss", "https://s/comments/feed/", "Comments"),))
    assert comments.best() == ("rss", "https://s/comments/feed/")


def test_base_href_and_plain_rest_route_form_and_atom() -> None:
    page = (b'<html><head><base href="https://cdn.example/blog/">'
            b'<link rel="alternate feed" type="application/atom+xml; charset=utf-8" href="atom.xml">'
            b'<link rel="https://api.w.org/" href="/?rest_route=/"></head></html>')
    found = discover_links(page, "https://s.example/")
    assert found.feeds == (FeedLink("rss", "https://cdn.example/blog/atom.xml", ""),)
    assert found.rest_api == "https://cdn.example/?rest_route=/"


def test_link_header_announces_the_rest_api() -> None:
    headers = {"Link": '<https://s.example/wp-json/wp/v2/pages/2>; rel="alternate"; type="application/json", '
                       '<https://s.example/wp-json/>; rel="https://api.w.org/"'}
    found = discover_links(b"<html><head></head><body></body></html>", "https://s.example/", headers)
    assert found.rest_api == "https://s.example/wp-json/"


def test_nothing_announced_and_broken_markup() -> None:
    assert discover_links(b"<html><head><title>x</title></head></html>", "https://s/").best() is None
    assert discover_links(b"<html><head><link rel=alternate type=application/rss+xml href=/f>"
                          b"<<<!-- unterminated", "https://s/").best() == ("rss", "https://s/f")
    assert discover_links(b"\xff\xfe\x00garbage", "https://s/").best() is None


# --- WordPress REST URL forms and cursors ---------------------------------------


@pytest.mark.parametrize(("configured", "base"), [
    ("https://s.example/wp-json/", "https://s.example/wp-json/"),
    ("https://s.example/wp-json", "https://s.example/wp-json/"),
    ("https://s.example/wp-json/wp/v2/posts?per_page=5", "https://s.example/wp-json/"),
    ("https://s.example/blog/wp-json/wp/v2/", "https://s.example/blog/wp-json/"),
    ("https://s.example/", "https://s.example/wp-json/"),
    ("https://s.example", "https://s.example/wp-json/"),
    ("https://s.example/?rest_route=/", "https://s.example/?rest_route=/"),
    ("https://s.example/?rest_route=/wp/v2/posts&per_page=3", "https://s.example/?per_page=3&rest_route=/"),
    ("https://s.example/index.php?rest_route=%2Fwp%2Fv2%2Fposts", "https://s.example/index.php?rest_route=/"),
])
def test_api_base(configured: str, base: str) -> None:
    assert api_base(configured) == base


def test_endpoint_pretty_and_plain_forms() -> None:
    params = [("per_page", "10"), ("modified_after", "2020-02-16T09:30:00Z"), ("include", "1,2,3")]
    assert endpoint("https://s/wp-json/", "/wp/v2/posts", params) == (
        "https://s/wp-json/wp/v2/posts?per_page=10&modified_after=2020-02-16T09:30:00Z&include=1,2,3")
    assert endpoint("https://s/?rest_route=/", "wp/v2/tags", params[:1]) == (
        "https://s/?rest_route=/wp/v2/tags&per_page=10")
    assert endpoint("https://s/wp-json/", "/wp/v2/posts") == "https://s/wp-json/wp/v2/posts"


def test_cursor_round_trip_and_lenient_reading() -> None:
    when = datetime(2020, 2, 16, 9, 30, tzinfo=UTC)
    cursor = Cursor(when, when, datetime(2020, 1, 1, tzinfo=UTC), frozenset({12, 7}))
    assert Cursor.parse(str(cursor)) == cursor
    assert str(cursor) == ("modified=2020-02-16T09:30:00Z date=2020-02-16T09:30:00Z "
                           "floor=2020-01-01T00:00:00Z seen=7,12")
    assert Cursor.parse("2020-02-16T09:30:00") == Cursor(modified=when)
    assert Cursor.parse("garbage") == Cursor()
    assert Cursor.parse(None) == Cursor()
    assert str(Cursor()) == ""


def test_cursor_never_moves_backwards() -> None:
    cursor = Cursor.parse("modified=2020-02-16T09:30:00Z date=2020-02-10T00:00:00Z")
    rows: list[dict[str, Any]] = [{"modified_gmt": "2020-01-01T00:00:00", "date_gmt": "2020-02-12T00:00:00"},
            {"modified_gmt": None, "date_gmt": "0000-00-00T00:00:00"}]
    moved = cursor.advanced(rows)
    assert moved.modified == cursor.modified
    assert moved.date == datetime(2020, 2, 12, tzinfo=UTC)


def test_cursor_remembers_the_posts_of_its_last_second() -> None:
    rows = [{"id": 1, "modified_gmt": "2020-02-16T09:30:00"}, {"id": 2, "modified_gmt": "2020-02-16T09:30:00"},
            {"id": 3, "modified_gmt": "2020-02-16T09:29:59"}]
    cursor = Cursor().advanced(rows)
    assert cursor.seen == {1, 2}
    assert cursor.already_seen(rows[0]) and not cursor.already_seen(rows[2])
    assert not cursor.already_seen({"id": 1, "modified_gmt": "2020-02-16T09:30:05"})  # edited again
    later = cursor.advanced([{"id": 4, "modified_gmt": "2020-02-16T09:31:00"}])
    assert later.seen == {4}


def test_parse_gmt() -> None:
    assert parse_gmt("2020-02-16T09:30:00") == datetime(2020, 2, 16, 9, 30, tzinfo=UTC)
    assert parse_gmt("2020-02-16T09:30:00+03:00") == datetime(2020, 2, 16, 6, 30, tzinfo=UTC)
    assert parse_gmt("0000-00-00T00:00:00") is None
    assert parse_gmt(None) is None
    assert parse_gmt("yesterday") is None
