"""Text, URLs and images out of feed markup, shared by every source: entities, titles, the featured
image and its alt text.

``clean_text`` decodes entity references and collapses whitespace (titles, tags, authors, alt text).
``first_image`` is the ``src`` of the first ``<img>`` of an HTML fragment; ``html_alt`` the ``alt`` of
an ``<img>`` (the first, or the one with a given ``src``). ``pick_image`` chooses an RSS/Atom item's
featured image (media:content, then media:thumbnail, then an image enclosure, then the first
``<img>`` of the content) and ``image_alt`` its alt text, in this order: the ``media:description``
(else ``media:title``) of the Media RSS element that gave the image, of its ``media:group`` or of the
item (``media_alts`` reads them from the lxml tree: feedparser drops them); the ``alt`` of an
``<img>`` in the content with the same ``src``; for an image taken from the first ``<img>``, that
tag's ``alt``. An empty ``alt=""`` (a decorative image) is no alt text. Alt text is hostile input
like a title and is cleaned the same way (``clean_alt``); its length is bounded when a post is
normalised (``bot.domain.limits``).

Every regex here is linear in the text (tests/unit/test_linear_regexes.py): ``<img`` tags are
visited once each (``_img_matches``), an attribute is read within ``MAX_IMG_TAG_CHARS`` of its tag,
and at most ``MAX_IMG_TAGS`` tags are compared by ``src``.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urljoin

from lxml import etree

_ITEM_TAGS = ("item", "{http://purl.org/rss/1.0/}item", "{http://www.w3.org/2005/Atom}entry",
              "{http://purl.org/atom/ns#}entry")
_MEDIA_NS = "http://search.yahoo.com/mrss/"
_ENTITY_REF = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")
_IMG_SRC = re.compile(r"""<img\b[^>]*?\bsrc\s*=\s*(?:"([^"]+)"|'([^']+)'|([^\s>"']+))""", re.IGNORECASE)
_IMG_OPEN = re.compile(r"<img\b", re.IGNORECASE)
_ATTRIBUTE = re.compile(r"""[\s/]*([^\s"'<>/=]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?""")
_TAG = re.compile(r"<[^<>]*>")
MAX_IMG_TAG_CHARS = 4096
"""An ``<img>`` tag longer than this is not read for its ``alt`` (bounds the work per tag)."""
MAX_IMG_TAGS = 64
"""``<img>`` tags looked at when matching an image's ``src``."""
_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".avif", ".bmp", ".svg")
_RECOVER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                           recover=True, remove_blank_text=False)

def decode_entities(text: str) -> str:
    """Decode complete ``&name;``/``&#NNN;`` references left after XML decoding.

    WordPress double-escapes (``&amp;#8217;``) and Atom ``type="html"`` titles
    keep references; a bare ``&`` as in ``R&D`` stays as it is.
    """
    if "&" not in text:
        return text
    return _ENTITY_REF.sub(lambda m: html.unescape(m.group(0)), text)


def clean_text(text: str | None) -> str:
    """Entities decoded, whitespace collapsed, for titles, tags and authors."""
    if not text:
        return ""
    return " ".join(decode_entities(text).split())


def _img_src(html_text: str) -> re.Match[str] | None:
    """``_IMG_SRC.search(html_text)`` in linear time.

    Searching tries every ``<img`` and scans each up to the next ``>``: on "<img <img <img …"
    that is quadratic. When one ``<img`` finds no ``src`` before its ``>``, no later ``<img``
    before that ``>`` can (it would scan a part of the same text), so those are skipped.
    """
    skip_until = 0
    for tag in _IMG_OPEN.finditer(html_text):
        if tag.start() < skip_until:
            continue
        match = _IMG_SRC.match(html_text, tag.start())
        if match:
            return match
        skip_until = html_text.find(">", tag.start())
        if skip_until < 0:
            return None
    return None


