"""What did the URL return? Body sniffing and feed/REST-API link discovery (pure functions).

``sniff`` classifies a fetched body (RSS/Atom/RDF, JSON Feed, a WordPress REST
posts list or API index, an HTML page, other JSON, nothing) from its first
element or JSON shape, with the content type only as a tie-breaker: servers
often send feeds as ``text/html`` and error pages as ``application/rss+xml``.

``discover_links`` reads an HTML page's ``<head>`` (and the ``Link`` header
WordPress sends on every page) for the REST API root
(``rel="https://api.w.org/"``) and for ``rel="alternate"`` feeds, resolving
relative hrefs against ``<base href>`` or the page URL. A link the URL policy
refuses (``bot.domain.urls``: anything but http/https, e.g. ``file:``) is not
kept; its refusal is listed in ``Discovery.refused``.

``not_a_feed_reason`` turns a sniffed kind into the one-sentence reason a
``FeedParseError`` carries. The ``auto`` source that uses all this lives in
``bot.sources.factory``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any, Literal
from urllib.parse import urljoin

import orjson

from bot.domain.urls import url_refusal

BodyKind = Literal["rss", "jsonfeed", "wordpress", "wp-index", "html", "json", "empty", "unknown"]
"""``rss`` covers RSS 0.9x/2.0, RSS 1.0 (RDF) and Atom: one parser reads them all."""

FeedKind = Literal["rss", "jsonfeed", "wordpress"]

WP_API_REL = "https://api.w.org/"

FEED_TYPES: dict[str, FeedKind] = {
    "application/rss+xml": "rss",
    "application/atom+xml": "rss",
    "application/rdf+xml": "rss",
    "application/feed+json": "jsonfeed",
}
"""``<link rel="alternate" type=...>`` values that announce a feed, in order of preference."""

_SNIFF_BYTES = 4096
_SNIPPET_BYTES = 40
"""How much of an unrecognised body a reason quotes (escaped by ``repr``: no control characters)."""
_PROLOG = re.compile(
    rb"(?:\s+|<\?.*?\?>|<!--.*?-->|<!DOCTYPE(?:[^>\[]|\[.*?\])*>)*", re.DOTALL | re.IGNORECASE
)
_ROOT = re.compile(rb"<([A-Za-z_][\w:.\-]*)")
_HTML_DOCTYPE = re.compile(rb"<!DOCTYPE\s+html", re.IGNORECASE)
_FEED_ROOTS = frozenset({"rss", "feed", "rdf:rdf", "rdf"})


def _head_bytes(body: bytes) -> bytes:
    """The first bytes of ``body`` as ASCII-compatible bytes (UTF-16 decoded, BOM dropped)."""
    head = body[: _SNIFF_BYTES * 2]
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return head.decode("utf-16", errors="replace").encode("utf-8", errors="replace")[:_SNIFF_BYTES]
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    return head[:_SNIFF_BYTES]


def _sniff_json(body: bytes, headers: Mapping[str, str]) -> BodyKind:
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "unknown"
    if isinstance(data, dict):
        version = data.get("version")
        if isinstance(version, str) and "jsonfeed.org" in version:
            return "jsonfeed"
        namespaces = data.get("namespaces")
        if isinstance(namespaces, list) and "wp/v2" in namespaces:
            return "wp-index"
        return "json"
    if isinstance(data, list):
        if not data:
            lowered = {k.lower() for k in headers}
            return "wordpress" if "x-wp-total" in lowered or "x-wp-totalpages" in lowered else "json"
        first = data[0]
        if isinstance(first, dict) and "id" in first and isinstance(first.get("title"), dict) and (
                "guid" in first or "link" in first):
            return "wordpress"
    return "json"


def sniff(body: bytes, content_type: str = "", headers: Mapping[str, str] | None = None) -> BodyKind:
    """Classify a fetched body; ``content_type`` is a bare, lower-case media type."""
    head = _head_bytes(body)
    stripped = head.lstrip()
    if not stripped:
        return "empty"
    if stripped[:1] in (b"{", b"["):
        return _sniff_json(body[body.find(stripped[:1]):] if body[:3] == b"\xef\xbb\xbf" else body, headers or {})
    prolog = _PROLOG.match(stripped)
    rest = stripped[prolog.end():] if prolog else stripped
    root = _ROOT.match(rest)
    if root:
        name = root.group(1).decode("ascii", errors="replace").lower()
        if name in _FEED_ROOTS or name.endswith(":rdf"):
            return "rss"
        if name == "html" or _HTML_DOCTYPE.search(stripped[: prolog.end() if prolog else 0]):
            return "html"
        if name in ("head", "body", "meta", "title", "div", "p", "script", "link"):
            return "html"
    if _HTML_DOCTYPE.match(stripped):
        return "html"
    if content_type in FEED_TYPES:
        return "unknown"
    if "html" in content_type and stripped[:1] == b"<":
        return "html"
    return "unknown"


def not_a_feed_reason(kind: BodyKind, body: bytes, *, expected: str, hint: bool = True) -> str:
    """The one-sentence reason for a body of ``kind`` where ``expected`` was wanted."""
    auto = '; set kind = "auto" to discover the feed' if hint else ""
    if kind == "html":
        return f"the URL returned an HTML page, not {expected}{auto}"
    if kind == "empty":
        return f"the URL returned an empty body, not {expected}"
    if kind == "jsonfeed":
        return f'the URL returned a JSON Feed, not {expected}; set kind = "jsonfeed"' if hint else \
            f"the URL returned a JSON Feed, not {expected}"
    if kind in ("wordpress", "wp-index"):
        return f'the URL returned a WordPress REST API answer, not {expected}; set kind = "wordpress"' \
            if hint else f"the URL returned a WordPress REST API answer, not {expected}"
    if kind == "rss":
        return f'the URL returned an RSS/Atom feed, not {expected}; set kind = "rss"' if hint else \
            f"the URL returned an RSS/Atom feed, not {expected}"
    if kind == "json":
        return f"the URL returned JSON that is not {expected}"
    return f"the URL did not return {expected} (the body starts with {body_snippet(body)})"


def body_snippet(body: bytes) -> str:
    """The first bytes of ``body`` as a quoted Python literal: at most ``_SNIPPET_BYTES`` bytes, every
    control, format or non-printable character escaped (``repr`` escapes all that ``isprintable``
    refuses), so a hostile body can neither flood nor forge a status line or a log record."""
    start = _head_bytes(body).lstrip()[:_SNIPPET_BYTES].decode("utf-8", errors="replace")
    return repr(start)


@dataclass(frozen=True, slots=True)
class FeedLink:
    """A ``<link rel="alternate">`` feed announced by a page."""

    kind: FeedKind
    url: str
    title: str = ""


@dataclass(frozen=True, slots=True)
class Discovery:
    """What an HTML page announces. ``best`` picks what a source should poll.

    ``refused`` holds why each link the URL policy refused was dropped (it names the scheme,
    never the link itself)."""

    rest_api: str | None = None
    feeds: tuple[FeedLink, ...] = field(default=())
    refused: tuple[str, ...] = field(default=())

    def best(self) -> tuple[FeedKind, str] | None:
        """The REST API when announced (tags and categories apart, stable ids,
        ``modified_after``), else the first non-comments feed, RSS/Atom before JSON Feed."""
        if self.rest_api:
            return "wordpress", self.rest_api
        ranked = sorted(
            (f for f in self.feeds if not _is_comments_feed(f)),
            key=lambda f: list(FEED_TYPES.values()).index(f.kind),
        )
        if not ranked:
            ranked = list(self.feeds)
        return (ranked[0].kind, ranked[0].url) if ranked else None


def _is_comments_feed(link: FeedLink) -> bool:
    return "/comments/feed" in link.url or "comments" in link.title.lower()


class _HeadLinks(HTMLParser):
    """Collects ``<base>`` and ``<link>`` tags until ``<body>`` starts."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.base: str | None = None
        self.links: list[dict[str, str]] = []
        self.done = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.done:
            return
        if tag == "body":
            self.done = True
            return
        values = {k.lower(): (v or "") for k, v in attrs}
        if tag == "base" and self.base is None and values.get("href"):
            self.base = values["href"].strip()
        elif tag == "link":
            self.links.append(values)

    handle_startendtag = handle_starttag


