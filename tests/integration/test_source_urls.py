"""What a source may lead to, on real wire: discovered links and redirects.

Anything the network hands over (a ``<link>`` on a page, a ``Location``) may only lead to
http/https: a ``file:`` link never makes tagrelay read a local file, on a first poll or on a
re-discovery after 404/410. Loopback servers, a real SQLite store, the fake clock; no mocks.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from bot.clock import FakeClock
from bot.errors import FetchError
from bot.settings import SourceConfig
from bot.sources.base import CacheState, Fetched
from bot.sources.factory import make_source
from bot.sources.http import make_feed_client, make_http_client
from tests.fakes.http import Response
from tests.source_support import (
    HTTP,
    PASSWD_LIKE,
    SECRET,
    Harness,
    Site,
    harness_builder,
    local_feed,
    page_linking,
    running_site,
)


@pytest.fixture
def site() -> Iterator[Site]:
    yield from running_site()


@pytest.fixture
def harness_for(tmp_path: Path, clock: FakeClock) -> Callable[..., Harness]:
    return harness_builder(tmp_path, clock)


def assert_no_file_bytes(text: str) -> None:
    assert SECRET not in text
    assert "root:x" not in text


# --- discovered links -----------------------------------------------------------------


@pytest.mark.parametrize("target", ["passwd", "feed"])
async def test_a_discovered_file_link_is_refused_and_nothing_is_read(
        site: Site, harness_for: Callable[..., Harness], tmp_path: Path, target: str,
        caplog: pytest.LogCaptureFixture) -> None:
    if target == "passwd":
        local = tmp_path / "passwd"
        local.write_bytes(PASSWD_LIKE)
    else:
        local = local_feed(tmp_path / "feed.xml")
    site.pages["/news"] = page_linking(local.as_uri())
    h = harness_for(site.url + "/news")
    caplog.set_level(logging.DEBUG)
    async with h.app as app:
        report = await app.run_once()
        assert [p.outcome for p in report.polls] == ["error"]
        error = report.polls[0].error or ""
        assert "file:" in error and "only http and https" in error
        assert_no_file_bytes(error)
        assert report.deliveries == [] and h.sent() == []
        state = await app.store.source("archive")
        assert state.cache.resolved_url is None and state.cache.resolved_kind is None
        assert not state.baseline_done
        assert state.last_error is not None
        assert_no_file_bytes(state.last_error)
        assert (await app.store.sources())[0].post_count == 0
    assert_no_file_bytes(caplog.text)
    assert SECRET.encode() not in h.stored_bytes()


async def test_a_page_with_a_file_link_and_a_real_feed_uses_the_real_feed(site: Site,
                                                                          tmp_path: Path) -> None:
    local = local_feed(tmp_path / "feed.xml")
    site.pages["/news"] = Response.text(f"""<html><head>
