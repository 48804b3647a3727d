"""Discord rendering: the embed's shape, markdown escaping of hostile text, and Discord's limits.

The property tests draw arbitrary posts (the strategies of test_render_properties: emoji, CJK, RTL,
combining marks, markup, controls) and check every rendering against Discord's limits by two
measures: ours, and ``FakeDiscord``'s validation (``validate_message``), which answers like
Discord's 400 "Invalid Form Body". A Discord markdown character in archive text never survives
unescaped, and unescaping gives the text back.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.domain.models import Post, Tag
from bot.render.discord import (
    CONTENT_LIMIT,
    DESCRIPTION_LIMIT,
    EMBEDS_TOTAL_LIMIT,
    FOOTER_LIMIT,
    THREAD_NAME_LIMIT,
    TITLE_LIMIT,
    DiscordRenderOptions,
    escape_markdown,
    render_discord,
    thread_name,
    unescape_markdown,
)
from bot.render.fit import plain_budget
from bot.render.message import RenderedMessage, RenderEnv
from bot.render.tghtml import utf16_length
from bot.validation import ValidationError
from tests.fakes.discord_api import validate_message
from tests.unit.test_render_properties import PROPERTY_SETTINGS, common, posts, render_or_nothing, texts

LINK = "https://example.com/2024/05/q_a*/?utm_source=x&id=1"
HOSTILE_TITLE = "**Breaking** [login](https://evil.example) ||spoiler|| <@&123> @everyone `x` ~~y~~ > quote"


def post(**kw: Any) -> Post:
    base: dict[str, Any] = {
        "key": "k", "source": "example-archive", "title": "Protest in Baghdad", "url": LINK,
        "summary_html": "<p>Thousands marched again.</p>", "content_html": "",
        "tags": (Tag("mek", "MEK"), Tag("editors-picks", "Editor’s picks")),
        "published": datetime(2024, 5, 1, 10, 30, tzinfo=UTC), "image_url": "https://example.com/i.jpg",
    }
    return Post(**{**base, **kw})


def options(**kw: Any) -> DiscordRenderOptions:
    return DiscordRenderOptions.model_validate({"name": "dc", "platform": "discord", **kw})


def payload(message: RenderedMessage) -> dict[str, Any]:
    body = message.extra["payload"]
    assert isinstance(body, dict)
    return body


def embed_of(message: RenderedMessage) -> dict[str, Any]:
    [embed] = payload(message)["embeds"]
    assert isinstance(embed, dict)
    return embed


# -- the embed -----------------------------------------------------------------------------------


def test_one_embed_per_post_with_title_link_excerpt_image_time_and_source() -> None:
    message = render_discord(post(), options(hashtags=True), RenderEnv())
    assert set(payload(message)) == {"embeds"}  # no content, no pings possible from it
    assert embed_of(message) == {
        "title": "Protest in Baghdad",
        "url": LINK,  # the link exactly as the archive wrote it: never escaped
        "description": "Thousands marched again.\n\n\\#MEK \\#EditorsPicks",
        "image": {"url": "https://example.com/i.jpg"},
        "timestamp": "2024-05-01T10:30:00+00:00",
        "footer": {"text": "example-archive"},
    }
    assert message.format == "markdown" and message.limit == EMBEDS_TOTAL_LIMIT
    assert message.length == utf16_length("Protest in Baghdad") + utf16_length(embed_of(message)["description"]) \
        + utf16_length("example-archive")
    assert LINK in message.text and message.link == LINK
    assert message.image_url is None  # the image is in the embed: nothing is sent as a photo


def test_an_embed_leaves_out_what_the_post_does_not_have() -> None:
    message = render_discord(post(image_url=None, published=None, summary_html=""), options(), RenderEnv())
    assert embed_of(message) == {"title": "Protest in Baghdad", "url": LINK, "footer": {"text": "example-archive"}}


def test_an_untitled_post_carries_its_link_in_the_description() -> None:
    embed = embed_of(render_discord(post(title=""), options(), RenderEnv()))
    assert "title" not in embed and embed["url"] == LINK
    assert embed["description"] == f"Thousands marched again.\n\n{LINK}"


def test_a_template_shapes_the_description() -> None:
    opts = options(template="{{ excerpt }} — {{ author }}\n{{ link }}")
    embed = embed_of(render_discord(post(author="Jane *Doe*"), opts, RenderEnv()))
    assert embed["description"] == f"Thousands marched again. — Jane \\*Doe\\*\n{LINK}"


def test_a_long_title_and_excerpt_are_cut_at_words_within_the_limits() -> None:
    long = post(title="word " * 200, summary_html="<p>" + "sentence goes on " * 600 + "</p>")
    message = render_discord(long, options(excerpt_length=10_000), RenderEnv())
    embed = embed_of(message)
    assert utf16_length(embed["title"]) <= TITLE_LIMIT and embed["title"].endswith("word…")
    description = embed["description"]
    assert utf16_length(description) <= DESCRIPTION_LIMIT and description.endswith("…")
    assert description.removesuffix("…").split()[-1] in ("sentence", "goes", "on")  # at a word
    assert validate_message(payload(message)) == {}


# -- content mode, the plain fallback, forums ----------------------------------------------------


def test_content_mode_is_the_template_as_a_message() -> None:
    message = render_discord(post(), options(mode="content"), RenderEnv())
    assert payload(message) == {"content": f"Protest in Baghdad\n\nThousands marched again.\n\n{LINK}"}
    assert message.text == payload(message)["content"] and message.limit == CONTENT_LIMIT
    assert message.length == utf16_length(message.text)


def test_the_plain_fallback_is_content_without_an_embed_and_with_a_margin() -> None:
    long = post(summary_html="<p>" + "sentence goes on " * 300 + "</p>")
    message = render_discord(long, options(excerpt_length=10_000, template="{{ title }} {{ link }}"), RenderEnv(),
                             plain=True)
    body = payload(message)
    assert set(body) == {"content"} and LINK in body["content"]
    assert message.length <= plain_budget(CONTENT_LIMIT) and "Thousands" not in body["content"]
    assert body["content"].startswith("Protest in Baghdad\n\nsentence goes on")  # the default template


def test_a_forum_post_opens_a_thread_named_after_the_title() -> None:
    title = "Q&A: **why** " + "protests continue " * 10
    for plain in (False, True):
        message = render_discord(post(title=title), options(forum=True), RenderEnv(), plain=plain)
        name = payload(message)["thread_name"]
        assert name == thread_name(post(title=title))
        assert name.startswith("Q&A: **why** protests") and name.endswith("…")  # plain text: not escaped
        assert utf16_length(name) <= THREAD_NAME_LIMIT
    assert thread_name(post(title="")) == "example-archive"
    assert thread_name(post(title="", source="")) == "New post"
    assert "thread_name" not in payload(render_discord(post(), options(), RenderEnv()))


# -- hostile text ----------------------------------------------------------------------------------


def test_markdown_in_archive_text_is_shown_literally_and_the_link_is_untouched() -> None:
    message = render_discord(post(title=HOSTILE_TITLE, summary_html="<p># Heading</p>"), options(mode="content"),
                             RenderEnv())
    text = payload(message)["content"]
    title_line, excerpt_line, link_line = text.split("\n\n")
    assert title_line == escape_markdown(HOSTILE_TITLE)
    assert unescape_markdown(title_line) == HOSTILE_TITLE
    assert "\\[login\\](https://evil.example)" in title_line and "\\|\\|spoiler\\|\\|" in title_line
    assert "\\<@&123\\>" in title_line and "\\*\\*Breaking\\*\\*" in title_line
    assert excerpt_line == "\\# Heading"
    assert link_line == LINK


@pytest.mark.parametrize(("text", "escaped"), [
    ("- item", "\\- item"),
    ("1. first", "1\\. first"),
    ("12) twelfth", "12\\) twelfth"),
    ("-# subtext", "\\-\\# subtext"),
    ("a - b 1. c", "a - b 1. c"),  # only at the start of a line
    ("line\n- item", "line\n\\- item"),
    ("C:\\path", "C:\\\\path"),
    ("plain words, 100% fine!", "plain words, 100% fine!"),
])
def test_escape_markdown(text: str, escaped: str) -> None:
    assert escape_markdown(text) == escaped
    assert unescape_markdown(escaped) == text


@given(st.text(max_size=200))
def test_escaping_round_trips_and_leaves_no_markdown_character_bare(text: str) -> None:
    escaped = escape_markdown(text)
    assert unescape_markdown(escaped) == text
    # every markdown character is preceded by an odd run of backslashes: the last one escapes it
    for match in re.finditer(r"(\\*)([*_~`|\[\]<>#])", escaped):
        assert len(match[1]) % 2 == 1, (text, escaped)


# -- options ---------------------------------------------------------------------------------------


def test_options_are_checked_at_load() -> None:
    assert options().mode == "embed" and options().forum is False
    with pytest.raises(ValidationError):
        options(mode="fancy")
    with pytest.raises(ValidationError, match="link"):
        options(template="{{ title }}")  # the link is never left out
    with pytest.raises(ValidationError, match="unknown variable"):
        options(template="{{ link }} {{ secret }}")


# -- every rendering within Discord's limits, by our measure and the fake Discord's ------------------

discord_options = st.builds(
    DiscordRenderOptions, name=st.just("dc"), platform=st.just("discord"),
    mode=st.sampled_from(["embed", "content"]), forum=st.booleans(),
    template=st.sampled_from([None, "{{ title|upper }} — {{ excerpt }} {{ link }} {{ hashtags }} {{ source }}",
                              "{{ tags|join(', ') }}\n{{ link }}\n{{ author }}"]),
    **common,
)


@PROPERTY_SETTINGS
@given(post=posts(), opts=discord_options, plain=st.booleans())
def test_every_message_fits_discord(post: Post, opts: DiscordRenderOptions, plain: bool) -> None:
    message = render_or_nothing(lambda: render_discord(post, opts, RenderEnv(), plain=plain), post,
                                lambda link: utf16_length(link) <= plain_budget(CONTENT_LIMIT))
    if message is None:
        return
    body = payload(message)
    assert validate_message(body) == {}, body
    assert 0 < message.length <= message.limit
    if opts.forum:
        assert 0 < utf16_length(body["thread_name"]) <= THREAD_NAME_LIMIT
    else:
        assert "thread_name" not in body
    if plain or opts.mode == "content":
        assert set(body) - {"thread_name"} == {"content"}
        assert message.length == utf16_length(body["content"]) <= (plain_budget(CONTENT_LIMIT) if plain
                                                                   else CONTENT_LIMIT)
        if post.url:
            assert post.url in body["content"]
        return
    embed = embed_of(message)
    sizes = [utf16_length(embed.get("title", "")), utf16_length(embed.get("description", "")),
             utf16_length(embed.get("footer", {}).get("text", ""))]
    assert sizes[0] <= TITLE_LIMIT and sizes[1] <= DESCRIPTION_LIMIT and sizes[2] <= FOOTER_LIMIT
    assert message.length == sum(sizes) <= EMBEDS_TOTAL_LIMIT
    assert embed.get("url") == post.url
    if post.url and "title" not in embed:
        assert post.url in embed["description"]  # else nothing would lead to the post


@PROPERTY_SETTINGS
@given(title=texts(80))
def test_titles_never_lose_their_meaning_to_markdown(title: str) -> None:
    message = render_or_nothing(lambda: render_discord(post(title=title), options(), RenderEnv()), post(title=title))
    if message is None:
        return
    embed = embed_of(message)
    if "title" in embed:
        # the title is exactly the escaped form of what a reader sees: no markdown character is bare
        assert escape_markdown(unescape_markdown(embed["title"])) == embed["title"]
