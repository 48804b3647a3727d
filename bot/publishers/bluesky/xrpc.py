"""A small XRPC client over the shared httpx client (no SDK: see docs/architecture.md, "Why these libraries").

XRPC is HTTP: a query is ``GET {base}/xrpc/{nsid}?params``, a procedure ``POST
{base}/xrpc/{nsid}`` with a JSON (or raw, for a blob) body; an error is a 4xx/5xx
answer with ``{"error": "<Name>", "message": "<text>"}``. This module sends and
reads; what an answer means is decided by the publisher (``classify``).
Transport failures become ``PublishError`` through ``bot.publishers.http``:
after a posting request left, ``AmbiguousPublishError``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import httpx

from bot.errors import PermanentPublishError, PublishError
from bot.publishers.http import describe_exception, describe_status, json_body, platform_text, transport_error


@dataclass(frozen=True, slots=True)
class Failure:
    """An XRPC error answer: the HTTP status, the error name (``ExpiredToken``; "" when the body has none)
    and the server's message, cleaned (one bounded line, no controls, no secrets)."""

    status: int
    error: str
    message: str

    def describe(self) -> str:
        what = describe_status(self.status)
        if self.error and self.message:
            return f"{what}: {self.error}: {self.message}"
        if self.error or self.message:
            return f"{what}: {self.error or self.message}"
        return what


def failure(response: httpx.Response, secrets: Iterable[str]) -> Failure:
    body = json_body(response)
    error = message = ""
    if isinstance(body, dict):
        error = str(body.get("error") or "")
        message = str(body.get("message") or "")
    elif not body:
        message = response.reason_phrase or ""
    keep = list(secrets)
    return Failure(response.status_code, platform_text(error, keep, 60), platform_text(message, keep))


class Xrpc:
    """Calls XRPC methods for one channel. ``secrets()`` lists what must never appear in an error."""

    def __init__(self, http: httpx.AsyncClient, channel: str, secrets: Callable[[], list[str]]) -> None:
        self._http = http
        self._channel = channel
        self._secrets = secrets

    def failure(self, response: httpx.Response) -> Failure:
        return failure(response, self._secrets())

    async def call(self, method: str, base: str, nsid: str, *, token: str | None = None,
                   params: dict[str, str] | None = None, json: Any = None, content: bytes | None = None,
                   content_type: str | None = None, sending: bool = False) -> httpx.Response:
        """One request; ``sending``: it may create a post (an error after it left is ambiguous)."""
        headers = {"Accept": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if content_type is not None:
            headers["Content-Type"] = content_type
        action = f"{method} {nsid}"
        try:
            return await self._http.request(method, f"{base}/xrpc/{nsid}", params=params, json=json,
                                            content=content, headers=headers, follow_redirects=False)
        except httpx.HTTPError as exc:
            raise self._clean(transport_error(self._channel, exc, action=action, sending=sending)) from None
        except httpx.InvalidURL as exc:
            raise PermanentPublishError(self._channel, f"{action}: invalid service URL "
                                                       f"({describe_exception(exc)})") from None

    def _clean(self, exc: PublishError) -> PublishError:
        """A transport error's text quotes the exception; make sure no secret rides along."""
        exc.reason = platform_text(exc.reason, self._secrets(), 500)
        exc.message = f"channel {exc.channel!r}: {exc.reason}"
        exc.args = (exc.message,)
        return exc
