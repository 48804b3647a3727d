"""A post's featured image: fetched once, checked with Pillow, fitted to each platform's limits.

``fetch_image`` downloads an image under the same rules as a feed (http/https only, checked by
``bot.domain.urls.url_refusal`` for the URL and for every redirect, a byte cap while streaming, one
deadline for the whole download) and lets Pillow identify it from its bytes: the type is sniffed,
never taken from ``Content-Type``, and only JPEG, PNG, WebP and GIF are opened (Pillow's other
decoders are never reached by hostile bytes). Before a single pixel is decoded its size is checked
against ``MAX_PIXELS``: a decompression bomb (a few kilobytes that decode to gigabytes) is refused
from its header. ``fit_image`` is pure CPU work: an image that already fits a platform's size, side
and type is returned unchanged (the very bytes); otherwise it is downscaled and re-encoded (JPEG
at decreasing quality, then smaller) until it fits. ``prepare_image`` does both, Pillow in a worker
thread so the event loop never waits for it.

Every failure is a ``MediaError`` whose reason names the host and path of the image at most
(never its query, which may carry a token). A publisher that catches it sends the post without
the image and logs why: a failed image never blocks a post.

The cache: one post goes to several channels at about the same time, so the image is fetched once
per process. Images (and failures, briefly) are kept by URL in a small LRU bounded in entries,
bytes and age (``ImageCache``); concurrent fetches of one URL share one download.
"""

from __future__ import annotations

import asyncio
import io
import struct
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Final
from urllib.parse import urljoin, urlsplit

import httpx

from bot.domain.urls import url_refusal
from bot.errors import MediaError

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

JPEG: Final = "image/jpeg"
PNG: Final = "image/png"
WEBP: Final = "image/webp"
GIF: Final = "image/gif"
DEFAULT_ACCEPT: Final = frozenset({JPEG, PNG})

_FORMATS: Final = {"JPEG": JPEG, "PNG": PNG, "WEBP": WEBP, "GIF": GIF}
"""Pillow's format names of the types an image may have; no other decoder is ever tried."""

MAX_PIXELS: Final = 24_000_000
"""An image with more pixels (width × height) is refused from its header, before it is decoded.

24 megapixels (6,000 × 4,000) is more than any featured image needs (WordPress scales uploads down
to 2,560 px by default) and decodes to at most 96 MB (RGBA) in the worker thread; a decompression
bomb claims far more. Pillow's own guard (89 megapixels) stays in place behind this one."""

MAX_REDIRECTS: Final = 5
MIN_SIDE: Final = 64
"""``fit_image`` never shrinks an image's longer side below this many pixels: it fails instead."""
JPEG_QUALITIES: Final = (85, 72, 60)
"""The qualities ``fit_image`` tries at each size before it makes the image smaller."""
MAX_FIT_ROUNDS: Final = 8
"""Sizes ``fit_image`` tries at most (each one at every quality)."""

_DESCRIBED_PATH_CHARS: Final = 80

# Pillow warns between its own limit and twice that, then raises; MAX_PIXELS (lower) decides first,
# so its warning would only repeat what the MediaError already says.
warnings.filterwarnings("ignore", message=r"Image size \(\d+ pixels\) exceeds limit")


@dataclass(frozen=True, slots=True)
class Image:
    """An image's bytes as they will be uploaded, with what Pillow found in them."""

    data: bytes
    mime: str
    """``image/jpeg``, ``image/png``, ``image/webp`` or ``image/gif``: sniffed from ``data``."""
    width: int
    height: int
    alt: str | None = None
    """The text alternative (alt text) the platform should show, if any."""

    def __repr__(self) -> str:  # never dump megabytes into a log or an assertion message
        return f"Image({self.mime}, {self.width}x{self.height}, {len(self.data)} bytes, alt={self.alt!r})"


