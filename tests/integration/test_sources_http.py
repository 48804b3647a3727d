"""Sources over real HTTP: httpx against the loopback ArchiveServer (no mocks, no sleeps)."""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest

from bot.errors import FeedParseError, FetchError, SourceError
from bot.settings import HttpConfig, SourceConfig
from bot.sources.base import CacheState, Fetched, NotModified, PollResult, Source
from bot.sources.factory import AutoSource, make_source
from bot.sources.http import fetch, make_feed_client, make_http_client, parse_retry_after
from bot.sources.wordpress import INCREMENTAL_PER_PAGE, MAX_PAGES, WordPressSource
from tests.fakes.archive import ArchivePost, ArchiveServer
from tests.fakes.http import LoopbackServer, Request, Response

SAMPLE = Path(__file__).resolve().parents[2] / "config" / "sample-archive.xml"
CURLY = "Iraq protest against Iran’s meddling"
STRAIGHT = "Iraq protest against Iran's meddling"
HTTP = HttpConfig(timeout=5)


@pytest.fixture
def archive() -> Iterator[ArchiveServer]:
    server = ArchiveServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=[make_feed_client, make_http_client], ids=["feed-client", "httpx-client"])
def make_client(request: pytest.FixtureRequest) -> Callable[..., httpx.AsyncClient]:
    """Both production clients: the sources' (aiohttp transport) and the publishers' (httpx's own)."""
    factory: Callable[..., httpx.AsyncClient] = request.param
    return factory


@pytest.fixture
async def client(make_client: Callable[..., httpx.AsyncClient]) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(HTTP, version="0.1.0") as http:
        yield http


def seed(server: ArchiveServer, count: int = 5) -> list[ArchivePost]:
    posts = []
    for i in range(count):
        posts.append(server.add_post(
            title=f"Post {i}: “quoted” & Iran’s",
            tags=[CURLY if i % 2 else STRAIGHT, "MEK", "Human Rights & Justice"],
            categories=["Iraq"],
            author="Laila Farahani" if i % 2 else "Staff Writer",
        ))
    return posts


def cfg(url: str, kind: str = "auto", **extra: object) -> SourceConfig:
    return SourceConfig.model_validate({"name": "archive", "url": url, "kind": kind, **extra})


def source(client: httpx.AsyncClient, url: str, kind: str = "auto", *, http: HttpConfig = HTTP,
           **extra: object) -> Source:
    return make_source(cfg(url, kind, **extra), client, http)


def fetched(result: PollResult) -> Fetched:
    assert isinstance(result, Fetched), result
    return result


# --- client -----------------------------------------------------------------------


async def test_default_and_configured_user_agent(archive: ArchiveServer,
                                                 make_client: Callable[..., httpx.AsyncClient]) -> None:
    seed(archive, 1)
    async with make_client(HttpConfig(), version="9.9.9") as http:
        await source(http, archive.url + "/feed/", "rss").poll(CacheState(), first_poll=True)
    assert archive.requests[-1].header("user-agent") == "tagrelay/9.9.9 (+https://github.com/tagrelay/tagrelay)"
    async with make_client(HttpConfig(user_agent="MyBot/1.0 (ops@example.org)"), version="9.9.9") as http:
        await source(http, archive.url + "/feed/", "rss").poll(CacheState(), first_poll=True)
    assert archive.requests[-1].header("user-agent") == "MyBot/1.0 (ops@example.org)"


# --- conditional GET ----------------------------------------------------------------


async def test_second_poll_sends_validators_and_a_304_parses_nothing(archive: ArchiveServer,
                                                                     client: httpx.AsyncClient) -> None:
    seed(archive)
    rss = source(client, archive.url + "/feed/", "rss")
    first = fetched(await rss.poll(CacheState(), first_poll=True))
    assert len(first.posts) == 5
    assert first.cache.etag and first.cache.last_modified
    assert first.bytes_read > 0

    second = await rss.poll(first.cache, first_poll=False)
    assert isinstance(second, NotModified)
    assert second.cache == first.cache
    assert archive.requests[-1].header("if-none-match") == first.cache.etag
    assert archive.requests[-1].header("if-modified-since") == first.cache.last_modified
    assert archive.count("/feed/", status=304) == 1

    outcome = await fetch(client, archive.url + "/feed/", source="archive", etag=first.cache.etag,
                          last_modified=None, max_bytes=1024)  # a 304 has no body: the cap cannot bite
    assert outcome.not_modified and outcome.body == b"" and outcome.status == 304


