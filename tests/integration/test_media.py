"""bot.media against a loopback server serving real images (made with Pillow), hostile ones included."""

from __future__ import annotations

import asyncio
import gzip
import io
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image as PIL

from bot import media
from bot.errors import MediaError, PublishError, TagrelayError
from bot.media import GIF, JPEG, MAX_PIXELS, PNG, WEBP, Image, ImageCache, fetch_image, fit_image, prepare_image
from bot.settings import HttpConfig
from bot.sources.http import make_http_client
from tests.fakes.http import Response
from tests.fakes.images import (
    ImageServer,
    big_sparse_png,
    encode,
    flat_png,
    image_response,
    jpeg,
    jpeg_with_orientation,
    noise,
    png,
    png_bomb,
)
from tests.publish_support import assert_clean

SECRET = "s3cr3t-" + "v4lue"  # never written whole in a line a traceback could quote


@pytest.fixture
def server() -> Iterator[ImageServer]:
    with ImageServer() as s:
        yield s


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """The publishers' own client (redirects followed by httpx unless a request says otherwise)."""
    async with make_http_client(HttpConfig(timeout=5), version="0.1.0") as client:
        yield client


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[None]:
    media.CACHE.clear()
    yield
    media.CACHE.clear()


def decoded(data: bytes) -> PIL.Image:
    image = PIL.open(io.BytesIO(data))
    image.load()
    return image


# --- fetching ---------------------------------------------------------------------------------------


async def test_an_image_within_the_limits_comes_back_byte_identical(server: ImageServer,
                                                                    http: httpx.AsyncClient) -> None:
    data = jpeg(800, 600)
    url = server.serve("/hero.jpg", image_response(data))
    image = await prepare_image(http, url, alt="A hero", max_bytes=len(data), max_side=800)
    assert image.data == data  # not re-encoded: the very bytes
    assert (image.mime, image.width, image.height, image.alt) == (JPEG, 800, 600, "A hero")
    assert server.seen("GET", "/hero.jpg")[0].header("accept") == "image/*"


@pytest.mark.parametrize(("fmt", "mime"), [("PNG", PNG), ("WEBP", WEBP), ("GIF", GIF), ("JPEG", JPEG)])
async def test_the_type_is_sniffed_from_the_bytes_never_from_the_header(
        server: ImageServer, http: httpx.AsyncClient, fmt: str, mime: str) -> None:
    data = encode(noise(64, 48), fmt)
    url = server.serve("/img", image_response(data, "text/html; charset=utf-8"))
    image = await fetch_image(http, url)
    assert (image.mime, image.width, image.height, image.data) == (mime, 64, 48, data)


async def test_not_an_image_is_refused(server: ImageServer, http: httpx.AsyncClient) -> None:
    url = server.serve("/fake.jpg", image_response(b"<html><body>Login required</body></html>", "image/jpeg"))
    with pytest.raises(MediaError, match=r"is not a JPEG, PNG, WebP or GIF image"):
        await fetch_image(http, url)


@pytest.mark.parametrize("fmt", ["BMP", "TIFF", "ICO"])
async def test_image_types_outside_the_four_are_not_even_opened(server: ImageServer, http: httpx.AsyncClient,
                                                                fmt: str) -> None:
    url = server.serve("/other", image_response(encode(noise(32, 32), fmt), "image/png"))
    with pytest.raises(MediaError, match=r"not a JPEG, PNG, WebP or GIF image"):
        await fetch_image(http, url)


