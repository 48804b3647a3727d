"""WordPress REST API (``/wp/v2/posts``) into ``ParsedPost``, with tag and category names.

URL forms: ``https://site/wp-json/`` (pretty permalinks: routes become
``/wp-json/wp/v2/posts?...``) and ``https://site/?rest_route=/`` (routes become
``?rest_route=/wp/v2/posts&...``). A configured site URL without either is
taken as ``<site>/wp-json/``.

Polling, bounded and resumable:

* **Baseline** (first poll, or no cursor yet): the newest ``baseline_depth``
  posts by date, one page (several only past WordPress's 100-per-page limit).
* **Incremental**: ``modified_after=<cursor>`` ordered by ``modified``
  *ascending*, following ``X-WP-TotalPages`` up to ``MAX_PAGES``; when more
  remain, the cursor stops at the last post read and the next poll carries on,
  so nothing falls out of the window. Alongside, one small
  ``orderby=date`` page (ids and dates only) catches posts that
  ``modified_after`` cannot see: WordPress publishes a *scheduled* post without
  touching its modified time (core trac #26980), so the post looks older than
  the cursor. Any such post newer than every date seen is then fetched by id.
* Posts dated before the oldest post of the baseline are dropped from
  incremental results: they are old posts that were edited, not new ones.

The cursor (``CacheState.cursor``) holds the bounds as
``modified=<ISO> date=<ISO> floor=<ISO> seen=<ids>`` (times UTC; ``seen``: the
posts already reported from the cursor's last second). Tag and category ids are
resolved through ``/wp/v2/tags`` and ``/wp/v2/categories`` (``include=``,
100 at a time) and cached in the source object, so only unknown ids cost a
request. Author names come from ``/wp/v2/users`` on a best-effort basis (many
sites block it). The featured image (``featured_media``) and its ``alt_text``
come from ``/wp/v2/media`` the same way: one ``include=`` request per poll for
the ids not yet known (100 at a time), never one per post, cached by id
(``MEDIA_CACHE_SIZE``); best effort too (a site that refuses it with 401/403 is
not asked again, any other failure only costs this poll's alt texts). The
image is Jetpack's ``jetpack_featured_media_url`` when the site has it, else
the media's ``source_url``, else the first ``<img>`` of the content (with its
``alt``). Titles and excerpts are HTML-unescaped; ``guid.rendered``
(``https://site/?p=123``) is the guid, the same as in the site's RSS feed, so a
switch between the two kinds keeps identities. Dates are ``date_gmt`` and
``modified_gmt`` (UTC without an offset).

Size: one module of ~500 lines because the cursor, the pages and the side requests (terms, authors,
media) make one resumable walk whose correctness (nothing falls out of the window) is argued above and
is best read in one place; the cursor's text form is its own small part (``Cursor``).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import orjson

from bot.domain.models import ParsedPost
from bot.errors import FeedParseError, FetchError, SourceError
from bot.settings import HttpConfig, SourceConfig
from bot.sources.base import CacheState, Fetched, NotModified, PollResult
from bot.sources.discover import not_a_feed_reason, sniff
from bot.sources.http import FetchOutcome, fetch
from bot.sources.markup import clean_alt, html_alt
from bot.sources.rss import clean_text, first_image, unique_tags

WP_MAX_PER_PAGE = 100
"""WordPress refuses ``per_page`` above 100."""

INCREMENTAL_PER_PAGE = 20
MAX_PAGES = 10
"""The most list pages one poll reads (per query)."""

RECENT_CHECK_SIZE = 10
"""Size of the id/date-only "newest by date" page that catches scheduled posts."""

OLD_WORDPRESS_NOTE = ("this WordPress ignores modified_after (it needs WordPress 5.7 or newer); "
                      "only the newest 100 posts by date are checked")

POST_FIELDS = ("id,date_gmt,modified_gmt,guid,link,title,excerpt,content,author,tags,categories,"
               "featured_media,jetpack_featured_media_url")
MEDIA_FIELDS = "id,source_url,alt_text,media_type"
MEDIA_CACHE_SIZE = 1000
"""Featured images (id → URL and alt text) kept across polls; the oldest leave first."""
_ACCEPT = {"Accept": "application/json"}
_OVERLAP = timedelta(seconds=1)
"""``modified_after`` is exclusive and second-grained: ask from one second earlier."""


def api_base(url: str) -> str:
    """The REST API root for a configured URL: ``.../wp-json/`` or ``...?rest_route=/``."""
    parts = urlsplit(url.strip())
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(key == "rest_route" for key, _ in query):
        kept = [(k, v) for k, v in query if k != "rest_route"]
        return urlunsplit((parts.scheme, parts.netloc, parts.path or "/",
                           urlencode([*kept, ("rest_route", "/")], safe="/"), ""))
    path = parts.path
    at = path.find("/wp-json")
    path = path[:at] + "/wp-json/" if at >= 0 else path.rstrip("/") + "/wp-json/"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def endpoint(base: str, route: str, params: Sequence[tuple[str, str]] = ()) -> str:
    """The URL of ``route`` (e.g. ``/wp/v2/posts``) under an API root from ``api_base``."""
    route = "/" + route.lstrip("/")
    parts = urlsplit(base)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(key == "rest_route" for key, _ in query):
        kept = [(k, v) for k, v in query if k != "rest_route"]
        encoded = urlencode([*kept, ("rest_route", route), *params], safe="/,:")
        return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", encoded, ""))
    path = parts.path.rstrip("/") + route
    return urlunsplit((parts.scheme, parts.netloc, path, urlencode(list(params), safe="/,:"), ""))


# --- cursor ---------------------------------------------------------------


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_gmt(value: Any) -> datetime | None:
    """A WordPress ``*_gmt`` value (``2020-02-16T09:30:00``, UTC, no offset) as aware UTC."""
    if not isinstance(value, str) or not value.strip() or value.startswith("0000"):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where incremental polling stands (see the module docstring).

    ``seen`` holds the ids of the posts modified in the cursor's very second:
    ``modified_after`` is asked from one second earlier (it is exclusive and
    second-grained), and those posts are not reported twice.
    """

    modified: datetime | None = None
    date: datetime | None = None
    floor: datetime | None = None
    seen: frozenset[int] = frozenset()

    @classmethod
    def parse(cls, text: str | None) -> Cursor:
        """Read ``CacheState.cursor``; a bare ISO time counts as ``modified``; junk as empty."""
        if not text or not text.strip():
            return cls()
        values: dict[str, datetime | None] = {}
        seen: frozenset[int] = frozenset()
        for part in text.split():
            key, sep, value = part.partition("=")
            if not sep:
                key, value = "modified", part
            if key in ("modified", "date", "floor"):
                values[key] = parse_gmt(value)
            elif key == "seen":
                seen = frozenset(int(v) for v in value.split(",") if v.isdigit())
        return cls(values.get("modified"), values.get("date"), values.get("floor"), seen)

    def __str__(self) -> str:
        parts = [f"{name}={_iso(value)}" for name, value in
                 (("modified", self.modified), ("date", self.date), ("floor", self.floor)) if value]
        if self.seen and self.modified:
            parts.append("seen=" + ",".join(map(str, sorted(self.seen))))
        return " ".join(parts)

    def already_seen(self, row: Mapping[str, Any]) -> bool:
        """Was this row reported at the cursor's second, unchanged since?"""
        return (row.get("id") in self.seen and self.modified is not None
                and parse_gmt(row.get("modified_gmt")) == self.modified)

    def advanced(self, rows: Iterable[Mapping[str, Any]], *, floor: datetime | None = None,
                 move_modified: bool = True) -> Cursor:
        """The cursor after reading ``rows`` (it never moves backwards).

        Only a contiguous ``modified_after`` scan may move ``modified``; posts
        found otherwise (the newest-by-date check) move ``date`` alone, or the
        unread rest of a bounded scan would be skipped.
        """
        modified, date, seen = self.modified, self.date, set(self.seen)
        for row in rows:
            m, d = parse_gmt(row.get("modified_gmt")), parse_gmt(row.get("date_gmt"))
            post_id = row.get("id")
            if not move_modified:
                m = None
            if m and (modified is None or m > modified):
                modified, seen = m, set()
            if m and m == modified and isinstance(post_id, int):
                seen.add(post_id)
            if d and (date is None or d > date):
                date = d
        return Cursor(modified, date, floor if floor is not None else self.floor, frozenset(seen))