async def test_if_modified_since_alone_and_a_changed_feed(archive: ArchiveServer,
                                                          client: httpx.AsyncClient) -> None:
    seed(archive)
    rss = source(client, archive.url + "/feed/", "rss")
    first = fetched(await rss.poll(CacheState(), first_poll=True))
    only_date = CacheState(last_modified=first.cache.last_modified)
    assert isinstance(await rss.poll(only_date, first_poll=False), NotModified)

    archive.add_post(title="Fresh news", tags=["MEK"])
    third = fetched(await rss.poll(first.cache, first_poll=False))
    assert third.posts[0].title == "Fresh news"
    assert third.cache.etag != first.cache.etag


async def test_json_feed_conditional_get(archive: ArchiveServer, client: httpx.AsyncClient) -> None:
    seed(archive, 3)
    jf = source(client, archive.url + "/feed/json", "jsonfeed")
    first = fetched(await jf.poll(CacheState(), first_poll=True))
    assert [p.guid for p in first.posts] == [f"{archive.url}/?p={p.id}" for p in reversed(archive.posts)]
    assert CURLY in first.posts[1].tags
    assert isinstance(await jf.poll(first.cache, first_poll=False), NotModified)


async def test_first_poll_is_limited_to_baseline_depth(archive: ArchiveServer, client: httpx.AsyncClient) -> None:
    seed(archive, 6)
    result = fetched(await source(client, archive.url + "/feed/", "rss", baseline_depth=4)
                     .poll(CacheState(), first_poll=True))
    assert [p.title for p in result.posts] == [f"Post {i}: “quoted” & Iran’s" for i in (5, 4, 3, 2)]


# --- limits and failures -----------------------------------------------------------------


async def test_size_cap_on_declared_length(archive: ArchiveServer, client: httpx.AsyncClient) -> None:
    seed(archive, 20)
    with pytest.raises(FetchError) as info:
        await fetch(client, archive.url + "/feed/", source="archive", etag=None, last_modified=None,
                    max_bytes=2048)
    assert "2048-byte cap" in info.value.reason
    archive.inject("huge", path="/feed/")
    small = HttpConfig(timeout=5, max_bytes=1024 * 1024)
    with pytest.raises(FetchError):
        await source(client, archive.url + "/feed/", "rss", http=small).poll(CacheState(), first_poll=True)


async def test_size_cap_while_streaming_a_decompressed_body(archive: ArchiveServer,
                                                            client: httpx.AsyncClient) -> None:
    archive.inject("gzip_bomb", path="/feed/", status=16)  # 16 MiB of zeros, ~16 KiB on the wire
    with pytest.raises(FetchError) as info:
        await fetch(client, archive.url + "/feed/", source="archive", etag=None, last_modified=None,
                    max_bytes=1024 * 1024)
    assert "stopped reading" in info.value.reason


async def test_redirects_are_followed_up_to_the_limit(archive: ArchiveServer,
                                                      make_client: Callable[..., httpx.AsyncClient]) -> None:
    seed(archive, 1)
    async with make_client(HttpConfig(max_redirects=3), version="0") as http:
        outcome = await fetch(http, archive.url + "/r/3/feed/", source="a", etag=None, last_modified=None,
                              max_bytes=10**6)
        assert outcome.url == archive.url + "/feed/"
        with pytest.raises(FetchError, match="too many redirects"):
            await fetch(http, archive.url + "/r/4/feed/", source="a", etag=None, last_modified=None,
                        max_bytes=10**6)
        with pytest.raises(FetchError, match="too many redirects"):
            await source(http, archive.url + "/loop", "rss").poll(CacheState(), first_poll=True)


async def test_timeout_is_a_fetch_error(archive: ArchiveServer, make_client: Callable[..., httpx.AsyncClient]) -> None:
    seed(archive, 1)
    release = archive.hold("/feed/")
    try:
        # below the configurable bound (1s), to keep the test short: built without validation
        async with make_client(HttpConfig.model_construct(timeout=0.2), version="0") as http:
            started = time.monotonic()
            with pytest.raises(FetchError, match="timed out") as info:
                await source(http, archive.url + "/feed/", "rss").poll(CacheState(), first_poll=True)
            assert time.monotonic() - started < 3
            assert info.value.source == "archive"
    finally:
        release.set()