async def test_a_truncated_jpeg_is_refused(server: ImageServer, http: httpx.AsyncClient) -> None:
    data = jpeg(640, 480)
    url = server.serve("/cut.jpg", image_response(data[: len(data) // 2]))
    with pytest.raises(MediaError, match=r"damaged or cut short"):
        await fetch_image(http, url)


async def test_a_png_with_a_bad_checksum_is_refused(server: ImageServer, http: httpx.AsyncClient) -> None:
    data = bytearray(png(64, 64))
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside the IDAT chunk
    url = server.serve("/flip.png", image_response(bytes(data), "image/png"))
    with pytest.raises(MediaError, match=r"damaged or cut short"):
        await fetch_image(http, url)


async def test_an_oversized_image_is_refused_from_its_content_length(server: ImageServer,
                                                                     http: httpx.AsyncClient) -> None:
    data = png(300, 300)  # ~270 KB of noise
    url = server.serve("/big.png", image_response(data, "image/png"))
    with pytest.raises(MediaError, match=rf"is {len(data)} bytes, more than the 100000-byte cap"):
        await fetch_image(http, url, max_bytes=100_000)


async def test_an_oversized_body_is_cut_while_streaming(server: ImageServer, http: httpx.AsyncClient) -> None:
    """A gzip answer declares a small Content-Length and decodes to far more: the cap counts decoded bytes."""
    url = server.serve("/bomb.png", image_response(gzip.compress(b"\x00" * (8 * 1024 * 1024)), "image/png",
                                                   **{"Content-Encoding": "gzip"}))
    with pytest.raises(MediaError, match=r"larger than the 1000000-byte cap; stopped reading"):
        await fetch_image(http, url, max_bytes=1_000_000)


async def test_a_decompression_bomb_is_refused_from_its_header(server: ImageServer,
                                                               http: httpx.AsyncClient) -> None:
    bomb = png_bomb(100_000, 100_000)  # ten billion pixels in under 100 bytes
    assert len(bomb) < 200
    url = server.serve("/bomb.png", image_response(bomb, "image/png"))
    with pytest.raises(MediaError, match=r"pixel cap"):
        await fetch_image(http, url)


async def test_an_image_past_the_pixel_cap_but_below_pillows_is_refused(server: ImageServer,
                                                                        http: httpx.AsyncClient) -> None:
    data = big_sparse_png(7000, 4000)  # 28 megapixels of white: a few kilobytes
    assert len(data) < 200_000
    url = server.serve("/sparse.png", image_response(data, "image/png"))
    with pytest.raises(MediaError, match=rf"7000x4000 pixels, more than the {MAX_PIXELS:,}-pixel cap"):
        await fetch_image(http, url)


async def test_a_redirect_to_a_local_file_is_refused_and_the_file_is_not_read(
        server: ImageServer, http: httpx.AsyncClient, tmp_path: Path) -> None:
    secret_file = tmp_path / "secret.png"
    secret_file.write_bytes(png(16, 16))
    url = server.serve("/r", Response(302, b"", {"Location": secret_file.as_uri()}))
    with pytest.raises(MediaError, match=r"redirect from the image at 127\.0\.0\.1:\d+/r is not followed: "
                                         r"its scheme is 'file:'") as caught:
        await fetch_image(http, url)
    assert_clean(caught.value, str(tmp_path), "secret.png")


@pytest.mark.parametrize("location", ["ftp://example.org/x.png", "data:image/png;base64,AAAA",
                                      "gopher://example.org/", "javascript:alert(1)"])
async def test_a_redirect_to_another_scheme_is_refused(server: ImageServer, http: httpx.AsyncClient,
                                                       location: str) -> None:
    url = server.serve("/r", Response(301, b"", {"Location": location}))
    with pytest.raises(MediaError, match=r"a redirect from the image at 127\.0\.0\.1:\d+/r is not followed: "
                                         r"(its scheme is|its target is not a valid)"):
        await fetch_image(http, url)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "data:image/png;base64,AAAA", "ftp://example.org/a.png",
                                 "https://user:pw@example.org/a.png"])
async def test_an_image_url_outside_the_policy_is_refused_without_a_request(
        server: ImageServer, http: httpx.AsyncClient, url: str) -> None:
    with pytest.raises(MediaError, match=r"the image URL is not followed") as caught:
        await fetch_image(http, url)
    assert_clean(caught.value, "/etc/passwd", "pw@")
    assert server.requests == []


async def test_redirects_are_followed_to_http_and_bounded(server: ImageServer, http: httpx.AsyncClient) -> None:
    data = jpeg(100, 100)
    server.serve("/final.jpg", image_response(data))
    server.serve("/r1", Response(302, b"", {"Location": "/final.jpg"}))
    image = await fetch_image(http, server.url + "/r1")
    assert image.data == data
    server.serve("/loop", Response(302, b"", {"Location": "/loop"}))
    with pytest.raises(MediaError, match=r"redirects more than 5 times"):
        await fetch_image(http, server.url + "/loop")
    assert server.gets("/loop") == media.MAX_REDIRECTS + 1


async def test_a_trickling_server_is_cut_at_the_timeout(server: ImageServer, http: httpx.AsyncClient) -> None:
    """A byte every 50 ms never trips the client's 5 s read timeout: the whole fetch has one deadline."""
    url = server.serve("/slow.jpg", Response(200, jpeg(64, 64), {"Content-Type": "image/jpeg"}, trickle=0.05))
    started = time.monotonic()
    with pytest.raises(MediaError, match=r"took longer than 0.5s"):
        await fetch_image(http, url, timeout=0.5)
    assert time.monotonic() - started < 3.0


async def test_http_errors_and_dead_servers_are_media_errors_without_the_query(
        server: ImageServer, http: httpx.AsyncClient) -> None:
    with pytest.raises(MediaError, match=r"HTTP 404 Not Found fetching the image at 127\.0\.0\.1:\d+/gone\.jpg$") as e:
        await fetch_image(http, server.url + "/gone.jpg?token=" + SECRET)
    assert_clean(e.value, SECRET)
    server.stop()
    with pytest.raises(MediaError, match=r"could not connect") as e2:
        await fetch_image(http, server.url + "/x.jpg?access_token=" + SECRET)
    assert_clean(e2.value, SECRET)


def test_media_error_is_not_a_publish_error() -> None:
    """A publisher sends the post without the image: the delivery service never sees a MediaError."""
    assert issubclass(MediaError, TagrelayError)
    assert not issubclass(MediaError, PublishError)
    assert MediaError("x").reason == "x"


# --- the cache: one fetch for every channel ---------------------------------------------------------


async def test_concurrent_fetches_of_one_url_share_one_download(server: ImageServer,
                                                                http: httpx.AsyncClient) -> None:
    data = jpeg(320, 200)
    url = server.serve("/shared.jpg", image_response(data))
    images = await asyncio.gather(*(fetch_image(http, url, alt=f"alt {i}") for i in range(4)))
    assert [i.alt for i in images] == ["alt 0", "alt 1", "alt 2", "alt 3"]
    assert all(i.data == data for i in images)
    again = await prepare_image(http, url, max_bytes=10_000_000)
    assert again.data == data
    assert server.gets("/shared.jpg") == 1


async def test_a_failure_is_remembered_briefly(server: ImageServer, http: httpx.AsyncClient) -> None:
    url = server.serve("/bad.jpg", image_response(b"nope", "image/jpeg"))
    for _ in range(3):
        with pytest.raises(MediaError, match="not a JPEG"):
            await fetch_image(http, url)
    assert server.gets("/bad.jpg") == 1


async def test_a_cached_image_larger_than_a_later_cap_is_refused(server: ImageServer,
                                                                 http: httpx.AsyncClient) -> None:
    data = jpeg(320, 200)
    url = server.serve("/c.jpg", image_response(data))
    await fetch_image(http, url)
    with pytest.raises(MediaError, match="byte cap"):
        await fetch_image(http, url, max_bytes=len(data) - 1)


def test_the_cache_is_bounded_in_entries_bytes_and_age() -> None:
    now = [0.0]
    cache = ImageCache(max_entries=3, max_bytes=1000, ttl=60, failure_ttl=10, clock=lambda: now[0])

    def img(size: int) -> Image:
        return Image(data=b"x" * size, mime=JPEG, width=1, height=1)

    for name in "abcd":
        cache.put(name, img(100))
    assert len(cache) == 3 and cache.get("a") is None  # the oldest left
    cache.get("b")  # b is now the most recent
    cache.put("e", img(800))  # 1,100 bytes: c (the least recent) leaves
    assert cache.get("c") is None and cache.get("b") is not None and cache.size_bytes <= 1000
    cache.put("huge", img(1001))
    assert cache.get("huge") is None  # never kept
    cache.put("fail", MediaError("no"))
    now[0] = 11.0
    assert cache.get("fail") is None and cache.get("b") is not None  # failures leave sooner
    now[0] = 61.0
    assert len(cache) == 0 and cache.size_bytes == 0


# --- fitting ----------------------------------------------------------------------------------------


async def test_a_png_too_large_for_the_platform_is_re_encoded_to_fit(server: ImageServer,
                                                                     http: httpx.AsyncClient) -> None:
    data = png(1600, 1200)  # noise: ~5.8 MB as PNG
    url = server.serve("/big.png", image_response(data, "image/png"))
    image = await prepare_image(http, url, alt="Noise", max_bytes=1_000_000)
    assert image.mime == JPEG and len(image.data) <= 1_000_000
    assert image.alt == "Noise"
    shown = decoded(image.data)
    assert shown.format == "JPEG" and shown.size == (image.width, image.height)
    assert image.width / image.height == pytest.approx(4 / 3, rel=0.01)


def test_the_longer_side_is_capped_and_the_aspect_kept() -> None:
    source = Image(data=flat_png(3000, 1000), mime=PNG, width=3000, height=1000)
    fitted = fit_image(source, max_bytes=5_000_000, max_side=1200)
    assert (fitted.width, fitted.height) == (1200, 400)
    assert decoded(fitted.data).size == (1200, 400)


def test_a_type_the_platform_does_not_take_is_converted() -> None:
    data = encode(noise(200, 100), "WEBP")
    fitted = fit_image(Image(data=data, mime=WEBP, width=200, height=100), max_bytes=10_000_000)
    assert fitted.mime == JPEG and (fitted.width, fitted.height) == (200, 100)
    kept = fit_image(Image(data=data, mime=WEBP, width=200, height=100), max_bytes=10_000_000,
                     accept=frozenset({JPEG, WEBP}))
    assert kept.data == data


def test_transparency_becomes_white_in_a_jpeg() -> None:
    data = flat_png(100, 100, (0, 0, 0, 0), mode="RGBA")
    fitted = fit_image(Image(data=data, mime=PNG, width=100, height=100), max_bytes=10_000_000, max_side=50)
    assert fitted.mime == JPEG
    assert decoded(fitted.data).convert("RGB").getpixel((25, 25)) == pytest.approx((255, 255, 255), abs=2)


def test_only_png_accepted_keeps_png() -> None:
    data = flat_png(800, 800)
    fitted = fit_image(Image(data=data, mime=PNG, width=800, height=800), max_bytes=10_000_000, max_side=400,
                       accept=frozenset({PNG}))
    assert fitted.mime == PNG and decoded(fitted.data).size == (400, 400)


def test_the_exif_orientation_is_applied_when_re_encoding() -> None:
    data = jpeg_with_orientation(400, 200, orientation=6)  # stored landscape, shown portrait
    fitted = fit_image(Image(data=data, mime=JPEG, width=400, height=200), max_bytes=10_000_000, max_side=100)
    assert decoded(fitted.data).size == (50, 100)
    assert 0x0112 not in decoded(fitted.data).getexif()


def test_what_cannot_fit_is_a_media_error() -> None:
    source = Image(data=png(400, 400), mime=PNG, width=400, height=400)
    with pytest.raises(MediaError, match=r"cannot be made to fit 100 bytes"):
        fit_image(source, max_bytes=100)
    with pytest.raises(MediaError, match=r"accepts none of the image types"):
        fit_image(source, max_bytes=100, accept=frozenset({GIF}))


def test_fit_image_refuses_a_bomb_built_by_hand() -> None:
    with pytest.raises(MediaError, match="pixel cap"):
        fit_image(Image(data=png_bomb(), mime=PNG, width=1, height=1), max_bytes=10)  # must be decoded to fit


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(width=st.integers(1, 900), height=st.integers(1, 900), max_side=st.none() | st.integers(64, 1000),
       max_bytes=st.integers(2_000, 400_000), fmt=st.sampled_from(["PNG", "JPEG", "WEBP", "GIF"]))
def test_fit_image_returns_what_fits_or_says_it_cannot(width: int, height: int, max_side: int | None,
                                                       max_bytes: int, fmt: str) -> None:
    mime = {"PNG": PNG, "JPEG": JPEG, "WEBP": WEBP, "GIF": GIF}[fmt]
    source = Image(data=encode(noise(width, height), fmt), mime=mime, width=width, height=height, alt="a")
    try:
        fitted = fit_image(source, max_bytes=max_bytes, max_side=max_side)
    except MediaError:
        return
    assert fitted.mime in (JPEG, PNG) and len(fitted.data) <= max_bytes and fitted.alt == "a"
    assert max_side is None or max(fitted.width, fitted.height) <= max_side
    shown = decoded(fitted.data)
    assert shown.size == (fitted.width, fitted.height)
    assert media.identify(fitted.data).mime == fitted.mime
