"""Fetching for every source: the feed client and a conditional, size-capped GET.

A process has two ``httpx.AsyncClient``s (each SSL context alone costs ~50 ms
of CPU, perf-baselines §2.2): ``make_feed_client`` for the sources, httpx's API
over aiohttp's connection pool (``httpx-aiohttp``: 37 % less CPU per poll,
docs/performance.md §2), and ``make_http_client``, plain httpx, for the
publishers. The publishers stay on httpx's own transport because whether a
POST may have reached the platform (``NOT_SENT_ERRORS`` against ambiguous)
depends on its exact exception classes, which the aiohttp transport blurs
(a server disconnect after the request was written arrives as
``ConnectTimeout``); for an idempotent GET that difference is harmless, and
``_transport_reason`` names the aiohttp cause. ``fetch`` sends a
conditional GET (``If-None-Match`` / ``If-Modified-Since``), streams the body
under a hard byte cap and turns every failure (network, timeout, redirect loop,
4xx/5xx, oversize body) into ``FetchError`` naming the source. A 304 comes back
as ``FetchOutcome(not_modified=True)`` with no body, so callers parse nothing.

``file://`` URLs are read from disk; the file's mtime and size form the
validator, so an unchanged file reads as "not modified" just like a 304. Only a
URL the operator configured reaches ``fetch`` as ``file:``: what the network
hands over is checked by ``bot.domain.urls.url_refusal`` first, and the feed
client checks every redirect's ``Location`` with it (``_refuse_unfollowable_redirect``),
so a redirect leads only to http/https, never to a local file (docs/operations.md,
"What a source may lead to"). The publishers' client has no such hook: httpx itself
refuses a redirect to a scheme it cannot send, and a POST's outcome must stay
classifiable by httpx's own exceptions.
"""

from __future__ import annotations

import asyncio
import email.utils
import mimetypes
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit
from urllib.request import url2pathname

import aiohttp
import httpx
import orjson

from bot.domain.urls import url_refusal
from bot.errors import FetchError
from bot.settings import HttpConfig

USER_AGENT = "tagrelay/{version} (+https://github.com/tagrelay/tagrelay)"
"""The default ``User-Agent``; ``HttpConfig.user_agent`` replaces it when set."""

DEADLINE_FACTOR = 4.0
"""A whole fetch (connect, headers and body) may take this many read timeouts at most.

The read timeout bounds one silent gap; the deadline also stops a server that
trickles a byte every few seconds."""

CONNECT_TIMEOUT_CAP = 10.0
"""Connecting never waits longer than this, even with a long read timeout."""

_ERROR_BODY_PEEK = 4096
"""How much of an error answer is read to quote its JSON ``code``/``message``."""

MAX_RETRY_AFTER = 7 * 86400.0
"""A ``Retry-After`` beyond this (a week) counts as this; polling then waits at most
``service.max_backoff`` anyway."""

_DELTA_SECONDS = re.compile(r"([0-9]+)(?:\.[0-9]+)?")
_HTTP_DATE_MAX_LENGTH = 64
"""An HTTP-date is 29 characters; longer text is not parsed as one."""


class _RedirectRefused(httpx.UnsupportedProtocol):
    """A redirect the URL policy refuses (raised by the feed client's response hook; ``fetch`` turns
    it into ``FetchError``, so it never leaves this module)."""


@dataclass(frozen=True, slots=True)
class FetchOutcome:
    """What one fetch returned.

    ``not_modified`` means a 304 (or an unchanged file): ``body`` is empty and
    must not be parsed. ``etag``/``last_modified`` are the validators to send
    next time (the previous ones are kept on a 304 that repeats none).
    ``content_type`` is the bare media type, lower-cased (``""`` if absent).
    """

    url: str
    status: int
    not_modified: bool
    body: bytes = b""
    content_type: str = ""
    etag: str | None = None
    last_modified: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        """A response header by name, case-insensitively."""
        value = self.headers.get(name)
        if value is None:
            lower = name.lower()
            value = next((v for k, v in self.headers.items() if k.lower() == lower), None)
        return value


def user_agent(cfg: HttpConfig, version: str) -> str:
    """The ``User-Agent`` every request carries."""
    return cfg.user_agent.strip() or USER_AGENT.format(version=version)


def client_settings(cfg: HttpConfig, *, version: str) -> dict[str, Any]:
    """What both clients are built with: follows redirects up to ``cfg.max_redirects``;
    ``cfg.timeout`` bounds each read, write and pool wait (connecting waits at most 10 s); up to
    ``cfg.concurrency`` connections are open at once."""
    return {
        "headers": {"User-Agent": user_agent(cfg, version)},
        "timeout": httpx.Timeout(cfg.timeout, connect=min(cfg.timeout, CONNECT_TIMEOUT_CAP)),
        "limits": httpx.Limits(max_connections=cfg.concurrency, max_keepalive_connections=cfg.concurrency,
                               keepalive_expiry=30.0),
        "follow_redirects": True,
        "max_redirects": cfg.max_redirects,
    }


