"""Bluesky rendering: a post record's text, its facets (links, hashtags) and its link card. Pure.

Limits (lexicon ``app.bsky.feed.post``): text at most 300 graphemes and 3,000
UTF-8 bytes; ``langs`` at most 3. URLs are not shortened: they count in full.
``bluesky_measure`` is one number for both limits (graphemes, or a tenth of the
bytes when that is more), so the fitting step (``bot.render.fit``) keeps both.

Links are not detected by Bluesky: a URL without a facet is dead text. Every
``http(s)://`` URL in the final text gets a ``#link`` facet and every hashtag a
``#tag`` facet (``facets``), with UTF-8 **byte** offsets (start inclusive, end
exclusive). The post link is found as the exact string (so a link that ends in
``.`` or ``)`` keeps it); other URLs lose trailing punctuation the way the
Bluesky app's own detection does. A hashtag is ``#`` after whitespace or at
the start, up to the next whitespace, trailing punctuation dropped; it needs a
character that is neither a digit nor punctuation (``#1`` is no tag) and at
most 64 graphemes / 640 bytes. Mentions are left as text (a mention facet
needs the account's DID).

The link card (``app.bsky.embed.external``): the post link with its title and
excerpt (each at most ``CARD_GRAPHEMES``); the publisher adds the featured
image as ``thumb``. With a card (``link_card = true``, the default) the URL is
left out of the text (``link_in_text = false``, the default: the card is the
link, and the 300 graphemes go to the words; this is what users do by hand in
the Bluesky app), and the default template is the title and hashtags, the
excerpt being on the card. ``{{ link }}`` in a custom template is then empty.
Without a card, or for a post without a link, the text carries the URL and the
default template is the plain one (title, excerpt, link, hashtags).

``plain=True`` (the fallback after Bluesky refused the record): no card, the URL
in the text, the default template, half the excerpt, 5% under the limit.

``extra`` keys for the publisher: ``facets`` (list of facet objects), ``langs``
(list), ``card`` (``{"uri", "title", "description"}`` or None).
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from dataclasses import replace
from typing import Any

from bot.channel_options import ChannelOptions
from bot.domain.models import Post
from bot.render.fit import Content, RenderError, fit, plain_budget, prepare, template_composer
from bot.render.message import RenderedMessage, RenderEnv
from bot.render.templates import TemplateError, validate_template
from bot.render.text import grapheme_length, truncate
from bot.validation import Field, field_validator

MAX_GRAPHEMES = 300
"""``maxGraphemes`` of a post's text."""
MAX_BYTES = 3000
"""``maxLength`` of a post's text, in UTF-8 bytes."""
MAX_LANGS = 3
"""``langs`` holds at most this many language tags."""
MAX_TAG_GRAPHEMES = 64
MAX_TAG_BYTES = 640
"""A ``#tag`` facet's tag (without the ``#``) is at most this long."""
CARD_GRAPHEMES = 300
"""The card's title and description are cut to this many graphemes (the app shows two or three lines)."""
DEFAULT_EXCERPT_LENGTH = 300
"""Excerpt characters before fitting when the channel sets no ``excerpt_length``."""
DEFAULT_TEMPLATE_CARD = "{{ title }}\n\n{{ link }}\n\n{{ hashtags }}"
"""The default with a link card: the title and hashtags in the text, the excerpt on the card
(``{{ link }}`` is empty unless ``link_in_text``)."""

LINK = "app.bsky.richtext.facet#link"
TAG = "app.bsky.richtext.facet#tag"

_LANG = re.compile(r"^[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8}){0,4}$")
_URL = re.compile(r"(?<![^\s(])https?://[^\s]+", re.IGNORECASE)
"""A URL with a scheme, after whitespace, "(" or at the start, up to the next whitespace. Linear: a match
may only start where the lookbehind allows, and it runs to the end of its whitespace-free token."""
_URL_TRAILING = ".,;:!?\"'"
_HASHTAG = re.compile(r"(?<!\S)[#\uff03](\S+)")
"""``#`` (or the full-width ``＃``) at the start or after whitespace, then the rest of the token."""
_LINK_AFTER = frozenset(".,;:!?)]}>\"'")
"""Characters that may follow the post link without being part of it (when a space or the end follows them)."""