_BODY_TAG = re.compile(rb"<body[\s>]", re.IGNORECASE)
# The target may not hold "<" (RFC 8288's URI-Reference cannot): with it, every "<" of a hostile
# header would scan to the end of the header (quadratic).
_LINK_HEADER = re.compile(r'<([^<>]*)>\s*((?:;\s*[^;,]+)*)')
_REL_PARAM = re.compile(r';\s*rel\s*=\s*"?([^";]+)"?', re.IGNORECASE)


def link_targets(value: str, rel: str, base: str) -> list[str]:
    """The targets of an HTTP ``Link`` header value whose ``rel`` names ``rel`` (case-insensitively),
    resolved against ``base``, in order."""
    found: list[str] = []
    for match in _LINK_HEADER.finditer(value):
        target: str = match.group(1)
        params: str = match.group(2) or ""
        rels = _REL_PARAM.search(params)
        if rels and rel.lower() in rels.group(1).lower().split():
            found.append(_join(base, target))
    return found


def _api_from_link_header(value: str, page_url: str) -> str | None:
    targets = link_targets(value, WP_API_REL, page_url)
    return targets[0] if targets else None


def _join(base: str, href: str) -> str:
    """``href`` resolved against ``base``; a link too broken to resolve is kept as written (the URL
    policy then refuses it)."""
    try:
        return urljoin(base, href.strip())
    except ValueError:
        return href.strip()


def discover_links(html: bytes, page_url: str, headers: Mapping[str, str] | None = None) -> Discovery:
    """Find the REST API root and alternate feeds an HTML page announces."""
    refused: list[str] = []

    def followable(url: str) -> bool:
        reason = url_refusal(url, trusted=page_url)
        if reason is not None:
            refused.append(reason)
        return reason is None

    rest_api = None
    for key, value in (headers or {}).items():
        if key.lower() == "link":
            announced = _api_from_link_header(value, page_url)
            if announced and followable(announced):
                rest_api = announced
                break
    body_at = _BODY_TAG.search(html)
    head = html[: body_at.start()] if body_at else html[:512 * 1024]
    parser = _HeadLinks()
    try:
        parser.feed(head.decode("utf-8", errors="replace"))
        parser.close()
    except AssertionError:  # HTMLParser asserts on some broken markup; keep what it found
        pass
    base = _join(page_url, parser.base) if parser.base else page_url
    feeds: list[FeedLink] = []
    for attrs in parser.links:
        rels = attrs.get("rel", "").lower().split()
        href = attrs.get("href", "").strip()
        if not href:
            continue
        if WP_API_REL in rels and rest_api is None:
            url = _join(base, href)
            if followable(url):
                rest_api = url
        elif "alternate" in rels:
            kind = FEED_TYPES.get(attrs.get("type", "").split(";", 1)[0].strip().lower())
            if kind is not None:
                url = _join(base, href)
                if followable(url):
                    feeds.append(FeedLink(kind, url, attrs.get("title", "")))
    return Discovery(rest_api=rest_api, feeds=tuple(feeds), refused=tuple(refused))
