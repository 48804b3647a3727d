"""The minimal HTTP/1.1 plumbing shared by the health endpoint and the admin bot's webhook.

Both are tiny ``asyncio.start_server`` listeners answering one request per
connection; this module holds what they have in common: listening (a taken
port is a ``ConfigError`` naming the key), stopping (open connections closed),
per-connection error handling (a client that goes away is not an error; a bug
is logged and never takes the service down), reading the request head within
line and header limits, and writing an answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping

from bot.errors import ConfigError

MAX_LINE = 8192
"""Longest request line or header line (asyncio's stream limit)."""
MAX_HEADERS = 64
READ_TIMEOUT = 10.0
"""Seconds a client has to send its request."""

REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
           408: "Request Timeout", 411: "Length Required", 413: "Content Too Large",
           431: "Request Header Fields Too Large", 503: "Service Unavailable", 505: "HTTP Version Not Supported"}


class HttpError(Exception):
    """Answer the request with ``status`` and a one-line ``text``."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


async def read_line(reader: asyncio.StreamReader) -> str:
    try:
        raw = await reader.readuntil(b"\n")
    except asyncio.LimitOverrunError:
        raise HttpError(431, "request line or header too long") from None
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            raise
        raise HttpError(400, "incomplete request") from None
    return raw.decode("latin-1").rstrip("\r\n")


async def read_head(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str]]:
    """The request's method (upper case), target and headers (lower-case names)."""
    parts = (await read_line(reader)).split(" ")
    if len(parts) != 3 or not parts[0].isalpha():
        raise HttpError(400, "malformed request line")
    method, target, version = parts
    if not version.startswith("HTTP/1."):
        raise HttpError(505, "only HTTP/1.x is spoken here")
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADERS + 1):
        line = await read_line(reader)
        if not line:
            break
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    else:
        raise HttpError(431, "too many header lines")
    return method.upper(), target, headers


async def write_answer(writer: asyncio.StreamWriter, status: int, body: bytes, *,
                       content_type: str = "text/plain; charset=utf-8",
                       headers: Mapping[str, str] | None = None, head_only: bool = False) -> None:
    head = [f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}",
            f"Content-Type: {content_type}",
            f"Content-Length: {len(body)}",
            "Cache-Control: no-store",
            "Connection: close"]
    head.extend(f"{k}: {v}" for k, v in (headers or {}).items())
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
    if not head_only:
        writer.write(body)
    await writer.drain()


class LocalHttpServer:
    """Base of a one-request-per-connection listener; subclasses implement ``respond``."""

    label = "http"
    """Names the listener in the log line of an unexpected failure."""

    def __init__(self) -> None:
        self.port: int | None = None
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._log = logging.getLogger(f"tagrelay.{self.label}")

    async def listen(self, host: str, port: int, *, config_key: str, hint: str = "") -> int:
        """Start listening; returns the bound port. A port that cannot be bound is a ``ConfigError``."""
        try:
            self._server = await asyncio.start_server(self._connection, host, port, limit=MAX_LINE,
                                                      reuse_address=True)
        except OSError as exc:
            raise ConfigError(config_key, f"cannot listen on {host}:{port}: {exc.strerror or exc}{hint}") from exc
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for writer in list(self._writers):
            writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 5.0)

    async def respond(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            await self.respond(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away; nothing to answer
        except Exception:  # noqa: BLE001 - a bug here must not take the service down
            self._log.exception("%s request failed", self.label)
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
