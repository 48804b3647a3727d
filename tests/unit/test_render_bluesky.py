"""Bluesky rendering: the text within 300 graphemes and 3,000 bytes, facets whose UTF-8 byte ranges cover
exactly what they name (emoji, Arabic, combining marks before them), the link card, the record key."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.domain.models import Post
from bot.publishers.bluesky.records import TID_PATTERN, TID_SPAN_BITS, TID_START, decode_tid, encode_tid, record_key
from bot.render.bluesky import (
    DEFAULT_TEMPLATE_CARD,
    LINK,
    MAX_BYTES,
    MAX_GRAPHEMES,
    TAG,
    BlueskyRenderOptions,
    bluesky_measure,
    facets,
    render_bluesky,
    utf8_length,
)
from bot.render.fit import RenderError
from bot.render.message import RenderedMessage, RenderEnv
from bot.render.text import grapheme_length
from bot.testing import sample_post
from tests.unit.test_render_properties import EMOJI, PROPERTY_SETTINGS, posts, urls

ARABIC = ["مرحبا", "بالعالم", "الحرية", "بغداد", "ایران", "می‌آید"]
COMBINING = ["cafe\u0301", "Zalgo\u0300\u0301\u0302\u0303", "n\u0303", "a\u20dd", "e\u0327\u0306"]


def options(**overrides: Any) -> BlueskyRenderOptions:
    return BlueskyRenderOptions.model_validate({"name": "bsky", "platform": "bluesky", **overrides})


def sliced(text: str, facet: dict[str, Any]) -> str:
    index = facet["index"]
    return text.encode("utf-8")[index["byteStart"]:index["byteEnd"]].decode("utf-8")  # raises mid-character


def check_facets(text: str, found: list[dict[str, Any]]) -> None:
    """What every facet list must satisfy: ranges inside the text on character boundaries, in order, not
    overlapping, each covering exactly the URL or ``#tag`` it names."""
    end = 0
    size = utf8_length(text)
    for facet in found:
        start, stop = facet["index"]["byteStart"], facet["index"]["byteEnd"]
        assert end <= start < stop <= size, facet
        end = stop
        [feature] = facet["features"]
        covered = sliced(text, facet)
        if feature["$type"] == LINK:
            assert covered == feature["uri"] and re.match(r"https?://\S", covered, re.IGNORECASE)
        else:
            assert feature["$type"] == TAG
            assert covered in ("#" + feature["tag"], "＃" + feature["tag"])
            assert grapheme_length(feature["tag"]) <= 64 and utf8_length(feature["tag"]) <= 640
            assert not feature["tag"].isdigit()


# -- properties ---------------------------------------------------------------------------------------

bluesky_options = st.builds(
    BlueskyRenderOptions, name=st.just("bsky"), platform=st.just("bluesky"),
    link_card=st.booleans(), link_in_text=st.booleans(), card_image=st.booleans(),
    langs=st.sampled_from([(), ("en",), ("fa", "ar", "en")]),
    template=st.sampled_from([None, "{{ title|upper }} — {{ excerpt }} {{ link }} {{ hashtags }} {{ source }}",
                              "{{ link }}"]),
    hashtags=st.booleans(), max_hashtags=st.integers(min_value=0, max_value=30),
    excerpt_length=st.one_of(st.none(), st.sampled_from([0, 10, 100, 1000, 5000])),
)


@PROPERTY_SETTINGS
@given(post=posts(), opts=bluesky_options, plain=st.booleans())
def test_bluesky_fits_and_its_facets_cover_what_they_name(post: Post, opts: BlueskyRenderOptions,
                                                          plain: bool) -> None:
    try:
        message = render_bluesky(post, opts, RenderEnv(), plain=plain)
    except RenderError:  # right only for a post without a link (and nothing else), or a link too long alone
        assert post.url is None or bluesky_measure(post.url) > (285 if plain else MAX_GRAPHEMES)
        return
    text = message.text
    assert grapheme_length(text) == message.length <= MAX_GRAPHEMES == message.limit
    assert utf8_length(text) <= MAX_BYTES
    card = message.extra["card"]
    assert (card is not None) == bool(opts.link_card and post.url and not plain)
    if card is not None:
        assert card["uri"] == post.url
        assert grapheme_length(card["title"]) <= 300 and grapheme_length(card["description"]) <= 300
        assert message.image_url == (post.image_url if opts.card_image else None)
    else:
        assert message.image_url is None
    check_facets(text, message.extra["facets"])
    if post.url and (card is None or opts.link_in_text):
        assert post.url in text
        assert any(f["features"][0].get("uri") == post.url for f in message.extra["facets"])
    elif post.url:
        assert not any(f["features"][0].get("uri") == post.url for f in message.extra["facets"]) \
            or post.url in text  # the URL may still be in the title or excerpt
    for token in text.split():
        if re.fullmatch(r"#\w+", token) and not token[1:].isdigit() and grapheme_length(token) <= 65:
            assert any(sliced(text, f) == token for f in message.extra["facets"]), token
    assert message.extra["langs"] == list(opts.langs)


