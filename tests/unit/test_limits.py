"""domain.limits: every stored field within its bound, cuts between graphemes, overlong links rejected."""

from __future__ import annotations

import grapheme
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.domain.detect import normalise
from bot.domain.limits import (
    AUTHOR_CHARS,
    CONTENT_HTML_CHARS,
    GUID_CHARS,
    GUID_HASH_PREFIX,
    LINK_CHARS,
    SUMMARY_HTML_CHARS,
    TAG_CHARS,
    TAGS_PER_POST,
    TITLE_CHARS,
    bounded,
    cut_html,
    cut_text,
    rejection,
    safe_cut_index,
)
from bot.domain.models import ParsedPost
from bot.domain.tags import slugify

_TEXT = st.lists(st.sampled_from(["a", " ", "e\u0301", "👍🏽", "👩\u200d👩\u200d👧", "🇮🇶", "🇫🇷", "ß", "<", ">",
                                  "&", ";", "\u0628"]), max_size=100).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["a", "e\u0301", "👍🏽", "👩\u200d👩\u200d👧", "🇮🇶", "🇫🇷", " "]), max_size=60)
       .map("".join), st.integers(min_value=0, max_value=120))
def test_a_cut_falls_between_grapheme_clusters(text: str, limit: int) -> None:
    index = safe_cut_index(text, limit)
    assert index <= max(limit, 0) or index == len(text) <= limit
    boundaries = {0}
    pos = 0
    for cluster in grapheme.graphemes(text):
        pos += len(cluster)
        boundaries.add(pos)
    assert index in boundaries


def test_a_title_is_cut_with_an_ellipsis_and_stays_within_the_bound() -> None:
    post = bounded(ParsedPost(title="word " * 200_000))
    assert len(post.title) <= TITLE_CHARS and post.title.endswith("…")
    assert bounded(ParsedPost(title="short")).title == "short"


def test_html_is_never_cut_inside_a_tag_or_a_reference() -> None:
    assert cut_html("abc<a href='x'>", 6) == "abc"
    assert cut_html("abc&amp;def", 6) == "abc"
    assert cut_html("ab<b>cd</b>", 8) == "ab<b>cd"


@settings(max_examples=200, deadline=None)
@given(title=_TEXT, summary=_TEXT, tags=st.lists(_TEXT, max_size=5))
def test_bounded_is_idempotent_and_keeps_short_posts_whole(title: str, summary: str, tags: list[str]) -> None:
    post = ParsedPost(title=title, summary_html=summary, tags=tuple(tags))
    once = bounded(post)
    assert bounded(once) == once
    assert once == post  # all of these fit


def test_every_field_is_bounded() -> None:
    huge = "x" * 2_000_000
    post = bounded(ParsedPost(title=huge, guid=huge, summary_html=huge, content_html=huge,
                              tags=tuple(f"t{i}" + "y" * 1_000 for i in range(500)),
                              image_url="https://i.example/" + huge, author=huge))
    assert len(post.title) <= TITLE_CHARS
    assert len(post.summary_html) <= SUMMARY_HTML_CHARS
    assert len(post.content_html) <= CONTENT_HTML_CHARS
    assert len(post.tags) == TAGS_PER_POST and all(len(t) <= TAG_CHARS for t in post.tags)
    assert post.image_url is None
    assert post.author is not None and len(post.author) <= AUTHOR_CHARS
    assert post.guid is not None and post.guid.startswith(GUID_HASH_PREFIX) and len(post.guid) < GUID_CHARS


def test_a_long_guid_is_replaced_by_a_stable_distinct_hash() -> None:
    first = bounded(ParsedPost(title="t", guid="g" * 5_000)).guid
    assert first == bounded(ParsedPost(title="t", guid="g" * 5_000)).guid
    assert first != bounded(ParsedPost(title="t", guid="g" * 5_001)).guid
    assert bounded(ParsedPost(title="t", guid="g" * GUID_CHARS)).guid == "g" * GUID_CHARS


def test_a_slug_never_exceeds_the_tag_bound_even_when_normalisation_lengthens_it() -> None:
    assert len(slugify("ß" * TAG_CHARS)) <= TAG_CHARS
    assert len(slugify("\ufdfa" * TAG_CHARS)) <= TAG_CHARS  # NFKC expands this one to 18 characters


def test_an_overlong_link_rejects_the_item_and_normalise_leaves_it_out() -> None:
    long_link = "https://example.org/" + "a" * LINK_CHARS
    assert rejection(ParsedPost(title="ok", url="https://example.org/1")) is None
    reason = rejection(ParsedPost(title="bad", url=long_link))
    assert reason is not None and f"{LINK_CHARS:,}" in reason
    posts = normalise("s", [ParsedPost(title="bad", url=long_link, guid="g1"),
                            ParsedPost(title="ok", url="https://example.org/1", guid="g2")])
    assert [p.title for p in posts] == ["ok"]


def test_cut_text_with_a_mark_stays_within_the_limit() -> None:
    assert cut_text("abcdef", 4, mark="…") == "abc…"
    assert cut_text("abc", 4, mark="…") == "abc"


def test_image_alt_is_kept_with_its_image_cut_to_its_bound_and_dropped_without_an_image() -> None:
    from bot.domain.detect import to_post
    from bot.domain.limits import ALT_CHARS

    kept = to_post("s", ParsedPost(title="t", url="https://e.example/1", image_url="https://e.example/a.jpg",
                                   image_alt="A crowd in Tahrir Square"))
    assert kept.image_alt == "A crowd in Tahrir Square"
    long = to_post("s", ParsedPost(title="t", url="https://e.example/1", image_url="https://e.example/a.jpg",
                                   image_alt="x" * (ALT_CHARS + 50)))
    assert long.image_alt is not None and len(long.image_alt) == ALT_CHARS and long.image_alt.endswith("…")
    local = to_post("s", ParsedPost(title="t", url="https://e.example/1", image_url="file:///etc/passwd",
                                    image_alt="secret"))
    assert local.image_url is None and local.image_alt is None