def first_image(html_text: str, base_url: str | None = None) -> str | None:
    """The ``src`` of the first ``<img>`` in an HTML fragment (absolute when ``base_url`` is given)."""
    if not html_text or "<img" not in html_text.lower():
        return None
    match = _img_src(html_text)
    if not match:
        return None
    src = html.unescape(next(g for g in match.groups() if g)).strip()
    if not src or src.startswith("data:"):
        return None
    return absolute(src, base_url)


def _img_matches(html_text: str) -> Iterator[re.Match[str]]:
    """Each ``<img`` that has a ``src`` (``_IMG_SRC`` matches), in order, in linear time overall (the
    skipping of ``_img_src``)."""
    skip_until = 0
    for tag in _IMG_OPEN.finditer(html_text):
        if tag.start() < skip_until:
            continue
        match = _IMG_SRC.match(html_text, tag.start())
        if match:
            skip_until = match.end()
            yield match
            continue
        skip_until = html_text.find(">", tag.start())
        if skip_until < 0:
            return


def _tag_attribute(html_text: str, start: int, name: str) -> str | None:
    """The value of attribute ``name`` of the tag opening at ``start`` (``<img …>``), entities decoded;
    None when absent, or when the tag is longer than ``MAX_IMG_TAG_CHARS``."""
    window = html_text[start:start + MAX_IMG_TAG_CHARS]
    pos = 4  # past "<img"
    while pos < len(window):
        if window.startswith(">", pos):
            return None
        match = _ATTRIBUTE.match(window, pos)
        if match is None or match.end() == pos:
            return None
        if match.group(1).lower() == name:
            value = next((g for g in match.groups()[1:] if g is not None), "")
            return html.unescape(value)
        pos = match.end()
    return None


def clean_alt(text: str | None) -> str | None:
    """Alt text as stored: cleaned like a title (entities decoded, whitespace collapsed); None when empty."""
    return clean_text(text) or None


def html_alt(html_text: str, image_url: str | None, base_url: str | None = None, *,
             first: bool = False) -> str | None:
    """The ``alt`` of the ``<img>`` in ``html_text`` whose ``src`` is ``image_url`` (resolved against
    ``base_url``); with ``first``, of the first ``<img>`` that has a ``src`` (the one ``first_image``
    returns). None when there is no such tag or its ``alt`` is missing or empty."""
    if not html_text or not image_url or "<img" not in html_text.lower():
        return None
    for count, match in enumerate(_img_matches(html_text)):
        if count >= MAX_IMG_TAGS:
            return None
        src = html.unescape(next(g for g in match.groups() if g)).strip()
        if first or absolute(src, base_url) == image_url:
            return clean_alt(_tag_attribute(html_text, match.start(), "alt"))
    return None


def absolute(url: str | None, base_url: str | None) -> str | None:
    """``url`` resolved against ``base_url`` when it is relative; None for empty."""
    if not url or not url.strip():
        return None
    url = url.strip()
    if base_url and "://" not in url[:12]:
        return urljoin(base_url, url)
    return url


def _is_image(url: str | None, mime: str | None, medium: str | None) -> bool:
    if not url:
        return False
    if medium:
        return medium.lower() == "image"
    if mime:
        return mime.lower().startswith("image/")
    return url.lower().split("?", 1)[0].endswith(_IMAGE_EXTENSIONS)


def pick_image(entry: Mapping[str, Any], content: str, summary: str,
                           base_url: str | None) -> tuple[str | None, bool]:
    """media:content, media:thumbnail, image enclosure, first ``<img>``, in that order; and whether the
    image came from an ``<img>`` of the HTML."""
    image = _pick_feed_image(entry, base_url)
    if image is not None:
        return image, False
    image = first_image(content, base_url) or first_image(summary, base_url)
    return image, image is not None


