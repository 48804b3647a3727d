"""Threads rendering: plain text within 500 characters counted Meta's way, and never more than 5 links.

Counting (``threads_length``). Meta's documentation says "Text posts are limited
to 500 characters" and "emojis are counted as the number of UTF-8 bytes" (it
links grapheme-splitter, i.e. user-perceived characters). It does not say how a
combining mark or an unusual script counts, so the count is conservative: a
grapheme cluster holding an emoji (an Extended_Pictographic or regional-indicator
character, or an emoji presentation selector / keycap) counts its UTF-8 bytes
(😀 4, 👨‍👩‍👧‍👦 25, 🇯🇵 8); any other cluster counts its code points (``é``
as e + U+0301 counts 2). URLs count in full: Threads shortens nothing.

Links (``threads_links``). Since 2025-12-22 Meta refuses a post with more than
5 links at container creation (``THREADS_API__LINK_LIMIT_EXCEEDED``), counting
every unique URL in the text, with or without a scheme (its examples are bare
``www.`` hosts), plus a ``link_attachment`` that differs from them. The fitting
treats a candidate with more than ``MAX_LINKS`` as too long, so the excerpt is
shortened, hashtags dropped or the title cut until at most 5 remain: a post
that links a lot in its excerpt loses those links, never the post link. Both
twitter-text's extractor and tagrelay's own URL-token scan are asked, and
spellings that differ only in scheme, case or a trailing ``/`` are one link.

Shape. By default a TEXT post whose ``link_attachment`` is the post link (Threads
shows its preview card). With ``send_image`` and a post image, an IMAGE post
(the image by its public URL, the alt text cut to 1,000 characters); link
attachments exist only for text posts, so the link stays in the text. The
``plain`` fallback (after Threads refused a post) uses the default template,
half the excerpt, 5% under the limit, and never the image (a refused image
must not fail it again).

``extra`` for the publisher: ``media_type`` (``TEXT`` / ``IMAGE``) and
``link_attachment`` (or None).
"""

from __future__ import annotations

import functools
import re

import grapheme
from grapheme.grapheme_property_group import GraphemePropertyGroup, get_group

from bot.domain.models import Post
from bot.render.fit import fit, link_text, plain_budget, prepare, template_composer
from bot.render.message import RenderedMessage, RenderEnv
from bot.render.options import ThreadsRenderOptions
from bot.render.text import ELLIPSIS, truncate, url_spans
from bot.render.twittertext import url_entities

LIMIT = 500
"""Characters per Threads post (developers.facebook.com/docs/threads/posts, "Limitations")."""
MAX_LINKS = 5
"""Unique links a post may carry (more fail at container creation since 2025-12-22)."""
ALT_TEXT_LIMIT = 1000
"""``alt_text``'s maximum length (the publishing reference)."""
DEFAULT_EXCERPT_LENGTH = 300
"""Excerpt characters before fitting when the channel sets no ``excerpt_length``."""

_EMOJI_MARKS = ("\ufe0f", "\u20e3")
"""Emoji presentation selector and combining keycap: a cluster holding one shows as an emoji."""
_EMOJI_GROUPS = (GraphemePropertyGroup.EXTENDED_PICTOGRAPHIC, GraphemePropertyGroup.REGIONAL_INDICATOR)
_TRAILING = ".,;:!?)]}'\"/"
_SCHEME = re.compile(r"^[a-z][a-z0-9+.\-]*://", re.IGNORECASE)


@functools.lru_cache(maxsize=4096)
def _is_emoji_char(char: str) -> bool:
    return get_group(char) in _EMOJI_GROUPS


def _cluster_length(cluster: str) -> int:
    if any(mark in cluster for mark in _EMOJI_MARKS) or any(_is_emoji_char(c) for c in cluster):
        return len(cluster.encode("utf-8"))
    return len(cluster)


def threads_length(text: str) -> int:
    """What Threads counts against its 500 characters, conservatively (module docstring)."""
    if text.isascii():
        return len(text)  # no emoji: ASCII keycaps need U+FE0F / U+20E3, which are not ASCII
    return sum(_cluster_length(cluster) for cluster in grapheme.graphemes(text))


def _link_key(url: str) -> str:
    """One spelling per link: no scheme, lower case, no trailing punctuation or ``/``."""
    return _SCHEME.sub("", url.strip()).rstrip(_TRAILING).casefold()


def threads_links(text: str, attachment: str | None = None) -> set[str]:
    """The unique links Threads would count in a post with this text and ``link_attachment`` (normalised)."""
    found = {_link_key(url) for _, _, url in url_entities(text, without_protocol=True)}
    found |= {_link_key(text[start:end]) for start, end in url_spans(text)}
    if attachment:
        found.add(_link_key(attachment))
    found.discard("")
    return found


def render_threads(post: Post, options: ThreadsRenderOptions, env: RenderEnv, *,
                   plain: bool = False) -> RenderedMessage:
    """The post for one Threads channel. Pure; ``env`` is not used (the limit is Threads' own)."""
    image = bool(options.send_image and post.image_url and not plain)
    attachment = None if image else (post.url or None)
    key = f"channels.{options.name}.template"
    cap = options.excerpt_length if options.excerpt_length is not None else DEFAULT_EXCERPT_LENGTH
    content = prepare(post, excerpt_length=cap, plain=plain,
                      hashtags=options.hashtags, max_hashtags=options.max_hashtags)
    compose = template_composer(content, None if plain else options.template, html_mode=False, key=key)
    budget = plain_budget(LIMIT) if plain else LIMIT

    def measure(text: str) -> int:
        length = threads_length(text)
        if len(threads_links(text, attachment)) > MAX_LINKS:
            return budget + 1 + length  # too many links counts as too long: the fitting cuts until it fits
        return length

    text, length = fit(content, compose, measure, budget, link_only=link_text(content.link, html_mode=False))
    alt = None
    if image and post.image_alt:
        alt = truncate(post.image_alt, ALT_TEXT_LIMIT) or post.image_alt[:ALT_TEXT_LIMIT - 1] + ELLIPSIS
    return RenderedMessage(
        text=text,
        link=post.url,
        format="plain",
        length=length,
        limit=LIMIT,
        image_url=post.image_url if image else None,
        image_alt=alt,
        extra={"media_type": "IMAGE" if image else "TEXT", "link_attachment": attachment},
    )