@pytest.mark.parametrize("status", [500, 502, 404, 410, 401, 403])
async def test_http_errors_keep_their_status(archive: ArchiveServer, client: httpx.AsyncClient,
                                             status: int) -> None:
    archive.fail_next(status, path="/feed/")
    with pytest.raises(FetchError) as info:
        await source(client, archive.url + "/feed/", "rss").poll(CacheState(), first_poll=True)
    assert info.value.status == status
    assert f"HTTP {status}" in info.value.reason
    assert info.value.retry_after is None
    assert str(info.value).startswith("source 'archive': ")


async def test_429_and_503_carry_retry_after(archive: ArchiveServer, client: httpx.AsyncClient) -> None:
    rss = source(client, archive.url + "/feed/", "rss")
    archive.fail_next(429, path="/feed/", retry_after="120")
    with pytest.raises(FetchError) as info:
        await rss.poll(CacheState(), first_poll=True)
    assert info.value.status == 429
    assert info.value.retry_after == 120
    assert "retry after 120s" in info.value.reason

    when = datetime.now(UTC) + timedelta(minutes=10)
    archive.fail_next(503, path="/feed/", retry_after=format_datetime(when, usegmt=True))
    with pytest.raises(FetchError) as info:
        await rss.poll(CacheState(), first_poll=True)
    assert info.value.retry_after is not None and 590 <= info.value.retry_after <= 600

    archive.fail_next(429, path="/feed/")
    with pytest.raises(FetchError) as info:
        await rss.poll(CacheState(), first_poll=True)
    assert info.value.retry_after is None


def test_parse_retry_after() -> None:
    assert parse_retry_after("30") == 30
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-5") is None  # delta-seconds are digits: garbage, not "now"
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480 - 60) == 60
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480 + 60) == 0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("") is None
    assert parse_retry_after(None) is None


async def test_dropped_connection_and_refused_port(archive: ArchiveServer, client: httpx.AsyncClient) -> None:
    archive.inject("drop", path="/feed/", times=None)  # every time: aiohttp retries a dropped GET once
    with pytest.raises(FetchError, match=r"closed the connection|broke the connection"):
        await source(client, archive.url + "/feed/", "rss").poll(CacheState(), first_poll=True)
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(FetchError, match="could not connect"):
        await source(client, f"http://127.0.0.1:{port}/feed/", "rss").poll(CacheState(), first_poll=True)


async def test_unsupported_scheme(client: httpx.AsyncClient) -> None:
    with pytest.raises(FetchError, match="cannot fetch"):
        await source(client, "ftp://example.org/feed", "rss").poll(CacheState(), first_poll=True)


async def test_html_instead_of_feed(archive: ArchiveServer, client: httpx.AsyncClient) -> None:
    archive.inject("html", path="/feed/")
    with pytest.raises(FeedParseError) as info:
        await source(client, archive.url + "/feed/", "rss").poll(CacheState(), first_poll=True)
    assert info.value.reason == ('the URL returned an HTML page, not an RSS or Atom feed; '
                                 'set kind = "auto" to discover the feed')


async def test_truncated_xml_body_is_refused_whole(archive: ArchiveServer, client: httpx.AsyncClient) -> None:
    seed(archive, 8)
    archive.inject("truncated", path="/feed/")
    with pytest.raises(FeedParseError, match=r"the document ends early \(truncated at byte \d+\); nothing recorded"):
        await source(client, archive.url + "/feed/", "rss").poll(CacheState(), first_poll=True)


async def test_body_cut_on_the_wire_is_a_fetch_error(archive: ArchiveServer, client: httpx.AsyncClient) -> None:
    seed(archive, 3)
    archive.inject("short_body", path="/feed/")
    with pytest.raises(FetchError):
        await source(client, archive.url + "/feed/", "rss").poll(CacheState(), first_poll=True)


HOSTILE = [("html", 200), ("truncated", 200), ("short_body", 200), ("huge", 200), ("gzip_bomb", 12),
           ("garbage", 200), ("drop", 200), ("status", 500), ("status", 400)]