def _pick_feed_image(entry: Mapping[str, Any], base_url: str | None) -> str | None:
    """media:content, media:thumbnail, image enclosure; in that order."""
    for media in entry.get("media_content") or ():
        if isinstance(media, Mapping):
            url = media.get("url")
            if _is_image(url, media.get("type"), media.get("medium")):
                return absolute(url, base_url)
    for media in entry.get("media_content") or ():
        if isinstance(media, Mapping) and media.get("thumbnail_url"):
            return absolute(media["thumbnail_url"], base_url)
    for thumb in entry.get("media_thumbnail") or ():
        if isinstance(thumb, Mapping) and thumb.get("url"):
            return absolute(thumb["url"], base_url)
    for enclosure in entry.get("enclosures") or ():
        if isinstance(enclosure, Mapping):
            url = enclosure.get("url") or enclosure.get("href")
            if url and _is_image(url, enclosure.get("type"), None):
                return absolute(url, base_url)
    return None


_MEDIA_CONTENT = f"{{{_MEDIA_NS}}}content"
_MEDIA_THUMBNAIL = f"{{{_MEDIA_NS}}}thumbnail"
_MEDIA_GROUP = f"{{{_MEDIA_NS}}}group"
_MEDIA_TEXTS = (f"{{{_MEDIA_NS}}}description", f"{{{_MEDIA_NS}}}title")

MediaAlts = dict[str, str]
"""An item's Media RSS images: URL (as written) → alt text."""


def _media_text(element: etree._Element) -> str | None:
    """``media:description`` (else ``media:title``) directly under ``element``, as plain text."""
    for name in _MEDIA_TEXTS:
        for child in element.iterchildren(name):
            text = "".join(child.itertext())
            if (child.get("type") or "").lower() == "html":
                text = html.unescape(_TAG.sub(" ", text))
            cleaned = clean_alt(text)
            if cleaned:
                return cleaned
    return None


def _item_media_alts(item: etree._Element) -> MediaAlts:
    alts: MediaAlts = {}
    item_text = _media_text(item)
    holders = [(item, item_text)]
    for group in item.iterchildren(_MEDIA_GROUP):
        holders.append((group, _media_text(group) or item_text))
    for holder, inherited in holders:
        for content in holder.iterchildren(_MEDIA_CONTENT):
            own = _media_text(content) or inherited
            url = (content.get("url") or "").strip()
            if url and own:
                alts.setdefault(url, own)
            for thumb in content.iterchildren(_MEDIA_THUMBNAIL):
                thumb_url = (thumb.get("url") or "").strip()
                if thumb_url and own:
                    alts.setdefault(thumb_url, own)
        for thumb in holder.iterchildren(_MEDIA_THUMBNAIL):
            url = (thumb.get("url") or "").strip()
            if url and inherited:
                alts.setdefault(url, inherited)
    return alts


def media_alts(root: etree._Element | None) -> list[MediaAlts] | None:
    """Per item/entry of ``root``, in document order: its Media RSS image URLs and their alt text
    (``media:description``, else ``media:title``, of the element, its ``media:group`` or the item)."""
    if root is None:
        return None
    return [_item_media_alts(item) for item in root.iter(*_ITEM_TAGS)]


def recovered_tree(body: bytes) -> etree._Element | None:
    """The document as a recovering lxml parse reads it (for feedparser's path); None if it cannot."""
    try:
        return etree.fromstring(body, parser=_RECOVER)
    except (etree.XMLSyntaxError, ValueError):
        return None


def image_alt(image: str | None, media: MediaAlts, content: str, summary: str, base_url: str | None,
               *, from_html: bool) -> str | None:
    """The picked image's alt text (the module docstring gives the order)."""
    if image is None:
        return None
    for url, alt in media.items():
        if absolute(url, base_url) == image:
            return alt
    return (html_alt(content, image, base_url) or html_alt(summary, image, base_url)
            or (html_alt(content or summary, image, base_url, first=True) if from_html else None))
