"""A fake WordPress archive on 127.0.0.1: RSS, JSON Feed, REST API and a home page, from memory.

Tests add and edit posts while it runs; every representation is rendered
from the same in-memory posts, the way WordPress renders them:

* ``/feed/``          RSS 2.0 (WordPress namespaces, categories then tags as ``<category>``,
                      ``guid isPermaLink="false"`` = ``<site>/?p=ID``, ``[&#8230;]`` excerpts)
* ``/feed/json``      JSON Feed 1.1
* ``/wp-json/...`` and ``/?rest_route=/...``
                      ``wp/v2/posts`` (``per_page``, ``page``, ``orderby``, ``order``,
                      ``modified_after``, ``after``, ``include``, ``_fields``; ``X-WP-Total``,
                      ``X-WP-TotalPages``; 400 ``rest_post_invalid_page_number`` past the end),
                      ``wp/v2/tags``, ``wp/v2/categories``, ``wp/v2/users``, ``wp/v2/media`` (featured
                      images with ``alt_text``; ``include``), and the index
* ``/``               a home page whose ``<link>`` tags are configurable (``home_links``)
* ``/YYYY/MM/DD/slug/`` a post's own page: 200 while it is published, 404 once it is trashed
                      (``trash_post``), drafted, made private or deleted (``delete_post``)
* ``/r/<n>/<path>``   a chain of n redirects to ``<path>``; ``/loop`` redirects to itself

Every 200 carries ``ETag`` and ``Last-Modified``; a matching ``If-None-Match``
(or, without it, ``If-Modified-Since``) gets a 304 with no body.

Faults (``inject``/``fail_next``): a status (with ``Retry-After``), an HTML
page instead of the feed, a cut-off body (at ``cut`` bytes, else half; it carries
the whole document's ``ETag`` and ``Last-Modified``, as an origin that crashed
mid-response would), a body cut on the wire, a huge
body, a gzip bomb, garbage, a dropped connection; ``hold()`` returns a
``threading.Event`` that stalls responses until set (no sleeping in tests).
WebSub: ``hub = "<url>"`` makes both feeds advertise that hub (``<atom:link rel="hub">`` in RSS,
``hubs`` in the JSON Feed); with ``hub_header = True`` the feeds' responses carry it in a ``Link``
header instead (with ``rel="self"``), as the WordPress WebSub plugin does.
Counters: ``count(path=..., status=...)``, ``not_modified``. ``guid_churn=True`` gives every
item a new guid in every RSS/JSON Feed rendering (title, link and date stay the same).

Usage::

    with ArchiveServer() as server:
        post = server.add_post(title="Hello", tags=["Iraq protest against Iran’s meddling"])
        server.fail_next(503, retry_after="120")
"""

from __future__ import annotations

import gzip
import hashlib
import html
import json
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

from tests.fakes.http import DROP, LoopbackServer, Request, Response, _Handler

START = datetime(2020, 1, 6, 9, 0, tzinfo=UTC)
FAULT_KINDS = ("status", "html", "truncated", "short_body", "huge", "gzip_bomb", "garbage", "drop")


@dataclass
class ArchivePost:
    """One post of the fake archive. ``status`` "future" posts are invisible until published."""

    id: int
    title: str
    slug: str
    published: datetime
    modified: datetime
    tags: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    excerpt_html: str = ""
    content_html: str = ""
    author: str = "Staff Writer"
    image: str | None = None
    status: str = "publish"
    image_alt: str | None = None
    """The featured image's alt text: WordPress ``alt_text``, ``media:description`` in the RSS feed."""

    @property
    def media_id(self) -> int:
        """The featured image's attachment id (0: none)."""
        return 900000 + self.id if self.image else 0

    def guid(self, site: str) -> str:
        return f"{site}/?p={self.id}"

    def link(self, site: str) -> str:
        return f"{site}/{self.published:%Y/%m/%d}/{self.slug}/"


@dataclass
class Fault:
    kind: str
    path: str | None = None
    times: int | None = 1
    status: int = 500
    retry_after: str | None = None
    body: bytes | None = None
    cut: int | None = None

    def matches(self, path: str) -> bool:
        return self.path is None or self.path == path


class _NoDelayHandler(_Handler):
    """The base handler with TCP_NODELAY: headers and body go out as separate writes, and with
    Nagle's algorithm on, each body waits ~40 ms for the client's delayed ACK."""

    disable_nagle_algorithm = True


