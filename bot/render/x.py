"""X (Twitter) rendering: plain text measured by twitter-text v3 weighted length (280).

The length is never a character count: ``x_weighted_length`` uses the
twitter-text v3 rules through the ``twitter_text`` package — text NFC-normalised,
every URL 23, CJK and emoji 2, Latin 1 (platform-apis §2.5). The text itself is
NFC too, so what we measure is what X counts. ``env`` is not used: the limit is
the standard 280.

``plain=True`` (the fallback after X refused the post) uses the default
template, half the excerpt and fits 5% under the limit.
"""

from __future__ import annotations

from collections.abc import Sequence

from twitter_text import parse_tweet

from bot.domain.models import Post
from bot.publishers.api import RenderedMessage, RenderEnv
from bot.render.fit import fit, link_text, plain_budget, prepare, template_composer
from bot.render.options import XRenderOptions
from bot.render.text import nfc

LIMIT = 280
"""``maxWeightedTweetLength`` of twitter-text config v3."""
DEFAULT_EXCERPT_LENGTH = 280
"""Excerpt characters before fitting when the channel sets no ``excerpt_length``."""


def x_weighted_length(text: str) -> int:
    """twitter-text v3 weighted length (what X compares with 280)."""
    return int(parse_tweet(text).weightedLength)


def render_x(post: Post, options: XRenderOptions, env: RenderEnv, *, plain: bool = False) -> RenderedMessage:
    """The post text for one X channel. Pure."""
    key = f"channels.{options.name}.template"
    cap = options.excerpt_length if options.excerpt_length is not None else DEFAULT_EXCERPT_LENGTH
    content = prepare(post, excerpt_length=cap, plain=plain,
                      hashtags=options.hashtags, max_hashtags=options.max_hashtags)
    inner = template_composer(content, None if plain else options.template, html_mode=False, key=key)

    def compose(title: str, excerpt: str, hashtags: Sequence[str]) -> str:
        # the template's own text may not be NFC: normalise the whole message,
        # but keep the link exactly as the archive wrote it
        text = inner(title, excerpt, hashtags)
        link = content.link
        if not link:
            return nfc(text)
        return link.join(nfc(part) for part in text.split(link))

    text, length = fit(content, compose, x_weighted_length, plain_budget(LIMIT) if plain else LIMIT,
                       link_only=link_text(content.link, html_mode=False))
    return RenderedMessage(text=text, link=post.url, format="plain", length=length, limit=LIMIT)