<link rel="alternate" type="application/rss+xml" href="{local.as_uri()}" />
<link rel="alternate" type="application/rss+xml" href="/feed/" />
</head><body></body></html>""", content_type="text/html")
    async with make_feed_client(HTTP, version="0") as client:
        src = make_source(SourceConfig.model_validate({"name": "archive", "url": site.url + "/news"}),
                          client, HTTP)
        result = await src.poll(CacheState(), first_poll=True)
    assert isinstance(result, Fetched)
    assert result.cache.resolved_url == site.url + "/feed/"
    assert [p.title for p in result.posts] == ["Old MEK"]


async def test_rediscovery_after_410_refuses_a_file_link_and_keeps_the_real_feed(
        site: Site, harness_for: Callable[..., Harness], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    local = local_feed(tmp_path / "feed.xml")
    site.pages["/news"] = page_linking("/feed/")
    h = harness_for(site.url + "/news")
    caplog.set_level(logging.DEBUG)
    async with h.app as app:
        first = await app.run_once()
        assert [p.outcome for p in first.polls] == ["baseline"]
        before = await app.store.source("archive")
        assert before.cache.resolved_url == site.url + "/feed/"
        sent_before = h.sent()

        # the feed is "gone" and the page now announces a local file
        site.fail_next(410, path="/feed/", times=1)
        site.pages["/news"] = page_linking(local.as_uri())
        h.clock.advance(120)
        report = await app.run_once()
        assert [p.outcome for p in report.polls] == ["error"]
        error = report.polls[0].error or ""
        assert "file:" in error
        assert_no_file_bytes(error)
        after = await app.store.source("archive")
        assert after.cache == before.cache  # resolved_url, validators: untouched
        assert h.sent() == sent_before

        # the real feed comes back: it is polled again and its new post goes out
        site.add_post(title="Fresh MEK", tags=["MEK"])
        h.clock.advance(600)
        report = await app.run_once()
        assert [p.outcome for p in report.polls] == ["new"]
        assert any("Fresh MEK" in text for text in h.sent())
    assert_no_file_bytes(caplog.text)
    assert SECRET.encode() not in h.stored_bytes()


async def test_a_stored_resolved_file_url_is_not_polled_but_rediscovered(site: Site, tmp_path: Path) -> None:
    """A database poisoned before this fix (resolved_url = a file) heals on the next poll."""
    local = local_feed(tmp_path / "feed.xml")
    site.pages["/news"] = page_linking("/feed/")
    poisoned = CacheState(resolved_url=local.as_uri(), resolved_kind="rss")
    async with make_feed_client(HTTP, version="0") as client:
        src = make_source(SourceConfig.model_validate({"name": "archive", "url": site.url + "/news"}),
                          client, HTTP)
        result = await src.poll(poisoned, first_poll=False)
    assert isinstance(result, Fetched)
    assert result.cache.resolved_url == site.url + "/feed/"
    assert all(SECRET not in p.title for p in result.posts)
    assert any("re-discovered" in note and "file:" in note for note in result.notes)


# --- redirects ------------------------------------------------------------------------


@pytest.fixture(params=[make_feed_client, make_http_client], ids=["feed-client", "httpx-client"])
async def client(request: pytest.FixtureRequest) -> AsyncIterator[httpx.AsyncClient]:
    factory: Callable[..., httpx.AsyncClient] = request.param
    async with factory(HTTP, version="0") as http:
        yield http


@pytest.fixture
async def feed_client() -> AsyncIterator[httpx.AsyncClient]:
    async with make_feed_client(HTTP, version="0") as http:
        yield http


@pytest.mark.parametrize("location", [
    "file:///{path}",
    "file://localhost/{path}",
    "FILE:///{path}",
    "ws://127.0.0.1:{port}/feed/",
    "ftp://127.0.0.1:{port}/feed/",
    "data:application/rss+xml,<rss/>",
    "http://user:pw@127.0.0.1:{port}/feed/",
])
async def test_a_redirect_to_anything_but_http_is_refused(site: Site, feed_client: httpx.AsyncClient,
                                                          tmp_path: Path, location: str) -> None:
    local = local_feed(tmp_path / "feed.xml")
    target = location.format(path=str(local).lstrip("/"), port=site.port)
    site.pages["/go"] = Response(302, b"", {"Location": target})
    src = make_source(SourceConfig.model_validate({"name": "archive", "url": site.url + "/go", "kind": "rss"}),
                      feed_client, HTTP)
    with pytest.raises(FetchError) as info:
        await src.poll(CacheState(), first_poll=True)
    reason = info.value.reason
    assert "redirect that is not followed" in reason
    assert ("'" + target.split(":", 1)[0].lower() + ":'" in reason) or "credentials" in reason
    assert_no_file_bytes(reason)
    assert site.count("/feed/") == 0  # not followed, whatever the scheme


@pytest.mark.parametrize("location", ["file:///{path}", "file://localhost/{path}"])
async def test_the_publishers_client_never_follows_a_redirect_to_a_file(site: Site, tmp_path: Path,
                                                                        location: str) -> None:
    """httpx itself refuses a non-http(s) redirect (the publishers' client has no redirect hook)."""
    local = local_feed(tmp_path / "feed.xml")
    site.pages["/go"] = Response(302, b"", {"Location": location.format(path=str(local).lstrip("/"))})
    async with make_http_client(HTTP, version="0") as http:
        src = make_source(SourceConfig.model_validate({"name": "archive", "url": site.url + "/go", "kind": "rss"}),
                          http, HTTP)
        with pytest.raises(FetchError) as info:
            await src.poll(CacheState(), first_poll=True)
    assert "unsupported protocol" in info.value.reason
    assert_no_file_bytes(info.value.reason)


async def test_a_redirect_to_another_origin_is_followed_without_the_credentials(
        site: Site, client: httpx.AsyncClient) -> None:
    with Site() as other:
        other.add_post(title="Moved MEK", tags=["MEK"])
        site.pages["/moved"] = Response(301, b"", {"Location": other.url + "/feed/"})
        url = f"http://reader:hunter2@127.0.0.1:{site.port}/moved"
        src = make_source(SourceConfig.model_validate({"name": "archive", "url": url, "kind": "rss"}),
                          client, HTTP)
        for _ in range(2):
            result = await src.poll(CacheState(), first_poll=True)
            assert isinstance(result, Fetched) and [p.title for p in result.posts] == ["Moved MEK"]
        # a permanent redirect does not rewrite the configured URL: each poll asks it again
        assert len(site.seen("GET", "/moved")) == 2
        assert all(r.header("authorization") for r in site.seen("GET", "/moved"))
        assert [r.header("authorization") for r in other.seen("GET", "/feed/")] == [None, None]


# --- what a post hands over -----------------------------------------------------------


@pytest.mark.parametrize("kind", ["rss", "auto"])
async def test_a_post_image_that_is_a_local_file_is_not_handed_to_the_publishers(
        site: Site, harness_for: Callable[..., Harness], kind: str) -> None:
    """A local Telegram Bot API server uploads a ``file://`` photo from its own disk: a feed must
    not be able to pick that file. The image is dropped; the post itself goes out."""
    h = harness_for(site.url + ("/feed/" if kind == "rss" else "/"), kind=kind)
    async with h.app as app:
        await app.run_once()
        local = site.add_post(title="With a local image", tags=["MEK"], image="file:///etc/passwd")
        web = site.add_post(title="With a web image", tags=["MEK"], image=site.url + "/img/a.jpg")
        h.clock.advance(120)
        report = await app.run_once()
        assert [p.outcome for p in report.polls] == ["new"]
        assert [t.splitlines()[0] for t in h.sent()[-2:]] == ["With a local image", "With a web image"]
        stored_local = await app.store.latest_post(url=local.link(site.site))
        stored_web = await app.store.latest_post(url=web.link(site.site))
        assert stored_local is not None and stored_local.image_url is None
        assert stored_web is not None and stored_web.image_url == site.url + "/img/a.jpg"