def make_http_client(cfg: HttpConfig, *, version: str) -> httpx.AsyncClient:
    """The publishers' HTTP client (httpx's own transport; see the module docstring). Close it with
    ``aclose``."""
    return httpx.AsyncClient(**client_settings(cfg, version=version))


def make_feed_client(cfg: HttpConfig, *, version: str) -> httpx.AsyncClient:
    """The sources' HTTP client: ``client_settings`` on the aiohttp transport."""
    from httpx_aiohttp import HttpxAiohttpClient

    class FeedClient(HttpxAiohttpClient):
        """Cookies are kept by aiohttp's session under the transport (per domain, as a browser keeps them,
        and sent back where their domain allows); httpx's own jar did it a second time, and filling it
        cost ~6 % of a 304 poll's CPU (docs/performance.md, "Issue 21: the 304 path"): it takes none."""

        _no_cookies = _NoCookies()

        @property
        def cookies(self) -> httpx.Cookies:
            return self._no_cookies

        @cookies.setter
        def cookies(self, cookies: Any) -> None:
            raise TypeError("the feed client keeps no cookies of its own (aiohttp's session keeps them)")

    return FeedClient(**client_settings(cfg, version=version),
                      event_hooks={"request": [_prepare_for_aiohttp], "response": [_refuse_unfollowable_redirect]})