@pytest.mark.parametrize(("kind", "path"), [("rss", "/feed/"), ("jsonfeed", "/feed/json"),
                                            ("wordpress", "/wp-json/"), ("wordpress", "/?rest_route=/"),
                                            ("auto", "/")])
@pytest.mark.parametrize(("fault", "arg"), HOSTILE)
async def test_hostile_answers_raise_nothing_but_source_error(archive: ArchiveServer, kind: str, path: str,
                                                              fault: str, arg: int,
                                                              make_client: Callable[..., httpx.AsyncClient]) -> None:
    seed(archive, 4)
    archive.inject(fault, times=None, status=arg)
    async with make_client(HttpConfig(timeout=5, max_bytes=1024 * 1024), version="0") as http:
        src = make_source(cfg(archive.url + path, kind), http, HttpConfig(timeout=5, max_bytes=1024 * 1024))
        outcome: PollResult | SourceError
        try:
            outcome = await src.poll(CacheState(), first_poll=True)
        except SourceError as exc:  # anything else escapes and fails the test
            outcome = exc
    if isinstance(outcome, SourceError):
        assert outcome.source == "archive"
        assert outcome.reason
    else:
        assert isinstance(outcome, Fetched | NotModified)


# --- WordPress REST -------------------------------------------------------------------


@pytest.mark.parametrize(("form", "posts_path"), [("/wp-json/", "/wp-json/wp/v2/posts"),
                                                  ("/?rest_route=/", "/")])
async def test_wordpress_both_url_forms(archive: ArchiveServer, client: httpx.AsyncClient, form: str,
                                        posts_path: str) -> None:
    posts = seed(archive)
    wp = source(client, archive.url + form, "wordpress")
    result = fetched(await wp.poll(CacheState(), first_poll=True))
    assert [p.guid for p in result.posts] == [f"{archive.url}/?p={p.id}" for p in reversed(posts)]
    newest = result.posts[0]
    assert newest.title == "Post 4: “quoted” & Iran’s"
    assert newest.tags == ("Iraq", STRAIGHT, "MEK", "Human Rights & Justice")
    assert newest.url == posts[4].link(archive.url)
    assert newest.published == posts[4].published
    assert newest.updated == posts[4].modified
    assert newest.summary_html.startswith("<p>") and newest.content_html.startswith("<p>")
    assert newest.author == "Staff Writer"
    request = archive.seen("GET", posts_path)[0]
    if form == "/?rest_route=/":
        assert request.arg("rest_route") == "/wp/v2/posts"
    assert request.arg("per_page") == "100"
    assert request.arg("orderby") == "date" and request.arg("order") == "desc"
    assert "tags" in (request.arg("_fields") or "").split(",")
    assert result.cache.cursor and result.cache.cursor.startswith("modified=")


async def test_wordpress_guid_matches_the_rss_guid(archive: ArchiveServer, client: httpx.AsyncClient) -> None:
    seed(archive, 3)
    via_rest = fetched(await source(client, archive.url + "/wp-json/", "wordpress")
                       .poll(CacheState(), first_poll=True))
    via_rss = fetched(await source(client, archive.url + "/feed/", "rss").poll(CacheState(), first_poll=True))
    assert [p.guid for p in via_rest.posts] == [p.guid for p in via_rss.posts]
    assert [p.tags for p in via_rest.posts] == [p.tags for p in via_rss.posts]
    assert [p.title for p in via_rest.posts] == [p.title for p in via_rss.posts]


async def test_tag_names_resolve_with_the_curly_apostrophe_and_are_cached(archive: ArchiveServer,
                                                                        client: httpx.AsyncClient) -> None:
    seed(archive, 2)
    wp = source(client, archive.url + "/wp-json/", "wordpress")
    first = fetched(await wp.poll(CacheState(), first_poll=True))
    assert CURLY in first.posts[0].tags  # post 1 carries the curly form
    assert "\u2019" in next(t for t in first.posts[0].tags if t.startswith("Iraq protest against"))
    tag_requests = archive.seen("GET", "/wp-json/wp/v2/tags")
    assert len(tag_requests) == 1
    asked = set((tag_requests[0].arg("include") or "").split(","))
    assert asked == {str(archive.tag_id(n)) for n in (CURLY, STRAIGHT, "MEK", "Human Rights & Justice")}

    archive.add_post(title="New", tags=["MEK", "Qassem Soleimani"], categories=["Iraq"])
    second = fetched(await wp.poll(first.cache, first_poll=False))
    assert second.posts[0].tags == ("Iraq", "MEK", "Qassem Soleimani")
    tag_requests = archive.seen("GET", "/wp-json/wp/v2/tags")
    assert len(tag_requests) == 2
    assert tag_requests[1].arg("include") == str(archive.tag_id("Qassem Soleimani"))
    assert len(archive.seen("GET", "/wp-json/wp/v2/categories")) == 1