def describe_url(url: str) -> str:
    """``host/path`` of ``url`` for a message: no scheme, credentials, query or fragment, path cut."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "an invalid URL"
    path = parts.path or "/"
    if len(path) > _DESCRIBED_PATH_CHARS:
        path = path[: _DESCRIBED_PATH_CHARS - 1] + "…"
    return f"{host}{port}{path}"


# --- the cache ------------------------------------------------------------------------------------


class ImageCache:
    """A small LRU of fetched images (and recent failures) by URL, bounded in entries, bytes and age.

    Images are kept ``ttl`` seconds, failures ``failure_ttl`` seconds (a channel that delivers the
    same post a moment later does not wait for the same dead server again; a retry later does). An
    image larger than ``max_bytes`` is not kept. Expired entries leave on every access.
    """

    def __init__(self, *, max_entries: int = 16, max_bytes: int = 24 * 1024 * 1024, ttl: float = 600.0,
                 failure_ttl: float = 120.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.ttl = ttl
        self.failure_ttl = failure_ttl
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, Image | MediaError]] = OrderedDict()
        self._bytes = 0
        self._inflight: dict[str, asyncio.Future[Image]] = {}

    def __len__(self) -> int:
        self._prune()
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        self._prune()
        return self._bytes

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0

    def _drop(self, url: str) -> None:
        _, value = self._entries.pop(url)
        if isinstance(value, Image):
            self._bytes -= len(value.data)

    def _prune(self) -> None:
        now = self._clock()
        for url in [u for u, (expires, _) in self._entries.items() if expires <= now]:
            self._drop(url)

    def get(self, url: str) -> Image | MediaError | None:
        self._prune()
        found = self._entries.get(url)
        if found is None:
            return None
        self._entries.move_to_end(url)
        return found[1]

    def put(self, url: str, value: Image | MediaError) -> None:
        self._prune()
        if url in self._entries:
            self._drop(url)
        size = len(value.data) if isinstance(value, Image) else 0
        if size > self.max_bytes:
            return
        ttl = self.ttl if isinstance(value, Image) else self.failure_ttl
        self._entries[url] = (self._clock() + ttl, value)
        self._bytes += size
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))


CACHE = ImageCache()
"""The process's image cache (``fetch_image`` uses it)."""


# --- fetching -------------------------------------------------------------------------------------


async def fetch_image(http: httpx.AsyncClient, url: str, *, alt: str | None = None,
                      max_bytes: int = 16 * 1024 * 1024, timeout: float = 20.0) -> Image:
    """The image at ``url`` (http/https only), at most ``max_bytes``, within ``timeout`` seconds in all.

    Raises only ``MediaError``. A URL fetched a moment ago (by another channel) comes from the cache.
    """
    key = url
    cached = CACHE.get(key)
    if isinstance(cached, MediaError):
        raise MediaError(cached.reason)
    if cached is not None:
        return _checked_size(cached, max_bytes, url, alt)
    loop = asyncio.get_running_loop()
    pending = CACHE._inflight.get(key)
    if pending is not None and pending.get_loop() is loop:
        image = await asyncio.shield(pending)
        return _checked_size(image, max_bytes, url, alt)
    future: asyncio.Future[Image] = loop.create_future()
    CACHE._inflight[key] = future
    try:
        image = await _download_and_identify(http, url, max_bytes=max_bytes, timeout=timeout)
    except MediaError as exc:
        CACHE.put(key, exc)
        future.set_exception(MediaError(exc.reason))
        future.exception()  # retrieved: no "exception never retrieved" warning when nobody waited
        raise
    except BaseException:
        future.cancel()
        raise
    else:
        CACHE.put(key, image)
        future.set_result(image)
    finally:
        if CACHE._inflight.get(key) is future:
            del CACHE._inflight[key]
    return replace(image, alt=alt)


def _checked_size(image: Image, max_bytes: int, url: str, alt: str | None) -> Image:
    if len(image.data) > max_bytes:
        raise MediaError(f"the image at {describe_url(url)} is {len(image.data)} bytes, more than the "
                         f"{max_bytes}-byte cap")
    return replace(image, alt=alt)


async def _download_and_identify(http: httpx.AsyncClient, url: str, *, max_bytes: int, timeout: float) -> Image:
    try:
        async with asyncio.timeout(timeout):
            data = await _download(http, url, max_bytes=max_bytes)
    except TimeoutError as exc:
        raise MediaError(f"fetching the image at {describe_url(url)} took longer than {timeout:g}s") from exc
    return await asyncio.to_thread(identify, data, where=describe_url(url))


