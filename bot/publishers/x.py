"""The X (Twitter) publisher: ``POST /2/tweets`` with httpx, signed with OAuth 1.0a or a user bearer token.

Channel keys (on top of ``XRenderOptions``)::

    [[channels]]
    name = "x-main"
    platform = "x"
    api_base = "https://api.x.com"
    # OAuth 1.0a user context (default; tokens do not expire; get them with `tagrelay x-auth`):
    consumer_key_env = "X_CONSUMER_KEY"
    consumer_secret_env = "X_CONSUMER_SECRET"
    access_token_env = "X_ACCESS_TOKEN"
    access_token_secret_env = "X_ACCESS_TOKEN_SECRET"
    # ... or an OAuth 2.0 user access token instead (expires after 2 hours unless refreshed outside):
    # bearer_token_env = "X_USER_TOKEN"

Requests go through the shared ``httpx.AsyncClient`` to ``api_base`` (tweepy
hard-codes its host, so it is only used for the interactive token flow in
``x_auth``). OAuth 1.0a signing uses oauthlib, over the URL actually
requested; the JSON body is covered by ``oauth_body_hash`` only.

X has no idempotency key: ``idempotent`` is False. A resend of a post whose
answer was lost meets X's duplicate check (403 "duplicate content"), raised as
``DuplicateContentError``, which the delivery service records as sent.

The featured image is opt-in (``send_image = true``): on pay-per-use X the
upload and the alt text are requests of their own on top of the post (the
alt text is priced as "Media Metadata", $0.005, X's price list read
2026-08-28; docs/configuration.md). The image is fetched once per process and
fitted to X's image limits (5 MB; JPEG, PNG or WebP); ``POST /2/media/upload``
sends it (JSON, base64 ``media``, ``media_category = tweet_image``), a
``processing_info`` answer is waited for (``GET /2/media/upload?command=STATUS``,
bounded), ``POST /2/media/metadata`` sets the alt text (``alt_text.text``, at
most 1,000 characters) and the post attaches it (``media.media_ids``). An image
that cannot be fetched or uploaded is left out and the post goes out without
it (``media.skipped``); an alt text X refuses leaves the image without one
(``media.alt_skipped``). The media id is remembered per idempotency key, so a
post that fails after its upload reuses it on the retry (one upload per
delivery, not per attempt); after a crash the retry uploads again and the
unused upload expires at X (``expires_after_secs``, a day).

X's API has no edit: the publisher has no ``edit``, so an edited post is left
as it is on X (``status`` says so). It deletes (``DELETE /2/tweets/:id``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Generator, Sequence
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
from oauthlib.oauth1 import Client as OAuth1Client

from bot.domain.models import Post
from bot.errors import (
    AmbiguousPublishError,
    ChangeRefusedError,
    ContentRejectedError,
    CredentialsError,
    CreditsExhaustedError,
    DuplicateContentError,
    MessageGoneError,
    PermanentPublishError,
    PublishError,
    RetryablePublishError,
    RetryAfter,
)
from bot.log import event
from bot.media import JPEG, PNG, WEBP, Image
from bot.publishers.api import (
    API_VERSION,
    AccountInfo,
    ChangeResult,
    ChannelOptions,
    PublisherContext,
    PublishResult,
    RenderedMessage,
    RenderEnv,
)
from bot.publishers.attachments import UploadMemory, image_for
from bot.publishers.http import (
    ENV_NAME_PATTERN,
    HTTP_URL_PATTERN,
    KIND_LIMIT,
    LOCATION_LIMIT,
    classify_status,
    describe_exception,
    describe_status,
    json_body,
    parse_reset_epoch,
    parse_retry_after,
    platform_text,
    require_secret,
    transport_error,
)
from bot.publishers.x_budget import XBudgetOptions
from bot.render.x import render_x
from bot.validation import Field, field_validator, model_validator

RATE_LIMIT_FALLBACK = 900.0
"""Seconds to wait after a 429 without usable x-rate-limit headers (X's window is 15 minutes)."""
IMAGE_BYTES = 5 * 1024 * 1024
"""X's limit for an image (``tweet_image``)."""
IMAGE_TYPES = frozenset({JPEG, PNG, WEBP})
ALT_TEXT_CHARS = 1000
"""X's limit for an image's alt text."""
MEDIA_POLL_DELAYS: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 8.0)
"""Seconds before each processing check of an upload that answered with ``processing_info`` (at most
the ``check_after_secs`` X names, when shorter)."""
MEDIA_UPLOAD = "/2/media/upload"
MEDIA_METADATA = "/2/media/metadata"