async def test_taxonomies_setting_limits_what_counts_as_tags(archive: ArchiveServer,
                                                             client: httpx.AsyncClient) -> None:
    seed(archive, 1)
    only_tags = source(client, archive.url + "/wp-json/", "wordpress", taxonomies=["tags"])
    result = fetched(await only_tags.poll(CacheState(), first_poll=True))
    assert "Iraq" not in result.posts[0].tags
    assert archive.seen("GET", "/wp-json/wp/v2/categories") == []


async def test_pagination_on_a_deep_baseline(archive: ArchiveServer, client: httpx.AsyncClient) -> None:
    seed(archive, 130)
    wp = source(client, archive.url + "/wp-json/", "wordpress", baseline_depth=150)
    result = fetched(await wp.poll(CacheState(), first_poll=True))
    assert len(result.posts) == 130
    pages = [r.arg("page") for r in archive.seen("GET", "/wp-json/wp/v2/posts")]
    assert pages == [None, "2"]
    assert archive.count("/wp-json/wp/v2/posts", status=400) == 0  # never asks past X-WP-TotalPages

    shallow = source(client, archive.url + "/wp-json/", "wordpress", baseline_depth=10)
    assert len(fetched(await shallow.poll(CacheState(), first_poll=True)).posts) == 10


async def test_modified_after_incremental_polls(archive: ArchiveServer, client: httpx.AsyncClient) -> None:
    old = seed(archive, 3)
    wp = source(client, archive.url + "/wp-json/", "wordpress")
    first = fetched(await wp.poll(CacheState(), first_poll=True))

    new = archive.add_post(title="Breaking", tags=[CURLY])
    archive.edit_post(old[1], title="Post 1, corrected")
    second = fetched(await wp.poll(first.cache, first_poll=False))
    request = next(r for r in archive.seen("GET", "/wp-json/wp/v2/posts") if r.arg("modified_after"))
    assert request.arg("orderby") == "modified" and request.arg("order") == "asc"
    titles = [p.title for p in second.posts]
    assert titles[0] == "Breaking"
    assert "Post 1, corrected" in titles
    assert second.posts[0].guid == f"{archive.url}/?p={new.id}"
    assert second.cache.cursor != first.cache.cursor

    third = await wp.poll(second.cache, first_poll=False)
    new_keys = {p.guid for p in third.posts} if isinstance(third, Fetched) else set()
    assert new_keys <= {p.guid for p in second.posts}  # nothing new: at most the boundary post again


async def test_edits_of_posts_older_than_the_baseline_are_not_reported(archive: ArchiveServer,
                                                                     client: httpx.AsyncClient) -> None:
    posts = seed(archive, 6)
    wp = source(client, archive.url + "/wp-json/", "wordpress", baseline_depth=3)
    first = fetched(await wp.poll(CacheState(), first_poll=True))
    assert len(first.posts) == 3
    archive.edit_post(posts[0], title="Ancient post, typo fixed")
    second = await wp.poll(first.cache, first_poll=False)
    titles = [p.title for p in second.posts] if isinstance(second, Fetched) else []
    assert "Ancient post, typo fixed" not in titles


