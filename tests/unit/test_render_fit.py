"""bot.render.fit: the shrinking order — excerpt, then hashtags, then title; the link never."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from bot.render.fit import MIN_EXCERPT_CHARS, Content, RenderError, fit

LINK = "https://example.com/p"
CONTENT = Content(title="The title", excerpt="one two three four five six seven eight nine ten eleven twelve",
                  link=LINK, hashtags=("#Alpha", "#Beta", "#Gamma"))


def compose(title: str, excerpt: str, hashtags: Sequence[str]) -> str:
    return "\n".join(part for part in (title, excerpt, LINK, " ".join(hashtags)) if part)


def run(limit: int, content: Content = CONTENT) -> str:
    text, length = fit(content, compose, len, limit, link_only=LINK)
    assert length == len(text) <= limit
    assert LINK in text
    return text


def test_everything_fits() -> None:
    assert run(1000) == compose(CONTENT.title, CONTENT.excerpt, CONTENT.hashtags)


def test_excerpt_shrinks_first() -> None:
    full = len(compose(CONTENT.title, CONTENT.excerpt, CONTENT.hashtags))
    text = run(full - 10)
    assert "#Alpha #Beta #Gamma" in text and "The title" in text
    assert "…" in text and "eleven twelve" not in text


def test_short_cut_excerpt_is_dropped() -> None:
    bare = len(compose(CONTENT.title, "", CONTENT.hashtags))
    text = run(bare + MIN_EXCERPT_CHARS - 5)
    assert text == compose(CONTENT.title, "", CONTENT.hashtags)


def test_then_hashtags_from_the_end() -> None:
    bare = len(compose(CONTENT.title, "", CONTENT.hashtags))
    assert run(bare - 1) == compose(CONTENT.title, "", ("#Alpha", "#Beta"))
    assert run(len(compose(CONTENT.title, "", ()))) == compose(CONTENT.title, "", ())


def test_excerpt_grows_back_when_a_hashtag_goes() -> None:
    content = Content(title="T", excerpt="a fairly long excerpt with many words in it to shrink",
                      link=LINK, hashtags=("#" + "X" * 200,))
    text = run(len(compose("T", content.excerpt, ())), content)
    assert text == compose("T", content.excerpt, ())


def test_title_is_the_last_resort() -> None:
    text = run(len(LINK) + 8)
    assert text.endswith("\n" + LINK) and text.split("\n")[0].endswith("…")


def test_bare_link() -> None:
    assert run(len(LINK)) == LINK


def test_link_too_long() -> None:
    with pytest.raises(RenderError, match="not even its link"):
        fit(CONTENT, compose, len, len(LINK) - 1, link_only=LINK)
