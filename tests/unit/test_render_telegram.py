"""bot.render.telegram and bot.render.tghtml: HTML parse mode, visible length, captions, fallback."""

from __future__ import annotations

import pytest

from bot.domain.models import Post, Tag
from bot.render.fit import MAX_TITLE_CHARS
from bot.render.message import RenderEnv
from bot.render.options import TelegramRenderOptions
from bot.render.telegram import (
    CAPTION_LIMIT,
    TEXT_LIMIT,
    render_telegram,
    telegram_html_problems,
    telegram_visible_length,
    telegram_visible_text,
)

OPTIONS = TelegramRenderOptions(name="tg", platform="telegram")
LINK = "https://example.com/2024/05/q-a/?utm_source=x&id=1"


def make_post(title: str = 'Q&A: <script> in "quotes"', summary: str = "<p>Fish &amp; chips</p>",
              **kwargs: object) -> Post:
    fields: dict[str, object] = {"key": "k", "source": "blog", "title": title, "url": LINK,
                                 "summary_html": summary, "content_html": "", "tags": (), "published": None}
    fields.update(kwargs)
    return Post(**fields)  # type: ignore[arg-type]


class TestVisibleLength:
    @pytest.mark.parametrize(
        ("message", "length"),
        [
            ("<b>bold</b>", 4),
            ("a &amp; b", 5),
            ("&lt;script&gt;", 8),
            ('<a href="https://e.com/?a=1&amp;b=2">x</a>', 1),
            ("&quot;&#39;&#x27;", 3),
            ("😀", 2),  # astral: two UTF-16 code units (see tghtml's docstring)
            ("&#x1F600;", 2),
            ("日本語", 3),
            ("", 0),
        ],
    )
    def test_counts_visible_text(self, message: str, length: int) -> None:
        assert telegram_visible_length(message) == length

    def test_visible_text(self) -> None:
        assert telegram_visible_text("<b>Q&amp;A</b> &lt;x&gt;") == "Q&A <x>"


class TestHtmlProblems:
    def test_accepts_the_supported_subset(self) -> None:
        html = ('<b>b</b><strong>s</strong><i>i</i><em>e</em><u>u</u><s>s</s><del>d</del>'
                '<span class="tg-spoiler">x</span><tg-spoiler>y</tg-spoiler><a href="https://e.com">a</a>'
                '<code>c</code><pre><code class="language-python">p</code></pre>'
                "<blockquote expandable>q</blockquote> &lt;&gt;&amp;&quot;&#8230;")
        assert telegram_html_problems(html) == []

    @pytest.mark.parametrize(
        ("html", "problem"),
        [
            ("<p>x</p>", "unsupported tag <p>"),
            ("<br>", "unsupported tag <br>"),
            ("<b>x", "unclosed <b>"),
            ("<b><i>x</b></i>", "unexpected </b>"),
            ("x</i>", "unexpected </i>"),
            ("<a>x</a>", "<a> without href"),
            ('<a href="">x</a>', "<a> without href"),
            ("<span>x</span>", "<span> without"),
            ("<code><b>x</b></code>", "<b> inside <code>"),
            ("<blockquote><blockquote>x</blockquote></blockquote>", "nested <blockquote>"),
            ("Q&A", "unescaped '&'"),
            ("3 < 4", "unescaped '<'"),
            ("&nbsp;", "unsupported entity &nbsp;"),
            ("&#0;", "unsupported entity"),
        ],
    )
    def test_reports(self, html: str, problem: str) -> None:
        assert any(problem in found for found in telegram_html_problems(html))


