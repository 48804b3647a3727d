"""Telegram rendering: HTML parse mode, escaped archive text, 4096 visible / 1024 caption.

``render_telegram`` returns ``format="html"`` text for ``parse_mode="HTML"``:
the channel template (default: bold title, excerpt, link, hashtags) with every
value from the archive escaped, so a title such as ``Q&A: <script>`` is shown
literally. Length is Telegram's visible length (``telegram_visible_length``):
tags count nothing, ``&amp;`` counts one. With ``send_image`` and a post image
the text becomes a photo caption (limit 1024, ``image_url`` set).

``plain=True`` is the fallback after Telegram refused the HTML: no markup, no
parse mode, the default template, half the excerpt, 5% under the limit.

``extra`` keys for the publisher: ``parse_mode`` ("HTML" or None),
``link_preview`` (bool), ``link_preview_url`` (for ``LinkPreviewOptions.url``:
the post link, the featured image with ``link_preview_url = "image"``, None
for Telegram's own choice), ``disable_notification`` (bool), and only when
the channel template produced HTML Telegram would refuse for this post,
``template_fallback`` (the reason; the default template was used instead —
worth a warning in the log).

A template that does not compile, uses unknown names or breaks the sandbox
raises ``TemplateError``; ``RenderError`` when nothing fits.
"""

from __future__ import annotations

from bot.domain.models import Post
from bot.render.fit import RenderError, fit, link_text, plain_budget, prepare, template_composer
from bot.render.message import RenderedMessage, RenderEnv
from bot.render.options import TelegramRenderOptions
from bot.render.tghtml import (
    telegram_html_problems,
    telegram_visible_length,
    telegram_visible_text,
    utf16_length,
)

TEXT_LIMIT = 4096
"""``sendMessage.text``: characters after entity parsing."""
CAPTION_LIMIT = 1024
"""``sendPhoto.caption``: characters after entity parsing."""
DEFAULT_EXCERPT_LENGTH = 600
"""Excerpt characters when the channel sets no ``excerpt_length``."""

__all__ = [
    "CAPTION_LIMIT",
    "DEFAULT_EXCERPT_LENGTH",
    "TEXT_LIMIT",
    "render_telegram",
    "telegram_html_problems",
    "telegram_visible_length",
    "telegram_visible_text",
]


def _preview_url(post: Post, options: TelegramRenderOptions) -> str | None:
    """The URL the link preview shows (``link_preview_url``): the post link, its image, or none (Telegram
    picks the first URL of the text)."""
    if options.link_preview_url == "first":
        return None
    if options.link_preview_url == "image" and post.image_url:
        return post.image_url
    return post.url


def render_telegram(post: Post, options: TelegramRenderOptions, env: RenderEnv, *,
                    plain: bool = False) -> RenderedMessage:
    """The message for one Telegram channel. Pure; ``env`` is not used by Telegram."""
    # the plain fallback never sends the photo: a rejected image URL must not fail it again
    caption = bool(options.send_image and post.image_url and not plain)
    limit = CAPTION_LIMIT if caption else TEXT_LIMIT
    html_mode = not plain
    key = f"channels.{options.name}.template"
    cap = options.excerpt_length if options.excerpt_length is not None else DEFAULT_EXCERPT_LENGTH
    content = prepare(post, excerpt_length=cap, plain=plain,
                      hashtags=options.hashtags, max_hashtags=options.max_hashtags)
    template = None if plain else options.template
    measure = telegram_visible_length if html_mode else utf16_length
    budget = plain_budget(limit) if plain else limit
    link_only = link_text(content.link, html_mode=html_mode)
    compose = template_composer(content, template, html_mode=html_mode, key=key)
    text, length = fit(content, compose, measure, budget, link_only=link_only)
    extra: dict[str, object] = {}
    if html_mode:
        problems = telegram_html_problems(text)
        if problems and template is not None:
            # The template passed validation, but this post's data breaks it (say, no link for
            # an <a href>). Losing the post is worse than using the default layout once.
            extra["template_fallback"] = f"Telegram would reject the HTML: {'; '.join(problems[:3])}"
            compose = template_composer(content, None, html_mode=True, key=key)
            text, length = fit(content, compose, measure, budget, link_only=link_only)
            problems = telegram_html_problems(text)
        if problems:
            raise RenderError(f"channel {options.name!r}: cannot produce valid Telegram HTML: "
                              f"{'; '.join(problems[:3])}")
    return RenderedMessage(
        text=text,
        link=post.url,
        format="html" if html_mode else "plain",
        length=length,
        limit=limit,
        image_url=post.image_url if caption else None,
        extra={
            "parse_mode": "HTML" if html_mode else None,
            "link_preview": options.link_preview,
            "link_preview_url": _preview_url(post, options),
            "disable_notification": options.disable_notification,
            **extra,
        },
    )
