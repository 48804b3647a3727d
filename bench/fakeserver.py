"""One loopback server for every benchmark: WordPress feeds plus fake Mastodon, Telegram and X APIs.

A plain ``asyncio.Protocol`` HTTP/1.1 server (keep-alive, Content-Length bodies,
no dependencies) run in its own process, so it gets its own core and its CPU
share can be read back (``GET /_ctl/stats``) to tell whether the fake, rather than
the client under test, is the limit. It serves:

* ``/feeds/f<N>.xml``: WordPress-shaped RSS 2.0 with full content, every URL
  inside pointing back to this server; ``ETag``/``Last-Modified`` and 304 on a
  matching ``If-None-Match`` or ``If-Modified-Since``;
* Mastodon: ``/api/v1/instance``, ``/api/v2/instance``, ``verify_credentials``,
  ``POST /api/v1/statuses`` (counted; a repeated ``Idempotency-Key`` gets the same status);
* Telegram Bot API: ``/bot<token>/getMe``, ``getChat``, ``sendMessage``;
* X: ``POST /2/tweets``, ``GET /2/users/me``.

Control (JSON): ``POST /_ctl/feeds?count=N&items=K`` (re)builds N feeds of K items,
``POST /_ctl/fleet?count=N&items=K`` serves N feeds built on demand instead (the fleet phase: 10,000
feeds cost no memory, a 304 no work, a 200 a few string joins over a pool of item contents),
``POST /_ctl/change?fraction=F`` gives that share of the feeds one new item (``&feed=N``: that
feed only; the answer lists the new posts' ids in ``newest``), ``POST /_ctl/reset`` zeroes the
counters, ``GET /_ctl/stats`` (feed requests: ``feed`` all, ``feed304``, ``feedfirst`` unconditional),
``GET /_ctl/seconds``: feed requests per wall-clock second (Unix time, count) since the last reset
(the fleet phase's herd measure), ``GET /_ctl/arrivals``: each new Mastodon status's arrival (Unix
time) and the post id its text names (the freshness phase).

Run: ``python -m bench.fakeserver`` prints ``PORT <n>`` on stdout once listening.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import random
import re
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from urllib.parse import parse_qs, urlsplit

CATEGORIES = ["Iraq", "Middle East", "Politics", "Human Rights", "Economy", "Protests", "Analysis", "Opinion",
              "Europe", "Energy", "Elections", "Culture", "Sanctions", "Diplomacy", "Security"]
START = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
PROSE = ("the council said on Tuesday that talks would continue after a week of protests in Baghdad "
         "and Basra, where students and workers — café owners, teachers, nurses — marched against "
         "corruption; officials promised reforms “within months” while critics doubted it")


def _inline(rng: random.Random, base: str, para: int, words: list[str]) -> str:
    """One paragraph of body text with the inline markup a WordPress editor leaves: strong, em,
    links, and numeric character references for typographic quotes and dashes."""
    out = []
    for j in range(45):
        word = rng.choice(words).replace("\u2019", "&#8217;").replace("\u201c", "&#8220;") \
            .replace("\u201d", "&#8221;").replace("\u2014", "&#8212;")
        roll = rng.random()
        if roll < 0.12:
            word = f"<strong>{word}</strong>"
        elif roll < 0.22:
            word = f"<em>{word}</em>"
        elif roll < 0.30:
            word = f'<a href="{base}/2026/03/{j % 9 + 1:02d}/story-{para}-{j}/">{word}</a>'
        out.append(word)
    return " ".join(out).capitalize()


def _paragraphs(rng: random.Random, base: str, n: int) -> str:
    """Gutenberg block markup (``<!-- wp:… -->`` comments around every block) as WordPress stores it."""
    words = PROSE.split()
    out = []
    for i in range(n):
        if i == 1:
            out.append('<!-- wp:heading -->\n<h2 class="wp-block-heading">What happens next</h2>\n'
                       '<!-- /wp:heading -->')
        if i == 2:
            out.append(f'<!-- wp:image {{"id":{i},"sizeSlug":"large"}} -->\n'
                       f'<figure class="wp-block-image size-large"><img decoding="async" width="1024" height="576" '
                       f'src="{base}/wp-content/uploads/2026/03/photo-{i}-1024x576.jpg" alt="" class="wp-image-{i}" '
                       f'srcset="{base}/wp-content/uploads/2026/03/photo-{i}-1024x576.jpg 1024w, '
                       f'{base}/wp-content/uploads/2026/03/photo-{i}-300x169.jpg 300w" '
                       f'sizes="(max-width: 1024px) 100vw, 1024px" /><figcaption class="wp-element-caption">'
                       f'A rally.</figcaption></figure>\n<!-- /wp:image -->')
        out.append(f"<!-- wp:paragraph -->\n<p>{_inline(rng, base, i, words)}.</p>\n<!-- /wp:paragraph -->")
    out.append('<!-- wp:list -->\n<ul class="wp-block-list"><!-- wp:list-item -->\n<li>First point</li>\n'
               '<!-- /wp:list-item --><!-- wp:list-item -->\n<li>Second point</li>\n<!-- /wp:list-item --></ul>\n'
               '<!-- /wp:list -->\n<!-- wp:quote -->\n<blockquote class="wp-block-quote"><!-- wp:paragraph -->\n'
               '<p>&#8220;We will not stop.&#8221;</p>\n<!-- /wp:paragraph --></blockquote>\n<!-- /wp:quote -->')
    return "\n".join(out)


def build_feed(base: str, feed: int, items: int, generation: int, pool: list[str] | None = None) -> bytes:
    """A WordPress RSS 2.0 feed: ``items`` posts, the newest first, ~6.5 KB each (~5 KB of Gutenberg content).

    With ``pool`` each post's content is the pool's entry for its id instead of new text: the same
    size and markup at a fraction of the cost (the fleet's feeds are built on every 200)."""
    rng = random.Random(feed * 7919 + generation)
    site = f"{base}/site{feed}"
    entries = []
    for k in range(items):  # a sliding window: each generation adds one post and drops the oldest
        number = generation + items - 1 - k
        post_id = feed * 100_000 + number
        when = START + timedelta(days=feed % 30, minutes=number)
        cats = ["News", *rng.sample(CATEGORIES, rng.randint(2, 7))]
        title = f"Post {post_id}: “Protests” &amp; talks continue in city {feed}"
        cat_xml = "".join(f"<category><![CDATA[{c}]]></category>" for c in cats)
        link = f"{site}/2026/03/{1 + feed % 28:02d}/post-{post_id}/"
        excerpt = ("Students and workers marched again on Tuesday, the council said, as talks on reforms went on "
                   "in Baghdad and Basra; critics doubted the promises made this week by the government &#8230;")
        content = _paragraphs(rng, site, 6) if pool is None else pool[post_id % len(pool)]
        entries.append(f"""	<item>
		<title>Post {post_id}: &#8220;Protests&#8221; &#038; talks continue in city {feed}</title>
		<link>{link}</link>
		<comments>{link}#respond</comments>
		<dc:creator><![CDATA[Staff Writer]]></dc:creator>
		<pubDate>{format_datetime(when, usegmt=True)}</pubDate>
		{cat_xml}
		<guid isPermaLink="false">{site}/?p={post_id}</guid>
		<description><![CDATA[<p>{excerpt} [&hellip;]</p>
<p>The post <a href="{link}">{title}</a> appeared first on <a href="{site}">City {feed}</a>.</p>
]]></description>
		<content:encoded><![CDATA[{content}]]></content:encoded>
		<wfw:commentRss>{link}feed/</wfw:commentRss>
		<slash:comments>0</slash:comments>
	</item>""")
    built = format_datetime(START + timedelta(hours=generation), usegmt=True)
    return f"""<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"
	xmlns:content="http://purl.org/rss/1.0/modules/content/"
	xmlns:wfw="http://wellformedweb.org/CommentAPI/"
	xmlns:dc="http://purl.org/dc/elements/1.1/"
	xmlns:atom="http://www.w3.org/2005/Atom"
	xmlns:sy="http://purl.org/rss/1.0/modules/syndication/"
	xmlns:slash="http://purl.org/rss/1.0/modules/slash/">
<channel>
	<title>City {feed} &#8211; News</title>
	<atom:link href="{base}/feeds/f{feed}.xml" rel="self" type="application/rss+xml" />
	<link>{site}</link>
	<description>News from city {feed}</description>
	<lastBuildDate>{built}</lastBuildDate>
	<language>en-US</language>
	<sy:updatePeriod>hourly</sy:updatePeriod>
	<sy:updateFrequency>1</sy:updateFrequency>
	<generator>https://wordpress.org/?v=6.8</generator>
{chr(10).join(entries)}
</channel>
</rss>
""".encode()


class Feed:
    __slots__ = ("body", "etag", "modified")

    def __init__(self, body: bytes, generation: int) -> None:
        self.body = body
        self.etag = '"' + hashlib.md5(body, usedforsecurity=False).hexdigest()[:16] + '"'
        self.modified = format_datetime(START + timedelta(hours=generation), usegmt=True)


POOL = 16
"""Item contents the fleet's feeds draw from."""


class FleetFeed:
    """A fleet feed at one generation: validators from (feed, generation), the body built when asked for."""

    __slots__ = ("etag", "feed", "generation", "modified")

    def __init__(self, feed: int, generation: int) -> None:
        self.feed = feed
        self.generation = generation
        self.etag = f'"fleet-{feed}-{generation}"'
        self.modified = format_datetime(START + timedelta(hours=generation), usegmt=True)

    @property
    def body(self) -> bytes:
        return build_feed(STATE.base, self.feed, STATE.items, self.generation, STATE.pool)


class State:
    def __init__(self) -> None:
        self.base = ""
        self.feeds: list[Feed] = []
        self.pool: list[str] | None = None
        """Set: fleet mode (``set_fleet``): ``feeds`` is unused, each feed is built on demand."""
        self.seconds: dict[int, int] = {}
        self.items = 10
        self.generations: list[int] = []
        self.counts: dict[str, int] = {}
        self.statuses = 0
        self.arrivals: list[tuple[float, int | None]] = []
        self.by_key: dict[str, str] = {}
        self.ids = itertools.count(113000000000000001)
        self.started_cpu = time.process_time()
        self.started_wall = time.monotonic()

    def set_feeds(self, count: int, items: int) -> None:
        self.items = items
        self.pool = None
        self.generations = [1] * count
        self.feeds = [Feed(build_feed(self.base, i, items, 1), 1) for i in range(count)]

    def set_fleet(self, count: int, items: int) -> None:
        self.items = items
        self.feeds = []
        self.generations = [1] * count
        self.pool = [_paragraphs(random.Random(k), f"{self.base}/site{k}", 6) for k in range(POOL)]

    def feed(self, index: int) -> Feed | FleetFeed:
        if self.pool is None:
            return self.feeds[index]
        if index < 0:
            raise IndexError(index)
        return FleetFeed(index, self.generations[index])

    def change(self, fraction: float, seed: int, only: int | None = None, steps: int = 1) -> list[int]:
        """Give the chosen feeds ``steps`` new posts each; the ids of each changed feed's newest post."""
        rng = random.Random(seed)
        count = len(self.generations)
        chosen = [only] if only is not None else rng.sample(range(count), round(count * fraction))
        newest = []
        for i in chosen:
            self.generations[i] += steps
            if self.pool is None:
                self.feeds[i] = Feed(build_feed(self.base, i, self.items, self.generations[i]), self.generations[i])
            newest.append(i * 100_000 + self.generations[i] + self.items - 1)
        return newest

    def count(self, key: str) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1


STATE = State()
JSON = b"application/json; charset=utf-8"


def _json(data: object, status: int = 200) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    return status, json.dumps(data).encode(), [(b"Content-Type", JSON)]


def _account() -> dict[str, object]:
    return {"id": "109000000000000001", "username": "bench", "acct": "bench", "display_name": "Bench",
            "url": f"{STATE.base}/@bench", "locked": False, "bot": True, "created_at": "2026-01-01T00:00:00.000Z"}


INSTANCE = {"uri": "127.0.0.1", "domain": "127.0.0.1", "title": "Fake Mastodon", "version": "4.3.0",
            "description": "", "email": "", "urls": {}, "stats": {}, "languages": ["en"], "contact_account": None,
            "configuration": {"statuses": {"max_characters": 500, "max_media_attachments": 4,
                                           "characters_reserved_per_url": 23}}}


_POST_ID = re.compile(r"Post ([0-9]+):")


def _post_id(body: bytes) -> int | None:
    """The post id a status's text names (the bench feeds' titles are "Post <id>: …")."""
    try:
        text = json.loads(body).get("status", "")
    except (ValueError, AttributeError):
        return None
    found = _POST_ID.search(text) if isinstance(text, str) else None
    return int(found.group(1)) if found else None


def handle(method: str, target: str, headers: dict[bytes, bytes], body: bytes
           ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    parts = urlsplit(target)
    path = parts.path
    if path.startswith("/feeds/f") and method in ("GET", "HEAD"):
        STATE.count("feed")
        second = int(time.time())
        STATE.seconds[second] = STATE.seconds.get(second, 0) + 1
        try:
            feed = STATE.feed(int(path[8:].split(".", 1)[0]))
        except (ValueError, IndexError):
            return 404, b"not found", []
        inm = headers.get(b"if-none-match")
        ims = headers.get(b"if-modified-since")
        if inm is None and ims is None:
            STATE.count("feedfirst")  # unconditional: the client knows no validator (a first poll)
        hdrs = [(b"ETag", feed.etag.encode()), (b"Last-Modified", feed.modified.encode())]
        if (inm is not None and inm.decode() == feed.etag) or (inm is None and ims is not None
                                                               and ims.decode() == feed.modified):
            STATE.count("feed304")
            return 304, b"", hdrs
        return 200, feed.body, [(b"Content-Type", b"application/rss+xml; charset=UTF-8"), *hdrs]
    if path.startswith("/_ctl/"):
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        if path == "/_ctl/feeds":
            STATE.set_feeds(int(query.get("count", "100")), int(query.get("items", "10")))
            return _json({"feeds": len(STATE.feeds)})
        if path == "/_ctl/fleet":
            STATE.set_fleet(int(query.get("count", "10000")), int(query.get("items", "10")))
            return _json({"feeds": len(STATE.generations)})
        if path == "/_ctl/seconds":
            return _json({"seconds": sorted(STATE.seconds.items())})
        if path == "/_ctl/change":
            only = int(query["feed"]) if "feed" in query else None
            newest = STATE.change(float(query.get("fraction", "0.1")), int(query.get("seed", "1")), only,
                                  int(query.get("steps", "1")))
            return _json({"changed": len(newest), "newest": newest})
        if path == "/_ctl/reset":
            STATE.counts.clear()
            STATE.seconds.clear()
            STATE.statuses = 0
            STATE.arrivals.clear()
            STATE.by_key.clear()
            return _json({})
        if path == "/_ctl/arrivals":
            return _json({"arrivals": STATE.arrivals})
        if path == "/_ctl/stats":
            return _json({"counts": STATE.counts, "statuses": STATE.statuses, "cpu": time.process_time(),
                          "wall": time.monotonic()})
    if path in ("/api/v1/instance", "/api/v1/instance/", "/api/v2/instance"):
        return _json(INSTANCE)
    if path == "/api/v1/accounts/verify_credentials":
        return _json(_account())
    if path == "/api/v1/statuses" and method == "POST":
        STATE.count("status")
        key = headers.get(b"idempotency-key", b"").decode()
        status_id = STATE.by_key.get(key) if key else None
        if status_id is None:
            status_id = str(next(STATE.ids))
            STATE.statuses += 1
            STATE.arrivals.append((time.time(), _post_id(body)))
            if key:
                STATE.by_key[key] = status_id
        return _json({"id": status_id, "created_at": "2026-03-01T08:00:00.000Z", "uri": f"{STATE.base}/s/{status_id}",
                      "url": f"{STATE.base}/@bench/{status_id}", "content": "", "visibility": "public",
                      "account": _account(), "media_attachments": [], "mentions": [], "tags": [], "emojis": [],
                      "sensitive": False, "spoiler_text": "", "in_reply_to_id": None, "reblog": None,
                      "replies_count": 0, "reblogs_count": 0, "favourites_count": 0, "language": "en"})
    if path.startswith("/bot"):
        api = path.rsplit("/", 1)[-1]
        me = {"id": 4242, "is_bot": True, "first_name": "Bench", "username": "bench_bot", "can_join_groups": True,
              "can_read_all_group_messages": False, "supports_inline_queries": False}
        chat = {"id": -1001234567890, "type": "channel", "title": "Bench", "username": "bench"}
        if api == "getMe":
            return _json({"ok": True, "result": me})
        if api == "getChat":
            return _json({"ok": True, "result": chat})
        if api in ("sendMessage", "sendPhoto"):
            STATE.count("telegram")
            return _json({"ok": True, "result": {"message_id": STATE.counts["telegram"], "date": 1772352000,
                                                 "chat": chat, "sender_chat": chat, "text": "x"}})
    if path == "/2/tweets" and method == "POST":
        STATE.count("tweet")
        tid = str(1900000000000000000 + STATE.counts["tweet"])
        return _json({"data": {"id": tid, "text": "x", "edit_history_tweet_ids": [tid]}}, 201)
    if path == "/2/users/me":
        return _json({"data": {"id": "2244994945", "username": "bench", "name": "Bench"}})
    if path in ("/api/v1/apps", "/oauth/token"):
        return _json({"client_id": "fakeclientid", "client_secret": "fakesecret", "access_token": "faketoken",
                      "token_type": "Bearer", "scope": "read write", "created_at": 1772352000})
    return 404, b'{"error":"Record not found"}', [(b"Content-Type", JSON)]


REASONS = {200: b"OK", 201: b"Created", 304: b"Not Modified", 404: b"Not Found"}


class HttpProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].split(b"\r\n")
            headers: dict[bytes, bytes] = {}
            for line in head[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get(b"content-length", b"0") or 0)
            if len(self.buf) < end + 4 + length:
                return
            body = self.buf[end + 4:end + 4 + length]
            self.buf = self.buf[end + 4 + length:]
            try:
                method, target, _version = head[0].decode("latin-1").split(" ", 2)
            except ValueError:
                self._send(400, b"", [], close=True)
                return
            try:
                status, payload, extra = handle(method, target, headers, body)
            except Exception as exc:
                status, payload, extra = 500, repr(exc).encode(), []
            close = headers.get(b"connection", b"").lower() == b"close"
            self._send(status, b"" if method == "HEAD" or status == 304 else payload, extra, close=close)
            if close:
                return

    def _send(self, status: int, payload: bytes, extra: list[tuple[bytes, bytes]], *, close: bool) -> None:
        assert self.transport is not None
        lines = [b"HTTP/1.1 %d %s" % (status, REASONS.get(status, b"X")), b"Content-Length: %d" % len(payload)]
        lines += [k + b": " + v for k, v in extra]
        if close:
            lines.append(b"Connection: close")
        self.transport.write(b"\r\n".join(lines) + b"\r\n\r\n" + payload)
        if close:
            self.transport.close()


async def serve(port: int, ready: Callable[[int], None]) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(HttpProtocol, "127.0.0.1", port, backlog=1024)
    bound = server.sockets[0].getsockname()[1]
    STATE.base = f"http://127.0.0.1:{bound}"
    STATE.set_feeds(100, 10)
    ready(bound)
    async with server:
        await server.serve_forever()


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0

    def ready(bound: int) -> None:
        print(f"PORT {bound}", flush=True)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(port, ready))


if __name__ == "__main__":
    main()
