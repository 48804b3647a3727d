"""The listener Telegram posts updates to in webhook mode, on ``aiohttp.web`` (``bot.httpserver``).

Behind a TLS-terminating reverse proxy (Telegram only calls HTTPS). For each request, in this order:
404 for any path but the webhook URL's, 405 for any method but POST, 403 unless
``X-Telegram-Bot-Api-Secret-Token`` equals the secret (compared in constant time, before the body is
read), 413 for a body over 1 MiB, 400 unless the body is a JSON object with an integer
``update_id``; then the update is handed to ``deliver`` (python-telegram-bot's update queue) and
answered 200. PTB's own webhook server would need tornado, which tagrelay does not install.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from bot.httpserver import Listener, answer
from bot.log import event

log = logging.getLogger("tagrelay.admin")

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 - a header name, not a secret
MAX_BODY = 1024 * 1024
"""Largest update accepted (Telegram's are a few KiB)."""


class RejectedUpdate(Exception):
    """``deliver`` refuses a body that is JSON but not an update it can read: answered 400."""


class WebhookListener:
    """Serves ``path`` on ``host:port``; ``port`` is the bound one after ``start`` (0 picks a free one)."""

    def __init__(self, host: str, port: int, path: str, secret: str,
                 deliver: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        self.host = host
        self.path = path
        self._port = port
        self._secret = secret.encode()
        self._deliver = deliver
        self._listener = Listener(self._handle, label="admin webhook", max_body=MAX_BODY)

    @property
    def port(self) -> int:
        return self._listener.port if self._listener.port is not None else self._port

    async def start(self) -> int:
        """Listen; a port that cannot be bound is a ``ConfigError`` naming ``admin.webhook_port``."""
        return await self._listener.listen(self.host, self._port, config_key="admin.webhook_port")

    async def stop(self) -> None:
        await self._listener.stop()

    async def _handle(self, request: web.Request) -> web.Response:
        if request.path != self.path:
            return answer(404, "not found\n")
        if request.method != "POST":
            return answer(405, "only POST\n", headers={"Allow": "POST"})
        if not hmac.compare_digest(request.headers.get(SECRET_HEADER, "").encode(), self._secret):
            event(log, logging.WARNING, "admin.webhook_refused", reason="missing or wrong secret token")
            return answer(403, "forbidden\n")
        if request.content_length is not None and request.content_length > MAX_BODY:
            return answer(413, "body too large\n")
        try:
            data = json.loads(await request.read())
        except web.HTTPRequestEntityTooLarge:
            return answer(413, "body too large\n")
        except (ValueError, RecursionError):  # RecursionError: "[[[[…" nested deeper than the parser goes
            return answer(400, "body is not JSON\n")
        if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
            return answer(400, "body is not a Telegram update\n")
        try:
            await self._deliver(data)
        except RejectedUpdate as exc:
            return answer(400, f"not a Telegram update ({exc})\n")
        return answer(200, "ok\n")