class _NoCookies(httpx.Cookies):
    """An httpx cookie jar that takes no cookie from a response (so it never sends one either)."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


async def _refuse_unfollowable_redirect(response: httpx.Response) -> None:
    """Refuse to follow a redirect whose target the URL policy refuses (``bot.domain.urls``): any
    scheme but http/https, credentials in the ``Location``, control characters, an absurd length.

    httpx calls response hooks before it builds the redirected request, so nothing is sent (or
    read) for a refused target. Another host or port is followed; httpx drops the
    ``Authorization`` header when the origin changes.
    """
    if not response.has_redirect_location:
        return
    base = response.request.url
    if base.userinfo:
        base = base.copy_with(username=None, password=None)
    location = response.headers["location"]
    try:
        target = urljoin(str(base), location.strip())
    except ValueError:
        target = location
    reason = url_refusal(target)
    if reason is not None:
        raise _RedirectRefused(reason, request=response.request)


async def _prepare_for_aiohttp(request: httpx.Request) -> None:
    """Two adjustments the aiohttp transport needs before each request (redirects included).

    It sends a request stream it finds unread with chunked encoding, even an empty one, and every
    redirected GET carries one: a server that takes no body on GET answers 400 to the stray
    terminating chunk. Reading the stream first makes the body plain bytes. And a URL with
    credentials (``https://user:pass@host/feed``) reaches aiohttp with httpx's Basic
    ``Authorization`` header already made from them, which aiohttp refuses (ValueError): the
    header is enough, so they leave the URL.
    """
    await request.aread()
    if request.url.userinfo:
        request.url = request.url.copy_with(username=None, password=None)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds (ASCII digits, a fraction
    tolerated) or an HTTP-date (GMT). At most ``MAX_RETRY_AFTER``; a date in the past is 0.
    Anything else (negative, ``nan``, ``1e400``, ``0x20``, non-ASCII digits, a zone-less date)
    is None: the caller's own backoff applies."""
    if not value or not value.strip():
        return None
    text = value.strip()
    number = _DELTA_SECONDS.fullmatch(text)
    if number is not None:
        if len(number.group(1)) > 12:  # more seconds than MAX_RETRY_AFTER, whatever the digits
            return MAX_RETRY_AFTER
        return min(float(text), MAX_RETRY_AFTER)
    if len(text) > _HTTP_DATE_MAX_LENGTH:
        return None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        return None
    current = time.time() if now is None else now
    return min(max(0.0, when.timestamp() - current), MAX_RETRY_AFTER)


def _media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


def _describe_error_body(body: bytes, content_type: str) -> str:
    """``" (rest_forbidden: Sorry, ...)"`` for a JSON error answer such as WordPress sends."""
    if "json" not in content_type or not body:
        return ""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ""
    if not isinstance(data, dict):
        return ""
    code, message = data.get("code"), data.get("message")
    parts = [str(p) for p in (code, message) if isinstance(p, str | int) and str(p).strip()]
    if not parts:
        return ""
    text = ": ".join(parts)
    return f" ({text[:200]})"


def _aiohttp_reason(cause: BaseException | None, url: str) -> str | None:
    """The feed client's transport maps aiohttp's errors onto httpx classes loosely (a dropped
    connection becomes ``ConnectTimeout``): describe the aiohttp error itself. None if it is not one."""
    if cause is None or not type(cause).__module__.startswith("aiohttp"):
        return None
    if isinstance(cause, aiohttp.ClientConnectorError):
        return f"could not connect to {url}: {cause.os_error.strerror or cause.os_error}"
    if isinstance(cause, aiohttp.ServerDisconnectedError):
        return f"the server closed the connection fetching {url}"
    if isinstance(cause, aiohttp.ServerTimeoutError | TimeoutError):
        return f"timed out reading {url}"
    if isinstance(cause, aiohttp.ClientPayloadError):
        return f"the body of {url} was cut short or malformed: {cause}"
    if isinstance(cause, aiohttp.ClientResponseError):
        return f"the server broke the HTTP protocol fetching {url}: {cause.message or type(cause).__name__}"
    return None


def _transport_reason(exc: Exception, url: str) -> str:
    """One clear sentence for an httpx (or OS) failure."""
    aiohttp_reason = _aiohttp_reason(exc.__cause__, url)
    if aiohttp_reason is not None:
        return aiohttp_reason
    if isinstance(exc, _RedirectRefused):
        return f"{url} answered with a redirect that is not followed: {exc}"
    if isinstance(exc, httpx.TooManyRedirects):
        return f"too many redirects fetching {url}"
    if isinstance(exc, httpx.ConnectTimeout):
        return f"timed out connecting to {url}"
    if isinstance(exc, httpx.PoolTimeout):
        return f"timed out waiting for a free connection to fetch {url}"
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out reading {url}"
    if isinstance(exc, httpx.ConnectError):
        return f"could not connect to {url}: {exc or type(exc).__name__}"
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"the server broke the connection or the HTTP protocol fetching {url}: {exc}"
    if isinstance(exc, httpx.DecodingError):
        return f"could not decode the compressed body of {url}: {exc}"
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return f"cannot fetch {url!r}: {exc}"
    detail = str(exc) or type(exc).__name__
    return f"fetching {url} failed: {detail}"


async def fetch(
    client: httpx.AsyncClient,
    url: str,
    *,
    source: str,
    etag: str | None,
    last_modified: str | None,
    max_bytes: int,
    extra_headers: Mapping[str, str] | None = None,
    parsed: httpx.URL | None = None,
) -> FetchOutcome:
    """Conditional GET of ``url`` (or read a ``file://`` URL); raises only ``FetchError``.

    ``parsed``: ``url`` parsed once by a caller that fetches it again and again (a feed source), so that
    httpx does not parse it on every request.

    Sends ``If-None-Match``/``If-Modified-Since`` when validators are given; a
    304 returns ``not_modified=True`` without a body. Aborts with ``FetchError``
    once the (decoded) body passes ``max_bytes``. On 4xx/5xx the error keeps the
    ``status``; on 429/503 it also carries ``retry_after`` seconds when the
    server sent ``Retry-After``.
    """
    if url[:5].lower() == "file:":
        return await _read_file(url, source=source, etag=etag, max_bytes=max_bytes)
    headers: dict[str, str] = dict(extra_headers or {})
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    read_timeout = client.timeout.read or 30.0
    deadline = max(1.0, read_timeout * DEADLINE_FACTOR)
    try:
        async with asyncio.timeout(deadline):
            return await _get(client, url, headers, source=source, etag=etag,
                              last_modified=last_modified, max_bytes=max_bytes, parsed=parsed)
    except FetchError:
        raise
    except TimeoutError as exc:
        raise FetchError(source, f"fetching {url} took longer than {deadline:g}s") from exc
    except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError, OSError) as exc:
        raise FetchError(source, _transport_reason(exc, url)) from exc
    except aiohttp.ClientError as exc:  # the feed client's transport leaves some of aiohttp's own unmapped
        raise FetchError(source, _aiohttp_reason(exc, url) or f"fetching {url} failed: {exc}") from exc


def _with_credentials_of(requested: str, final: httpx.URL) -> str:
    """``final`` as text, with the credentials of ``requested`` when the feed client took them out of
    the URL (``_prepare_for_aiohttp``) and it is still the same host, so reports read as with httpx
    (the log redaction then shows ``user:***@host``)."""
    if "@" not in requested:  # no credentials to give back: nothing to parse (every poll of a plain URL)
        return str(final)
    original = httpx.URL(requested)
    if not original.userinfo or final.userinfo or (final.scheme, final.host, final.port) != (
            original.scheme, original.host, original.port):
        return str(final)
    return str(final.copy_with(username=original.username, password=original.password))


