"""RSS/Atom parsing: the corpus against its ground truth, the fallback, and "not a feed" reasons."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.domain.models import ParsedPost
from bot.errors import FeedParseError, SourceError
from bot.sources.rss import _IMG_SRC, _img_src, clean_text, decode_entities, first_image, newest, parse_rss

FEEDS = Path(__file__).resolve().parents[1] / "data" / "feeds"
SAMPLE = Path(__file__).resolve().parents[2] / "config" / "sample-archive.xml"
EXPECTED: list[dict[str, Any]] = json.loads((FEEDS / "expected.json").read_text(encoding="utf-8"))


def parse(name: str) -> Any:
    return parse_rss((FEEDS / name).read_bytes(), source="corpus")


def assert_matches(post: ParsedPost, want: dict[str, Any], *, image: bool = True) -> None:
    assert post.title == want["title"]
    assert post.url == want["url"]
    assert post.guid == want["guid"]
    assert list(post.tags) == want["tags"]
    assert post.published == datetime.fromisoformat(want["published"])
    assert post.summary_html == want["summary_html"]
    assert post.content_html == want["content_html"]
    assert post.author == want["author"]
    if image:
        assert post.image_url == want["image_url"]


@pytest.mark.parametrize("name", ["wp-rss.xml", "bom.xml", "blank-lines.xml"])
def test_well_formed_wordpress_rss_matches_ground_truth_on_the_fast_path(name: str) -> None:
    doc = parse(name)
    assert doc.parser == "fastfeedparser"
    assert doc.fallback_reason is None
    assert len(doc.posts) == len(EXPECTED) == 10
    for post, want in zip(doc.posts, EXPECTED, strict=True):
        assert_matches(post, want)
        assert post.updated is None  # RSS items carry no updated date
    assert doc.title == "Iraq protest against Iran’s meddling – Archive"


def test_atom_matches_ground_truth() -> None:
    doc = parse("atom.xml")
    assert doc.parser == "fastfeedparser"
    for post, want in zip(doc.posts, EXPECTED, strict=True):
        assert_matches(post, want, image=False)  # Atom carries no media:content: the first <img> wins
        assert post.updated == datetime.fromisoformat(want["updated"])
        assert post.image_url is not None and post.image_url.endswith(".jpg")
        assert post.image_url in post.content_html


def test_titles_have_entities_decoded_and_keep_curly_punctuation() -> None:
    doc = parse("wp-rss.xml")
    titles = {p.title for p in doc.posts}
    assert "Iraq After Soleimani: “A Country That Wants Itself Back”" in titles
    assert "Tehran’s “Strategic Depth” & the Cost of Meddling" in titles


def test_wordpress_categories_and_tags_all_become_tags_with_both_apostrophes_kept() -> None:
    doc = parse("wp-rss.xml")
    names = {t for p in doc.posts for t in p.tags}
    assert "Iraq protest against Iran’s meddling" in names
    assert "Iraq protest against Iran's meddling" in names
    assert "Editor’s picks" in names
    assert "Human Rights & Justice" in names


def test_dates_are_aware_utc() -> None:
    for post in parse("wp-rss.xml").posts + parse("atom.xml").posts:
        assert post.published is not None
        assert post.published.tzinfo is UTC


def test_featured_image_order_media_then_enclosure_then_first_img() -> None:
    posts = parse("wp-rss.xml").posts
    assert posts[2].image_url == EXPECTED[2]["image_url"]
    assert posts[2].image_url.endswith("media-3113.jpg")
    assert posts[4].image_url.endswith("enclosure-3039.jpg")
    assert posts[0].image_url == EXPECTED[0]["image_url"]
    assert posts[0].image_url.endswith("students-in-iraq-keep-up.jpg")


def test_empty_feed_is_no_posts_not_an_error() -> None:
    doc = parse("empty.xml")
    assert doc.posts == ()
    assert doc.parser == "fastfeedparser"


# --- malformed feeds: feedparser takes over ------------------------------------


@pytest.mark.parametrize("name", [
    "unescaped-amp.xml", "undefined-entities.xml", "missing-title-close.xml",
    "missing-category-close.xml", "latin1-declared-utf8.xml",
])
def test_malformed_feeds_fall_back_to_feedparser(name: str) -> None:
    doc = parse(name)
    assert doc.parser == "feedparser"
    assert doc.fallback_reason
    assert doc.notes()[0].startswith("parsed with feedparser: ")
    assert doc.posts


def test_a_truncated_feed_is_refused_not_read_in_part() -> None:
    with pytest.raises(FeedParseError, match="ends early"):
        parse("truncated.xml")


def test_windows_1252_declared_as_utf8_is_decoded_first_and_takes_the_fast_path() -> None:
    doc = parse("utf8-declared-cp1252.xml")
    assert doc.parser == "fastfeedparser"
    assert doc.notes()[0].endswith("decoded as windows-1252")


@pytest.mark.parametrize("name", ["latin1-declared-utf8.xml", "utf8-declared-cp1252.xml"])
def test_encoding_lies_still_give_the_true_text(name: str) -> None:
    doc = parse(name)
    assert len(doc.posts) == 10
    for post, want in zip(doc.posts, EXPECTED, strict=True):
        assert post.title == want["title"]
        assert post.url == want["url"]
        assert post.guid == want["guid"]
        assert list(post.tags) == want["tags"]
        assert "\ufffd" not in post.summary_html and "Ã" not in post.title


def test_unescaped_ampersand_keeps_every_query_parameter() -> None:
    posts = parse("unescaped-amp.xml").posts
    assert posts[4].url == EXPECTED[4]["url"] + "?utm_source=rss&utm_medium=rss"
    assert posts[2].title.startswith("Tom & Jerry go to R&D")
    assert [p.guid for p in posts] == [w["guid"] for w in EXPECTED]


def test_html_entities_undefined_in_xml_are_decoded() -> None:
    # &nbsp; decodes to U+00A0, which title whitespace-collapsing turns into a plain space
    assert parse("undefined-entities.xml").posts[1].title == "Café news … today"


def test_missing_category_close_keeps_links_guids_and_other_items_categories() -> None:
    posts = parse("missing-category-close.xml").posts
    assert [p.url for p in posts] == [w["url"] for w in EXPECTED]
    assert [p.guid for p in posts] == [w["guid"] for w in EXPECTED]
    for i, (post, want) in enumerate(zip(posts, EXPECTED, strict=True)):
        if i != 5:
            assert list(post.tags) == want["tags"]
    assert set(posts[5].tags) <= set(EXPECTED[5]["tags"])


def test_missing_title_close_drops_the_unidentifiable_remains_and_keeps_the_rest() -> None:
    doc = parse("missing-title-close.xml")
    assert doc.skipped == 1
    assert any("without title, link or id" in n for n in doc.notes())
    assert [p.guid for p in doc.posts] == [w["guid"] for i, w in enumerate(EXPECTED) if i != 3]


# --- not a feed ----------------------------------------------------------------


def test_html_page_is_a_clear_parse_error_suggesting_auto() -> None:
    page = b"<!DOCTYPE html><html><head><title>Archive</title></head><body>Hi</body></html>"
    with pytest.raises(FeedParseError) as info:
        parse_rss(page, source="news")
    assert info.value.source == "news"
    assert "HTML page, not an RSS or Atom feed" in str(info.value)
    assert 'set kind = "auto"' in str(info.value)


def test_html_without_doctype_and_with_hint_off() -> None:
    with pytest.raises(FeedParseError) as info:
        parse_rss(b"\n<html><body>x</body></html>", source="s", hint=False)
    assert "HTML page" in info.value.reason
    assert "kind" not in info.value.reason


@pytest.mark.parametrize(("body", "words"), [
    (b'{"version": "https://jsonfeed.org/version/1.1", "items": []}', 'kind = "jsonfeed"'),
    (b'[{"id": 1, "title": {"rendered": "x"}, "link": "https://s/"}]', 'kind = "wordpress"'),
    (b'{"ok": true}', "JSON that is not"),
    (b"", "empty body"),
    (b"   \n", "empty body"),
    (b"\x89PNG\r\n\x1a\n....", "did not return an RSS or Atom feed"),
    (b"<notafeed><x/></notafeed>", "did not return an RSS or Atom feed"),
    (b"<rss version='2.0'><channel><title>cut", "the document ends early (truncated at byte 38)"),
])
def test_non_feeds_raise_feed_parse_error_with_a_reason(body: bytes, words: str) -> None:
    with pytest.raises(FeedParseError) as info:
        parse_rss(body, source="s")
    assert words in info.value.reason
    assert isinstance(info.value, SourceError)


def test_a_str_is_refused_so_fastfeedparser_never_fetches_a_url() -> None:
    with pytest.raises(TypeError):
        parse_rss("https://example.org/feed/", source="s")  # type: ignore[arg-type]


# --- normalisation details -----------------------------------------------------


RSS_HEAD = (b'<?xml version="1.0" encoding="UTF-8"?><rss version="2.0" '
            b'xmlns:content="http://purl.org/rss/1.0/modules/content/" '
            b'xmlns:media="http://search.yahoo.com/mrss/" xmlns:dc="http://purl.org/dc/elements/1.1/">'
            b"<channel><title>t</title>")


def one(item: bytes, *, base_url: str | None = None) -> ParsedPost:
    doc = parse_rss(RSS_HEAD + b"<item>" + item + b"</item></channel></rss>", source="s", base_url=base_url)
    assert len(doc.posts) == 1
    return doc.posts[0]


def test_double_escaped_title_and_offset_date() -> None:
    post = one(b"<title>A &amp;amp; B &amp;#8217; R&amp;D</title><link>https://s/a</link>"
               b"<pubDate>Sun, 16 Feb 2020 09:30:00 +0300</pubDate>")
    assert post.title == "A & B ’ R&D"
    assert post.published == datetime(2020, 2, 16, 6, 30, tzinfo=UTC)


def test_no_guid_means_guid_none_and_relative_links_resolve() -> None:
    post = one(b"<title>x</title><link>/2020/a/</link>", base_url="https://site.example/feed/")
    assert post.guid is None
    assert post.url == "https://site.example/2020/a/"


def test_missing_description_uses_the_content_like_feedparser() -> None:
    post = one(b"<title>x</title><guid>g1</guid><content:encoded><![CDATA[<p>Body <b>bold</b></p>]]>"
               b"</content:encoded>")
    assert post.summary_html == "<p>Body <b>bold</b></p>"
    assert post.content_html == "<p>Body <b>bold</b></p>"


def test_thumbnail_when_no_media_content_and_image_enclosure_only_when_image() -> None:
    thumb = one(b'<title>x</title><guid>g</guid><media:thumbnail url="https://s/t.jpg"/>'
                b'<enclosure url="https://s/a.mp3" type="audio/mpeg" length="1"/>')
    assert thumb.image_url == "https://s/t.jpg"
    audio = one(b'<title>x</title><guid>g</guid><enclosure url="https://s/a.mp3" type="audio/mpeg" length="1"/>')
    assert audio.image_url is None


def test_dc_creator_is_the_author_and_duplicate_categories_collapse() -> None:
    post = one(b"<title>x</title><guid>g</guid><dc:creator><![CDATA[ Laila  F. ]]></dc:creator>"
               b"<category>MEK</category><category><![CDATA[MEK]]></category><category> </category>"
               b"<category>Iraq</category>")
    assert post.author == "Laila F."
    assert post.tags == ("MEK", "Iraq")


def test_rss_1_0_rdf() -> None:
    body = (b'<?xml version="1.0"?><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" '
            b'xmlns="http://purl.org/rss/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/">'
            b'<channel rdf:about="https://s/"><title>t</title><link>https://s/</link></channel>'
            b'<item rdf:about="https://s/1"><title>One</title><link>https://s/1</link>'
            b"<dc:subject>MEK</dc:subject><dc:date>2020-02-16T09:30:00Z</dc:date></item></rdf:RDF>")
    doc = parse_rss(body, source="s")
    assert [p.title for p in doc.posts] == ["One"]
    assert doc.posts[0].url == "https://s/1"
    assert doc.posts[0].published == datetime(2020, 2, 16, 9, 30, tzinfo=UTC)


def test_sample_archive_is_well_formed_and_models_the_tag_page() -> None:
    doc = parse_rss(SAMPLE.read_bytes(), source="archive")
    assert doc.parser == "fastfeedparser"
    assert 8 <= len(doc.posts) <= 10
    tags = {t for p in doc.posts for t in p.tags}
    assert {"Iraq protest against Iran’s meddling", "Iraq protest against Iran's meddling", "MEK",
            "Iraqis' Uprising", "Mujahedin-e Khalq", "Editor’s picks"} <= tags
    assert all(p.guid and p.guid.startswith("https://archive.example.org/?p=") for p in doc.posts)
    assert any("&" in p.title and "“" in p.title for p in doc.posts)
    assert all(p.author and p.published and p.image_url for p in doc.posts)
    dates = [p.published for p in doc.posts if p.published]
    assert (max(dates) - min(dates)).days >= 14


def test_helpers() -> None:
    assert decode_entities("R&D &amp; co &#8217; &hellip;") == "R&D & co ’ …"
    assert clean_text("  a \n b ") == "a b"
    assert first_image('<p><img alt="x" src="/a.png?x=1&amp;y=2"></p>', "https://s/p/") == "https://s/a.png?x=1&y=2"
    assert first_image("<img src='data:image/png;base64,AA'>") is None
    posts = parse("wp-rss.xml").posts
    assert newest(posts, 3) == posts[:3]
    shuffled = (posts[5], posts[0], posts[9], posts[1])
    assert newest(shuffled, 2) == (posts[0], posts[1])


def test_utf16_feed_goes_to_feedparser_with_the_true_text() -> None:
    text = (FEEDS / "wp-rss.xml").read_text(encoding="utf-8").replace('encoding="UTF-8"', 'encoding="UTF-16"')
    doc = parse_rss(text.encode("utf-16"), source="s")
    assert doc.parser == "feedparser"
    assert [p.title for p in doc.posts] == [w["title"] for w in EXPECTED]


def test_entity_expansion_bomb_is_not_expanded() -> None:
    levels = ['<!ENTITY a "aaaaaaaaaa">'] + [
        f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(7)]
    body = (f'<?xml version="1.0"?><!DOCTYPE rss [{"".join(levels)}]><rss version="2.0"><channel><title>t'
            f"</title><item><title>&h;</title><guid>g</guid></item></channel></rss>").encode()
    doc = parse_rss(body, source="s")
    assert all(len(p.title) < 1000 for p in doc.posts)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(["<img", "<IMG", "<imgx", " ", "src", "data-src", "=", '"a"', "'b'", "c", ">",
                                 "<", '"']), max_size=20).map("".join))
def test_first_image_finds_what_a_plain_regex_search_found(text: str) -> None:
    """The linear ``<img`` scan returns the match the old quadratic ``search`` returned (issue 15)."""
    old = _IMG_SRC.search(text)
    new = _img_src(text)
    assert (old and old.span()) == (new and new.span())