async def test_a_scheduled_post_published_later_is_found(archive: ArchiveServer,
                                                         client: httpx.AsyncClient) -> None:
    seed(archive, 3)
    scheduled_at = archive.tick()
    future = archive.add_post(title="Scheduled", tags=["MEK"], status="future",
                              published=scheduled_at + timedelta(hours=5), modified=scheduled_at)
    wp = source(client, archive.url + "/wp-json/", "wordpress")
    first = fetched(await wp.poll(CacheState(), first_poll=True))
    assert "Scheduled" not in [p.title for p in first.posts]
    archive.add_post(title="Meanwhile", tags=["MEK"])  # moves the modified cursor past the scheduling time
    second = fetched(await wp.poll(first.cache, first_poll=False))
    assert [p.title for p in second.posts] == ["Meanwhile"]

    archive.publish_scheduled(future)  # WordPress leaves modified at the scheduling time
    third = fetched(await wp.poll(second.cache, first_poll=False))
    assert "Scheduled" in [p.title for p in third.posts]
    fourth = await wp.poll(third.cache, first_poll=False)
    assert "Scheduled" not in [p.title for p in fourth.posts] if isinstance(fourth, Fetched) else True


async def test_incremental_pages_are_bounded_and_resume(archive: ArchiveServer,
                                                        client: httpx.AsyncClient) -> None:
    seed(archive, 2)
    wp = source(client, archive.url + "/wp-json/", "wordpress")
    first = fetched(await wp.poll(CacheState(), first_poll=True))
    bound = MAX_PAGES * INCREMENTAL_PER_PAGE
    for i in range(bound + 15):
        archive.add_post(title=f"Burst {i}", tags=["MEK"])
    second = fetched(await wp.poll(first.cache, first_poll=False))
    assert any("read on the next poll" in n for n in second.notes)
    seen = {p.title for p in second.posts}
    third = fetched(await wp.poll(second.cache, first_poll=False))
    seen |= {p.title for p in third.posts}
    assert {f"Burst {i}" for i in range(bound + 15)} <= seen
    assert archive.count("/wp-json/wp/v2/posts", status=400) == 0


async def test_old_wordpress_without_modified_after(client: httpx.AsyncClient) -> None:
    with ArchiveServer(modified_after_supported=False) as archive:
        seed(archive, 30)
        wp = source(client, archive.url + "/wp-json/", "wordpress", baseline_depth=5)
        first = fetched(await wp.poll(CacheState(), first_poll=True))
        archive.add_post(title="Fresh", tags=["MEK"])
        second = fetched(await wp.poll(first.cache, first_poll=False))
        assert [p.title for p in second.posts] == ["Fresh"]
        assert any("modified_after" in n for n in second.notes)
        asked = len([r for r in archive.seen("GET", "/wp-json/wp/v2/posts") if r.arg("modified_after")])
        for i in range(12):  # more than the usual 10-post check: the wider check covers them
            archive.add_post(title=f"Fresh {i}", tags=["MEK"])
        third = fetched(await wp.poll(second.cache, first_poll=False))
        assert {p.title for p in third.posts} == {f"Fresh {i}" for i in range(12)}
        assert len([r for r in archive.seen("GET", "/wp-json/wp/v2/posts") if r.arg("modified_after")]) == asked


async def test_closed_users_route_leaves_authors_empty(client: httpx.AsyncClient) -> None:
    with ArchiveServer(users_status=401) as archive:
        seed(archive, 2)
        wp = source(client, archive.url + "/wp-json/", "wordpress")
        first = fetched(await wp.poll(CacheState(), first_poll=True))
        assert all(p.author is None for p in first.posts)
        archive.add_post(title="Next", author="Someone New")
        await wp.poll(first.cache, first_poll=False)
        assert len(archive.seen("GET", "/wp-json/wp/v2/users")) == 1


async def test_rest_api_errors_name_the_wordpress_code(client: httpx.AsyncClient) -> None:
    with ArchiveServer(rest_status=401) as archive:
        wp = source(client, archive.url + "/wp-json/", "wordpress")
        with pytest.raises(FetchError) as info:
            await wp.poll(CacheState(), first_poll=True)
        assert info.value.status == 401
        assert "rest_not_logged_in" in info.value.reason


async def test_wordpress_kind_on_an_html_page(archive: ArchiveServer, client: httpx.AsyncClient) -> None:
    archive.inject("html", times=None)
    with pytest.raises(FeedParseError, match="HTML page"):
        await source(client, archive.url + "/wp-json/", "wordpress").poll(CacheState(), first_poll=True)