async def _download(http: httpx.AsyncClient, url: str, *, max_bytes: int) -> bytes:
    """GET ``url`` following at most ``MAX_REDIRECTS`` redirects, each target checked by the URL policy."""
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        refusal = url_refusal(current)
        if refusal is not None:
            what = "the image URL" if current is url else f"a redirect from the image at {describe_url(url)}"
            raise MediaError(f"{what} is not followed: {refusal}")
        try:
            async with http.stream("GET", current, headers={"Accept": "image/*"},
                                   follow_redirects=False) as response:
                if response.has_redirect_location:
                    await response.aclose()
                    location = response.headers["location"].strip()
                    try:
                        current = urljoin(current, location)
                    except ValueError as exc:
                        raise MediaError(f"the image at {describe_url(url)} redirects to an invalid URL") from exc
                    continue
                status = response.status_code
                if not 200 <= status < 300:
                    phrase = f" {response.reason_phrase}" if response.reason_phrase else ""
                    raise MediaError(f"HTTP {status}{phrase} fetching the image at {describe_url(current)}")
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    raise MediaError(f"the image at {describe_url(current)} is {int(declared)} bytes, "
                                     f"more than the {max_bytes}-byte cap")
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > max_bytes:
                        raise MediaError(f"the image at {describe_url(current)} is larger than the "
                                         f"{max_bytes}-byte cap; stopped reading")
                    chunks.append(chunk)
                return b"".join(chunks)
        except httpx.InvalidURL as exc:
            # ``current`` passed the policy, so this is httpx refusing to parse a redirect's Location
            # (``data:…``) while it prepares the next request, before we could look at it
            raise MediaError(f"a redirect from the image at {describe_url(current)} is not followed: "
                             f"its target is not a valid http(s) URL") from exc
        except (httpx.HTTPError, httpx.StreamError, OSError) as exc:
            raise MediaError(f"fetching the image at {describe_url(current)} failed: "
                             f"{_transport_reason(exc)}") from exc
    raise MediaError(f"the image at {describe_url(url)} redirects more than {MAX_REDIRECTS} times")


def _transport_reason(exc: Exception) -> str:
    if isinstance(exc, httpx.ConnectTimeout):
        return "timed out connecting"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out reading"
    if isinstance(exc, httpx.ConnectError):
        return "could not connect"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "the server broke the connection or the HTTP protocol"
    if isinstance(exc, httpx.DecodingError):
        return "could not decode the compressed body"
    return type(exc).__name__


# --- identifying and fitting (CPU work: run it in a worker thread) -------------------------------

_PIL_ERRORS: Final[tuple[type[BaseException], ...]] = (
    OSError, ValueError, SyntaxError, EOFError, struct.error, TypeError, IndexError, KeyError, ZeroDivisionError,
    MemoryError, Warning,
)
"""What Pillow raises on hostile bytes (``UnidentifiedImageError`` is an OSError; its decompression
bomb error and warning are an Exception and a Warning)."""


def _pil_open(data: bytes, where: str) -> PILImage:
    # Pillow is imported when the first image is opened: a process that sends none never loads it
    from PIL import Image as PIL

    try:
        image = PIL.open(io.BytesIO(data), formats=tuple(_FORMATS))
    except (PIL.DecompressionBombError, PIL.DecompressionBombWarning) as exc:
        raise MediaError(f"the image at {where} has more pixels than the {MAX_PIXELS:,}-pixel cap") from exc
    except _PIL_ERRORS as exc:
        raise MediaError(f"the data at {where} is not a JPEG, PNG, WebP or GIF image") from exc
    width, height = image.size
    if width < 1 or height < 1 or width * height > MAX_PIXELS:
        image.close()
        raise MediaError(f"the image at {where} is {width}x{height} pixels, more than the "
                         f"{MAX_PIXELS:,}-pixel cap")
    return image