_OAUTH1_KEYS = ("consumer_key_env", "consumer_secret_env", "access_token_env", "access_token_secret_env")
# (remaining, reset) header pairs, most specific window last; a 429 waits for the latest exhausted one.
_LIMIT_HEADERS = (
    ("x-rate-limit-remaining", "x-rate-limit-reset"),
    ("x-user-limit-24hour-remaining", "x-user-limit-24hour-reset"),
    ("x-app-limit-24hour-remaining", "x-app-limit-24hour-reset"),
)


class XOptions(XBudgetOptions):
    """An X channel's table: render keys, spending keys (``bot.publishers.x_budget``), the API base and the
    credential variable names.

    Auth style: if ``bearer_token_env`` is set the channel uses that OAuth 2.0
    user token; otherwise OAuth 1.0a with the four ``*_env`` names (defaults
    shown). Setting ``bearer_token_env`` together with any OAuth 1.0a key is an error.
    """

    api_base: str = Field(default="https://api.x.com", pattern=HTTP_URL_PATTERN)
    consumer_key_env: str = Field(default="X_CONSUMER_KEY", pattern=ENV_NAME_PATTERN)
    consumer_secret_env: str = Field(default="X_CONSUMER_SECRET", pattern=ENV_NAME_PATTERN)
    access_token_env: str = Field(default="X_ACCESS_TOKEN", pattern=ENV_NAME_PATTERN)
    access_token_secret_env: str = Field(default="X_ACCESS_TOKEN_SECRET", pattern=ENV_NAME_PATTERN)
    bearer_token_env: str | None = Field(default=None, pattern=ENV_NAME_PATTERN)
    """OAuth 2.0 user access token (scopes tweet.write tweet.read users.read; media.write for send_image). Not an
    app-only token."""
    at_least_once: bool = True
    """Resend a post whose outcome is unknown. Safe on X: the same text again is refused as
    "duplicate content", which tagrelay records as sent. Set false to mark such posts
    ``unknown`` instead (an admin then decides with ``tagrelay retry``)."""

    @field_validator("api_base")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @model_validator(mode="after")
    def _one_auth_style(self) -> XOptions:
        explicit = [key for key in _OAUTH1_KEYS if key in self.model_fields_set]
        if self.bearer_token_env is not None and explicit:
            raise ValueError(f"configure either bearer_token_env (OAuth 2.0 user token) or the OAuth 1.0a keys "
                             f"({', '.join(_OAUTH1_KEYS)}), not both; found bearer_token_env and "
                             f"{', '.join(explicit)}")
        return self

    @property
    def auth_style(self) -> Literal["oauth1", "oauth2"]:
        return "oauth2" if self.bearer_token_env is not None else "oauth1"

    def budget_account(self) -> str:
        """The X account for ``account_budget``: channels with the same api_base and user token variable."""
        return f"x:{self.api_base}:{self.bearer_token_env or self.access_token_env}"


class OAuth1Signer(httpx.Auth):
    """Signs each request with OAuth 1.0a HMAC-SHA1 (RFC 5849) over the URL actually requested.

    Non-form bodies (JSON) are not parameters; oauthlib adds ``oauth_body_hash``
    for them, as tweepy's requests-oauthlib does.
    """

    requires_request_body = True

    def __init__(self, consumer_key: str, consumer_secret: str, token: str, token_secret: str) -> None:
        self._client = OAuth1Client(consumer_key, client_secret=consumer_secret, resource_owner_key=token,
                                    resource_owner_secret=token_secret, signature_method="HMAC-SHA1")

    def __repr__(self) -> str:
        return "OAuth1Signer(***)"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        body = request.content or None
        headers = {"Content-Type": request.headers["Content-Type"]} if "Content-Type" in request.headers else {}
        _, signed, _ = self._client.sign(str(request.url), http_method=request.method, body=body, headers=headers)
        request.headers["Authorization"] = signed["Authorization"]
        yield request


