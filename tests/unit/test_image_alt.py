"""The featured image's alt text from every source kind: Media RSS, enclosures, ``<img alt>``, JSON Feed.

Both RSS paths (fastfeedparser on well-formed feeds, feedparser on broken ones) must give the same
alt text; alt text is hostile input, cleaned like a title.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.domain.detect import normalise
from bot.domain.limits import ALT_CHARS
from bot.domain.models import ParsedPost
from bot.sources.jsonfeed import parse_jsonfeed
from bot.sources.markup import first_image, html_alt
from bot.sources.rss import fallback_reason, parse_compat, parse_fast, parse_rss

HEAD = ('<?xml version="1.0" encoding="UTF-8"?><rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/" '
        'xmlns:content="http://purl.org/rss/1.0/modules/content/"><channel><title>T</title>'
        '<link>https://s.example/</link>')
TAIL = "</channel></rss>"


def item(n: int, inner: str) -> str:
    return f"<item><title>Post {n}</title><link>https://s.example/p/{n}/</link><guid>g{n}</guid>{inner}</item>"


def feed(*items: str) -> bytes:
    return (HEAD + "".join(items) + TAIL).encode()


def both_paths(body: bytes) -> tuple[tuple[ParsedPost, ...], tuple[ParsedPost, ...]]:
    reason, root = fallback_reason(body)
    assert reason is None, reason
    fast, _ = parse_fast(body, root=root, base_url="https://s.example/")
    slow, _ = parse_compat(body, base_url="https://s.example/")
    return fast, slow


def alts(body: bytes) -> list[tuple[str | None, str | None]]:
    fast, slow = both_paths(body)
    assert [(p.image_url, p.image_alt) for p in fast] == [(p.image_url, p.image_alt) for p in slow]
    return [(p.image_url, p.image_alt) for p in fast]


def test_media_rss_description_then_title_then_group_then_item() -> None:
    body = feed(
        item(1, '<media:content url="https://s.example/a.jpg" medium="image">'
                "<media:title>Kite title</media:title><media:description>A red &amp; blue kite</media:description>"
                "</media:content><description>the summary</description>"),
        item(2, '<media:content url="/b.jpg" medium="image"><media:title> Only   a title </media:title>'
                "</media:content>"),
        item(3, '<media:group><media:content url="https://s.example/c.jpg" medium="image"/>'
                "<media:description>Group text</media:description></media:group>"),
        item(4, '<media:thumbnail url="https://s.example/t.jpg"/><media:description>Item text</media:description>'),
        item(5, '<media:content url="https://s.example/d.jpg" medium="image"/>'),
    )
    assert alts(body) == [("https://s.example/a.jpg", "A red & blue kite"),
                          ("https://s.example/b.jpg", "Only a title"),
                          ("https://s.example/c.jpg", "Group text"),
                          ("https://s.example/t.jpg", "Item text"),
                          ("https://s.example/d.jpg", None)]


def test_an_html_description_becomes_text() -> None:
    body = feed(item(1, '<media:content url="https://s.example/a.jpg" medium="image">'
                        '<media:description type="html">&lt;b&gt;Bold&lt;/b&gt; &amp;amp; plain</media:description>'
                        "</media:content>"))
    assert alts(body) == [("https://s.example/a.jpg", "Bold & plain")]


def test_an_enclosure_takes_the_alt_of_the_same_image_in_the_content() -> None:
    content = ('<content:encoded><![CDATA[<p><img src="/other.png" alt="Not this"> '
               '<img alt="The enclosure, described" src="https://s.example/e.png" /></p>]]></content:encoded>')
    body = feed(item(1, '<enclosure url="https://s.example/e.png" type="image/png" length="9"/>' + content),
                item(2, '<enclosure url="https://s.example/f.png" type="image/png" length="9"/>'
                        "<description>no images</description>"))
    assert alts(body) == [("https://s.example/e.png", "The enclosure, described"),
                          ("https://s.example/f.png", None)]


def test_the_first_img_gives_its_own_alt_and_an_empty_alt_is_none() -> None:
    body = feed(item(1, '<content:encoded><![CDATA[<p><img class="wp" src="/one.jpg" alt="Students &amp; teachers'
                        '" /><img src="/two.jpg" alt="second"></p>]]></content:encoded>'),
                item(2, "<content:encoded><![CDATA[<img src='/x.jpg' alt=''>]]></content:encoded>"),
                item(3, '<content:encoded><![CDATA[<img src="/y.jpg">]]></content:encoded>'),
                item(4, '<description><![CDATA[<img alt="from the summary" src="/z.jpg">]]></description>'))
    assert alts(body) == [("https://s.example/one.jpg", "Students & teachers"),
                          ("https://s.example/x.jpg", None),
                          ("https://s.example/y.jpg", None),
                          ("https://s.example/z.jpg", "from the summary")]


def test_a_broken_feed_keeps_its_media_alts_when_items_line_up() -> None:
    body = feed(item(1, '<media:content url="https://s.example/a.jpg" medium="image">'
                        "<media:description>Kite</media:description></media:content>"
                        "<description>R&D and &nbsp; more</description>"))  # bare & and an HTML entity
    doc = parse_rss(body, source="t", base_url="https://s.example/")
    assert doc.parser == "feedparser"
    assert [(p.image_url, p.image_alt) for p in doc.posts] == [("https://s.example/a.jpg", "Kite")]


def test_hostile_alt_text_is_cleaned_like_a_title_and_bounded_when_normalised() -> None:
    huge = "x" * (ALT_CHARS + 500)
    body = feed(item(1, '<media:content url="https://s.example/a.jpg" medium="image"><media:description>'
                        "  line\none\t\u00a0 &amp;#8217;quoted&amp;#8217;  </media:description></media:content>"),
                item(2, f'<media:content url="https://s.example/b.jpg" medium="image"><media:description>{huge}'
                        "</media:description></media:content>"))
    posts = parse_rss(body, source="t", base_url="https://s.example/").posts
    assert posts[0].image_alt == "line one ’quoted’"
    (stored,) = normalise("t", [posts[1]])
    assert stored.image_alt is not None and len(stored.image_alt) <= ALT_CHARS


def test_an_alt_without_a_followable_image_is_dropped() -> None:
    parsed = ParsedPost(title="t", url="https://s.example/p/", image_url="file:///etc/passwd", image_alt="secret")
    (post,) = normalise("t", [parsed])
    assert post.image_url is None and post.image_alt is None


def test_html_alt_reads_attributes_in_any_order_and_quoting() -> None:
    assert html_alt('<img alt=Unquoted src="/a.png">', "https://s/a.png", "https://s/") == "Unquoted"
    assert html_alt("<IMG SRC='/a.png' ALT='Upper &quot;case&quot;'>", "https://s/a.png", "https://s/") == \
        'Upper "case"'
    assert html_alt('<img data-alt="no" src="/a.png" alt="yes">', "https://s/a.png", "https://s/") == "yes"
    assert html_alt('<img src="/a.png" title="t">', "https://s/a.png", "https://s/") is None
    assert html_alt('<img src="/a.png" alt="a > b">', None, first=True) is None  # no image, nothing to describe
    assert html_alt('<img src="/a.png" alt="a > b">', "x", first=True) == "a > b"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.sampled_from(list('<img src=alt"\' />x&;')), max_size=200))
def test_html_alt_never_fails_on_hostile_markup(text: str) -> None:
    image = first_image(text, "https://s/")
    alt = html_alt(text, image, "https://s/", first=True)
    assert alt is None or (alt == alt.strip() and "\n" not in alt and alt)


def test_json_feed_alt_comes_from_the_content() -> None:
    body = json.dumps({"version": "https://jsonfeed.org/version/1.1", "title": "T", "items": [
        {"id": "1", "url": "https://s/1", "title": "One", "image": "https://s/hero.jpg",
         "content_html": '<p><img src="/hero.jpg" alt="The hero image"></p>'},
        {"id": "2", "url": "https://s/2", "title": "Two", "content_html": '<img src="/in.jpg" alt="Inline">'},
        {"id": "3", "url": "https://s/3", "title": "Three", "image": "https://s/lone.jpg",
         "content_html": '<img src="/other.jpg" alt="Another image">'},
    ]}).encode()
    posts = parse_jsonfeed(body, source="j", base_url="https://s/").posts
    assert [(p.image_url, p.image_alt) for p in posts] == [("https://s/hero.jpg", "The hero image"),
                                                            ("https://s/in.jpg", "Inline"),
                                                            ("https://s/lone.jpg", None)]


@pytest.mark.parametrize("count", [1, 3])
def test_many_items_keep_their_own_media_alts(count: int) -> None:
    items = [item(n, f'<media:content url="https://s.example/{n}.jpg" medium="image">'
                     f"<media:description>Alt {n}</media:description></media:content>") for n in range(count)]
    assert alts(feed(*items)) == [(f"https://s.example/{n}.jpg", f"Alt {n}") for n in range(count)]