async def _get(
    client: httpx.AsyncClient,
    url: str,
    headers: dict[str, str],
    *,
    source: str,
    etag: str | None,
    last_modified: str | None,
    max_bytes: int,
    parsed: httpx.URL | None = None,
) -> FetchOutcome:
    async with client.stream("GET", url if parsed is None else parsed, headers=headers) as response:
        final_url = _with_credentials_of(url, response.url)
        status = response.status_code
        content_type = _media_type(response.headers.get("content-type"))
        if status == 304:
            # A 304 has no body, but httpcore only hands the connection back to the pool (keep-alive)
            # once the response was read to its end; closed unread, the connection is dropped and the
            # next poll pays a new TCP (and TLS) handshake.
            await response.aread()
            return FetchOutcome(
                url=final_url, status=status, not_modified=True, content_type=content_type,
                etag=response.headers.get("etag") or etag,
                last_modified=response.headers.get("last-modified") or last_modified,
                headers=response.headers,
            )
        if not 200 <= status < 300:
            peek = b""
            if status >= 400:
                async for chunk in response.aiter_bytes():
                    peek += chunk
                    if len(peek) >= _ERROR_BODY_PEEK:
                        break
            retry_after = None
            if status in (429, 503):
                retry_after = parse_retry_after(response.headers.get("retry-after"))
            phrase = f" {response.reason_phrase}" if response.reason_phrase else ""
            wait = f"; retry after {retry_after:.0f}s" if retry_after is not None else ""
            reason = f"HTTP {status}{phrase} from {final_url}{_describe_error_body(peek, content_type)}{wait}"
            raise FetchError(source, reason, status=status, retry_after=retry_after)
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_bytes:
            raise FetchError(source, f"{final_url} is {int(declared)} bytes, more than the "
                                     f"{max_bytes}-byte cap (http.max_bytes)", status=status)
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > max_bytes:
                raise FetchError(source, f"{final_url} sent more than the {max_bytes}-byte cap "
                                         f"(http.max_bytes); stopped reading", status=status)
            chunks.append(chunk)
        return FetchOutcome(
            url=final_url, status=status, not_modified=False, body=b"".join(chunks),
            content_type=content_type, etag=response.headers.get("etag"),
            last_modified=response.headers.get("last-modified"), headers=response.headers,
        )


def file_path(url: str) -> Path:
    """The local path of a ``file://`` URL (``file:///x``, ``file://localhost/x``)."""
    parts = urlsplit(url)
    if parts.netloc and parts.netloc.lower() != "localhost":
        raise ValueError(f"file URL with a remote host {parts.netloc!r} is not supported")
    return Path(url2pathname(unquote(parts.path)))


def file_validator(stat: os.stat_result) -> str:
    """An ETag-like validator from a file's mtime and size."""
    return f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"'


def _content_type_of(path: Path) -> str:
    guessed, _ = mimetypes.guess_type(path.name)
    return (guessed or "application/octet-stream").lower()


async def _read_file(url: str, *, source: str, etag: str | None, max_bytes: int) -> FetchOutcome:
    try:
        path = file_path(url)
        stat = await asyncio.to_thread(path.stat)
    except ValueError as exc:
        raise FetchError(source, f"cannot read {url}: {exc}") from exc
    except FileNotFoundError as exc:
        raise FetchError(source, f"file not found: {url}") from exc
    except OSError as exc:
        raise FetchError(source, f"cannot read {url}: {exc.strerror or exc}") from exc
    validator = file_validator(stat)
    modified = email.utils.formatdate(stat.st_mtime, usegmt=True)
    content_type = _content_type_of(path)
    if etag is not None and etag == validator:
        return FetchOutcome(url=url, status=304, not_modified=True, content_type=content_type,
                            etag=validator, last_modified=modified)
    if stat.st_size > max_bytes:
        raise FetchError(source, f"{url} is {stat.st_size} bytes, more than the {max_bytes}-byte cap "
                                 f"(http.max_bytes)")
    try:
        body = await asyncio.to_thread(path.read_bytes)
    except IsADirectoryError as exc:
        raise FetchError(source, f"{url} is a directory, not a file") from exc
    except OSError as exc:
        raise FetchError(source, f"cannot read {url}: {exc.strerror or exc}") from exc
    if len(body) > max_bytes:
        raise FetchError(source, f"{url} is larger than the {max_bytes}-byte cap (http.max_bytes)")
    return FetchOutcome(url=url, status=200, not_modified=False, body=body, content_type=content_type,
                        etag=validator, last_modified=modified)