piece = st.one_of(st.sampled_from(EMOJI), st.sampled_from(ARABIC), st.sampled_from(COMBINING),
                  st.text(alphabet="abc éß日本\u200d\ufe0f", min_size=1, max_size=8))


@PROPERTY_SETTINGS
@given(parts=st.lists(st.one_of(piece, urls.map(lambda u: ("url", u)),
                                st.sampled_from(["Iraq", "EditorsPicks", "صلح", "Café", "日本語", "n\u0303o"])
                                .map(lambda t: ("tag", t))), max_size=30),
       link=st.one_of(st.none(), urls))
def test_facet_byte_offsets_with_emoji_arabic_and_combining_marks(parts: list[Any], link: str | None) -> None:
    """Every URL and hashtag put into the text, whatever comes before it, gets a facet whose UTF-8 byte
    range is exactly it."""
    words: list[str] = []
    expected: list[tuple[str, str]] = []
    for part in parts:
        if isinstance(part, tuple):
            kind, value = part
            words.append(value if kind == "url" else f"#{value}")
            # a URL in running text loses trailing sentence punctuation, as Bluesky's own client trims it
            expected.append((LINK, value.rstrip(".,;:!?\"'")) if kind == "url" else (TAG, value))
        else:
            words.append(part)
    if link:
        words.append(link)
        expected.append((LINK, link))
    text = " ".join(words)
    found = facets(text, link)
    check_facets(text, found)
    named = [(f["features"][0]["$type"], f["features"][0].get("uri") or f["features"][0].get("tag")) for f in found]
    for item in expected:
        assert item in named, (item, text)


@given(keys=st.lists(st.text(min_size=1, max_size=60), min_size=2, max_size=50, unique=True))
def test_record_keys_are_valid_stable_tids(keys: list[str]) -> None:
    tids = [record_key(k) for k in keys]
    assert tids == [record_key(k) for k in keys]
    assert len(set(tids)) == len(tids)
    for tid in tids:
        assert TID_PATTERN.match(tid) and len(tid) == 13
        micros = decode_tid(tid) >> 10
        assert TID_START <= micros < TID_START + (1 << TID_SPAN_BITS)
        assert datetime.fromtimestamp(micros / 1e6, UTC) < datetime(2026, 6, 1, tzinfo=UTC)
        assert encode_tid(decode_tid(tid)) == tid


# -- examples -----------------------------------------------------------------------------------------


def test_the_tid_encoding_matches_the_spec() -> None:
    """The atproto spec's example shape: 2^10 clock ids per microsecond, base32-sortable, 13 characters."""
    assert encode_tid(0) == "2222222222222"
    assert encode_tid((1 << 63) - 1) == "b" + "z" * 12  # the top bit is 0: the first character is at most "b"
    assert record_key("tagrelay-1") == record_key("tagrelay-1") != record_key("tagrelay-2")
    with pytest.raises(ValueError, match="63-bit"):
        encode_tid(1 << 63)


@pytest.mark.parametrize(("text", "link", "expected"), [
    ("See https://a.example/x.", None, [(LINK, "https://a.example/x")]),
    ("See https://a.example/x.", "https://a.example/x.", [(LINK, "https://a.example/x.")]),
    ("(https://en.example/wiki/Foo_(bar)) and (https://b.example/c)", None,
     [(LINK, "https://en.example/wiki/Foo_(bar)"), (LINK, "https://b.example/c")]),
    ("Link: https://a.example/x/y and https://a.example/x", "https://a.example/x",
     [(LINK, "https://a.example/x/y"), (LINK, "https://a.example/x")]),
    ("We're #1, in C# and #2024; #Iraq, #مرحبا! ＃Full", None, [(TAG, "Iraq"), (TAG, "مرحبا"), (TAG, "Full")]),
    ("#" + "a" * 64 + " #" + "b" * 65, None, [(TAG, "a" * 64)]),
    ("mail@example.org www.example.org ftp://x.example", None, []),
    ("😀👨‍👩‍👧‍👦 https://a.example/😀 #tag", None, [(LINK, "https://a.example/😀"), (TAG, "tag")]),
])
def test_facet_examples(text: str, link: str | None, expected: list[tuple[str, str]]) -> None:
    found = facets(text, link)
    check_facets(text, found)
    assert [(f["features"][0]["$type"], f["features"][0].get("uri") or f["features"][0].get("tag"))
            for f in found] == expected