class BlueskyRenderOptions(ChannelOptions):
    """A Bluesky channel's rendering keys."""

    langs: tuple[str, ...] = Field(default=(), max_length=MAX_LANGS)
    """Languages of the posts (BCP 47 tags such as ``en`` or ``pt-BR``), at most 3; none: not said."""
    link_card: bool = True
    """Attach the post link as a link card (title, excerpt and the featured image as thumbnail)."""
    link_in_text: bool = False
    """With a card, also write the URL in the text (it counts in full against the 300 graphemes)."""
    card_image: bool = True
    """Upload the post's featured image as the card's thumbnail (at most 1,000,000 bytes, downscaled)."""

    @field_validator("langs")
    @classmethod
    def _language_tags(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for tag in value:
            if not isinstance(tag, str) or not _LANG.match(tag):
                raise ValueError("each entry must be a language tag such as 'en' or 'pt-BR'")
        return value

    @field_validator("template")
    @classmethod
    def _valid_template(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            validate_template(value, platform="bluesky")
        except TemplateError as exc:
            raise ValueError(exc.reason) from None
        return value


# -- measuring ---------------------------------------------------------------------------------------


def utf8_length(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def bluesky_measure(text: str) -> int:
    """Graphemes, or a tenth of the UTF-8 bytes if that is more: within 300 means within both limits."""
    return max(grapheme_length(text), -(-utf8_length(text) // (MAX_BYTES // MAX_GRAPHEMES)))


def _no_surrogates(text: str) -> str:
    """A lone surrogate cannot be encoded as UTF-8 (nor sent as JSON a server accepts): replaced."""
    return text.encode("utf-8", "replace").decode("utf-8") if any(0xD800 <= ord(c) <= 0xDFFF for c in text) \
        else text


# -- facets ------------------------------------------------------------------------------------------


def _overlaps(spans: list[tuple[int, int, str]], start: int, end: int) -> bool:
    """Does [start, end) overlap one of ``spans`` (sorted by start, disjoint)? Binary search: linear overall."""
    i = bisect.bisect_right(spans, (start, end, "\U0010ffff")) - 1
    return any(0 <= j < len(spans) and spans[j][0] < end and start < spans[j][1] for j in (i, i + 1))


def _link_spans(text: str, link: str | None) -> list[tuple[int, int, str]]:
    """(start, end, uri) in code points: the post link where it stands whole, then every other URL."""
    spans: list[tuple[int, int, str]] = []
    if link:
        start = text.find(link)
        while start != -1:
            end = start + len(link)
            before_ok = start == 0 or text[start - 1].isspace() or text[start - 1] in "([<\"'"
            after_ok = end == len(text) or text[end].isspace() or (
                text[end] in _LINK_AFTER and (end + 1 == len(text) or text[end + 1].isspace()
                                              or text[end + 1] in _LINK_AFTER))
            if before_ok and after_ok:
                spans.append((start, end, link))
            start = text.find(link, end)
    exact = list(spans)
    for match in _URL.finditer(text):
        start, end = match.span()
        if _overlaps(exact, start, end):
            continue
        url = match.group()
        while url and (url[-1] in _URL_TRAILING or (url[-1] == ")" and url.count(")") > url.count("("))):
            url = url[:-1]
        if len(url) > len("https://") and "://" in url and url.split("://", 1)[1]:
            spans.append((start, start + len(url), url))
    return sorted(spans)


def _is_punctuation(ch: str) -> bool:
    return unicodedata.category(ch).startswith("P")


def _tag_spans(text: str, taken: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """(start, end, tag) in code points for every hashtag; the span covers the ``#``."""
    spans: list[tuple[int, int, str]] = []
    for match in _HASHTAG.finditer(text):
        tag = match.group(1)
        while tag and _is_punctuation(tag[-1]):
            tag = tag[:-1]
        if not tag or not any(not (ch.isdigit() or _is_punctuation(ch)) for ch in tag):
            continue
        if grapheme_length(tag, MAX_TAG_GRAPHEMES + 1) > MAX_TAG_GRAPHEMES or utf8_length(tag) > MAX_TAG_BYTES:
            continue
        start = match.start()
        end = match.start(1) + len(tag)
        if _overlaps(taken, start, end):
            continue
        spans.append((start, end, tag))
    return spans


def facets(text: str, link: str | None = None) -> list[dict[str, Any]]:
    """The facets of ``text``: a ``#link`` per URL (``link``, the post link, matched exactly) and a
    ``#tag`` per hashtag, with UTF-8 byte offsets, ordered by position and never overlapping."""
    links = _link_spans(text, link)
    tags = _tag_spans(text, links)
    found: list[tuple[int, int, dict[str, str]]] = [(s, e, {"$type": LINK, "uri": uri}) for s, e, uri in links]
    found += [(s, e, {"$type": TAG, "tag": tag}) for s, e, tag in tags]
    found.sort(key=lambda item: item[0])
    out: list[dict[str, Any]] = []
    offset_chars, offset_bytes = 0, 0
    for start, end, feature in found:
        offset_bytes += utf8_length(text[offset_chars:start])
        byte_start = offset_bytes
        offset_bytes += utf8_length(text[start:end])
        offset_chars = end
        out.append({"index": {"byteStart": byte_start, "byteEnd": offset_bytes}, "features": [feature]})
    return out


# -- rendering ---------------------------------------------------------------------------------------


def _card(content: Content) -> dict[str, str]:
    def cut(text: str) -> str:
        return truncate(text, CARD_GRAPHEMES, grapheme_length) or text[:CARD_GRAPHEMES]

    return {"uri": content.link, "title": cut(content.title), "description": cut(content.excerpt)}


def render_bluesky(post: Post, options: BlueskyRenderOptions, env: RenderEnv, *,
                   plain: bool = False) -> RenderedMessage:
    """The record's text, facets and card for one Bluesky channel. Pure; ``env`` is not used (the limits
    are the lexicon's)."""
    del env
    key = f"channels.{options.name}.template"
    cap = options.excerpt_length if options.excerpt_length is not None else DEFAULT_EXCERPT_LENGTH
    content = prepare(post, excerpt_length=cap, plain=plain, hashtags=options.hashtags,
                      max_hashtags=options.max_hashtags)
    content = replace(content, title=_no_surrogates(content.title), excerpt=_no_surrogates(content.excerpt),
                      source=_no_surrogates(content.source), author=_no_surrogates(content.author),
                      hashtags=tuple(_no_surrogates(h) for h in content.hashtags))
    card = _card(content) if options.link_card and content.link and not plain else None
    url_in_text = card is None or options.link_in_text
    written = content if url_in_text else replace(content, link="")
    if plain:
        template = None
    elif options.template is not None:
        template = options.template
    else:
        template = DEFAULT_TEMPLATE_CARD if card is not None else None
    compose = template_composer(written, template, html_mode=False, key=key)
    budget = plain_budget(MAX_GRAPHEMES) if plain else MAX_GRAPHEMES
    if card is not None and not compose(written.title, written.excerpt, written.hashtags).strip():
        text = ""  # everything is on the card: an empty text is allowed with an embed
    else:
        text, _ = fit(written, compose, bluesky_measure, budget, link_only=written.link)
    if utf8_length(text) > MAX_BYTES or grapheme_length(text) > MAX_GRAPHEMES:  # fit measured it: never
        raise RenderError(f"channel {options.name!r}: the text does not fit Bluesky's limits")
    image = post.image_url if card is not None and options.card_image else None
    return RenderedMessage(
        text=text,
        link=post.url,
        format="plain",
        length=grapheme_length(text),
        limit=MAX_GRAPHEMES,
        image_url=image,
        image_alt=None,  # a card's thumbnail takes no alt text (lexicon app.bsky.embed.external)
        extra={"facets": facets(text, content.link or None), "langs": list(options.langs), "card": card},
    )