# --- the source -----------------------------------------------------------


@dataclass
class _Page:
    rows: list[dict[str, Any]]
    total_pages: int
    outcome: FetchOutcome


@dataclass
class _Names:
    """id → name caches, per taxonomy route, kept across polls."""

    known: dict[str, dict[int, str | None]] = field(default_factory=dict)

    def missing(self, route: str, ids: Iterable[int]) -> list[int]:
        cache = self.known.setdefault(route, {})
        return sorted({i for i in ids if i not in cache})

    def name(self, route: str, term_id: int) -> str | None:
        return self.known.get(route, {}).get(term_id)


def _ids(value: Any) -> list[int]:
    if not isinstance(value, list):
        return []
    return [v for v in value if isinstance(v, int) and not isinstance(v, bool)]


def _rendered(row: Mapping[str, Any], key: str) -> str:
    value = row.get(key)
    if isinstance(value, Mapping):
        value = value.get("rendered")
    return value if isinstance(value, str) else ""


class WordPressSource:
    """``kind = "wordpress"``: the site's REST API."""

    kind: ClassVar[str] = "wordpress"

    def __init__(self, cfg: SourceConfig, client: httpx.AsyncClient, http_cfg: HttpConfig, *,
                 url: str | None = None, explicit: bool = True) -> None:
        self.name = cfg.name
        self.cfg = cfg
        self.url = url or cfg.url
        self.base = api_base(self.url)
        self.client = client
        self.http_cfg = http_cfg
        self.explicit = explicit
        self.names = _Names()
        self.authors: dict[int, str | None] = {}
        self.authors_blocked = False
        self.media: OrderedDict[int, tuple[str | None, str | None]] = OrderedDict()
        """Featured media id → (source_url, alt text), for the ids already looked up (None: none)."""
        self.media_blocked = False
        self.modified_after_ignored = False
        """Set once the site shows it ignores ``modified_after`` (WordPress < 5.7): stop asking."""

    # -- requests --

    def posts_url(self, params: Sequence[tuple[str, str]]) -> str:
        return endpoint(self.base, "/wp/v2/posts", params)

    async def _get(self, url: str, *, etag: str | None = None, last_modified: str | None = None) -> FetchOutcome:
        return await fetch(self.client, url, source=self.name, etag=etag, last_modified=last_modified,
                           max_bytes=self.http_cfg.max_bytes, extra_headers=_ACCEPT)

    def _rows(self, outcome: FetchOutcome) -> list[dict[str, Any]]:
        try:
            data: Any = orjson.loads(outcome.body)
        except orjson.JSONDecodeError as exc:
            kind = sniff(outcome.body, outcome.content_type)
            reason = not_a_feed_reason(kind, outcome.body, expected="a WordPress REST API answer",
                                       hint=self.explicit)
            raise FeedParseError(self.name, f"{reason} ({outcome.url})") from exc
        if isinstance(data, dict) and "code" in data:
            raise FeedParseError(self.name, f"WordPress answered {data.get('code')}: "
                                            f"{str(data.get('message', ''))[:200]} ({outcome.url})")
        if not isinstance(data, list):
            kind = sniff(outcome.body, outcome.content_type, outcome.headers)
            reason = not_a_feed_reason(kind, outcome.body, expected="a WordPress posts list", hint=self.explicit)
            raise FeedParseError(self.name, f"{reason} ({outcome.url})")
        return [row for row in data if isinstance(row, dict)]

    async def _page(self, params: list[tuple[str, str]], page: int, *, etag: str | None = None,
                    last_modified: str | None = None) -> _Page | None:
        """One list page; None on 304."""
        query = [*params, ("page", str(page))] if page > 1 else params
        outcome = await self._get(self.posts_url(query), etag=etag, last_modified=last_modified)
        if outcome.not_modified:
            return None
        total = outcome.header("X-WP-TotalPages")
        return _Page(self._rows(outcome), int(total) if total and total.strip().isdigit() else 1, outcome)

    async def _more_pages(self, params: list[tuple[str, str]], first: _Page,
                          limit: int) -> tuple[list[dict[str, Any]], bool, int]:
        """Rows of ``first`` and pages 2..limit; whether pages remain unread; bytes read."""
        rows = list(first.rows)
        size = len(first.outcome.body)
        last = min(first.total_pages, limit)
        for page in range(2, last + 1):
            more = await self._page(params, page)
            if more is None or not more.rows:
                break
            rows.extend(more.rows)
            size += len(more.outcome.body)
        return rows, first.total_pages > limit, size

    async def _resolve_terms(self, rows: Sequence[Mapping[str, Any]]) -> None:
        wanted = []
        if "categories" in self.cfg.taxonomies:
            wanted.append(("/wp/v2/categories", "categories"))
        if "tags" in self.cfg.taxonomies:
            wanted.append(("/wp/v2/tags", "tags"))
        for route, key in wanted:
            missing = self.names.missing(route, (i for row in rows for i in _ids(row.get(key))))
            for start in range(0, len(missing), WP_MAX_PER_PAGE):
                chunk = missing[start:start + WP_MAX_PER_PAGE]
                url = endpoint(self.base, route, [("include", ",".join(map(str, chunk))),
                                                  ("per_page", str(WP_MAX_PER_PAGE)), ("_fields", "id,name")])
                outcome = await self._get(url)
                cache = self.names.known.setdefault(route, {})
                found = {}
                for term in self._rows(outcome):
                    tid, name = term.get("id"), term.get("name")
                    if isinstance(tid, int) and isinstance(name, str):
                        found[tid] = clean_text(name) or None
                for tid in chunk:
                    cache[tid] = found.get(tid)

    async def _resolve_authors(self, rows: Sequence[Mapping[str, Any]]) -> None:
        if self.authors_blocked:
            return
        missing = sorted({a for row in rows if isinstance(a := row.get("author"), int) and a not in self.authors})
        if not missing:
            return
        url = endpoint(self.base, "/wp/v2/users", [("include", ",".join(map(str, missing[:WP_MAX_PER_PAGE]))),
                                                   ("per_page", str(WP_MAX_PER_PAGE)), ("_fields", "id,name")])
        try:
            users = self._rows(await self._get(url))
        except SourceError:
            self.authors_blocked = True  # many sites hide users from the REST API; names are optional
            return
        found = {u["id"]: clean_text(u.get("name")) or None for u in users
                 if isinstance(u.get("id"), int) and isinstance(u.get("name"), str)}
        for uid in missing[:WP_MAX_PER_PAGE]:
            self.authors[uid] = found.get(uid)

    async def _resolve_media(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Featured images of ``rows`` not yet known: one ``/wp/v2/media?include=`` request per 100 ids."""
        if self.media_blocked:
            return
        missing = sorted({m for row in rows if isinstance(m := row.get("featured_media"), int)
                          and not isinstance(m, bool) and m > 0 and m not in self.media})
        for start in range(0, len(missing), WP_MAX_PER_PAGE):
            chunk = missing[start:start + WP_MAX_PER_PAGE]
            url = endpoint(self.base, "/wp/v2/media", [("include", ",".join(map(str, chunk))),
                                                       ("per_page", str(WP_MAX_PER_PAGE)),
                                                       ("_fields", MEDIA_FIELDS)])
            try:
                found = self._rows(await self._get(url))
            except FetchError as exc:
                if exc.status in (401, 403):
                    self.media_blocked = True  # a site may hide its media library: alt texts are optional
                return
            except SourceError:
                return
            by_id: dict[int, tuple[str | None, str | None]] = {}
            for item in found:
                mid, source_url = item.get("id"), item.get("source_url")
                if not isinstance(mid, int) or item.get("media_type", "image") != "image":
                    continue
                alt = item.get("alt_text")
                by_id[mid] = (source_url.strip() if isinstance(source_url, str) and source_url.strip() else None,
                              clean_alt(alt) if isinstance(alt, str) else None)
            for mid in chunk:
                self.media[mid] = by_id.get(mid, (None, None))
                self.media.move_to_end(mid)
            while len(self.media) > MEDIA_CACHE_SIZE:
                self.media.popitem(last=False)

    # -- mapping --

    def to_post(self, row: Mapping[str, Any]) -> ParsedPost:
        """One REST post as a ``ParsedPost`` (term ids must be resolved first)."""
        names: list[str | None] = []
        if "categories" in self.cfg.taxonomies:
            names += [self.names.name("/wp/v2/categories", i) for i in _ids(row.get("categories"))]
        if "tags" in self.cfg.taxonomies:
            names += [self.names.name("/wp/v2/tags", i) for i in _ids(row.get("tags"))]
        content = _rendered(row, "content")
        link = row.get("link") if isinstance(row.get("link"), str) else None
        guid = _rendered(row, "guid").strip() or None
        jetpack = row.get("jetpack_featured_media_url")
        media_id = row.get("featured_media")
        media_url, media_alt = self.media.get(media_id, (None, None)) if isinstance(media_id, int) else (None, None)
        featured = jetpack.strip() if isinstance(jetpack, str) and jetpack.strip() else media_url
        image = featured or first_image(content, link)
        alt = media_alt if featured else html_alt(content, image, link, first=True)
        author = row.get("author")
        return ParsedPost(
            title=clean_text(_rendered(row, "title")),
            url=link.strip() if link and link.strip() else None,
            guid=guid,
            summary_html=_rendered(row, "excerpt").strip(),
            content_html=content.strip(),
            tags=unique_tags(names),
            published=parse_gmt(row.get("date_gmt")) or parse_gmt(row.get("modified_gmt")),
            updated=parse_gmt(row.get("modified_gmt")),
            image_url=image,
            author=self.authors.get(author) if isinstance(author, int) else None,
            image_alt=alt,
        )

    async def _posts(self, rows: Sequence[dict[str, Any]]) -> tuple[ParsedPost, ...]:
        await self._resolve_terms(rows)
        await self._resolve_authors(rows)
        await self._resolve_media(rows)
        return tuple(self.to_post(row) for row in rows)

    # -- polling --

    async def poll(self, cache: CacheState, *, first_poll: bool) -> PollResult:
        cursor = Cursor.parse(cache.cursor)
        if first_poll or cursor.modified is None:
            return await self._baseline(cache, cursor)
        return await self._incremental(cache, cursor)

    async def _baseline(self, cache: CacheState, cursor: Cursor) -> PollResult:
        depth = self.cfg.baseline_depth
        per_page = min(depth, WP_MAX_PER_PAGE)
        params = [("per_page", str(per_page)), ("orderby", "date"), ("order", "desc"), ("_fields", POST_FIELDS)]
        first = await self._page(params, 1)
        assert first is not None  # no validators were sent
        pages = -(-depth // per_page)
        rows, _, bytes_read = await self._more_pages(params, first, pages)
        rows = rows[:depth]
        dates = [d for d in (parse_gmt(r.get("date_gmt")) for r in rows) if d]
        new_cursor = cursor.advanced(rows, floor=min(dates) if dates else cursor.floor)
        posts = await self._posts(rows)
        return Fetched(posts=posts, cache=cache.but(cursor=str(new_cursor) or None, etag=None, last_modified=None),
                       bytes_read=bytes_read)

    async def _recent_check(self) -> list[dict[str, Any]]:
        size = WP_MAX_PER_PAGE if self.modified_after_ignored else RECENT_CHECK_SIZE
        params = [("per_page", str(size)), ("orderby", "date"), ("order", "desc"),
                  ("_fields", "id,date_gmt,modified_gmt")]
        page = await self._page(params, 1)
        return page.rows if page else []

    async def _incremental(self, cache: CacheState, cursor: Cursor) -> PollResult:
        assert cursor.modified is not None
        since = _iso(cursor.modified - _OVERLAP)
        params = [("per_page", str(INCREMENTAL_PER_PAGE)), ("orderby", "modified"), ("order", "asc"),
                  ("modified_after", since), ("_fields", POST_FIELDS)]
        notes: list[str] = []
        if self.modified_after_ignored:
            first: _Page | None = None
            recent = await self._recent_check()
            notes.append(OLD_WORDPRESS_NOTE)
        else:
            try:
                async with asyncio.TaskGroup() as group:
                    changed_task = group.create_task(
                        self._page(params, 1, etag=cache.etag, last_modified=cache.last_modified))
                    recent_task = group.create_task(self._recent_check())
            except* SourceError as errors:
                raise errors.exceptions[0] from None
            first, recent = changed_task.result(), recent_task.result()
        rows: list[dict[str, Any]] = []
        etag, last_modified = cache.etag, cache.last_modified
        bytes_read = 0
        if first is not None:
            etag, last_modified = first.outcome.etag, first.outcome.last_modified
            bytes_read = len(first.outcome.body)
            bound = cursor.modified - _OVERLAP
            if any((m := parse_gmt(r.get("modified_gmt"))) is not None and m < bound for r in first.rows):
                self.modified_after_ignored = True
                notes.append(OLD_WORDPRESS_NOTE)
            else:
                rows, more, bytes_read = await self._more_pages(params, first, MAX_PAGES)
                if more:
                    notes.append(f"more than {MAX_PAGES * INCREMENTAL_PER_PAGE} posts changed since the "
                                 f"last poll; the rest is read on the next poll")
        new_cursor = cursor.advanced(rows)
        rows = [r for r in rows if not cursor.already_seen(r)]
        seen = {r.get("id") for r in rows}
        newest_date = cursor.date or cursor.modified
        late = [r["id"] for r in recent if isinstance(r.get("id"), int) and r["id"] not in seen
                and (d := parse_gmt(r.get("date_gmt"))) is not None and d > newest_date]
        if late:
            include = [("include", ",".join(map(str, late))), ("per_page", str(WP_MAX_PER_PAGE)),
                       ("_fields", POST_FIELDS)]
            extra = await self._page(include, 1)
            if extra is not None:
                rows.extend(extra.rows)
                bytes_read += len(extra.outcome.body)
                new_cursor = new_cursor.advanced(extra.rows, move_modified=False)
        if cursor.floor is not None:
            floor = cursor.floor
            rows = [r for r in rows if (d := parse_gmt(r.get("date_gmt"))) is None or d >= floor]
        updated = cache.but(cursor=str(new_cursor) or None, etag=etag, last_modified=last_modified)
        if first is None and not late and not self.modified_after_ignored:
            return NotModified(updated)
        rows.sort(key=lambda r: parse_gmt(r.get("date_gmt")) or datetime.min.replace(tzinfo=UTC), reverse=True)
        posts = await self._posts(rows)
        return Fetched(posts=posts, cache=updated, bytes_read=bytes_read, notes=tuple(notes))
