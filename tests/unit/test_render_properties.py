"""Property tests: whatever the archive sends, no message exceeds its platform's limit.

For arbitrary titles, excerpts, tags and URLs (emoji, CJK, RTL, combining
marks, ``&<>``, stray markup, control characters) every rendering — normal and
``plain`` — stays within the limit by the platform's own measure, keeps the
link intact, and on Telegram is HTML that Telegram accepts (checked twice: by
our checker and independently with ``html.parser``).
"""

from __future__ import annotations

import html
from collections.abc import Callable
from datetime import UTC, datetime
from html.parser import HTMLParser

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twitter_text import parse_tweet

from bot.domain.models import Post, Tag
from bot.render.fit import RenderError
from bot.render.mastodon import mastodon_length, render_mastodon
from bot.render.message import RenderedMessage, RenderEnv
from bot.render.options import MastodonRenderOptions, TelegramRenderOptions, XRenderOptions
from bot.render.telegram import (
    render_telegram,
    telegram_html_problems,
    telegram_visible_length,
    telegram_visible_text,
)
from bot.render.text import clean_inline
from bot.render.tghtml import ALLOWED_TAGS, utf16_length
from bot.render.x import render_x

PROPERTY_SETTINGS = settings(max_examples=200, deadline=None,
                             suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

EMOJI = ["😀", "👨\u200d👩\u200d👧\u200d👦", "🇯🇵", "✊🏿", "👩🏽\u200d💻", "❤\ufe0f", "🏳\ufe0f\u200d🌈"]
WORDS = ["archive", "notes", "Q&A:", "<script>", '"quotes"', "it’s", "AT&T", "&amp;", "&lt;b&gt;", "&#8230;",
         "[…]", "Continue reading", "Read more →", "café", "cafe\u0301", "Zalgo\u0300\u0301\u0302\u0303",
         "東京の古書店", "中文没有空格的句子很长很长", "한국어 문장", "مرحبا بالعالم", "می‌آید", "שלום",
         "https://example.com/a?b=1&c=2", "www.example.org", "@user@example.social", "#tag", "\u202e",
         "\u200b", "\x00", "\ufeff", "\t", "\n", "  ", "<p>", "</b>", "<a href='x'>", "—", "…", "1,000"]

piece = st.one_of(
    st.sampled_from(WORDS),
    st.sampled_from(EMOJI),
    st.text(max_size=12),
    st.text(alphabet="日本語中文한국어ひらがなカタカナ", min_size=1, max_size=30),
    st.text(alphabet="abcdefghij &<>\"'", min_size=1, max_size=15),
)


def texts(max_pieces: int) -> st.SearchStrategy[str]:
    return st.lists(piece, max_size=max_pieces).map(lambda parts: " ".join(parts))


label = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,12}[a-z0-9])?", fullmatch=True)
urls = st.builds(
    lambda scheme, host, tld, path, query: (
        f"{scheme}://{host}.{tld}/{path}" + ("?" + "&".join(f"{k}={v}" for k, v in query) if query else "")
    ),
    st.sampled_from(["http", "https"]),
    label,
    st.sampled_from(["com", "org", "net", "io", "de", "jp", "co.uk"]),
    st.lists(st.from_regex(r"[A-Za-z0-9_~%.-]{1,16}", fullmatch=True), max_size=5).map("/".join),
    st.lists(st.tuples(st.from_regex(r"[a-z_]{1,8}", fullmatch=True),
                       st.from_regex(r"[A-Za-z0-9%-]{0,12}", fullmatch=True)), max_size=4),
)


@st.composite
def posts(draw: st.DrawFn) -> Post:
    names = draw(st.lists(texts(4), max_size=12))
    return Post(
        key="k",
        source=draw(st.sampled_from(["blog", "Q&A <archive>"])),
        title=draw(texts(60)),
        url=draw(st.one_of(urls, urls, urls, st.none())),
        summary_html=draw(texts(400)),
        content_html=draw(st.one_of(st.just(""), texts(200))),
        tags=tuple(Tag(slug=str(i), name=name) for i, name in enumerate(names)),
        published=draw(st.one_of(st.none(), st.just(datetime(2024, 5, 1, tzinfo=UTC)))),
        image_url=draw(st.one_of(st.none(), st.just("https://example.com/i.jpg"))),
        author=draw(st.one_of(st.none(), texts(3))),
    )