async def test_wordpress_conditional_get_on_incremental_polls(archive: ArchiveServer,
                                                              client: httpx.AsyncClient) -> None:
    seed(archive, 2)
    wp = source(client, archive.url + "/wp-json/", "wordpress")
    assert isinstance(wp, WordPressSource)
    first = fetched(await wp.poll(CacheState(), first_poll=True))
    second = fetched(await wp.poll(first.cache, first_poll=False))
    assert second.cache.etag
    third = await wp.poll(second.cache, first_poll=False)
    assert isinstance(third, NotModified)
    assert archive.not_modified == 1


# --- auto-discovery ----------------------------------------------------------------


async def test_auto_prefers_the_rest_api_announced_by_the_home_page(archive: ArchiveServer,
                                                                     client: httpx.AsyncClient) -> None:
    seed(archive, 3)
    auto = source(client, archive.url + "/")
    first = fetched(await auto.poll(CacheState(), first_poll=True))
    assert first.cache.resolved_kind == "wordpress"
    assert first.cache.resolved_url == archive.url + "/wp-json/"
    assert len(first.posts) == 3
    assert archive.count("/") == 1

    archive.add_post(title="Later", tags=["MEK"])
    second = fetched(await auto.poll(first.cache, first_poll=False))
    assert second.posts[0].title == "Later"
    assert second.cache.resolved_kind == "wordpress"
    assert archive.count("/") == 1  # discovery ran once


async def test_auto_plain_rest_route_and_link_header(client: httpx.AsyncClient) -> None:
    with ArchiveServer(rest_form="plain") as archive:
        seed(archive, 1)
        result = fetched(await source(client, archive.url + "/").poll(CacheState(), first_poll=True))
        assert result.cache.resolved_url == archive.url + "/?rest_route=/"
    with ArchiveServer(home_links=(), link_header=True) as archive:
        seed(archive, 1)
        result = fetched(await source(client, archive.url + "/").poll(CacheState(), first_poll=True))
        assert (result.cache.resolved_kind, result.cache.resolved_url) == ("wordpress", archive.url + "/wp-json/")


async def test_auto_falls_back_to_the_rss_feed(client: httpx.AsyncClient) -> None:
    with ArchiveServer(home_links=("rss", "comments", "json")) as archive:
        seed(archive, 2)
        auto = source(client, archive.url + "/")
        first = fetched(await auto.poll(CacheState(), first_poll=True))
        assert (first.cache.resolved_kind, first.cache.resolved_url) == ("rss", archive.url + "/feed/")
        assert first.cache.etag
        assert isinstance(await auto.poll(first.cache, first_poll=False), NotModified)


async def test_auto_json_feed_only(client: httpx.AsyncClient) -> None:
    with ArchiveServer(home_links=("json",)) as archive:
        seed(archive, 2)
        first = fetched(await source(client, archive.url + "/").poll(CacheState(), first_poll=True))
        assert (first.cache.resolved_kind, first.cache.resolved_url) == ("jsonfeed", archive.url + "/feed/json")


async def test_auto_uses_the_feed_when_the_rest_api_is_closed(client: httpx.AsyncClient) -> None:
    with ArchiveServer(rest_status=401) as archive:
        seed(archive, 2)
        result = fetched(await source(client, archive.url + "/").poll(CacheState(), first_poll=True))
        assert (result.cache.resolved_kind, result.cache.resolved_url) == ("rss", archive.url + "/feed/")
        assert any("REST API is not usable" in n for n in result.notes)


async def test_auto_on_a_page_without_feeds(client: httpx.AsyncClient) -> None:
    with ArchiveServer(home_links=()) as archive, pytest.raises(FeedParseError, match="announces no feed"):
        await source(client, archive.url + "/").poll(CacheState(), first_poll=True)


async def test_auto_on_a_direct_feed_reads_it_once(archive: ArchiveServer, client: httpx.AsyncClient) -> None:
    seed(archive, 2)
    result = fetched(await source(client, archive.url + "/feed/").poll(CacheState(), first_poll=True))
    assert (result.cache.resolved_kind, result.cache.resolved_url) == ("rss", archive.url + "/feed/")
    assert len(result.posts) == 2
    assert archive.count("/feed/") == 1
    json_result = fetched(await source(client, archive.url + "/feed/json").poll(CacheState(), first_poll=True))
    assert json_result.cache.resolved_kind == "jsonfeed"


