"""The Threads API over the shared httpx client: one request, its JSON, and every error classified.

The token travels in the ``Authorization: Bearer`` header (the Graph API takes it there as well as in
an ``access_token`` parameter), never in a URL, except for ``refresh_access_token``, which Meta
documents with the token as a query parameter: that call's errors are built here without the URL
or the exception's text, and the log redacts ``access_token=`` in any URL.

Errors are the Graph API's ``{"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}``
(developers.facebook.com/docs/graph-api/guides/error-handling), classified by code first, then by
HTTP status:

==========================================  ==========================================================
code 190 (any subcode), 102                 ``CredentialsError``: expired (463), password changed
                                            (460), app removed (458), invalid (467) … → pause
code 4, 17, 32, 613, 80001-80014, 9;        ``RetryAfter``: ``Retry-After`` (seconds or a date), else
HTTP 429                                    the longest ``estimated_time_to_regain_access`` (minutes)
                                            of ``X-Business-Use-Case-Usage``, else ``RATE_LIMIT_FALLBACK``
code 10, 200-299, 3; HTTP 403               ``PermanentPublishError``: the token lacks a permission
code 368                                    ``PermanentPublishError``: the profile is blocked from posting
code 506                                    ``DuplicateContentError``
code 1, 2; HTTP 5xx, 408                    ``RetryablePublishError`` (``RetryAfter`` with Retry-After)
code 100, HTTP 400/413/422 on a post        ``ContentRejectedError`` (the plain rendering is tried)
any other 4xx but 401 (a read)              ``PermanentPublishError`` (``user_id``, ``api_version``)
anything else                               ``bot.publishers.http.classify_status``
==========================================  ==========================================================
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from bot.errors import (
    ContentRejectedError,
    CredentialsError,
    DuplicateContentError,
    PermanentPublishError,
    PublishError,
    RetryablePublishError,
    RetryAfter,
)
from bot.publishers.http import (
    LOCATION_LIMIT,
    NOT_SENT_ERRORS,
    classify_status,
    describe_exception,
    describe_status,
    json_body,
    parse_retry_after,
    platform_text,
    transport_error,
)

RATE_LIMIT_FALLBACK = 900.0
"""Seconds to hold a channel after a rate-limit error that said nothing about when to come back."""
RATE_LIMIT_CODES = frozenset({4, 9, 17, 32, 613, *range(80001, 80015)})
CREDENTIAL_CODES = frozenset({102, 190})
PERMISSION_CODES = frozenset({3, 10, *range(200, 300)})
TRANSIENT_CODES = frozenset({1, 2})
MISSING_SUBCODE = 33
"""``Unsupported get request. Object with ID '…' does not exist`` (with code 100)."""
MAX_USAGE_HEADER = 8192
"""A longer ``X-Business-Use-Case-Usage`` header is not parsed."""
_SUBCODE_WORDS = {458: "the app was removed from the profile", 459: "the account is checkpointed",
                  460: "the password changed or Meta ended the session", 463: "it has expired",
                  464: "the account is unconfirmed", 467: "it is invalid", 492: "the session is invalid"}


@dataclass(frozen=True, slots=True)
class GraphError:
    """One error answer: HTTP status and the Graph error's fields (message already made safe)."""

    status: int
    code: int | None
    subcode: int | None
    message: str

    @property
    def what(self) -> str:
        codes = f"code {self.code}" + (f"/{self.subcode}" if self.subcode is not None else "") \
            if self.code is not None else ""
        text = f"{describe_status(self.status)}: {self.message}" if self.message else describe_status(self.status)
        return f"{text} [{codes}]" if codes else text

    @property
    def missing(self) -> bool:
        """The object asked for does not exist (or is not this token's to see)."""
        return self.status == 404 or (self.code == 100 and self.subcode == MISSING_SUBCODE)


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) < 12:
        return int(value.strip())
    return None


def graph_error(response: httpx.Response, secrets: Iterable[str]) -> GraphError:
    body = json_body(response)
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return GraphError(response.status_code, None, None,
                          platform_text(response.reason_phrase or "", secrets))
    message = error.get("error_user_msg") or error.get("message") or ""
    return GraphError(response.status_code, _int(error.get("code")), _int(error.get("error_subcode")),
                      platform_text(str(message), secrets))


def regain_access_delay(headers: httpx.Headers) -> float | None:
    """The longest ``estimated_time_to_regain_access`` (minutes) in ``X-Business-Use-Case-Usage``, in seconds."""
    raw = headers.get("X-Business-Use-Case-Usage")
    if not raw or len(raw) > MAX_USAGE_HEADER:
        return None
    try:
        usage = json.loads(raw)
    except ValueError:
        return None
    minutes: list[float] = []
    if isinstance(usage, dict):
        for entries in usage.values():
            for entry in entries if isinstance(entries, list) else []:
                value = entry.get("estimated_time_to_regain_access") if isinstance(entry, dict) else None
                if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < 1e6:
                    minutes.append(float(value))
    return max(minutes) * 60.0 if minutes else None


