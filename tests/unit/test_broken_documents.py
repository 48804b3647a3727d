"""Broken documents: a cut-off feed is refused whole; bad bytes stay in their item (issue 15, defects 3-4).

* A document that ends before its root element closes is refused with a
  ``FeedParseError`` (nothing of it is used), at every cut position.
* From a document the strict parser rejects for another reason, only items
  whose element is closed are used.
* Invalid UTF-8 in a UTF-8 document becomes U+FFFD where it is; the valid
  items keep their text (never a whole-document windows-1252 re-decode). An
  item whose tags, guid or link hold U+FFFD is held back, never routed.
* A document declared UTF-8 whose non-ASCII bytes are mostly not UTF-8 is a
  single-byte document: windows-1256 when it reads as Arabic-script words,
  else windows-1252.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.domain.models import ParsedPost
from bot.errors import FeedParseError
from bot.sources.integrity import repair_encoding, scan_structure
from bot.sources.jsonfeed import parse_jsonfeed
from bot.sources.rss import parse_compat, parse_rss

FEEDS = Path(__file__).resolve().parents[1] / "data" / "feeds"
WP_RSS = (FEEDS / "wp-rss.xml").read_bytes()
FEED_JSON = (FEEDS / "feed.json").read_bytes()
WP_REST = (FEEDS / "wp-rest-posts.json").read_bytes()

HEAD = ('<?xml version="1.0" encoding="UTF-8"?><rss version="2.0" '
        'xmlns:content="http://purl.org/rss/1.0/modules/content/"><channel><title>أرشيف</title>')


def item(n: int, title: str, tags: list[str], description: str = "Body") -> str:
    cats = "".join(f"<category><![CDATA[{t}]]></category>" for t in tags)
    return (f"<item><title>{title}</title><link>https://s.example/p/{n}/</link>"
            f'<guid isPermaLink="false">https://s.example/?p={n}</guid>{cats}'
            f"<description><![CDATA[{description}]]></description></item>")


def feed(*items: str) -> str:
    return HEAD + "".join(items) + "</channel></rss>"


def by_guid(posts: tuple[ParsedPost, ...]) -> dict[str, ParsedPost]:
    return {p.guid or "": p for p in posts}


# --- truncation -------------------------------------------------------------------


def test_the_truncated_corpus_feed_is_refused_with_the_byte_count() -> None:
    body = (FEEDS / "truncated.xml").read_bytes()
    with pytest.raises(FeedParseError) as info:
        parse_rss(body, source="corpus")
    assert info.value.reason == f"the document ends early (truncated at byte {len(body)}); nothing recorded"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(min_value=1, max_value=WP_RSS.rindex(b"</rss>") + len(b"</rss")))
def test_every_cut_of_a_feed_before_its_root_closes_is_refused(cut: int) -> None:
    with pytest.raises(FeedParseError) as info:
        parse_rss(WP_RSS[:cut], source="s")
    if cut > WP_RSS.index(b"<channel>"):
        assert info.value.reason == f"the document ends early (truncated at byte {cut}); nothing recorded"


@pytest.mark.parametrize("marker", [b"</guid>", b"<title>", b"<category>", b"</item>", b"</channel>"])
def test_named_cut_points_are_truncations(marker: bytes) -> None:
    at = WP_RSS.index(marker) + len(marker) // 2
    with pytest.raises(FeedParseError, match=r"ends early \(truncated at byte \d+\)"):
        parse_rss(WP_RSS[:at], source="s")


def test_the_whole_feed_and_trailing_garbage_after_the_root_are_not_truncations() -> None:
    assert len(parse_rss(WP_RSS, source="s").posts) == 10
    doc = parse_rss(WP_RSS + b"\n<br />\n<b>Warning</b>: cannot modify header information", source="s")
    assert doc.parser == "feedparser"
    assert len(doc.posts) == 10


def test_an_unclosed_item_in_a_closed_document_is_dropped_and_the_others_kept() -> None:
    text = feed(item(1, "One", ["MEK"]), item(2, "Two &amp; R&D", ["Iraq"]), item(3, "Three", ["NCRI"]))
    broken = text.replace("</description></item><item><title>Three", "</description><item><title>Three")
    doc = parse_rss(broken.encode(), source="s")
    assert [p.guid for p in doc.posts] == ["https://s.example/?p=1", "https://s.example/?p=3"]
    assert any("1 item that is not closed" in n for n in doc.notes())


def test_scan_structure_skips_markup_inside_cdata_and_comments() -> None:
    body = (b'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY a "x">]><rss><channel>'
            b"<item><description><![CDATA[<item> </rss> <entry>]]></description></item>"
            b"<!-- <item> </rss> --><item/></channel></rss>")
    structure = scan_structure(body)
    assert structure.root_closed
    assert structure.items == (True, True)
    cut = scan_structure(body[:body.index(b"]]>")])
    assert not cut.root_closed


def test_an_item_like_child_is_not_an_item_but_a_second_item_start_means_the_first_never_closed() -> None:
    body = (b'<rss xmlns:x="urn:x"><channel><item><x:item>z</x:item><title>a</title></item>'
            b"<item><title>b</title><item><title>c</title></item></channel></rss>")
    assert scan_structure(body).items == (True, False, True)
    doc = parse_rss(body, source="s")
    assert [p.title for p in doc.posts] == ["a", "c"]
    assert doc.unclosed == 1


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_a_cut_json_feed_or_wp_rest_answer_is_a_parse_error(data: st.DataObject) -> None:
    json_cut = data.draw(st.integers(1, len(FEED_JSON.rstrip()) - 1))
    with pytest.raises(FeedParseError):
        parse_jsonfeed(FEED_JSON[:json_cut], source="s")
    rest_cut = data.draw(st.integers(1, len(WP_REST.rstrip()) - 1))
    with pytest.raises(FeedParseError):
        parse_jsonfeed(WP_REST[:rest_cut], source="s")  # not even a JSON Feed; never a silent success


# --- bad bytes ----------------------------------------------------------------------


def test_one_bad_byte_in_one_item_does_not_re_decode_the_arabic_items() -> None:
    text = feed(item(1, "عاجل: تظاهرات", ["إيران", "Iraq"]), item(2, "Café", ["MEK"], "price 5 BAD"))
    body = text.encode().replace(b"BAD", b"\x80\xff")
    doc = parse_rss(body, source="s")
    posts = by_guid(doc.posts)
    assert posts["https://s.example/?p=1"].tags == ("إيران", "Iraq")
    assert posts["https://s.example/?p=1"].title == "عاجل: تظاهرات"
    assert posts["https://s.example/?p=2"].title == "Café"
    assert posts["https://s.example/?p=2"].summary_html == "price 5 \ufffd\ufffd"
    assert doc.title == "أرشيف"
    assert any("2 invalid UTF-8 sequences replaced by U+FFFD" in n for n in doc.notes())


def test_an_item_whose_tag_holds_a_bad_byte_is_held_back_not_routed() -> None:
    text = feed(item(1, "Good", ["إيران"]), item(2, "Damaged", ["إيرBADان", "MEK"]))
    doc = parse_rss(text.encode().replace(b"BAD", b"\xd8"), source="s")
    assert [p.guid for p in doc.posts] == ["https://s.example/?p=1"]
    assert doc.held_back == 1
    assert any("held back 1 item" in n for n in doc.notes())


def test_a_tag_with_a_replacement_character_in_the_feed_itself_is_held_back_too() -> None:
    doc = parse_rss(feed(item(1, "x", ["إير\ufffdان"])).encode(), source="s")
    assert doc.posts == ()
    assert doc.held_back == 1


@pytest.mark.parametrize("words", [
    ["إيران", "العراق", "المقاومة الإيرانية"],  # Arabic
    ["اپوزيسيون ايران", "گزارش", "پيکان"],  # Persian in windows-1256 (پ after ا is a valid UTF-8 pair)
])
def test_windows_1256_declared_as_utf8_is_read_as_windows_1256(words: list[str]) -> None:
    text = feed(*(item(i, f"خبر {w}", [w, "MEK"]) for i, w in enumerate(words)))
    body = text.encode("cp1256")
    doc = parse_rss(body, source="s")
    assert [p.tags for p in doc.posts] == [(w, "MEK") for w in words]
    assert doc.posts[0].title == f"خبر {words[0]}"
    assert any("decoded as windows-1256" in n for n in doc.notes())


def test_windows_1252_declared_as_utf8_is_still_read_as_windows_1252() -> None:
    doc = parse_rss((FEEDS / "utf8-declared-cp1252.xml").read_bytes(), source="corpus")
    assert doc.posts[1].title == "Crackdown Fails to Quiet Iraq’s Streets"
    assert any("decoded as windows-1252" in n for n in doc.notes())


def test_repair_encoding_leaves_valid_utf8_and_other_declarations_alone() -> None:
    assert repair_encoding(WP_RSS) == (WP_RSS, None)
    latin = b'<?xml version="1.0" encoding="ISO-8859-1"?><rss>\xe9</rss>'
    assert repair_encoding(latin) == (latin, None)
    bom = b'\xef\xbb\xbf<?xml version="1.0" encoding="utf-8"?><rss><channel><title>x\x92s</title></channel></rss>'
    fixed, note = repair_encoding(bom)
    assert fixed.startswith(b"\xef\xbb\xbf") and "x’s".encode() in fixed and note


def test_fast_path_and_feedparser_agree_on_a_repaired_document() -> None:
    body = feed(item(1, "إيران", ["إيران"]), item(2, "B", ["MEK"], "x BAD y")).encode().replace(b"BAD", b"\xc3")
    ours = parse_rss(body, source="s")
    assert ours.parser == "fastfeedparser"
    repaired, _ = repair_encoding(body)
    reference, _ = parse_compat(repaired)
    assert ours.posts == reference


def test_a_json_feed_with_a_bad_byte_keeps_its_other_items() -> None:
    body = ('{"version": "https://jsonfeed.org/version/1.1", "title": "t", "items": ['
            '{"id": "1", "url": "https://s.example/1", "title": "ok", "tags": ["إيران"]},'
            '{"id": "2", "url": "https://s.example/2", "title": "bad", "tags": ["MEK"], "summary": "a BAD b"},'
            '{"id": "3", "url": "https://s.example/3", "title": "tag", "tags": ["إيرBADان"]}]}').encode()
    doc = parse_jsonfeed(body.replace(b"BAD", b"\xff"), source="s")
    assert [p.guid for p in doc.posts] == ["1", "2"]
    assert doc.posts[0].tags == ("إيران",)
    assert doc.posts[1].summary_html == "a \ufffd b"
    assert doc.held_back == 1