class BearerAuth(httpx.Auth):
    """``Authorization: Bearer <OAuth 2.0 user access token>``."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __repr__(self) -> str:
        return "BearerAuth(***)"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request


def rate_limit_delay(headers: httpx.Headers, now: datetime) -> tuple[float | None, str]:
    """Seconds until X lifts a 429, from the x-*-limit-* headers (epoch seconds), and which limit hit.

    The latest reset among exhausted windows (remaining == 0) wins, so a spent
    24-hour cap is not retried after the 15-minute window. None if no usable header.
    """
    exhausted: list[tuple[float, str]] = []
    for remaining_name, reset_name in _LIMIT_HEADERS:
        delay = parse_reset_epoch(headers.get(reset_name), now)
        if delay is not None and (headers.get(remaining_name) or "").strip() == "0":
            exhausted.append((delay, reset_name.removesuffix("-reset")))
    if exhausted:
        return max(exhausted)
    delay = parse_reset_epoch(headers.get("x-rate-limit-reset"), now)
    return delay, "x-rate-limit"


def _data(body: Any) -> dict[str, Any]:
    """The ``data`` object of an X answer (v2), or the answer itself when it has none (v1.1 shape)."""
    if not isinstance(body, dict):
        return {}
    data = body.get("data")
    return data if isinstance(data, dict) else body


def _problem_text(body: Any) -> tuple[str, str]:
    """(detail, problem kind) from an X error body: v2 problem JSON or the older ``errors`` list."""
    if not isinstance(body, dict):
        return "", ""
    detail = body.get("detail") or body.get("title") or ""
    kind = str(body.get("type") or "")
    errors = body.get("errors")
    if not detail and isinstance(errors, list) and errors and isinstance(errors[0], dict):
        detail = errors[0].get("message") or errors[0].get("detail") or ""
    return str(detail), kind.rsplit("/", 1)[-1] if kind.startswith("http") else kind


class XPublisher:
    """Posts to one X account. Not idempotent; duplicates are detected by X itself."""

    idempotent = False
    deduplicates = True
    """X refuses a resend of the same text as duplicate content (recorded ``sent``): a channel that resends
    interrupted sends (``at_least_once``, the default) may send in claimed groups."""

    def __init__(self, options: XOptions, ctx: PublisherContext, auth: httpx.Auth, secrets: list[str], *,
                 media_poll_delays: Sequence[float] = MEDIA_POLL_DELAYS) -> None:
        self._options = options
        self._channel = options.name
        self._http = ctx.http
        self._clock = ctx.clock
        self._auth = auth
        self._secrets = secrets
        self._host = urlsplit(options.api_base).netloc
        self._log = ctx.logger
        self._uploads = UploadMemory(ctx.clock)
        self._media_poll_delays = tuple(media_poll_delays)

    def __repr__(self) -> str:
        return f"XPublisher(channel={self._channel!r}, api_base={self._options.api_base!r}, " \
               f"auth={self._options.auth_style})"

    @property
    def render_env(self) -> RenderEnv:
        return RenderEnv(max_chars=280, url_length=23)

    async def initialize(self) -> None:
        return None  # nothing to open: the shared client is the composition root's

    async def publish(self, message: RenderedMessage, *, idempotency_key: str) -> PublishResult:
        payload: dict[str, Any] = {"text": message.text}
        media_id = await self._media_for(message, idempotency_key)
        if media_id is not None:
            payload["media"] = {"media_ids": [media_id]}
        response = await self._request("POST", "/2/tweets", payload, sending=True)
        if not response.is_success:
            error = self._classify(response, action="POST /2/tweets")
            if isinstance(error, ContentRejectedError | DuplicateContentError):
                self._uploads.forget(idempotency_key)
            raise error
        self._uploads.forget(idempotency_key)
        body = json_body(response)
        data = body.get("data") if isinstance(body, dict) else None
        post_id = data.get("id") if isinstance(data, dict) else None
        if not post_id:
            raise AmbiguousPublishError(self._channel, f"X answered {describe_status(response.status_code)} without "
                                                       "a post id; the post may exist")
        return PublishResult(remote_id=str(post_id), url=f"https://x.com/i/web/status/{post_id}")

    async def delete(self, remote_id: str) -> ChangeResult:
        """``DELETE /2/tweets/:id`` (X has no edit endpoint). Priced per request and limited to 50 per 15
        minutes per user: a 429 holds the channel until ``x-rate-limit-reset``. A post that is not there
        (404, or ``"deleted": false``) is gone already."""
        if not remote_id.isdigit() or len(remote_id) > 30:
            raise ChangeRefusedError(self._channel, "the post id recorded for it is not an X post id")
        path = f"/2/tweets/{remote_id}"
        response = await self._request("DELETE", path, None, sending=True)
        if response.status_code == 404:
            raise MessageGoneError(self._channel, f"X: post {remote_id} is not there (any more)")
        if not response.is_success:
            raise self._classify(response, action=f"DELETE {path}")
        body = json_body(response)
        data = body.get("data") if isinstance(body, dict) else None
        if isinstance(data, dict) and data.get("deleted") is False:
            return ChangeResult(already='X answered "deleted": false (the post is not there)')
        return ChangeResult()

    async def check(self) -> AccountInfo:
        response = await self._request("GET", "/2/users/me", None, sending=False)
        if not response.is_success:
            raise self._classify(response, action="GET /2/users/me")
        body = json_body(response)
        data = body.get("data") if isinstance(body, dict) else None
        username = data.get("username") if isinstance(data, dict) else None
        if not username:
            raise RetryablePublishError(self._channel, "GET /2/users/me: X answered without a username")
        assert isinstance(data, dict)
        return AccountInfo(display=f"@{username}", detail={"id": data.get("id"), "name": data.get("name"),
                                                           "auth": self._options.auth_style,
                                                           "api_base": self._options.api_base})

    async def aclose(self) -> None:
        return None

    # -- media -------------------------------------------------------------------------------

    async def _media_for(self, message: RenderedMessage, key: str) -> str | None:
        """The media id to attach for this delivery (an earlier attempt's upload, or a new one); None when
        there is no image or it cannot be used (logged: the post goes out without it)."""
        if not message.image_url:
            return None
        known = self._uploads.get(key, message.image_url)
        if known is not None:
            event(self._log, logging.INFO, "media.reused", channel=self._channel, media_id=known.media_id)
            return known.media_id
        image = await image_for(message, self._http, channel=self._channel, log=self._log, max_bytes=IMAGE_BYTES,
                                accept=IMAGE_TYPES)
        if image is None:
            return None
        try:
            media_id = await self._upload(image)
        except PublishError as exc:
            event(self._log, logging.WARNING, "media.skipped", channel=self._channel, reason=exc.reason,
                  note="the post goes out without the image")
            return None
        if image.alt:
            await self._describe(media_id, image.alt)
        self._uploads.remember(key, message.image_url, media_id)
        return media_id

    async def _upload(self, image: Image) -> str:
        """``POST /2/media/upload`` (one request, base64 in JSON), then wait for any processing; the id."""
        action = f"POST {MEDIA_UPLOAD}"
        payload = {"media": base64.b64encode(image.data).decode("ascii"), "media_category": "tweet_image",
                   "media_type": image.mime}
        response = await self._request("POST", MEDIA_UPLOAD, payload, sending=True)
        if not response.is_success:
            raise self._classify(response, action=action)
        data = _data(json_body(response))
        media_id = data.get("id") or data.get("media_id_string") or data.get("media_id")
        if not media_id:
            raise RetryablePublishError(self._channel, f"{action}: X answered {describe_status(response.status_code)} "
                                                       "without a media id")
        media_id = str(media_id)
        processing = data.get("processing_info")
        for delay in self._media_poll_delays:
            state = processing.get("state") if isinstance(processing, dict) else None
            if state in (None, "succeeded"):
                return media_id
            if state == "failed":
                raise ContentRejectedError(self._channel, f"X could not process the image ({action})")
            after = processing.get("check_after_secs") if isinstance(processing, dict) else None
            wait = min(delay, float(after)) if isinstance(after, int | float) and after >= 0 else delay
            await asyncio.sleep(wait)
            status = await self._request("GET", MEDIA_UPLOAD, None, sending=False,
                                         params={"command": "STATUS", "media_id": media_id})
            if not status.is_success:
                raise self._classify(status, action=f"GET {MEDIA_UPLOAD}?command=STATUS")
            processing = _data(json_body(status)).get("processing_info")
        raise RetryablePublishError(self._channel, f"X was still processing the image after "
                                                   f"{sum(self._media_poll_delays):g}s")

    async def _describe(self, media_id: str, alt: str) -> None:
        """``POST /2/media/metadata`` with the alt text; a refusal leaves the image without it (logged)."""
        text = alt if len(alt) <= ALT_TEXT_CHARS else alt[: ALT_TEXT_CHARS - 1] + "…"
        payload = {"id": media_id, "metadata": {"alt_text": {"text": text}}}
        try:
            response = await self._request("POST", MEDIA_METADATA, payload, sending=True)
            problem = None if response.is_success else self._classify(response, action=f"POST {MEDIA_METADATA}")
        except PublishError as exc:
            problem = exc
        if problem is not None:
            event(self._log, logging.WARNING, "media.alt_skipped", channel=self._channel, reason=problem.reason,
                  note="the image goes out without its alt text")

    # -- helpers -----------------------------------------------------------------------------

    async def _request(self, method: str, path: str, payload: dict[str, Any] | None, *,
                       sending: bool, params: dict[str, str] | None = None) -> httpx.Response:
        action = f"{method} {path}"
        content = json.dumps(payload, ensure_ascii=False).encode("utf-8") if payload is not None else None
        headers = {"Accept": "application/json"}
        if content is not None:
            headers["Content-Type"] = "application/json"
        try:
            return await self._http.request(method, f"{self._options.api_base}{path}", content=content,
                                            params=params, headers=headers, auth=self._auth,
                                            follow_redirects=False)
        except httpx.HTTPError as exc:
            raise transport_error(self._channel, exc, action=action, sending=sending) from exc
        except httpx.InvalidURL as exc:
            raise PermanentPublishError(self._channel, f"{action}: invalid api_base ({describe_exception(exc)})") \
                from exc

    def _classify(self, response: httpx.Response, *, action: str) -> PublishError:
        status = response.status_code
        detail, kind = _problem_text(json_body(response))
        detail = platform_text(detail, self._secrets)
        kind = platform_text(kind, self._secrets, KIND_LIMIT)
        what = describe_status(status) + (f": {detail}" if detail else "") + (f" [{kind}]" if kind else "")
        channel = self._channel
        now = self._clock.now()
        if status == 429:
            delay, which = rate_limit_delay(response.headers, now)
            if delay is None:
                delay = RATE_LIMIT_FALLBACK
            return RetryAfter(channel, delay, f"X rate limit ({which}; {what}); retry after {delay:.0f}s")
        if status == 403 and "duplicate content" in detail.lower():
            return DuplicateContentError(channel, f"X already has a post with this text ({what})")
        if status == 403 and kind == "oauth1-permissions":
            return PermanentPublishError(channel, f"X refused {action} ({what}): set the app's permissions to "
                                                  "'Read and write', then regenerate the access token and secret")
        if status == 403:
            return PermanentPublishError(channel, f"X refused {action} ({what})")
        if status == 402:
            return CreditsExhaustedError(channel, f"X is out of credits for this app ({what}); add credits or "
                                                  "raise the spending limit in the developer console")
        if status == 401:
            if self._options.auth_style == "oauth2":
                where = f"the OAuth 2.0 user token in {self._options.bearer_token_env} (these expire after 2 hours)"
            else:
                where = "the OAuth 1.0a credentials in " + ", ".join(getattr(self._options, k) for k in _OAUTH1_KEYS)
            return CredentialsError(channel, f"X rejected {where} ({what})")
        if status == 400:
            return ContentRejectedError(channel, f"X rejected the post ({what})")
        if 300 <= status < 400:
            location = platform_text(response.headers.get("Location", "?"), self._secrets, LOCATION_LIMIT)
            return PermanentPublishError(channel, f"{self._host} redirected {action} to {location}; check api_base")
        retry = parse_retry_after(response.headers.get("Retry-After"), now) if status >= 500 else None
        return classify_status(channel, status, f"X: {detail}" if detail else "X", retry_delay=retry)


class XPlugin:
    """Entry point ``x = "bot.publishers.x:plugin"``."""

    name = "x"
    api_version = API_VERSION
    options_model: type[ChannelOptions] = XOptions

    def render(self, post: Post, options: Any, env: RenderEnv, *, plain: bool = False) -> RenderedMessage:
        assert isinstance(options, XOptions)
        return render_x(post, options, env, plain=plain)

    def create(self, options: Any, ctx: PublisherContext) -> XPublisher:
        assert isinstance(options, XOptions)
        auth: httpx.Auth
        if options.bearer_token_env is not None:
            token = require_secret(ctx, options.name, options.bearer_token_env)
            auth, secrets = BearerAuth(token), [token]
        else:
            values = [require_secret(ctx, options.name, getattr(options, key)) for key in _OAUTH1_KEYS]
            auth, secrets = OAuth1Signer(*values), values
        return XPublisher(options, ctx, auth, secrets)


plugin = XPlugin()