async def test_auto_on_a_rest_posts_url(archive: ArchiveServer, client: httpx.AsyncClient) -> None:
    seed(archive, 2)
    result = fetched(await source(client, archive.url + "/wp-json/wp/v2/posts?per_page=1")
                     .poll(CacheState(), first_poll=True))
    assert (result.cache.resolved_kind, result.cache.resolved_url) == ("wordpress", archive.url + "/wp-json/")
    assert len(result.posts) == 2


async def test_auto_rediscovers_once_when_the_resolved_url_is_gone(archive: ArchiveServer,
                                                                  client: httpx.AsyncClient) -> None:
    seed(archive, 2)
    auto = source(client, archive.url + "/")
    assert isinstance(auto, AutoSource)
    stale = CacheState(etag='"old"', cursor="x", resolved_url=archive.url + "/old-feed/", resolved_kind="rss")
    result = fetched(await auto.poll(stale, first_poll=False))
    assert result.cache.resolved_url == archive.url + "/wp-json/"
    assert result.cache.etag is None
    assert any("re-discovered" in n and "answered 404" in n for n in result.notes)

    archive.fail_next(500, path="/wp-json/wp/v2/posts")
    with pytest.raises(FetchError) as info:  # a 500 is not "gone": no re-discovery
        await auto.poll(result.cache, first_poll=False)
    assert info.value.status == 500
    assert archive.count("/") == 1


async def test_auto_on_garbage(archive: ArchiveServer, client: httpx.AsyncClient) -> None:
    archive.inject("garbage", path="/")
    with pytest.raises(FeedParseError, match="did not return a feed"):
        await source(client, archive.url + "/").poll(CacheState(), first_poll=True)


# --- file:// -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["rss", "auto"])
async def test_file_source_unchanged_is_not_modified(tmp_path: Path, client: httpx.AsyncClient, kind: str) -> None:
    path = tmp_path / "archive.xml"
    shutil.copyfile(SAMPLE, path)
    src = source(client, path.as_uri(), kind)
    first = fetched(await src.poll(CacheState(), first_poll=True))
    assert len(first.posts) == 9
    assert first.cache.etag
    if kind == "auto":
        assert (first.cache.resolved_kind, first.cache.resolved_url) == ("rss", path.as_uri())
    assert isinstance(await src.poll(first.cache, first_poll=False), NotModified)

    text = path.read_text(encoding="utf-8").replace("Najaf Renames", "Najaf Renamed")
    path.write_text(text, encoding="utf-8")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    changed = fetched(await src.poll(first.cache, first_poll=False))
    assert any(p.title == "Najaf Renamed Its Main Street" for p in changed.posts)


async def test_missing_file_and_file_size_cap(tmp_path: Path, client: httpx.AsyncClient) -> None:
    with pytest.raises(FetchError, match="file not found"):
        await source(client, (tmp_path / "nope.xml").as_uri(), "rss").poll(CacheState(), first_poll=True)
    big = tmp_path / "big.xml"
    big.write_bytes(b"<rss>" + b" " * 5000 + b"</rss>")
    with pytest.raises(FetchError, match="cap"):
        await fetch(client, big.as_uri(), source="f", etag=None, last_modified=None, max_bytes=1024)


class CookieSite(LoopbackServer):
    """Sets a cookie on every answer; notes the ``Cookie`` header of each request."""

    def __init__(self) -> None:
        super().__init__()
        self.cookies: list[str | None] = []

    def handle(self, request: Request) -> Response:
        self.cookies.append(request.header("Cookie"))
        return Response.text("<rss version='2.0'><channel/></rss>", content_type="application/rss+xml",
                             headers={"Set-Cookie": "visit=1; Path=/"})


async def test_the_feed_client_keeps_cookies_once_in_aiohttps_session() -> None:
    client = make_feed_client(HTTP, version="test")
    try:
        with CookieSite() as site:
            url = f"http://localhost:{site.port}/feed/"  # a host name: aiohttp keeps no cookie of an IP address
            for _ in range(2):
                await fetch(client, url, source="s", etag=None, last_modified=None, max_bytes=HTTP.max_bytes)
        assert site.cookies == [None, "visit=1"]  # sent back (by aiohttp's session)
        assert list(client.cookies.jar) == []  # httpx's own jar takes none
        with pytest.raises(TypeError):
            client.cookies = {"a": "b"}
    finally:
        await client.aclose()
