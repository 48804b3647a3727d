"""RSS 2.0 / RSS 1.0 / Atom into ``ParsedPost``: fastfeedparser first, feedparser for broken feeds.

The fast path hands the body (always bytes: given a ``str`` URL, fastfeedparser
would fetch it itself) to fastfeedparser, about 120× faster than feedparser
(perf-baselines §1.1). fastfeedparser loses text and categories on broken
markup and mis-decodes wrong encoding declarations (§1.3), so the body goes to
feedparser instead when

* a strict lxml parse fails (bare ``&``, HTML-only entities, a missing close
  tag, invalid UTF-8, a cut-off body), or
* the XML declaration names an encoding other than UTF-8 and the body holds
  non-ASCII bytes (fastfeedparser trusts the declaration; feedparser checks).

Before either, ``integrity.repair_encoding`` turns a body labelled UTF-8 that
is not valid UTF-8 into valid UTF-8 (bad bytes as U+FFFD where they stand, or a
mislabelled windows-1256/1252 document decoded as such), so both parsers read
the same text and one bad byte never re-decodes the whole document. A document
the strict parser rejects is used only when its root element is closed (else
it is truncated and refused whole), and only its closed items are used; posts
whose tags or identity hold U+FFFD are held back (see ``bot.sources.integrity``).

Both paths map through the same normaliser, so a feed that switches between
them keeps every post's identity: title (entity references decoded), link,
guid (``None`` when absent or equal to the link), every ``<category>`` as a tag
(WordPress RSS mixes categories and tags there), published/updated as aware UTC
datetimes, summary HTML (the content when the feed has no summary, as
feedparser does), content HTML, a featured image (media:content, then
media:thumbnail, then an image enclosure, then the first ``<img>`` of the
content) with its alt text, and the author.

The image and its alt text are chosen in ``bot.sources.markup``; Media RSS
descriptions, which feedparser drops (it files them as the summary), are read
from the lxml tree on both paths (``media_alts``): the strict tree the fast path
has anyway, a recovering parse on feedparser's path. When that tree's item
count differs from the parser's, the Media RSS alts are left out rather than
give an item another item's text.

``RssSource`` is the ``Source`` for ``kind = "rss"``; ``FeedSource`` is its
fetch-then-parse base, shared with the JSON Feed source.

Size: the fast path, the tolerant fallback and the checks that decide between
them (they must agree field by field: tests/unit/test_fast_parse_equivalence.py)
belong together.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from time import struct_time
from typing import Any, ClassVar, Literal

import fastfeedparser
import httpx
from lxml import etree

from bot.domain.models import ParsedPost
from bot.errors import FeedParseError
from bot.settings import HttpConfig, SourceConfig
from bot.sources.base import CacheState, Fetched, NotModified, PollResult
from bot.sources.discover import not_a_feed_reason, sniff
from bot.sources.http import FetchOutcome, fetch
from bot.sources.hubs import find_hub, xml_links
from bot.sources.integrity import (
    UTF8_NAMES,
    declared_encoding,
    hold_back_damaged,
    repair_encoding,
    scan_structure,
)
from bot.sources.markup import _IMG_SRC as _IMG_SRC  # re-exported: tests and older imports use it here
from bot.sources.markup import _ITEM_TAGS, _MEDIA_NS, MediaAlts, image_alt, media_alts, pick_image, recovered_tree
from bot.sources.markup import _img_src as _img_src
from bot.sources.markup import absolute as absolute
from bot.sources.markup import clean_text as clean_text
from bot.sources.markup import decode_entities as decode_entities
from bot.sources.markup import first_image as first_image

ParserName = Literal["fastfeedparser", "feedparser", "orjson"]

RSS_ACCEPT = ("application/rss+xml, application/atom+xml, application/rdf+xml;q=0.9, "
              "application/xml;q=0.8, text/xml;q=0.8, */*;q=0.5")

_SUMMARY_NAMES = frozenset({"description", "summary"})
_CONTENT_NAMES = frozenset({"encoded", "content"})
_WHITESPACE = b" \t\r\n"
_STRICT = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                          recover=False, remove_blank_text=False)


@dataclass(frozen=True, slots=True)
class FeedDocument:
    """A parsed feed: its posts in feed order, and which parser read it (and why)."""

    posts: tuple[ParsedPost, ...]
    parser: ParserName
    fallback_reason: str | None = None
    title: str = ""
    skipped: int = 0
    """Entries dropped because they had no title, link or id (a broken item's remains)."""
    held_back: int = 0
    """Posts not returned because their tags, guid or link hold U+FFFD (read again next poll)."""
    unclosed: int = 0
    """Items dropped because their element is not closed (in a document that is)."""
    decoding: str | None = None
    """What ``repair_encoding`` did to the body, if anything."""
    hubs: tuple[str, ...] = ()
    """The WebSub hubs the document declares (``bot.sources.hubs``), as written."""
    self_url: str | None = None
    """The document's own URL as it declares it (``rel="self"``, a JSON Feed's ``feed_url``)."""

    def notes(self) -> tuple[str, ...]:
        """Human-readable remarks for ``Fetched.notes``."""
        out = []
        if self.decoding:
            out.append(self.decoding)
        if self.fallback_reason:
            out.append(f"parsed with {self.parser}: {self.fallback_reason}")
        if self.skipped:
            out.append(f"skipped {self.skipped} entr{'y' if self.skipped == 1 else 'ies'} "
                       f"without title, link or id")
        if self.unclosed:
            out.append(f"skipped {_items(self.unclosed)} that {'is' if self.unclosed == 1 else 'are'} not closed")
        if self.held_back:
            out.append(f"held back {_items(self.held_back)} whose tags, guid or link hold undecodable text "
                       f"(U+FFFD); read again on every poll until the feed is fixed")
        return tuple(out)

    @classmethod
    def of(cls, posts: Sequence[ParsedPost], parser: ParserName, fallback_reason: str | None = None,
           title: str = "", *, skipped: int = 0, unclosed: int = 0, decoding: str | None = None) -> FeedDocument:
        """The document of these parsed posts: unidentifiable ones dropped, damaged ones held back."""
        identifiable, unidentified = keep_identifiable(posts)
        kept, held_back = hold_back_damaged(identifiable)
        return cls(kept, parser, fallback_reason, title, skipped + unidentified, held_back, unclosed, decoding)


def _items(count: int) -> str:
    return f"{count} item{'' if count == 1 else 's'}"


def keep_identifiable(posts: Sequence[ParsedPost]) -> tuple[tuple[ParsedPost, ...], int]:
    """Posts that have a title, link or id; and how many had none (they cannot be told apart)."""
    kept = tuple(p for p in posts if p.title or p.url or p.guid)
    return kept, len(posts) - len(kept)


# --- shared normalisation -------------------------------------------------


def unique_tags(names: Iterable[str | None]) -> tuple[str, ...]:
    """Cleaned, non-empty tag names, first occurrence kept, feed order kept."""
    seen: set[str] = set()
    out: list[str] = []
    for raw in names:
        name = clean_text(raw)
        if name and name not in seen:
            seen.add(name)
            out.append(name)
    return tuple(out)


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def parse_iso_datetime(value: Any) -> datetime | None:
    """An ISO 8601 / RFC 3339 string as an aware UTC datetime (naive means UTC); None if unreadable."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return _aware(datetime.fromisoformat(value.strip().replace("Z", "+00:00")))
    except ValueError:
        return None


def _from_struct(value: Any) -> datetime | None:
    if not isinstance(value, struct_time):
        return None
    try:
        return datetime(*value[:6], tzinfo=UTC)
    except (TypeError, ValueError):
        return None


def _content_value(entry: Mapping[str, Any]) -> str:
    for part in entry.get("content") or ():
        if isinstance(part, Mapping) and isinstance(part.get("value"), str) and part["value"].strip():
            return str(part["value"])
    return ""


def _make_post(entry: Mapping[str, Any], *, summary: str, published: datetime | None,
               updated: datetime | None, base_url: str | None, media: MediaAlts | None = None) -> ParsedPost:
    content = _content_value(entry)
    image, from_html = pick_image(entry, content, summary, base_url)
    link_value = entry.get("link")
    raw_link = link_value.strip() if isinstance(link_value, str) else None
    link = absolute(raw_link, base_url)
    guid_raw = entry.get("id")
    guid = guid_raw.strip() if isinstance(guid_raw, str) and guid_raw.strip() else None
    if guid is not None and guid in (raw_link, link):
        guid = None  # fastfeedparser copies a missing guid from the link; feedparser does not
    tags = unique_tags((t.get("term") or t.get("label")) for t in entry.get("tags") or ()
                       if isinstance(t, Mapping))
    author = clean_text(entry.get("author") if isinstance(entry.get("author"), str) else None) or None
    return ParsedPost(
        title=clean_text(entry.get("title") if isinstance(entry.get("title"), str) else None),
        url=link,
        guid=guid,
        summary_html=summary.strip(),
        content_html=content.strip(),
        tags=tags,
        published=published or updated,
        updated=updated,
        image_url=image,
        author=author,
        image_alt=image_alt(image, media or {}, content, summary, base_url, from_html=from_html),
    )


# --- the two parsers ------------------------------------------------------


def _item_shapes(root: etree._Element) -> list[tuple[bool, bool]]:
    """Per item/entry: (has its own summary/description, has its own content element)."""
    shapes: list[tuple[bool, bool]] = []
    for item in root.iter(*_ITEM_TAGS):
        has_summary = has_content = False
        for child in item:
            tag = child.tag
            if not isinstance(tag, str) or tag.startswith("{" + _MEDIA_NS):
                continue
            local = tag.rsplit("}", 1)[-1]
            if local in _SUMMARY_NAMES:
                has_summary = True
            elif local in _CONTENT_NAMES:
                has_content = True
        shapes.append((has_summary, has_content))
    return shapes


def parse_fast(body: bytes, *, base_url: str | None = None,
               root: etree._Element | None = None) -> tuple[tuple[ParsedPost, ...], str]:
    """Parse a well-formed feed with fastfeedparser. Returns (posts, feed title).

    ``root`` (the strict lxml tree, when the caller has one) tells which items
    have their own summary and content, so the result matches feedparser's:
    a missing summary is the content (not fastfeedparser's synthesised plain
    text), a missing content stays empty (not a copy of the description).
    """
    parsed = fastfeedparser.parse(bytes(body))
    entries: Sequence[Mapping[str, Any]] = parsed.get("entries") or []
    shapes = _item_shapes(root) if root is not None else None
    if shapes is not None and len(shapes) != len(entries):
        shapes = None
    alts = media_alts(root if root is not None else recovered_tree(bytes(body)))
    if alts is not None and len(alts) != len(entries):
        alts = None
    posts = []
    for i, entry in enumerate(entries):
        own_summary, own_content = shapes[i] if shapes is not None else (True, True)
        if not own_content:  # fastfeedparser copies the description into content; feedparser does not
            entry = {**entry, "content": []}
        summary = entry.get("description") if own_summary else None
        if not isinstance(summary, str) or not summary.strip():
            summary = _content_value(entry)
        posts.append(_make_post(
            entry,
            summary=summary,
            published=parse_iso_datetime(entry.get("published")),
            updated=parse_iso_datetime(entry.get("updated")),
            base_url=base_url,
            media=alts[i] if alts is not None else None,
        ))
    feed = parsed.get("feed") or {}
    return tuple(posts), clean_text(feed.get("title") if isinstance(feed.get("title"), str) else None)


def parse_compat(body: bytes, *, base_url: str | None = None) -> tuple[tuple[ParsedPost, ...], str]:
    """Parse any feed, however broken, with feedparser (no sanitising: renderers escape).

    feedparser is imported on first use: only broken feeds need it (~50 ms, several MB).
    """
    import feedparser  # deliberately lazy

    parsed = feedparser.parse(bytes(body), sanitize_html=False, resolve_relative_uris=False)
    alts = media_alts(recovered_tree(bytes(body)))
    if alts is not None and len(alts) != len(parsed.entries):
        alts = None
    posts = []
    for i, entry in enumerate(parsed.entries):
        summary = entry.get("summary")
        if not isinstance(summary, str) or not summary.strip():
            summary = _content_value(entry)
        posts.append(_make_post(
            entry,
            summary=summary,
            published=_from_struct(entry.get("published_parsed")),
            updated=_from_struct(entry.get("updated_parsed")) if "updated" in entry else None,
            base_url=base_url,
            media=alts[i] if alts is not None else None,
        ))
    title = parsed.feed.get("title") if isinstance(parsed.feed.get("title"), str) else None
    return tuple(posts), clean_text(title)


def trim_prolog(body: bytes) -> bytes:
    """Drop blank lines before ``<?xml`` (a common WordPress plugin bug), keeping a BOM in front."""
    if body.startswith(b"\xef\xbb\xbf"):
        rest = body[3:]
        stripped = rest.lstrip(_WHITESPACE)
        return body if stripped is rest else b"\xef\xbb\xbf" + stripped
    return body.lstrip(_WHITESPACE)


def fallback_reason(body: bytes) -> tuple[str | None, etree._Element | None]:
    """Why this body must go to feedparser (None: the fast path is safe), and the strict tree."""
    head = body[3:] if body.startswith(b"\xef\xbb\xbf") else body
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or head.startswith(b"<\x00") or head.startswith(b"\x00<"):
        return "the feed is UTF-16 encoded", None
    name = declared_encoding(head)
    if name is not None and name not in UTF8_NAMES and not head.isascii():
        return f"the XML declaration names {name}, not UTF-8", None
    try:
        root = etree.fromstring(body, parser=_STRICT)
    except etree.XMLSyntaxError as exc:
        return f"not well-formed XML ({exc})", None
    except ValueError as exc:  # lxml refuses some declarations outright
        return f"not well-formed XML ({exc})", None
    return None, root


def parse_rss(body: bytes, *, source: str, base_url: str | None = None, content_type: str = "",
              hint: bool = True) -> FeedDocument:
    """Parse an RSS/RDF/Atom body; raises ``FeedParseError`` when it is not such a feed.

    An empty but well-formed feed is not an error (no posts). ``hint`` adds a
    pointer to ``kind = "auto"`` (or the right kind) to a "not a feed" reason.
    """
    if not isinstance(body, bytes | bytearray | memoryview):  # a str would make fastfeedparser fetch URLs
        raise TypeError("parse_rss needs the body as bytes")
    expected = "an RSS or Atom feed"
    kind = sniff(body, content_type)
    if kind != "rss" and not (kind == "unknown" and body.lstrip()[:1] == b"<"):
        raise FeedParseError(source, not_a_feed_reason(kind, body, expected=expected, hint=hint))
    data, decoding = repair_encoding(trim_prolog(bytes(body)))
    reason, root = fallback_reason(data)
    try:
        if reason is None and root is not None:
            if etree.QName(root).localname.lower() not in ("rss", "feed", "rdf"):
                raise FeedParseError(source, not_a_feed_reason("unknown", data, expected=expected, hint=hint))
            posts, title = parse_fast(data, base_url=base_url, root=root)
            return FeedDocument.of(posts, "fastfeedparser", None, title, decoding=decoding)
        structure = scan_structure(data)
        if structure.root is not None and not structure.root_closed:
            raise FeedParseError(source, f"the document ends early (truncated at byte {len(body)}); "
                                         f"nothing recorded")
        posts, title = parse_compat(data, base_url=base_url)
    except FeedParseError:
        raise
    except Exception as exc:  # a parser bug must become a SourceError, never a crash
        raise FeedParseError(source, f"could not parse the feed: {type(exc).__name__}: {exc}") from exc
    if not posts:
        if kind != "rss":
            raise FeedParseError(source, not_a_feed_reason(kind, data, expected=expected, hint=hint))
        raise FeedParseError(source, f"the feed is broken and no entry could be read from it: {reason}")
    if structure.unclosed_items:
        if len(posts) != len(structure.items):
            unclosed = structure.unclosed_items
            raise FeedParseError(source, f"{_items(unclosed)} of the feed {'is' if unclosed == 1 else 'are'} not "
                                         f"closed and cannot be told apart from the others; nothing recorded")
        closed = tuple(p for p, ok in zip(posts, structure.items, strict=True) if ok)
        return FeedDocument.of(closed, "feedparser", reason, title, unclosed=len(posts) - len(closed),
                               decoding=decoding)
    return FeedDocument.of(posts, "feedparser", reason, title, decoding=decoding)


# --- sources --------------------------------------------------------------


def newest(posts: Sequence[ParsedPost], depth: int) -> tuple[ParsedPost, ...]:
    """At most ``depth`` posts: the newest by date (undated ones count as newest), feed order kept."""
    if len(posts) <= depth:
        return tuple(posts)
    floor = datetime.min.replace(tzinfo=UTC)

    def key(i: int) -> tuple[bool, datetime, int]:
        when = posts[i].published or posts[i].updated
        return (when is None, when or floor, -i)

    keep = set(sorted(range(len(posts)), key=key, reverse=True)[:depth])
    return tuple(p for i, p in enumerate(posts) if i in keep)


class FeedSource:
    """Fetch one URL conditionally, parse the body into posts. Subclasses set ``parse``."""

    kind: ClassVar[str] = "feed"
    accept: ClassVar[str] = "*/*"

    def __init__(self, cfg: SourceConfig, client: httpx.AsyncClient, http_cfg: HttpConfig, *,
                 url: str | None = None, explicit: bool = True) -> None:
        self.name = cfg.name
        self.cfg = cfg
        self.url = url or cfg.url
        self.client = client
        self.http_cfg = http_cfg
        self.explicit = explicit
        """False when ``auto`` chose this source: errors then do not suggest changing ``kind``."""
        self._parsed: httpx.URL | None = None
        """``url`` parsed once (every poll asks the same URL; ``fetch`` would have httpx parse it each time)."""
        self._headers = {"Accept": self.accept}

    def parse(self, outcome: FetchOutcome) -> FeedDocument:
        raise NotImplementedError

    async def poll(self, cache: CacheState, *, first_poll: bool) -> PollResult:
        # (an httpx client only: the bench compares others with httpx's API, which take no httpx.URL)
        if self._parsed is None and isinstance(self.client, httpx.AsyncClient) and self.url[:5].lower() != "file:":
            with contextlib.suppress(httpx.InvalidURL):  # ``fetch`` reports it, as for any URL
                self._parsed = httpx.URL(self.url)
        outcome = await fetch(self.client, self.url, source=self.name, etag=cache.etag,
                              last_modified=cache.last_modified, max_bytes=self.http_cfg.max_bytes,
                              extra_headers=self._headers, parsed=self._parsed)
        if outcome.not_modified:  # nothing to parse: no hop to a worker thread
            return self.result(outcome, cache, first_poll=first_poll)
        # parsing a body of up to http.max_bytes takes seconds: in a worker thread, so that the event
        # loop (health endpoint, instance-lease heartbeat, deliveries) keeps running meanwhile
        return await asyncio.to_thread(self.result, outcome, cache, first_poll=first_poll)

    def result(self, outcome: FetchOutcome, cache: CacheState, *, first_poll: bool) -> PollResult:
        """Turn a fetched body (or a 304) into the poll result; parse errors raise."""
        updated = cache.but(etag=outcome.etag, last_modified=outcome.last_modified)
        if outcome.not_modified:
            return NotModified(updated)
        doc = self.parse(outcome)
        posts = newest(doc.posts, self.cfg.baseline_depth) if first_poll else doc.posts
        return Fetched(posts=posts, cache=updated, bytes_read=len(outcome.body), notes=doc.notes(),
                       hub=find_hub(outcome.headers, doc.hubs, doc.self_url, outcome.url))


class RssSource(FeedSource):
    """``kind = "rss"``: an RSS 2.0, RSS 1.0 or Atom feed."""

    kind = "rss"
    accept = RSS_ACCEPT

    def parse(self, outcome: FetchOutcome) -> FeedDocument:
        doc = parse_rss(outcome.body, source=self.name, base_url=outcome.url,
                        content_type=outcome.content_type, hint=self.explicit)
        hubs, self_url = xml_links(outcome.body)
        return replace(doc, hubs=tuple(hubs), self_url=self_url) if hubs or self_url else doc