class ThreadsApi:
    """Requests to one Threads API base for one channel. ``token()`` is the token to send now; ``secrets()``
    every token value an error text must not show."""

    def __init__(self, http: httpx.AsyncClient, *, channel: str, api_base: str, api_version: str,
                 token: Callable[[], str], secrets: Callable[[], list[str]], clock_now: Callable[[], datetime],
                 token_where: Callable[[], str]) -> None:
        self._http = http
        self._channel = channel
        self._base = api_base
        self._version = api_version
        self._token = token
        self._secrets = secrets
        self._now = clock_now
        self._token_where = token_where
        self.host = urlsplit(api_base).netloc

    def url(self, path: str) -> str:
        return f"{self._base}/{self._version}/{path}"

    @staticmethod
    def node(object_id: str) -> str:
        return quote(object_id, safe="")

    async def call(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                   data: Mapping[str, str] | None = None, sending: bool, posting: bool = False,
                   missing_ok: bool = False) -> dict[str, Any] | None:
        """The JSON object of a successful answer. ``sending``: the call creates the post (an error after the
        request left is ambiguous); ``posting``: a refusal is about the message (``ContentRejectedError``);
        ``missing_ok``: an answer "no such object" returns None instead of raising."""
        action = f"{method} /{path}"
        try:
            response = await self._http.request(method, self.url(path), params=params, data=data,
                                                headers={"Accept": "application/json",
                                                         "Authorization": f"Bearer {self._token()}"},
                                                follow_redirects=False)
        except httpx.HTTPError as exc:
            raise transport_error(self._channel, exc, action=action, sending=sending) from exc
        except httpx.InvalidURL as exc:
            raise PermanentPublishError(self._channel, f"{action}: invalid api_base ({describe_exception(exc)})") \
                from exc
        if response.is_success:
            body = json_body(response)
            if not isinstance(body, dict):
                raise RetryablePublishError(self._channel, f"{action}: {self.host} answered "
                                                           f"{describe_status(response.status_code)} without JSON")
            return body
        error = graph_error(response, self._secrets())
        if missing_ok and error.missing:
            return None
        raise self.classify(response, error, action=action, posting=posting)

    async def refresh(self, token: str) -> tuple[str, float]:
        """``GET /refresh_access_token``: (new token, seconds it lasts). Raises ``PublishError`` whose text
        holds neither token nor URL."""
        action = "GET /refresh_access_token"
        try:
            response = await self._http.get(f"{self._base}/refresh_access_token",
                                             params={"grant_type": "th_refresh_token", "access_token": token},
                                             headers={"Accept": "application/json"}, follow_redirects=False)
        except httpx.HTTPError as exc:
            kind = "nothing was sent" if isinstance(exc, NOT_SENT_ERRORS) else "no answer"
            raise RetryablePublishError(self._channel, f"{action}: {type(exc).__name__} ({kind})") from None
        if not response.is_success:
            error = graph_error(response, [*self._secrets(), token])
            raise RetryablePublishError(self._channel, f"{action}: {self.host} refused the refresh ({error.what})")
        body = json_body(response)
        fresh = body.get("access_token") if isinstance(body, dict) else None
        lasts = body.get("expires_in") if isinstance(body, dict) else None
        if not isinstance(fresh, str) or not fresh.strip() or len(fresh) > 4096 or any(c.isspace() for c in fresh):
            raise RetryablePublishError(self._channel, f"{action}: {self.host} answered without a usable token")
        if isinstance(lasts, bool) or not isinstance(lasts, int | float) or not 0 < lasts < 10 * 365 * 86400:
            lasts = 60 * 86400.0  # Meta's documented lifetime
        return fresh.strip(), float(lasts)

    def classify(self, response: httpx.Response, error: GraphError, *, action: str, posting: bool) -> PublishError:
        """The module docstring's table."""
        channel, host, what, code = self._channel, self.host, error.what, error.code
        now = self._now()
        if code in CREDENTIAL_CODES:
            why = _SUBCODE_WORDS.get(error.subcode or 0, "it was rejected")
            return CredentialsError(channel, f"{host} refused the access token ({self._token_where()}): {why} "
                                             f"({what}); create a new long-lived Threads token, put it in the "
                                             f"environment variable, then `tagrelay channels resume {channel}`")
        if code in RATE_LIMIT_CODES or error.status == 429:
            delay = parse_retry_after(response.headers.get("Retry-After"), now)
            if delay is None:
                delay = regain_access_delay(response.headers)
            if delay is None:
                delay = RATE_LIMIT_FALLBACK
            return RetryAfter(channel, delay, f"{host} rate limit on {action} ({what}); retry after {delay:.0f}s")
        if code in PERMISSION_CODES or error.status == 403:
            return PermanentPublishError(channel, f"{host} refused {action} ({what}): the token needs the "
                                                  "threads_basic and threads_content_publish permissions")
        if code == 368:
            return PermanentPublishError(channel, f"{host} blocked {action} ({what}): the profile may not post "
                                                  "for now; check it in the Threads app")
        if code == 506:
            return DuplicateContentError(channel, f"{host} already has this post ({what})")
        if code in TRANSIENT_CODES or error.status >= 500 or error.status == 408:
            retry = parse_retry_after(response.headers.get("Retry-After"), now)
            if retry is not None:
                return RetryAfter(channel, retry, f"{host}: temporary error on {action} ({what}); retry after "
                                                  f"{retry:.0f}s")
            return RetryablePublishError(channel, f"{host}: temporary error on {action} ({what})")
        if posting and (code == 100 or error.status in (400, 413, 422)):
            return ContentRejectedError(channel, f"{host} refused the post ({what})")
        if 300 <= error.status < 400:
            location = platform_text(response.headers.get("Location", "?"), self._secrets(), LOCATION_LIMIT)
            return PermanentPublishError(channel, f"{host} redirected {action} to {location}; check api_base")
        if 400 <= error.status < 500 and error.status != 401:
            return PermanentPublishError(channel, f"{host} refused {action} ({what}); check the channel's user_id "
                                                  "and api_version")
        return classify_status(channel, error.status, f"{host} on {action}: {what}")