def _texturize(text: str) -> str:
    """Escape as WordPress renders titles: ``&`` as ``&#038;``, curly quotes as references."""
    out = html.escape(text, quote=False).replace("&amp;", "&#038;")
    for char, ref in (("’", "&#8217;"), ("‘", "&#8216;"), ("“", "&#8220;"), ("”", "&#8221;"),
                      ("…", "&#8230;"), ("–", "&#8211;")):
        out = out.replace(char, ref)
    return out


def _slug(title: str) -> str:
    return "-".join("".join(c for c in title.lower() if c.isalnum() or c == " ").split())[:60] or "post"


def _http_date(value: datetime) -> str:
    return format_datetime(value.astimezone(UTC), usegmt=True)


def _gmt(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _etag(body: bytes) -> str:
    return '"' + hashlib.sha1(body, usedforsecurity=False).hexdigest()[:20] + '"'


def _wp_error(status: int, code: str, message: str) -> Response:
    return Response.json({"code": code, "message": message, "data": {"status": status}}, status=status)


class ArchiveServer(LoopbackServer):
    """A WordPress-like archive served from memory (see the module docstring)."""

    def __init__(self, *, feed_size: int = 10, home_links: Iterable[str] = ("rest", "rss", "comments", "json"),
                 rest_form: str = "pretty", link_header: bool = False, rest_status: int | None = None,
                 users_status: int | None = None, media_status: int | None = None, jetpack: bool = True,
                 modified_after_supported: bool = True, guid_churn: bool = False,
                 site_title: str = "Iraq protest against Iran’s meddling – Archive") -> None:
        super().__init__()
        self.posts: list[ArchivePost] = []
        self.feed_size = feed_size
        self.home_links = set(home_links)
        """Which ``<link>`` tags the home page has: rest, rss, atom, json, comments."""
        self.rest_form = rest_form
        """How the home page announces the REST API: "pretty" (/wp-json/) or "plain" (?rest_route=/)."""
        self.link_header = link_header
        """Also send ``Link: <...>; rel="https://api.w.org/"`` on the home page, as WordPress does."""
        self.rest_status = rest_status
        """When set, every REST route answers this status (a site that closed its API)."""
        self.users_status = users_status
        self.media_status = media_status
        """When set, ``/wp/v2/media`` answers this status (a site that hides its media library)."""
        self.jetpack = jetpack
        """Posts carry ``jetpack_featured_media_url`` (a site with Jetpack); else only ``featured_media``."""
        self.modified_after_supported = modified_after_supported
        self.site_title = site_title
        self.guid_churn = guid_churn
        """Every RSS/JSON Feed rendering gives every item a new guid (title, link and date stay)."""
        self.hub: str | None = None
        """The WebSub hub the feeds advertise (None: none)."""
        self.hub_header = False
        """Advertise ``hub`` in a ``Link`` header rather than in the feed documents."""
        self._renders = 0
        self.clock = START
        self._next_id = 3001
        self._tag_ids: dict[str, int] = {}
        self._cat_ids: dict[str, int] = {}
        self._faults: list[Fault] = []
        self._holds: list[tuple[str | None, threading.Event]] = []
        self.responses: list[tuple[str, int]] = []
        self._server.RequestHandlerClass = _NoDelayHandler
        # The base serves with the default 0.5 s shutdown poll; 20 ms makes stop() (per test) fast.
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True, name=type(self).__name__)

    # -- content API --------------------------------------------------------

    def tick(self, minutes: int = 7) -> datetime:
        """Advance the archive's clock and return the new time."""
        with self.lock:
            self.clock += timedelta(minutes=minutes)
            return self.clock

    def add_post(self, *, title: str = "Untitled", tags: Sequence[str] = (), categories: Sequence[str] = (),
                 excerpt_html: str | None = None, content_html: str | None = None, author: str = "Staff Writer",
                 image: str | None = None, published: datetime | None = None, modified: datetime | None = None,
                 status: str = "publish", slug: str | None = None, image_alt: str | None = None) -> ArchivePost:
        """Add a post (published now by the archive clock unless dates are given)."""
        when = published or self.tick()
        with self.lock:
            post = ArchivePost(
                id=self._next_id, title=title, slug=slug or _slug(title), published=when,
                modified=modified or when, tags=list(tags), categories=list(categories),
                excerpt_html=excerpt_html if excerpt_html is not None
                else f"{html.escape(title, quote=False)} in brief. [&#8230;]",
                content_html=content_html if content_html is not None
                else f"<p>{html.escape(title, quote=False)}.</p>\n<p>More to follow.</p>",
                author=author, image=image, status=status, image_alt=image_alt,
            )
            self._next_id += 7
            for name in post.tags:
                self._tag_ids.setdefault(name, 40 + len(self._tag_ids))
            for name in post.categories:
                self._cat_ids.setdefault(name, 2 + len(self._cat_ids))
            self.posts.append(post)
            return post

    def edit_post(self, post: ArchivePost, **changes: Any) -> ArchivePost:
        """Change fields of a post; its modified time moves to now (archive clock)."""
        when = changes.pop("modified", None) or self.tick()
        with self.lock:
            index = next(i for i, p in enumerate(self.posts) if p.id == post.id)
            updated = replace(self.posts[index], modified=when, **changes)
            for name in updated.tags:
                self._tag_ids.setdefault(name, 40 + len(self._tag_ids))
            for name in updated.categories:
                self._cat_ids.setdefault(name, 2 + len(self._cat_ids))
            self.posts[index] = updated
            return updated

    def trash_post(self, post: ArchivePost, status: str = "trash") -> ArchivePost:
        """Unpublish a post as WordPress does (``trash``, or ``draft`` / ``private``): it leaves the feeds and
        the REST API's public lists, and its page answers 404. Its modified time moves to now."""
        return self.edit_post(post, status=status)

    def delete_post(self, post: ArchivePost) -> None:
        """Delete a post for good (its page answers 404, as for an unknown path)."""
        with self.lock:
            self.posts = [p for p in self.posts if p.id != post.id]

    def publish_scheduled(self, post: ArchivePost) -> ArchivePost:
        """WordPress's cron publish: only the status changes, ``modified`` stays (core trac #26980)."""
        with self.lock:
            index = next(i for i, p in enumerate(self.posts) if p.id == post.id)
            self.posts[index] = replace(self.posts[index], status="publish")
            return self.posts[index]

    def tag_id(self, name: str) -> int:
        return self._tag_ids[name]

    def category_id(self, name: str) -> int:
        return self._cat_ids[name]

    # -- faults -------------------------------------------------------------

    def inject(self, kind: str, *, path: str | None = None, times: int | None = 1, status: int = 500,
               retry_after: str | None = None, body: bytes | None = None, cut: int | None = None) -> None:
        """Add a fault for requests to ``path`` (any path if None), ``times`` times (None: until cleared).

        kinds: status, html, truncated (valid HTTP, the body cut at ``cut`` bytes or in half, with the
        whole body's validators), short_body
        (Content-Length promises more than is sent), huge, gzip_bomb, garbage, drop.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; one of {FAULT_KINDS}")
        with self.lock:
            self._faults.append(Fault(kind, path, times, status, retry_after, body, cut))

    def fail_next(self, status: int, *, path: str | None = None, times: int = 1,
                  retry_after: str | None = None, body: bytes | None = None) -> None:
        """The next ``times`` matching requests answer ``status``."""
        self.inject("status", path=path, times=times, status=status, retry_after=retry_after, body=body)

    def clear_faults(self) -> None:
        with self.lock:
            self._faults.clear()

    def hold(self, path: str | None = None) -> threading.Event:
        """Stall responses (to ``path``, or all) until the returned event is set."""
        event = threading.Event()
        with self.lock:
            self._holds.append((path, event))
        return event

    def release_all(self) -> None:
        with self.lock:
            for _, event in self._holds:
                event.set()
            self._holds.clear()

    def start(self) -> ArchiveServer:
        super().start()
        return self

    def __enter__(self) -> ArchiveServer:
        return self.start()

    def stop(self) -> None:
        self.release_all()
        super().stop()

    # -- counters -----------------------------------------------------------

    def count(self, path: str | None = None, *, status: int | None = None) -> int:
        """How many responses went out (for ``path``, with ``status``)."""
        with self.lock:
            return sum(1 for p, s in self.responses
                       if (path is None or p == path) and (status is None or s == status))

    @property
    def not_modified(self) -> int:
        return self.count(status=304)

    def reset_counters(self) -> None:
        with self.lock:
            self.responses.clear()
            self.requests.clear()

    # -- dispatch -----------------------------------------------------------

    @property
    def site(self) -> str:
        return self.url

    def visible(self) -> list[ArchivePost]:
        with self.lock:
            return [p for p in self.posts if p.status == "publish"]

    def handle(self, request: Request) -> Response | object:
        route = self._route_name(request)
        fault = self._take_fault(route)
        response = self._faulted(fault, route) if fault else self._dispatch(request, route)
        if response is not DROP and isinstance(response, Response):
            response = self._conditional(request, response)
            hold = self._hold_for(route)
            if hold is not None:
                response.hold = hold
        with self.lock:
            self.responses.append((route, response.status if isinstance(response, Response) else 0))
        return response

    def _route_name(self, request: Request) -> str:
        rest_route = request.arg("rest_route")
        if request.path in ("/", "/index.php") and rest_route is not None:
            return "/wp-json" + (rest_route if rest_route.startswith("/") else "/" + rest_route)
        return request.path

    def _take_fault(self, route: str) -> Fault | None:
        with self.lock:
            for fault in self._faults:
                if fault.matches(route):
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times <= 0:
                            self._faults.remove(fault)
                    return fault
        return None

    def _hold_for(self, route: str) -> threading.Event | None:
        with self.lock:
            for path, event in self._holds:
                if path is None or path == route:
                    return event
        return None

    def _faulted(self, fault: Fault, route: str) -> Response | object:
        if fault.kind == "drop":
            return DROP
        if fault.kind == "status":
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            if fault.body is not None:
                return Response(fault.status, fault.body, {"Content-Type": "text/html; charset=UTF-8", **headers})
            if route.startswith("/wp-json"):
                resp = _wp_error(fault.status, "rest_error", "Injected failure.")
                resp.headers.update(headers)
                return resp
            return Response.text(f"<html><body><h1>Error {fault.status}</h1></body></html>", fault.status,
                                 "text/html; charset=UTF-8", headers)
        if fault.kind == "html":
            return Response.text(self.home_html(), content_type="text/html; charset=UTF-8")
        if fault.kind == "garbage":
            return Response(200, fault.body or b"\x00\x01garbage\xff\xfe not a feed",
                            {"Content-Type": "application/rss+xml"})
        if fault.kind == "huge":
            size = len(fault.body) if fault.body else 2 * 1024 * 1024
            return Response(200, fault.body or (b"<rss>" + b" " * size), {"Content-Type": "application/rss+xml"})
        if fault.kind == "gzip_bomb":
            return Response(200, gzip.compress(b"\x00" * (fault.status * 1024 * 1024)),
                            {"Content-Type": "application/rss+xml", "Content-Encoding": "gzip"})
        full = self._dispatch(Request("GET", route, {}, {}, b""), route)
        assert isinstance(full, Response)
        if fault.kind == "truncated":
            cut = full.body[: len(full.body) // 2 if fault.cut is None else fault.cut]
            return Response(200, cut, {**full.headers, "ETag": _etag(full.body)})
        # short_body: promise the whole length, send half, close the connection
        return Response(200, full.body[: len(full.body) // 2],
                        {**full.headers, "Content-Length": str(len(full.body)), "Connection": "close"})

    def _dispatch(self, request: Request, route: str) -> Response | object:
        if route in ("/feed/", "/feed"):
            return Response(200, self.rss().encode(), {"Content-Type": "application/rss+xml; charset=UTF-8",
                                                       **self._hub_header("/feed/")})
        if route in ("/feed/json", "/feed/json/"):
            return Response(200, json.dumps(self.json_feed()).encode(),
                            {"Content-Type": "application/feed+json; charset=UTF-8", **self._hub_header("/feed/json")})
        if route == "/":
            headers = {"Content-Type": "text/html; charset=UTF-8"}
            if self.link_header:
                headers["Link"] = f'<{self._rest_root()}>; rel="https://api.w.org/"'
            return Response(200, self.home_html().encode(), headers)
        if route.startswith("/r/"):
            _, _, rest = route.partition("/r/")
            count, _, target = rest.partition("/")
            left = int(count) if count.isdigit() else 0
            location = f"/r/{left - 1}/{target}" if left > 1 else f"/{target}"
            return Response(302, b"", {"Location": location})
        if route == "/loop":
            return Response(301, b"", {"Location": "/loop"})
        if route.startswith("/wp-json"):
            return self._rest(request, route[len("/wp-json"):] or "/")
        page = self._post_page(route)
        if page is not None:
            return page
        return Response.text("<html><body><h1>Not Found</h1></body></html>", 404, "text/html; charset=UTF-8")

    def _post_page(self, route: str) -> Response | None:
        """A post's own page at its link: published → 200; trashed, drafted, private or deleted → WordPress's
        404 page (a visitor sees none of them). None: not a post's path."""
        with self.lock:
            post = next((p for p in self.posts if p.link("") == route), None)
        if post is None:
            return None
        if post.status != "publish":
            return Response.text("<html><body><h1>Page not found</h1></body></html>", 404,
                                 "text/html; charset=UTF-8")
        return Response.text(f"<html><head><title>{html.escape(post.title)}</title></head><body>"
                             f"<article>{post.content_html}</article></body></html>",
                             content_type="text/html; charset=UTF-8")

    def _conditional(self, request: Request, response: Response) -> Response:
        if request.method != "GET" or response.status != 200:
            return response
        etag = _etag(response.body)
        stamp = max((p.modified for p in self.visible()), default=START)
        last_modified = _http_date(stamp)
        response.headers.setdefault("ETag", etag)
        response.headers.setdefault("Last-Modified", last_modified)
        validators = {"ETag": response.headers["ETag"], "Last-Modified": response.headers["Last-Modified"]}
        inm = request.header("if-none-match")
        if inm is not None:
            tags = {t.strip().removeprefix("W/") for t in inm.split(",")}
            if response.headers["ETag"] in tags or "*" in tags:
                return Response(304, b"", validators)
            return response
        ims = request.header("if-modified-since")
        if ims:
            try:
                since = parsedate_to_datetime(ims)
            except (TypeError, ValueError):
                return response
            if since.tzinfo is not None and stamp.replace(microsecond=0) <= since:
                return Response(304, b"", validators)
        return response

    # -- renderers ----------------------------------------------------------

    def _rest_root(self) -> str:
        return f"{self.site}/wp-json/" if self.rest_form == "pretty" else f"{self.site}/?rest_route=/"

    def home_html(self) -> str:
        links = []
        if "rest" in self.home_links:
            links.append(f'<link rel="https://api.w.org/" href="{self._rest_root()}" />')
        if "rss" in self.home_links:
            links.append('<link rel="alternate" type="application/rss+xml" title="Archive &raquo; Feed" '
                         'href="/feed/" />')
        if "comments" in self.home_links:
            links.append('<link rel="alternate" type="application/rss+xml" '
                         'title="Archive &raquo; Comments Feed" href="/comments/feed/" />')
        if "json" in self.home_links:
            links.append('<link rel="alternate" type="application/feed+json" title="Archive &raquo; JSON Feed" '
                         'href="/feed/json" />')
        head = "\n".join(links)
        return f"""<!DOCTYPE html>
<html lang="en-US">
<head>
<meta charset="UTF-8" />
<title>{html.escape(self.site_title)}</title>
{head}
</head>
<body class="home blog">
<h1>{html.escape(self.site_title)}</h1>
<link rel="alternate" type="application/rss+xml" href="/in-body-link-is-ignored/" />
</body>
</html>
"""

    def _newest(self) -> list[ArchivePost]:
        return sorted(self.visible(), key=lambda p: (p.published, p.id), reverse=True)

    def _guid_maker(self) -> Callable[[ArchivePost], str]:
        """Each post's guid in this rendering (a new one per rendering when ``guid_churn``)."""
        with self.lock:
            self._renders += 1
            render = self._renders
        if not self.guid_churn:
            return lambda p: p.guid(self.site)
        return lambda p: f"{p.guid(self.site)}&rev={render}"

    def _hub_header(self, path: str) -> dict[str, str]:
        if self.hub is None or not self.hub_header:
            return {}
        return {"Link": f'<{self.hub}>; rel="hub", <{self.site}{path}>; rel="self"'}

    def _hub_in_feed(self) -> str | None:
        return self.hub if self.hub is not None and not self.hub_header else None

    def rss(self) -> str:
        site = self.site
        guid = self._guid_maker()
        items = []
        for p in self._newest()[: self.feed_size]:
            cats = "".join(f"\n\t\t<category><![CDATA[{t}]]></category>" for t in [*p.categories, *p.tags])
            description = (f"<media:description>{html.escape(p.image_alt, quote=False)}</media:description>"
                           if p.image_alt else "")
            media = (f'\n\t\t<media:content url="{html.escape(p.image)}" medium="image">{description}'
                     f"</media:content>" if p.image else "")
            items.append(f"""\t<item>
\t\t<title>{_texturize(p.title).replace("&#038;", "&amp;")}</title>
\t\t<link>{p.link(site)}</link>
\t\t<dc:creator><![CDATA[{p.author}]]></dc:creator>
\t\t<pubDate>{format_datetime(p.published)}</pubDate>{cats}
\t\t<guid isPermaLink="false">{html.escape(guid(p))}</guid>
\t\t<description><![CDATA[{p.excerpt_html}]]></description>
\t\t<content:encoded><![CDATA[{p.content_html}]]></content:encoded>{media}
\t</item>""")
        body = "\n".join(items)
        built = max((p.modified for p in self.visible()), default=START)
        in_feed = self._hub_in_feed()
        hub = f'\n\t<atom:link rel="hub" href="{html.escape(in_feed)}" />' if in_feed else ""
        return f"""<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"
\txmlns:content="http://purl.org/rss/1.0/modules/content/"
\txmlns:dc="http://purl.org/dc/elements/1.1/"
\txmlns:atom="http://www.w3.org/2005/Atom"
\txmlns:media="http://search.yahoo.com/mrss/">
<channel>
\t<title>{html.escape(self.site_title, quote=False)}</title>
\t<atom:link href="{site}/feed/" rel="self" type="application/rss+xml" />{hub}
\t<link>{site}</link>
\t<description>A fake archive</description>
\t<lastBuildDate>{format_datetime(built)}</lastBuildDate>
{body}
</channel>
</rss>
"""

    def json_feed(self) -> dict[str, Any]:
        site = self.site
        guid = self._guid_maker()
        return {
            "version": "https://jsonfeed.org/version/1.1",
            "title": self.site_title,
            "home_page_url": site,
            "feed_url": f"{site}/feed/json",
            **({"hubs": [{"type": "WebSub", "url": self._hub_in_feed()}]} if self._hub_in_feed() else {}),
            "items": [{
                "id": guid(p),
                "url": p.link(site),
                "title": p.title,
                "content_html": p.content_html,
                "date_published": p.published.isoformat(),
                "date_modified": p.modified.isoformat(),
                "tags": [*p.categories, *p.tags],
                "authors": [{"name": p.author}],
                **({"image": p.image} if p.image else {}),
            } for p in self._newest()[: self.feed_size]],
        }

    def rest_post(self, p: ArchivePost) -> dict[str, Any]:
        site = self.site
        return {
            "id": p.id,
            "date": _gmt(p.published),
            "date_gmt": _gmt(p.published),
            "guid": {"rendered": p.guid(site)},
            "modified": _gmt(p.modified),
            "modified_gmt": _gmt(p.modified),
            "slug": p.slug,
            "status": p.status,
            "type": "post",
            "link": p.link(site),
            "title": {"rendered": _texturize(p.title)},
            "content": {"rendered": p.content_html + "\n", "protected": False},
            "excerpt": {"rendered": f"<p>{p.excerpt_html}</p>\n", "protected": False},
            "author": 1 + sum(map(ord, p.author)) % 5,
            "featured_media": p.media_id,
            "categories": [self._cat_ids[c] for c in p.categories],
            "tags": [self._tag_ids[t] for t in p.tags],
            **({"jetpack_featured_media_url": p.image} if p.image and self.jetpack else {}),
            "_links": {"self": [{"href": f"{site}/wp-json/wp/v2/posts/{p.id}"}]},
        }

    # -- REST ---------------------------------------------------------------

    def _rest(self, request: Request, route: str) -> Response:
        if self.rest_status is not None:
            if self.rest_status == 401:
                return _wp_error(401, "rest_not_logged_in", "You are not currently logged in.")
            return _wp_error(self.rest_status, "rest_disabled", "The REST API is disabled on this site.")
        route = route.rstrip("/") or "/"
        if route == "/":
            return Response.json({"name": self.site_title, "url": self.site,
                                  "namespaces": ["oembed/1.0", "wp/v2"], "routes": {}})
        if route == "/wp/v2/posts":
            return self._rest_posts(request)
        if route in ("/wp/v2/tags", "/wp/v2/categories"):
            ids = self._tag_ids if route.endswith("tags") else self._cat_ids
            return self._rest_terms(request, ids, "post_tag" if route.endswith("tags") else "category")
        if route == "/wp/v2/users":
            if self.users_status is not None:
                return _wp_error(self.users_status, "rest_user_cannot_view",
                                 "Sorry, you are not allowed to list users.")
            names = sorted({p.author for p in self.visible()})
            users = [{"id": 1 + sum(map(ord, n)) % 5, "name": n, "slug": _slug(n)} for n in names]
            return self._list_response(request, users)
        if route == "/wp/v2/media":
            if self.media_status is not None:
                return _wp_error(self.media_status, "rest_forbidden", "Sorry, you are not allowed to do that.")
            media = [{"id": p.media_id, "source_url": p.image, "alt_text": p.image_alt or "", "media_type": "image",
                      "mime_type": "image/jpeg", "post": p.id} for p in self.visible() if p.image]
            return self._list_response(request, media)
        return _wp_error(404, "rest_no_route", "No route was found matching the URL and request method.")

    @staticmethod
    def _fields(rows: list[dict[str, Any]], request: Request) -> list[dict[str, Any]]:
        wanted = request.arg("_fields")
        if not wanted:
            return rows
        keys = {k.strip().split(".")[0] for k in wanted.split(",") if k.strip()}
        return [{k: v for k, v in row.items() if k in keys} for row in rows]

    def _list_response(self, request: Request, rows: list[dict[str, Any]]) -> Response:
        include = request.arg("include")
        if include:
            wanted = {int(x) for x in include.split(",") if x.strip().isdigit()}
            rows = [r for r in rows if r.get("id") in wanted]
        return Response.json(self._fields(rows, request))

    def _rest_terms(self, request: Request, ids: dict[str, int], taxonomy: str) -> Response:
        with self.lock:
            rows = [{"id": tid, "name": html.escape(name, quote=False), "slug": f"term-{tid}",
                     "taxonomy": taxonomy} for name, tid in ids.items()]
        return self._list_response(request, rows)

    def _rest_posts(self, request: Request) -> Response:
        per_page_raw = request.arg("per_page", "10") or "10"
        page_raw = request.arg("page", "1") or "1"
        if not per_page_raw.isdigit() or not 1 <= int(per_page_raw) <= 100:
            return _wp_error(400, "rest_invalid_param", "Invalid parameter(s): per_page")
        if not page_raw.isdigit() or int(page_raw) < 1:
            return _wp_error(400, "rest_invalid_param", "Invalid parameter(s): page")
        per_page, page = int(per_page_raw), int(page_raw)
        posts = self.visible()
        include = request.arg("include")
        if include:
            wanted = {int(x) for x in include.split(",") if x.strip().isdigit()}
            posts = [p for p in posts if p.id in wanted]
        modified_after = request.arg("modified_after")
        if modified_after and self.modified_after_supported:
            bound = self._parse_param_date(modified_after)
            if bound is None:
                return _wp_error(400, "rest_invalid_param", "Invalid parameter(s): modified_after")
            posts = [p for p in posts if p.modified > bound]
        after = request.arg("after")
        if after:
            bound = self._parse_param_date(after)
            if bound is None:
                return _wp_error(400, "rest_invalid_param", "Invalid parameter(s): after")
            posts = [p for p in posts if p.published > bound]
        orderby = request.arg("orderby", "date")
        keys: dict[str, Callable[[ArchivePost], Any]] = {
            "date": lambda p: (p.published, p.id), "modified": lambda p: (p.modified, p.id),
            "id": lambda p: p.id, "title": lambda p: p.title, "include": lambda p: p.id,
        }
        if orderby not in keys:
            return _wp_error(400, "rest_invalid_param", "Invalid parameter(s): orderby")
        posts.sort(key=keys[orderby], reverse=(request.arg("order", "desc") != "asc"))
        total = len(posts)
        pages = -(-total // per_page)
        if page > 1 and page > pages:
            return _wp_error(400, "rest_post_invalid_page_number",
                             "The page number requested is larger than the number of pages available.")
        chosen = posts[(page - 1) * per_page: page * per_page]
        rows = self._fields([self.rest_post(p) for p in chosen], request)
        return Response.json(rows, headers={"X-WP-Total": str(total), "X-WP-TotalPages": str(pages)})

    @staticmethod
    def _parse_param_date(value: str) -> datetime | None:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
