"""X (Twitter) rendering: plain text measured by twitter-text v3 weighted length (280).

The length is never a character count: ``x_weighted_length`` uses the
twitter-text v3 rules through the ``twitter_text`` package's public API
(``bot.render.twittertext``) — text NFC-normalised,
every URL 23, CJK and emoji 2, Latin 1 (platform-apis §2.5). The text itself is
NFC too, so what we measure is what X counts. ``env`` is not used: the limit is
the standard 280.

``plain=True`` (the fallback after X refused the post) uses the default
template, half the excerpt and fits 5% under the limit, and carries no image.
With ``send_image`` the post's image and its alt text ride along
(``image_url``, ``image_alt``) for the publisher to upload.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Sequence

from grapheme.grapheme_property_group import GraphemePropertyGroup, get_group

from bot.domain.models import Post
from bot.render.fit import fit, link_text, plain_budget, prepare, template_composer
from bot.render.message import RenderedMessage, RenderEnv
from bot.render.options import XRenderOptions
from bot.render.text import nfc
from bot.render.twittertext import X_WEIGHTING, parse_tweet, url_entities

LIMIT = 280
"""``maxWeightedTweetLength`` of twitter-text config v3."""
DEFAULT_EXCERPT_LENGTH = 280
"""Excerpt characters before fitting when the channel sets no ``excerpt_length``."""


def x_weighted_length(text: str) -> int:
    """twitter-text v3 weighted length (what X compares with 280).

    Exactly ``parse_tweet(text).weightedLength``, but about 5x cheaper for text
    with no possible emoji (most posts): twitter-text's emoji regex costs half of
    every call, and fitting a message measures several candidates.
    """
    fast = _weighted_length_without_emoji(text)
    return fast if fast is not None else int(parse_tweet(text).weightedLength)


_LINE_ENDINGS = re.compile(r"\r\n|\r|\n")


@functools.cache
def _weights() -> tuple[int, int, int, tuple[tuple[int, int, int], ...]]:
    """twitter-text's v3 table: (scale, weight of a URL, default weight, (start, end, weight) ranges)."""
    defaults = X_WEIGHTING
    scale = int(defaults["scale"])
    ranges = tuple((int(r["start"]), int(r["end"]), int(r["weight"])) for r in defaults["ranges"])
    return scale, int(defaults["transformed_url_length"]) * scale, int(defaults["default_weight"]), ranges


@functools.lru_cache(maxsize=4096)
def _may_start_emoji(char: str) -> bool:
    """Conservative: Extended_Pictographic (UAX #29, as ``grapheme`` reports it). Every BMP character
    at or above U+00A9 that twitter-text's emoji pattern matches (alone or with U+FE0F) has that
    property (``tests/unit/test_render_x.py`` checks all of them), so the emoji regex itself is
    never needed to decide, and is compiled only when ``parse_tweet`` is."""
    return get_group(char) is GraphemePropertyGroup.EXTENDED_PICTOGRAPHIC


@functools.lru_cache(maxsize=4096)
def _char_weight(char: str) -> int:
    code = ord(char)
    _, _, default, ranges = _weights()
    for start, end, weight in ranges:
        if start <= code <= end:
            return weight
    return default


def _weighted_length_without_emoji(text: str) -> int | None:
    """twitter-text's count when no emoji can occur in ``text``; None when one might."""
    normalized = _LINE_ENDINGS.sub("\n", unicodedata.normalize("NFC", text))
    if "\ufe0f" in normalized or "\u20e3" in normalized or "\u200d" in normalized:
        return None
    # the supplementary pictographic planes (flags, tags, most emoji) always take the full parse;
    # below them, a character that matches the emoji pattern alone (or with FE0F) does too
    if any(ord(ch) >= 0x1F000 or (ord(ch) >= 0xA9 and _may_start_emoji(ch)) for ch in set(normalized)):
        return None
    scale, url_weight, _, _ = _weights()
    total = 0
    position = 0
    for start, _, url in sorted(url_entities(normalized), key=lambda entity: entity[0]):
        if start < position:
            continue
        total += sum(_char_weight(ch) for ch in normalized[position:start]) + url_weight
        position = start + len(url)
    total += sum(_char_weight(ch) for ch in normalized[position:])
    return int(total / scale)


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
    image = post.image_url if options.send_image and not plain else None
    return RenderedMessage(text=text, link=post.url, format="plain", length=length, limit=LIMIT, image_url=image,
                           image_alt=post.image_alt if image else None)