common = {
    "hashtags": st.booleans(),
    "max_hashtags": st.integers(min_value=0, max_value=30),
    "excerpt_length": st.one_of(st.none(), st.sampled_from([0, 10, 100, 1000, 5000])),
}
telegram_options = st.builds(
    TelegramRenderOptions, name=st.just("tg"), platform=st.just("telegram"),
    send_image=st.booleans(), link_preview=st.booleans(),
    template=st.sampled_from([None, '<b><a href="{{ link }}">{{ title }}</a></b>\n<i>{{ author }}</i>\n'
                                    "{{ excerpt }}\n{{ tags|join(', ') }} {{ hashtags }}"]),
    **common,
)
x_options = st.builds(
    XRenderOptions, name=st.just("x"), platform=st.just("x"),
    template=st.sampled_from([None, "{{ title|upper }} — {{ excerpt }} {{ link }} {{ hashtags }} {{ source }}"]),
    **common,
)
mastodon_options = st.builds(
    MastodonRenderOptions, name=st.just("md"), platform=st.just("mastodon"),
    spoiler_text=st.one_of(st.none(), st.text(max_size=20)),
    max_characters=st.one_of(st.none(), st.sampled_from([50, 100, 500, 5000])),
    **common,
)


class _StrictTagChecker(HTMLParser):
    """Independent check with the standard library parser: allowed tags, balanced, text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in ALLOWED_TAGS:
            self.errors.append(f"tag {tag}")
        self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.errors.append(f"self-closing {tag}")

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(f"unbalanced {tag}")

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def render_or_nothing(render: Callable[[], RenderedMessage], post: Post,
                      link_fits: Callable[[str], bool] = lambda link: True) -> RenderedMessage | None:
    """Render; RenderError is right only for a post without a link, or one whose bare link is too long."""
    try:
        return render()
    except RenderError:
        assert post.url is None or not link_fits(post.url), "a post whose link fits must always render"
        return None


def assert_link_intact(text: str, link: str | None, *, html_mode: bool) -> None:
    if not link:
        return
    if html_mode:
        assert link in telegram_visible_text(text) or f'href="{html.escape(link, quote=True)}"' in text
    else:
        assert link in text


@PROPERTY_SETTINGS
@given(post=posts(), options=telegram_options, plain=st.booleans())
def test_telegram_fits_and_is_wellformed(post: Post, options: TelegramRenderOptions, plain: bool) -> None:
    message = render_or_nothing(lambda: render_telegram(post, options, RenderEnv(), plain=plain), post)
    if message is None:
        return
    caption = bool(options.send_image and post.image_url and not plain)  # the plain fallback sends no photo
    assert message.limit == (1024 if caption else 4096)
    assert (message.image_url is not None) == caption
    assert 0 < message.length <= message.limit
    assert_link_intact(message.text, post.url, html_mode=not plain)
    if plain:
        assert message.format == "plain" and message.extra["parse_mode"] is None
        assert utf16_length(message.text) == message.length
        return
    assert message.format == "html" and message.extra["parse_mode"] == "HTML"
    assert telegram_visible_length(message.text) == message.length
    assert telegram_html_problems(message.text) == []
    checker = _StrictTagChecker()
    checker.feed(message.text)
    checker.close()
    assert checker.errors == [] and checker.stack == []
    assert "".join(checker.text) == telegram_visible_text(message.text)


@PROPERTY_SETTINGS
@given(post=posts(), options=x_options, plain=st.booleans())
def test_x_fits_weighted_length(post: Post, options: XRenderOptions, plain: bool) -> None:
    message = render_or_nothing(lambda: render_x(post, options, RenderEnv(), plain=plain), post)
    if message is None:
        return
    parsed = parse_tweet(message.text)
    assert parsed.weightedLength == message.length <= 280
    assert parsed.valid
    assert_link_intact(message.text, post.url, html_mode=False)


@PROPERTY_SETTINGS
@given(post=posts(), options=mastodon_options, plain=st.booleans(),
       env_limit=st.sampled_from([None, 100, 500, 5000]), url_length=st.sampled_from([None, 23, 30]))
def test_mastodon_fits_instance_limit(post: Post, options: MastodonRenderOptions, plain: bool,
                                      env_limit: int | None, url_length: int | None) -> None:
    env = RenderEnv(max_chars=env_limit, url_length=url_length)
    limit = options.max_characters or env_limit or 500
    spoiler_text = clean_inline(options.spoiler_text or "")
    budget = limit - max(1, limit // 20) if plain else limit
    message = render_or_nothing(
        lambda: render_mastodon(post, options, env, plain=plain), post,
        lambda link: mastodon_length(link, spoiler_text, url_length=url_length or 23) <= budget)
    if message is None:
        return
    assert message.limit == limit
    spoiler = message.extra["spoiler_text"] or ""
    assert mastodon_length(message.text, spoiler, url_length=url_length or 23) == message.length <= limit
    assert_link_intact(message.text, post.url, html_mode=False)
