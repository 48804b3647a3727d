"""Size bounds of what a post may carry into storage and rendering (pure, stdlib only).

Every field of a ``ParsedPost`` comes from a feed and may be megabytes long.
``bounded`` cuts each one to a size no renderer needs more of, once, where
posts are normalised (``domain.detect.to_post``); ``rejection`` names what
makes an item unusable (a link longer than any real one: the link is the
post's identity fallback and what the message points to, so a cut link would
publish a broken post). docs/operations.md "Limits" lists the bounds.

Cuts fall on code point boundaries and, as far as a bounded look-back can
tell, between grapheme clusters (never between a letter and its combining
marks, inside an emoji ZWJ sequence or a flag); HTML is never cut inside a
tag or a character reference.
"""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import replace

from bot.domain.models import ParsedPost

TITLE_CHARS = 1_000
"""A title is cut (ending in "…") past this many characters; platforms show far fewer."""
SUMMARY_HTML_CHARS = 20_000
"""The summary (HTML) kept: room for an ``EXCERPT_CHARS`` excerpt with its markup."""
CONTENT_HTML_CHARS = 256 * 1024
"""The full content (HTML) kept; used for the excerpt only when the summary has no text."""
EXCERPT_CHARS = 5_000
"""The plain-text excerpt renderers work from (longer than any platform's message)."""
LINK_CHARS = 2_048
"""A post whose link is longer is rejected (skipped and reported); a longer image URL is dropped."""
TAG_CHARS = 200
"""A tag name (and slug) is cut to this, WordPress's own limit."""
TAGS_PER_POST = 100
"""Tags past the first 100 of a post are ignored."""
GUID_CHARS = 1_000
"""A longer guid is replaced by ``GUID_HASH_PREFIX`` + its SHA-256 (still stable, still unique)."""
GUID_HASH_PREFIX = "guid-sha256:"
AUTHOR_CHARS = 200
"""An author name is cut to this."""
ALT_CHARS = 1_500
"""An image's alt text: Mastodon's limit for a media description (the longest any platform takes)."""

ELLIPSIS = "…"
_LOOK_BACK = 32
"""How far a cut may move back to land between grapheme clusters; past it, a code point boundary."""
_ZWJ = "\u200d"


def _joins_previous(ch: str) -> bool:
    """Whether ``ch`` continues the grapheme cluster before it (UAX #29 Extend/ZWJ/SpacingMark, in short)."""
    code = ord(ch)
    return (ch == _ZWJ or unicodedata.category(ch) in ("Mn", "Me", "Mc")
            or 0xFE00 <= code <= 0xFE0F or 0x1F3FB <= code <= 0x1F3FF or 0xE0020 <= code <= 0xE007F
            or 0xE0100 <= code <= 0xE01EF)


def _is_regional_indicator(ch: str) -> bool:
    return 0x1F1E6 <= ord(ch) <= 0x1F1FF


def safe_cut_index(text: str, limit: int) -> int:
    """The largest index ≤ ``limit`` that does not split a grapheme cluster (bounded look-back)."""
    if len(text) <= limit:
        return len(text)
    if limit <= 0:
        return 0
    index = limit
    while _joins_previous(text[index]) or text[index - 1] == _ZWJ:
        index -= 1
        if index == 0:
            return 0
        if limit - index > _LOOK_BACK:
            return limit  # one huge cluster: a code point boundary will do
    if _is_regional_indicator(text[index]) and _is_regional_indicator(text[index - 1]):
        run = index
        while run > max(0, index - _LOOK_BACK) and _is_regional_indicator(text[run - 1]):
            run -= 1
        if (index - run) % 2:
            index -= 1  # the cut would split a flag (a pair of regional indicators)
    return index


def cut_text(text: str, limit: int, *, mark: str = "") -> str:
    """``text`` if it fits in ``limit`` characters, else its head and ``mark``, ``limit`` in all."""
    if len(text) <= limit:
        return text
    return text[: safe_cut_index(text, limit - len(mark))] + mark


def cut_html(html: str, limit: int) -> str:
    """``html`` cut to at most ``limit`` characters, never inside a tag or a character reference."""
    if len(html) <= limit:
        return html
    head = html[: safe_cut_index(html, limit)]
    tag = head.rfind("<")
    if tag > head.rfind(">"):
        head = head[:tag]
    ref = head.rfind("&")
    if ref > head.rfind(";") and ref >= len(head) - 32:
        head = head[:ref]
    return head


def bounded_guid(guid: str | None) -> str | None:
    """``guid``, or its hash when it is longer than ``GUID_CHARS``."""
    if guid is None or len(guid.strip()) <= GUID_CHARS:
        return guid
    digest = hashlib.sha256(guid.strip().encode("utf-8", "surrogatepass")).hexdigest()
    return f"{GUID_HASH_PREFIX}{digest}"


def rejection(post: ParsedPost) -> str | None:
    """Why ``post`` cannot be kept, or None. A post is kept whenever its fields can be cut instead."""
    if post.url is not None and len(post.url.strip()) > LINK_CHARS:
        return f"its link is {len(post.url.strip()):,} characters long, over the {LINK_CHARS:,}-character limit"
    return None


def bounded(post: ParsedPost) -> ParsedPost:
    """``post`` with every field within its bound (see the module constants). Cheap when all fit."""
    image = post.image_url if post.image_url is None or len(post.image_url) <= LINK_CHARS else None
    tags = tuple(cut_text(name, TAG_CHARS) for name in post.tags[:TAGS_PER_POST])
    author = cut_text(post.author, AUTHOR_CHARS) if post.author is not None else None
    return replace(
        post,
        title=cut_text(post.title, TITLE_CHARS, mark=ELLIPSIS),
        guid=bounded_guid(post.guid),
        summary_html=cut_html(post.summary_html, SUMMARY_HTML_CHARS),
        content_html=cut_html(post.content_html, CONTENT_HTML_CHARS),
        tags=tags,
        image_url=image,
        author=author,
        image_alt=cut_text(post.image_alt, ALT_CHARS, mark=ELLIPSIS) if image and post.image_alt else None,
    )
