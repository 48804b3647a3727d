"""Finding the WebSub hub a fetched feed advertises: headers first, then the document's own links; only
http/https hubs, never a topic with credentials, never an item's links."""

from __future__ import annotations

import orjson
import pytest

from bot.domain.push import HubLink
from bot.sources.hubs import HEAD_BYTES, find_hub, jsonfeed_links, xml_links
from bot.sources.jsonfeed import parse_jsonfeed

FEED = "https://site.example/feed/"

RSS = b"""<?xml version="1.0" encoding="UTF-8"?><rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom">
<channel>
  <title>Archive</title>
  <atom:link href="https://site.example/feed/" rel="self" type="application/rss+xml" />
  <atom:link rel='hub' href='https://pubsubhubbub.appspot.com/?a=1&amp;b=2'/>
  <link>https://site.example</link>
  <item><title>x</title><atom:link rel="hub" href="https://evil.example/hub"/></item>
</channel></rss>"""

ATOM = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title>Archive</title>
  <link rel="alternate" href="https://site.example/"/>
  <link rel="self" href="/feed/atom/"/>
  <link href="https://hub.example/" rel="hub"/>
  <entry><title>x</title></entry>
</feed>"""


def test_rss_and_atom_declare_their_hub_and_self_before_the_first_item() -> None:
    assert xml_links(RSS) == (["https://pubsubhubbub.appspot.com/?a=1&b=2"], FEED)
    assert xml_links(ATOM) == (["https://hub.example/"], "/feed/atom/")
    hubs, self_url = xml_links(ATOM)
    assert find_hub({}, hubs, self_url, "https://site.example/feed/atom") == HubLink(
        "https://hub.example/", "https://site.example/feed/atom/")  # relative self resolved


def test_an_items_links_never_count() -> None:
    only_in_item = RSS.replace(b"<atom:link rel='hub' href='https://pubsubhubbub.appspot.com/?a=1&amp;b=2'/>", b"")
    assert xml_links(only_in_item) == ([], FEED)


def test_the_link_header_wins_over_the_document() -> None:
    hubs, self_url = xml_links(RSS)
    headers = {"Link": '<https://hub.header/>; rel="hub", <https://site.example/feed/?x>; rel="self"'}
    assert find_hub(headers, hubs, self_url, FEED) == HubLink("https://hub.header/", "https://site.example/feed/?x")
    # a header with a hub but no self: the document's self is still the topic
    assert find_hub({"link": "<https://hub.header/>; rel=hub"}, hubs, self_url, FEED) == HubLink(
        "https://hub.header/", FEED)


def test_without_a_self_link_the_topic_is_the_fetched_url() -> None:
    assert find_hub({}, ["https://hub.example/"], None, FEED) == HubLink("https://hub.example/", FEED)


@pytest.mark.parametrize("hub", ["file:///etc/passwd", "javascript:alert(1)", "ftp://hub.example/", "gopher://x/",
                                 "https://user:pw@hub.example/", "https://hub.example/\u202e", "/relative-is-ok"])
def test_only_an_http_or_https_hub_without_credentials_is_used(hub: str) -> None:
    found = find_hub({}, [hub], None, FEED)
    if hub == "/relative-is-ok":  # resolved against the feed's URL, so https
        assert found == HubLink("https://site.example/relative-is-ok", FEED)
    else:
        assert found is None


def test_a_refused_hub_falls_through_to_the_next_one() -> None:
    assert find_hub({}, ["file:///x", "https://hub.example/"], None, FEED) == HubLink("https://hub.example/", FEED)


def test_the_topic_never_carries_credentials_nor_a_local_path() -> None:
    # a self link with credentials is not sent to the hub: the fetched URL is the topic
    assert find_hub({}, ["https://hub.example/"], "https://u:p@site.example/feed/", FEED) == HubLink(
        "https://hub.example/", FEED)
    # a feed fetched with credentials cannot be a hub's topic at all (the hub could not fetch it)
    assert find_hub({}, ["https://hub.example/"], None, "https://u:p@site.example/feed/") is None
    # nor a local file
    assert find_hub({}, ["https://hub.example/"], None, "file:///srv/feed.xml") is None


def test_a_json_feed_names_its_websub_hubs_and_feed_url() -> None:
    data = {"version": "https://jsonfeed.org/version/1.1", "title": "t", "feed_url": "https://site.example/feed/json",
            "hubs": [{"type": "rssCloud", "url": "https://cloud.example/"}, {"type": "WebSub", "url": "https://hub/"},
                     "junk", {"type": "websub", "url": 5}], "items": []}
    assert jsonfeed_links(data) == (["https://hub/"], "https://site.example/feed/json")
    doc = parse_jsonfeed(orjson.dumps(data), source="s")
    assert (doc.hubs, doc.self_url) == (("https://hub/",), "https://site.example/feed/json")


def test_only_the_head_of_a_huge_document_is_read() -> None:
    body = b"<rss><channel>" + b"<x/>" * (HEAD_BYTES // 4) + b'<atom:link rel="hub" href="https://late/"/>'
    assert xml_links(body) == ([], None)