class TestRender:
    def test_archive_text_shows_literally(self) -> None:
        message = render_telegram(make_post(), OPTIONS, RenderEnv())
        assert message.format == "html"
        assert message.text.startswith("<b>Q&amp;A: &lt;script&gt; in &quot;quotes&quot;</b>\n\n")
        assert telegram_visible_text(message.text).startswith('Q&A: <script> in "quotes"\n\nFish & chips')
        assert "https://example.com/2024/05/q-a/?utm_source=x&amp;id=1" in message.text
        assert telegram_html_problems(message.text) == []
        assert message.length == telegram_visible_length(message.text)
        assert message.limit == TEXT_LIMIT
        assert message.link == LINK

    def test_extra(self) -> None:
        options = TelegramRenderOptions(name="tg", platform="telegram", link_preview=False,
                                        disable_notification=True)
        extra = render_telegram(make_post(), options, RenderEnv()).extra
        assert extra == {"parse_mode": "HTML", "link_preview": False, "link_preview_url": LINK,
                         "disable_notification": True}

    def test_long_content_fits_4096_visible(self) -> None:
        summary = "<p>" + "Fish &amp; chips &lt;3 😀 " * 800 + "</p>"
        # beyond the configurable bound (10,000): built without validation, the renderer still fits the limit
        options = TelegramRenderOptions.model_construct(name="tg", platform="telegram", excerpt_length=100_000)
        message = render_telegram(make_post(summary=summary), options, RenderEnv())
        assert TEXT_LIMIT - 30 < message.length <= TEXT_LIMIT
        assert len(message.text) > TEXT_LIMIT  # markup and entities do not count
        assert message.text.endswith(LINK.replace("&", "&amp;"))

    def test_huge_title_is_capped_and_link_kept(self) -> None:
        message = render_telegram(make_post(title="word & " * 2000, summary="<p>excerpt</p>"), OPTIONS,
                                  RenderEnv())
        assert message.length <= TEXT_LIMIT
        title, rest = telegram_visible_text(message.text).split("\n\n", 1)
        assert title.endswith("word…") and len(title) <= MAX_TITLE_CHARS
        assert rest == "excerpt\n\n" + LINK

    def test_title_cut_when_even_the_capped_title_is_too_long_for_a_caption(self) -> None:
        options = TelegramRenderOptions(name="tg", platform="telegram", send_image=True)
        post = make_post(title="word & " * 2000, summary="<p>excerpt</p>", image_url="https://e.com/i.jpg")
        message = render_telegram(post, options, RenderEnv())
        assert message.length <= CAPTION_LIMIT
        assert telegram_visible_text(message.text).endswith("word…\n\n" + LINK)

    def test_photo_caption_limit(self) -> None:
        options = TelegramRenderOptions(name="tg", platform="telegram", send_image=True, excerpt_length=5000)
        post = make_post(summary="<p>" + "word " * 1000 + "</p>", image_url="https://example.com/i.jpg")
        message = render_telegram(post, options, RenderEnv())
        assert message.image_url == "https://example.com/i.jpg"
        assert message.limit == CAPTION_LIMIT
        assert CAPTION_LIMIT - 10 < message.length <= CAPTION_LIMIT

    def test_no_photo_without_option_or_image(self) -> None:
        post = make_post(image_url="https://example.com/i.jpg")
        assert render_telegram(post, OPTIONS, RenderEnv()).image_url is None
        options = TelegramRenderOptions(name="tg", platform="telegram", send_image=True)
        message = render_telegram(make_post(), options, RenderEnv())
        assert message.image_url is None and message.limit == TEXT_LIMIT

    def test_plain_fallback(self) -> None:
        post = make_post(summary="<p>" + "sentence with words " * 40 + "</p>",
                         tags=(Tag("a", "Editor’s picks"),))
        options = TelegramRenderOptions(name="tg", platform="telegram", hashtags=True)
        normal = render_telegram(post, options, RenderEnv())
        plain = render_telegram(post, options, RenderEnv(), plain=True)
        assert plain.format == "plain" and plain.extra["parse_mode"] is None
        assert plain.text.startswith('Q&A: <script> in "quotes"\n\n')  # no markup, nothing escaped
        assert "<b>" not in plain.text and "&amp;" not in plain.text
        assert plain.length < normal.length
        assert LINK in plain.text and "#EditorsPicks" in plain.text
