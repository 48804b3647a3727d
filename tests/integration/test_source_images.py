"""Featured images and their alt text over real HTTP: WordPress REST (one batched media request per poll),
RSS with Media RSS, JSON Feed, against the loopback ArchiveServer."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from bot.settings import HttpConfig, SourceConfig
from bot.sources.base import CacheState, Fetched, PollResult, Source
from bot.sources.factory import make_source
from bot.sources.http import make_feed_client
from tests.fakes.archive import ArchiveServer

HTTP = HttpConfig(timeout=5)
MEDIA = "/wp-json/wp/v2/media"


@pytest.fixture
def archive() -> Iterator[ArchiveServer]:
    with ArchiveServer() as server:
        yield server


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with make_feed_client(HTTP, version="0.1.0") as http:
        yield http


def source(client: httpx.AsyncClient, url: str, kind: str, **extra: object) -> Source:
    return make_source(SourceConfig.model_validate({"name": "archive", "url": url, "kind": kind, **extra}),
                       client, HTTP)


def fetched(result: PollResult) -> Fetched:
    assert isinstance(result, Fetched), result
    return result


def seed(archive: ArchiveServer, count: int) -> None:
    for i in range(count):
        archive.add_post(title=f"Post {i}", tags=["MEK"], image=f"{archive.url}/uploads/{i}.jpg",
                         image_alt=f"Photo {i}: a “quoted” & escaped <alt>" if i % 2 == 0 else None)
    archive.add_post(title="No image", tags=["MEK"])


def by_title(result: Fetched) -> dict[str, tuple[str | None, str | None]]:
    return {p.title: (p.image_url, p.image_alt) for p in result.posts}


@pytest.mark.parametrize("jetpack", [True, False], ids=["jetpack", "no-jetpack"])
async def test_wordpress_alt_text_comes_from_one_batched_media_request(client: httpx.AsyncClient,
                                                                       jetpack: bool) -> None:
    with ArchiveServer(jetpack=jetpack) as archive:
        seed(archive, 6)
        wp = source(client, archive.url + "/wp-json/", "wordpress", baseline_depth=10)
        first = fetched(await wp.poll(CacheState(), first_poll=True))
        got = by_title(first)
        assert got["Post 0"] == (f"{archive.url}/uploads/0.jpg", "Photo 0: a “quoted” & escaped <alt>")
        assert got["Post 1"] == (f"{archive.url}/uploads/1.jpg", None)  # WordPress's empty alt_text
        assert got["No image"] == (None, None)
        media = archive.seen("GET", MEDIA)
        assert len(media) == 1  # six images, one request, never one per post
        assert sorted(media[0].arg("include", "").split(",")) == sorted(str(p.media_id) for p in archive.posts
                                                                         if p.image)
        archive.add_post(title="Fresh", tags=["MEK"], image=f"{archive.url}/uploads/fresh.jpg", image_alt="Fresh alt")
        second = fetched(await wp.poll(first.cache, first_poll=False))
        assert by_title(second)["Fresh"] == (f"{archive.url}/uploads/fresh.jpg", "Fresh alt")
        media = archive.seen("GET", MEDIA)
        assert len(media) == 2 and media[1].arg("include") == str(archive.posts[-1].media_id)  # only the new id


async def test_a_closed_media_library_costs_one_request_and_no_post(client: httpx.AsyncClient) -> None:
    with ArchiveServer(media_status=401, jetpack=False) as archive:
        seed(archive, 2)
        archive.add_post(title="Inline", tags=["MEK"], content_html='<p><img src="/in.jpg" alt="Inline alt"></p>')
        wp = source(client, archive.url + "/wp-json/", "wordpress")
        first = fetched(await wp.poll(CacheState(), first_poll=True))
        got = by_title(first)
        assert got["Post 0"] == (None, None)  # no Jetpack URL, no media library: no featured image known
        assert got["Inline"] == (f"{archive.url}/in.jpg", "Inline alt")  # the content's <img> still counts
        archive.add_post(title="Later", tags=["MEK"], image=f"{archive.url}/uploads/later.jpg", image_alt="x")
        await wp.poll(first.cache, first_poll=False)
        assert len(archive.seen("GET", MEDIA)) == 1  # not asked again


async def test_a_failing_media_request_only_costs_the_alt_text(archive: ArchiveServer,
                                                               client: httpx.AsyncClient) -> None:
    seed(archive, 2)
    archive.fail_next(503, path=MEDIA)
    wp = source(client, archive.url + "/wp-json/", "wordpress")
    first = fetched(await wp.poll(CacheState(), first_poll=True))
    assert by_title(first)["Post 0"] == (f"{archive.url}/uploads/0.jpg", None)  # Jetpack's URL, no alt this time
    archive.add_post(title="Next", tags=["MEK"], image=f"{archive.url}/uploads/next.jpg", image_alt="Next alt")
    second = fetched(await wp.poll(first.cache, first_poll=False))
    assert by_title(second)["Next"] == (f"{archive.url}/uploads/next.jpg", "Next alt")


@pytest.mark.parametrize(("kind", "path"), [("rss", "/feed/"), ("jsonfeed", "/feed/json")])
async def test_feeds_carry_the_alt_text_they_have(archive: ArchiveServer, client: httpx.AsyncClient, kind: str,
                                                  path: str) -> None:
    seed(archive, 2)
    archive.add_post(title="Inline", tags=["MEK"], content_html='<p><img src="/in.jpg" alt="Inline alt"></p>')
    got = by_title(fetched(await source(client, archive.url + path, kind).poll(CacheState(), first_poll=True)))
    assert got["Inline"] == (f"{archive.url}/in.jpg", "Inline alt")
    if kind == "rss":  # media:description; JSON Feed has no field for it
        assert got["Post 0"] == (f"{archive.url}/uploads/0.jpg", "Photo 0: a “quoted” & escaped <alt>")
    else:
        assert got["Post 0"] == (f"{archive.url}/uploads/0.jpg", None)