def identify(data: bytes, *, where: str = "the image") -> Image:
    """What ``data`` is: the type sniffed, the size read from the header (refused past ``MAX_PIXELS``
    before anything is decoded), the whole of it checked. A PNG's chunk checksums are verified; a JPEG is
    decoded at 1/8 scale (every byte of it is read, truncation shows, little memory); WebP and the first
    frame of a GIF are decoded. Raises ``MediaError`` for anything but an intact JPEG, PNG, WebP or GIF."""
    image = _pil_open(data, where)
    try:
        mime = _FORMATS[str(image.format)]
        width, height = image.size
        if mime == PNG:
            image.verify()
        else:
            if mime == JPEG:
                image.draft("RGB", (max(1, width // 8), max(1, height // 8)))
            image.load()
    except _PIL_ERRORS as exc:
        raise MediaError(f"the image at {where} is damaged or cut short") from exc
    finally:
        image.close()
    return Image(data=data, mime=mime, width=width, height=height)


def fits(image: Image, *, max_bytes: int, max_side: int | None = None,
         accept: frozenset[str] = DEFAULT_ACCEPT) -> bool:
    """Whether ``image`` may be uploaded as it is."""
    return (image.mime in accept and len(image.data) <= max_bytes
            and (max_side is None or max(image.width, image.height) <= max_side))


def fit_image(image: Image, *, max_bytes: int, max_side: int | None = None,
              accept: frozenset[str] = DEFAULT_ACCEPT) -> Image:
    """``image`` itself when it fits (size, longer side, type); else a downscaled and/or re-encoded copy
    that does (JPEG at decreasing quality, then smaller; PNG or WebP only when JPEG is not accepted).

    Pure CPU work (call it in a worker thread). Raises ``MediaError`` when no copy of at least
    ``MIN_SIDE`` pixels fits, or when ``accept`` names no type this module can write.
    """
    if fits(image, max_bytes=max_bytes, max_side=max_side, accept=accept):
        return image
    target = next((t for t in (JPEG, PNG, WEBP) if t in accept), None)
    if target is None:
        types = ", ".join(sorted(accept)) or "none"
        raise MediaError(f"the platform accepts none of the image types tagrelay can write ({types})")
    pixels = _decoded(image, target, max_side)
    try:
        for _ in range(MAX_FIT_ROUNDS):
            smallest = b""
            for quality in JPEG_QUALITIES if target == JPEG else (None,):
                data = _encode(pixels, target, quality)
                if len(data) <= max_bytes:
                    return Image(data=data, mime=target, width=pixels.width, height=pixels.height, alt=image.alt)
                smallest = data
            # bytes grow about with the pixel count: aim a little below the cap in one step
            scale = min(0.9, (max_bytes / len(smallest)) ** 0.5 * 0.9)
            side = int(max(pixels.size) * scale)
            if side < MIN_SIDE:
                break
            pixels = _resized(pixels, side)
    finally:
        pixels.close()
    raise MediaError(f"the image ({image.width}x{image.height}, {len(image.data)} bytes) cannot be made to fit "
                     f"{max_bytes} bytes" + (f" and {max_side} px" if max_side else ""))


def _decoded(image: Image, target: str, max_side: int | None) -> PILImage:
    """The pixels of ``image``, upright (EXIF orientation applied), in a mode ``target`` can store,
    already no larger than ``max_side``."""
    from PIL import Image as PIL
    from PIL import ImageOps

    opened = _pil_open(image.data, "the image")
    try:
        if max_side is not None and opened.format == "JPEG":
            opened.draft("RGB", (max_side, max_side))  # decode at 1/2, 1/4, 1/8 size when that is enough
        opened.load()
        ImageOps.exif_transpose(opened, in_place=True)  # the pixels upright: the EXIF orientation is not kept
    except _PIL_ERRORS as exc:
        opened.close()
        raise MediaError("the image is damaged: it cannot be decoded") from exc
    pixels = opened
    if target == JPEG or pixels.mode not in ("RGB", "RGBA", "L", "LA", "P"):
        if pixels.mode in ("RGBA", "LA", "P", "PA") or "transparency" in pixels.info:
            rgba = pixels.convert("RGBA")
            flat = PIL.new("RGB", rgba.size, (255, 255, 255))  # JPEG has no alpha: transparent becomes white
            flat.paste(rgba, mask=rgba.getchannel("A"))
            rgba.close()
            converted = flat
        else:
            converted = pixels.convert("RGB")
        pixels.close()
        pixels = converted
    if max_side is not None and max(pixels.size) > max_side:
        pixels = _resized(pixels, max_side)
    return pixels


def _resized(pixels: PILImage, side: int) -> PILImage:
    from PIL import Image as PIL

    width, height = pixels.size
    scale = side / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    smaller = pixels.resize(size, PIL.Resampling.LANCZOS, reducing_gap=3.0)
    pixels.close()
    return smaller


def _encode(pixels: PILImage, target: str, quality: int | None) -> bytes:
    out = io.BytesIO()
    if target == JPEG:
        pixels.save(out, "JPEG", quality=quality, optimize=True, progressive=True)
    elif target == PNG:
        pixels.save(out, "PNG", optimize=True)
    else:
        pixels.save(out, "WEBP", quality=80, method=4)
    return out.getvalue()


async def prepare_image(http: httpx.AsyncClient, url: str, *, alt: str | None = None, max_bytes: int,
                        max_side: int | None = None, accept: frozenset[str] = DEFAULT_ACCEPT,
                        fetch_max_bytes: int = 16 * 1024 * 1024, timeout: float = 20.0) -> Image:
    """``fetch_image`` then ``fit_image`` in a worker thread: the image ready for one platform.

    ``max_bytes`` is the platform's limit; the download's own cap is ``fetch_max_bytes`` (a larger
    image is downscaled after it was fetched). Raises only ``MediaError``.
    """
    image = await fetch_image(http, url, alt=alt, max_bytes=max(fetch_max_bytes, 1), timeout=timeout)
    if fits(image, max_bytes=max_bytes, max_side=max_side, accept=accept):
        return image
    return await asyncio.to_thread(fit_image, image, max_bytes=max_bytes, max_side=max_side, accept=accept)
