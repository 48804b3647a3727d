"""bot.render.hashtags: tag names to CamelCase hashtags, and how many fit."""

from __future__ import annotations

import unicodedata

import pytest

from bot.domain.models import Post, Tag
from bot.render.hashtags import hashtag, hashtags_for
from bot.render.mastodon import render_mastodon
from bot.render.message import RenderEnv
from bot.render.options import MastodonRenderOptions, XRenderOptions
from bot.render.x import render_x, x_weighted_length


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Editor’s picks", "#EditorsPicks"),
        ("Editor's picks", "#EditorsPicks"),
        ("Iraq protest against Iran's meddling", "#IraqProtestAgainstIransMeddling"),
        ("news", "#News"),
        ("World news", "#WorldNews"),
        ("COVID-19", "#COVID19"),
        ("rock 'n' roll", "#RockNRoll"),
        ("iPhone tips", "#iPhoneTips"),
        ("NASA", "#NASA"),
        ("São Paulo", "#SãoPaulo"),
        ("Food & Drink", "#FoodDrink"),
        ("snake_case tag", "#Snake_caseTag"),
        ("日本語", "#日本語"),
        ("معرض الكتاب", "#معرضالكتاب"),
        ("کتاب‌خوانی", "#کتاب\u200cخوانی"),  # Persian keeps its zero-width non-joiner inside the word
        ("हिन्दी भाषा", "#हिन्दीभाषा"),  # combining vowel signs stay in the word
        ("Фото дня", "#ФотоДня"),
        ("2024", None),
        ("١٢٣", None),
        ("___", None),
        ("😀", None),
        ("", None),
        ("  ", None),
        ("x" * 101, None),
    ],
)
def test_hashtag(name: str, expected: str | None) -> None:
    assert hashtag(name) == expected


def test_hashtag_composes_nfd_input() -> None:
    assert hashtag(unicodedata.normalize("NFD", "café crème")) == "#CaféCrème"


def test_hashtags_only_letters_digits_underscore() -> None:
    tag = hashtag("a.b/c-d+e#f (g) [h] {i} <j> k&l m@n")
    assert tag == "#ABCDEFGHIJKLMN"


def test_dedup_is_case_insensitive_and_keeps_order() -> None:
    assert hashtags_for(["news", "News", "NEWS", "World", "2024", "world"], 10) == ["#News", "#World"]


def test_max_count() -> None:
    names = [f"tag {chr(97 + i)}" for i in range(10)]
    assert len(hashtags_for(names, 3)) == 3
    assert hashtags_for(names, 0) == []


TEN_TAGS = ("Editor’s picks", "Iraq protest against Iran's meddling", "2024", "news", "News", "World news",
            "COVID-19", "rock 'n' roll", "iPhone tips", "São Paulo")


def make_post(title: str, summary: str = "") -> Post:
    return Post(key="k", source="blog", title=title, url="https://example.com/p/1?a=1&b=2",
                summary_html=summary, content_html="",
                tags=tuple(Tag(slug=str(i), name=n) for i, n in enumerate(TEN_TAGS)), published=None)


def test_hashtags_are_opt_in() -> None:
    options = XRenderOptions(name="x", platform="x")
    assert "#" not in render_x(make_post("Title"), options, RenderEnv()).text


def test_hashtags_added_only_while_they_fit_and_never_cut_the_link() -> None:
    options = XRenderOptions(name="x", platform="x", hashtags=True, max_hashtags=10)
    all_tags = hashtags_for(TEN_TAGS, 10)
    for words in (5, 20, 30, 40, 45):
        message = render_x(make_post(" ".join(["headline"] * words)), options, RenderEnv())
        assert x_weighted_length(message.text) <= 280
        assert "https://example.com/p/1?a=1&b=2" in message.text
        used = [w for w in message.text.split() if w.startswith("#")]
        assert used == all_tags[: len(used)], "hashtags are dropped from the end"


def test_hashtags_dropped_before_title_is_cut() -> None:
    options = MastodonRenderOptions(name="m", platform="mastodon", hashtags=True, max_hashtags=10,
                                    max_characters=100)
    title = "A title of exactly sixty characters for the hashtag test ok"
    message = render_mastodon(make_post(title, "<p>Some excerpt text that will go first.</p>"), options,
                              RenderEnv())
    assert message.text.startswith(title)
    assert "excerpt" not in message.text  # the excerpt went first …
    assert "#EditorsPicks" in message.text  # … then hashtags from the end, as far as needed
    assert "#SãoPaulo" not in message.text


def test_a_hashtag_the_title_already_carries_is_not_appended_again() -> None:
    from bot.render.hashtags import hashtags_in

    present = hashtags_in("The latest #MEK post, and #iraq! on #")
    assert present == {"#mek", "#iraq"}
    assert hashtags_for(["MEK", "Iraq", "Basra"], 5, present=present) == ["#Basra"]
    assert hashtags_for(["MEK", "Iraq"], 5) == ["#MEK", "#Iraq"]
