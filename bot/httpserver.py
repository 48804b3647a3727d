"""The ``aiohttp.web`` plumbing shared by the health endpoint and the admin bot's webhook listener.

Both are one catch-all handler on an ``AppRunner``/``TCPSite`` (aiohttp is a dependency already:
the feeds' client runs on it). What they share is here: listening (a port that cannot be bound is
a ``ConfigError`` naming the key; port 0 picks a free one), stopping (open connections closed), and
answers that are never cached and close their connection. aiohttp's parser answers a malformed
request itself (400, connection closed, limits below); that is the client's fault and is logged at
debug level only, so a hostile client cannot fill the log with tracebacks. A bug in a handler is
still logged (``tagrelay.<label>``) and answered 500, and never takes the service down.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from bot.errors import ConfigError

MAX_LINE = 8192
"""Longest request line or header line."""
MAX_HEADERS = 64
"""Most header lines in a request."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def answer(status: int, body: bytes | str, *, content_type: str = "text/plain; charset=utf-8",
           headers: Mapping[str, str] | None = None) -> web.Response:
    """A complete answer: not to be cached, and the connection closes after it."""
    data = body.encode() if isinstance(body, str) else body
    response = web.Response(status=status, body=data, headers={"Content-Type": content_type,
                                                               "Cache-Control": "no-store", **(headers or {})})
    response.force_close()
    return response


class _ClientFaults(logging.Filter):
    """aiohttp logs every request its parser refuses as an error with a traceback: the client's fault,
    kept at debug level. Everything else (a handler's bug) passes as it is."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError) and record.levelno > logging.DEBUG:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


class Listener:
    """One ``handler`` for every request on ``host:port``. ``port`` is the bound port once started."""

    def __init__(self, handler: Handler, *, label: str, max_body: int = 1024 * 1024) -> None:
        self.label = label
        self.port: int | None = None
        self._handler = handler
        self._max_body = max_body
        self._runner: web.AppRunner | None = None
        self._log = logging.getLogger(f"tagrelay.{label.replace(' ', '_')}")
        if not any(isinstance(f, _ClientFaults) for f in self._log.filters):
            self._log.addFilter(_ClientFaults())

    async def listen(self, host: str, port: int, *, config_key: str, hint: str = "") -> int:
        """Start listening; returns the bound port. A port that cannot be bound is a ``ConfigError``."""
        app = web.Application(client_max_size=self._max_body, handler_args={
            "max_line_size": MAX_LINE, "max_field_size": MAX_LINE, "max_headers": MAX_HEADERS})
        app.router.add_route("*", "/{path:.*}", self._handler)
        runner = web.AppRunner(app, handle_signals=False, access_log=None, logger=self._log)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port, reuse_address=True).start()
        except OSError as exc:
            await runner.cleanup()
            raise ConfigError(config_key, f"cannot listen on {host}:{port}: {exc.strerror or exc}{hint}") from exc
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        return self.port

    async def stop(self) -> None:
        """Stop listening and close open connections; idempotent."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
