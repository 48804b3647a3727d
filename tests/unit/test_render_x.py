"""bot.render.x: twitter-text v3 weighted length, never a character count."""

from __future__ import annotations

import unicodedata

import pytest

from bot.domain.models import Post, Tag
from bot.publishers.api import RenderEnv
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
