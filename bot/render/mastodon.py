"""Mastodon rendering: plain text, the instance's limit, Mastodon's own counting.

Limit: the channel's ``max_characters`` if set, else ``RenderEnv.max_chars``
(the publisher reads ``configuration.statuses.max_characters`` from
``/api/v2/instance``), else 500. Counting (``mastodon_length``) follows
Mastodon's StatusLengthValidator: grapheme clusters of spoiler text + text,
where every URL *with a scheme* that Mastodon would link counts as
``RenderEnv.url_length`` (default 23) and a remote mention ``@user@domain``
counts as ``@user``. URL detection uses the twitter-text extractor Mastodon's
own is based on; it agrees with Mastodon.py's ground-truth table.

``plain=True`` (the fallback after a 422) uses the default template, half the
excerpt and fits 5% under the limit.

``extra`` keys for the publisher: ``visibility``, ``language`` (or None) and
``spoiler_text`` (or None). With ``send_image`` (the default) the post's image
and its alt text ride along (``image_url``, ``image_alt``) for the publisher to
upload; the ``plain`` fallback carries no image (a refused attachment must not
fail the retry again).
"""

from __future__ import annotations

import re

from bot.domain.models import Post
from bot.render.fit import RenderError, fit, link_text, plain_budget, prepare, template_composer
from bot.render.message import RenderedMessage, RenderEnv
from bot.render.options import MastodonRenderOptions
from bot.render.text import clean_inline, grapheme_length
from bot.render.twittertext import url_entities

DEFAULT_LIMIT = 500
"""Mastodon's default ``max_characters``."""
DEFAULT_URL_LENGTH = 23
"""Mastodon's ``characters_reserved_per_url``."""
DEFAULT_EXCERPT_LENGTH = 300
"""Excerpt characters before fitting when the channel sets no ``excerpt_length``."""

# Mastodon's mention syntax: @user or @user@domain, not preceded by a word char, "=" or "/".
_MENTION = re.compile(r"(?<![=/\w])@([a-z0-9_]+(?:[a-z0-9_.\-]+[a-z0-9_]+)?)(?:@[\w.\-]+\w)?",
                      re.IGNORECASE)


def mastodon_length(text: str, spoiler_text: str = "", *, url_length: int = DEFAULT_URL_LENGTH) -> int:
    """Characters Mastodon counts for a status with this text and content warning."""
    urls = [(start, end) for start, end, _ in url_entities(text, without_protocol=False)]
    pieces: list[tuple[int, int, str]] = [(start, end, "x" * url_length) for start, end in urls]
    for match in _MENTION.finditer(text):
        start, end = match.span()
        if any(s < end and start < e for s, e in urls):
            continue  # part of a URL, e.g. https://example.social/@user
        pieces.append((start, end, "@" + match.group(1)))
    pieces.sort()
    parts: list[str] = []
    pos = 0
    for start, end, replacement in pieces:
        parts.append(text[pos:start])
        parts.append(replacement)
        pos = end
    parts.append(text[pos:])
    return grapheme_length("".join(parts)) + grapheme_length(spoiler_text)


def render_mastodon(post: Post, options: MastodonRenderOptions, env: RenderEnv, *,
                    plain: bool = False) -> RenderedMessage:
    """The status for one Mastodon channel. Pure."""
    limit = options.max_characters or env.max_chars or DEFAULT_LIMIT
    url_length = env.url_length if env.url_length is not None else DEFAULT_URL_LENGTH
    spoiler = clean_inline(options.spoiler_text or "")
    if grapheme_length(spoiler) >= limit:
        raise RenderError(f"channel {options.name!r}: spoiler_text alone reaches the limit of {limit}")
    key = f"channels.{options.name}.template"
    cap = options.excerpt_length if options.excerpt_length is not None else DEFAULT_EXCERPT_LENGTH
    content = prepare(post, excerpt_length=cap, plain=plain,
                      hashtags=options.hashtags, max_hashtags=options.max_hashtags)
    compose = template_composer(content, None if plain else options.template, html_mode=False, key=key)

    def measure(text: str) -> int:
        return mastodon_length(text, spoiler, url_length=url_length)

    budget = plain_budget(limit) if plain else limit
    text, length = fit(content, compose, measure, budget, link_only=link_text(content.link, html_mode=False))
    return RenderedMessage(
        text=text,
        link=post.url,
        format="plain",
        length=length,
        limit=limit,
        image_url=post.image_url if options.send_image and not plain else None,
        image_alt=post.image_alt if options.send_image and post.image_url and not plain else None,
        extra={"visibility": options.visibility, "language": options.language,
               "spoiler_text": spoiler or None},
    )
