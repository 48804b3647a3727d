"""bot.render.x: twitter-text v3 weighted length, never a character count."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.domain.models import Post, Tag
from bot.render.message import RenderEnv
from bot.render.options import XRenderOptions
from bot.render.x import LIMIT, render_x, x_weighted_length

OPTIONS = XRenderOptions(name="x", platform="x")


def make_post(title: str, summary: str = "", url: str = "https://example.com/p?a=1&b=2",
              tags: tuple[str, ...] = ()) -> Post:
    return Post(key="k", source="blog", title=title, url=url, summary_html=summary, content_html="",
                tags=tuple(Tag(str(i), n) for i, n in enumerate(tags)), published=None)


@pytest.mark.parametrize(
    ("text", "weighted"),
    [
        # values from platform-apis.md §2.5 (checked against twitter-text's conformance data)
        ("Hi http://test.co", 26),
        ("日本語" * 47, 282),
        (unicodedata.normalize("NFD", "café"), 4),
        ("👨\u200d👩\u200d👧\u200d👦" * 140, 280),
        ("a" * 257 + " https://example.com/" + "x" * 200, 281),
    ],
)
def test_weighted_length(text: str, weighted: int) -> None:
    assert x_weighted_length(text) == weighted


def test_not_a_character_count() -> None:
    message = render_x(make_post("日本語のタイトル" * 30, "<p>" + "漢字" * 300 + "</p>"), OPTIONS, RenderEnv())
    assert message.length == x_weighted_length(message.text) <= LIMIT
    assert len(message.text) < LIMIT  # CJK weighs 2: far fewer than 280 characters fit


def test_long_url_counts_23() -> None:
    url = "https://example.com/" + "very-long-path/" * 20 + "?q=1&r=2"
    message = render_x(make_post("Title", "<p>" + "word " * 100 + "</p>", url=url), OPTIONS, RenderEnv())
    assert url in message.text
    assert len(message.text) > LIMIT >= message.length


def test_title_longer_than_280_is_cut_last() -> None:
    title = "A headline that goes on " * 20
    message = render_x(make_post(title, "<p>An excerpt.</p>", tags=("News",)),
                       XRenderOptions(name="x", platform="x", hashtags=True), RenderEnv())
    assert message.length <= LIMIT
    assert "An excerpt" not in message.text and "#News" not in message.text
    assert message.text.endswith("…\n\nhttps://example.com/p?a=1&b=2")


def test_output_is_nfc() -> None:
    message = render_x(make_post(unicodedata.normalize("NFD", "Café crème")), OPTIONS, RenderEnv())
    assert message.text.startswith("Café crème")
    assert unicodedata.is_normalized("NFC", message.text)


def test_plain_is_shorter() -> None:
    post = make_post("Title", "<p>" + "several words here " * 30 + "</p>")
    normal = render_x(post, OPTIONS, RenderEnv())
    plain = render_x(post, OPTIONS, RenderEnv(), plain=True)
    assert plain.length < normal.length and plain.length <= LIMIT - LIMIT // 20
    assert plain.format == "plain" and plain.limit == LIMIT


_ALPHABET = st.one_of(
    st.characters(max_codepoint=0x24F),
    st.sampled_from(list("’“”–—…日本語한국어😷👍🏽🇮🇶🇯🇵©®™‼↔ #*0\u200d\ufe0f\u20e3\r\n\t ")),
    st.characters(min_codepoint=0x2000, max_codepoint=0x2BFF),
    st.characters(min_codepoint=0x1F000, max_codepoint=0x1FAFF),
)
_PIECES = st.one_of(
    st.text(_ALPHABET, max_size=40),
    st.sampled_from(["https://archive.example.org/2020/02/16/a-post/?utm=x&b=1", "example.org", "www.x.com/p",
                     "t.co/abc", "@someone", "#tag", "1️⃣", "👨‍👩‍👧", "e\u0301"]),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_PIECES, max_size=8).map(" ".join))
def test_fast_weighted_length_equals_twitter_text(text: str) -> None:
    from twitter_text import parse_tweet

    from bot.render.x import x_weighted_length

    assert x_weighted_length(text) == parse_tweet(text).weightedLength


def test_the_fast_path_is_taken_without_emoji_and_skipped_with_them() -> None:
    from twitter_text import parse_tweet

    from bot.render.x import _weighted_length_without_emoji

    plain = "Iraqi Students Keep Marching Against Tehran’s Influence — “again” https://archive.example.org/p/?a=1"
    assert _weighted_length_without_emoji(plain) == parse_tweet(plain).weightedLength
    assert _weighted_length_without_emoji("日本語 and a link example.org") == parse_tweet(
        "日本語 and a link example.org").weightedLength
    for text in ("with an emoji 😷", "keycap 1\ufe0f\u20e3", "©2026", "family 👨\u200d👩\u200d👧", "flag 🇯🇵"):
        assert _weighted_length_without_emoji(text) is None


def test_every_emoji_start_below_the_supplementary_planes_is_extended_pictographic() -> None:
    """The fast path's emoji test (Extended_Pictographic) must cover twitter-text's emoji pattern
    (asked through its public ``extract_emojis_with_indices``: an emoji found at index 0)."""
    from twitter_text import extract_emojis_with_indices

    from bot.render.x import _may_start_emoji

    def starts_an_emoji(text: str) -> bool:
        return any(found["indices"][0] == 0 for found in extract_emojis_with_indices(text))

    starts = [chr(code) for code in range(0xA9, 0x10000) if not 0xD800 <= code <= 0xDFFF
              and (starts_an_emoji(chr(code)) or starts_an_emoji(chr(code) + "\ufe0f"))]
    assert len(starts) > 100  # the pattern really was exercised
    assert [ch for ch in starts if not _may_start_emoji(ch)] == []