def test_byte_offsets_by_hand() -> None:
    text = "é 😀 #tag https://a.example"
    assert facets(text) == [
        {"index": {"byteStart": 8, "byteEnd": 12}, "features": [{"$type": TAG, "tag": "tag"}]},
        {"index": {"byteStart": 13, "byteEnd": 30}, "features": [{"$type": LINK, "uri": "https://a.example"}]},
    ]


def test_facet_detection_is_linear() -> None:
    hostile = ("(" * 50_000 + "http://" * 50_000 + " #" * 100_000 + "#x" * 50_000 + " https://a.b" * 20_000
               + "é" * 100_000)
    started = time.perf_counter()
    found = facets(hostile)
    assert time.perf_counter() - started < 5.0
    data = hostile.encode()
    assert len(found) == 20_001  # the run of "http://" (one URL), then every " https://a.b"; no tag
    assert all(data[f["index"]["byteStart"]:f["index"]["byteEnd"]].decode() == f["features"][0]["uri"]
               for f in found[:50])


def test_the_measure_keeps_the_byte_limit() -> None:
    family = "👨\u200d👩\u200d👧\u200d👦"  # one grapheme, 25 bytes
    assert grapheme_length(family * 150) == 150 and bluesky_measure(family * 150) == 375
    post = sample_post(family * 400)
    message = render_bluesky(post, options(link_card=False), RenderEnv())
    assert utf8_length(message.text) <= MAX_BYTES and message.length <= MAX_GRAPHEMES
    assert post.url in message.text


def test_defaults_card_without_url_in_text() -> None:
    post = Post(key="k", source="s", title="Protests in Baghdad", url="https://a.example/p/",
                summary_html="<p>Thousands marched.</p>", content_html="", tags=(), published=None,
                image_url="https://a.example/i.jpg", image_alt="A crowd")
    message = render_bluesky(post, options(langs=["en"]), RenderEnv())
    assert message == RenderedMessage(
        text="Protests in Baghdad", link="https://a.example/p/", format="plain", length=19, limit=300,
        image_url="https://a.example/i.jpg", image_alt=None,  # a card's thumbnail has no alt text
        extra={"facets": [], "langs": ["en"], "card": {"uri": "https://a.example/p/", "title": "Protests in Baghdad",
                                                      "description": "Thousands marched."}})
    assert "{{ link }}" in DEFAULT_TEMPLATE_CARD


def test_everything_on_the_card_leaves_the_text_empty() -> None:
    post = Post(key="k", source="s", title="", url="https://a.example/p/", summary_html="", content_html="",
                tags=(), published=None)
    message = render_bluesky(post, options(), RenderEnv())
    assert message.text == "" and message.extra["card"]["uri"] == "https://a.example/p/"


def test_link_in_text_and_without_card() -> None:
    post = sample_post("Hello")
    with_url = render_bluesky(post, options(link_in_text=True), RenderEnv())
    assert with_url.text == f"Hello\n\n{post.url}" and with_url.extra["card"] is not None
    no_card = render_bluesky(post, options(link_card=False), RenderEnv())
    assert no_card.text == f"Hello\n\nAn excerpt.\n\n{post.url}" and no_card.extra["card"] is None
    plain = render_bluesky(post, options(), RenderEnv(), plain=True)
    assert post.url in plain.text and plain.extra["card"] is None and plain.image_url is None
    for message in (with_url, no_card, plain):
        [link] = [f for f in message.extra["facets"] if f["features"][0]["$type"] == LINK]
        assert sliced(message.text, link) == post.url


def test_a_post_without_link_has_no_card() -> None:
    post = Post(key="k", source="s", title="Just words #Iraq", url=None, summary_html="", content_html="",
                tags=(), published=None, image_url="https://a.example/i.jpg")
    message = render_bluesky(post, options(), RenderEnv())
    assert message.extra["card"] is None and message.image_url is None
    assert message.extra["facets"] == [{"index": {"byteStart": 11, "byteEnd": 16},
                                        "features": [{"$type": TAG, "tag": "Iraq"}]}]


def test_lone_surrogates_are_replaced() -> None:
    message = render_bluesky(sample_post("bad \ud800 title"), options(), RenderEnv())
    message.text.encode("utf-8")
    assert "\ud800" not in str(message.extra)
