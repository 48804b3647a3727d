"""bot.render.mastodon: instance limit, Mastodon's counting (graphemes, URLs, remote mentions)."""

from __future__ import annotations

import pytest

from bot.domain.models import Post
from bot.render.fit import RenderError
from bot.render.mastodon import DEFAULT_LIMIT, mastodon_length, render_mastodon
from bot.render.message import RenderEnv
from bot.render.options import MastodonRenderOptions

FAMILY = "👨\u200d👩\u200d👧\u200d👦"
CODER = "👩🏽\u200d💻"

# Ground truth in the style of Mastodon.py tests/test_status_length.py (MIT), which mirrors
# Mastodon's StatusLengthValidator; strings re-typed here with explicit escapes.
GROUND_TRUTH = [
    ("", 0),
    ("hello", 5),
    (" leading and trailing spaces   ", 31),
    ("check http://example.com and https://example.org/page?x=1#frag", 57),
    ("ftp://files.example.net/resource", 32),
    ("http://user:pass@example.com:8080/path", 38),
    ("http://127.0.0.1:3000/health", 28),
    ("https://[2001:db8::1]/status", 28),
    ("mailto:someone@example.com", 26),
    ("https://very.long.tld.example.museum/collection/item", 23),
    ("@alice", 6),
    ("@bob@example.com", 4),
    ("hi @charlie and @dora@example.social!", 22),
    ("hey @me@example.com look at https://example.com/a-b_c~d?e=f#g and @you  ", 50),
    ("a: 🇪🇪", 4),
    (f"b: {FAMILY}", 4),
    (f"c: {CODER}", 4),
    ("d: ✊🏿", 4),
    ("f\u0301", 1),
    ("https://sub.sub2.Путин.рф/увидимся/в?Гааге=военный#преступник", 48),
    ("(see https://example.com.)", 30),
    ("<@root> and {@admin@example.net}", 20),
    ("https://example.com/a-b_c~d?param_a=1&param-b=2", 23),
    (f"@one https://example.social/@two {CODER} 🇪🇪 @three@example.com ✊🏿", 41),
]


@pytest.mark.parametrize(("text", "expected"), GROUND_TRUTH)
def test_length_ground_truth(text: str, expected: int) -> None:
    assert mastodon_length(text) == expected
    assert mastodon_length(text, "what") == expected + 4


def test_url_length_from_the_instance() -> None:
    assert mastodon_length("https://example.com/x", url_length=30) == 30


def make_post(summary: str = "<p>Hello</p>", url: str | None = "https://example.com/a?b=1&c=2") -> Post:
    return Post(key="k", source="blog", title="Title", url=url, summary_html=summary, content_html="",
                tags=(), published=None)


LONG = "<p>" + "word " * 2000 + "</p>"


def test_limit_precedence() -> None:
    plain_options = MastodonRenderOptions(name="m", platform="mastodon", excerpt_length=10_000)
    assert render_mastodon(make_post(LONG), plain_options, RenderEnv()).limit == DEFAULT_LIMIT
    assert render_mastodon(make_post(LONG), plain_options, RenderEnv(max_chars=5000)).limit == 5000
    override = MastodonRenderOptions(name="m", platform="mastodon", excerpt_length=10_000, max_characters=200)
    message = render_mastodon(make_post(LONG), override, RenderEnv(max_chars=5000))
    assert message.limit == 200 and 180 < message.length <= 200


@pytest.mark.parametrize("limit", [50, 100, 500, 5000])
def test_fits_each_limit(limit: int) -> None:
    options = MastodonRenderOptions(name="m", platform="mastodon", excerpt_length=10_000)
    message = render_mastodon(make_post(LONG), options, RenderEnv(max_chars=limit))
    assert message.length == mastodon_length(message.text) <= limit
    assert "https://example.com/a?b=1&c=2" in message.text


def test_spoiler_counts_and_extra() -> None:
    options = MastodonRenderOptions(name="m", platform="mastodon", spoiler_text="Politics", language="en",
                                    visibility="unlisted", max_characters=60, excerpt_length=10_000)
    message = render_mastodon(make_post(LONG), options, RenderEnv())
    assert message.length == mastodon_length(message.text, "Politics") <= 60
    assert message.extra == {"visibility": "unlisted", "language": "en", "spoiler_text": "Politics"}


def test_spoiler_longer_than_the_limit() -> None:
    options = MastodonRenderOptions(name="m", platform="mastodon", spoiler_text="x" * 60, max_characters=50)
    with pytest.raises(RenderError):
        render_mastodon(make_post(), options, RenderEnv())


def test_post_without_anything_to_say() -> None:
    empty = Post(key="k", source="s", title="", url=None, summary_html="", content_html="", tags=(),
                 published=None)
    with pytest.raises(RenderError, match="nothing to publish"):
        render_mastodon(empty, MastodonRenderOptions(name="m", platform="mastodon"), RenderEnv())
