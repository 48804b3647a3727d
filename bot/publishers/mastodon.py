"""The Mastodon publisher: posts statuses with httpx (the shared client) and an Idempotency-Key.

Channel keys (on top of ``MastodonRenderOptions``: visibility, language,
spoiler_text, max_characters)::

    [[channels]]
    name = "social"
    platform = "mastodon"
    instance = "https://mastodon.example"
    token_env = "MASTODON_TOKEN"      # a user token with scope write:statuses

Every ``POST /api/v1/statuses`` carries ``Idempotency-Key: <idempotency_key>``.
Mastodon keeps the key per account for an hour and answers a repeat with the
status it already created, so a send whose answer was lost can be retried
safely: the publisher is ``idempotent``.

Start-up reads the instance's character limit and URL weight from
``/api/v2/instance`` (then ``/api/v1/instance``, then 500/23) and never fails
over it. The token travels only in the Authorization header; no error message
contains it.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import Field, field_validator

from bot.domain.models import Post
from bot.errors import (
    AmbiguousPublishError,
    ContentRejectedError,
    CredentialsError,
    PermanentPublishError,
    PublishError,
    RetryablePublishError,
    RetryAfter,
)
from bot.log import event
from bot.publishers.api import (
    API_VERSION,
    AccountInfo,
    ChannelOptions,
    PublisherContext,
    PublishResult,
    RenderedMessage,
    RenderEnv,
)
from bot.publishers.http import (
    ENV_NAME_PATTERN,
    HTTP_URL_PATTERN,
    classify_status,
    describe_exception,
    describe_status,
    json_body,
    parse_reset_iso,
    parse_retry_after,
    redact,
    require_secret,
    shorten,
    transport_error,
)
from bot.render.options import MastodonRenderOptions

DEFAULT_MAX_CHARACTERS = 500
DEFAULT_URL_LENGTH = 23
RATE_LIMIT_FALLBACK = 300.0
"""Seconds to wait after a 429 without a usable X-RateLimit-Reset (Mastodon's window is 5 minutes)."""


class MastodonOptions(MastodonRenderOptions):
    """A Mastodon channel's table: render keys plus the instance and the token variable."""

    instance: str = Field(pattern=HTTP_URL_PATTERN)
    """Base URL of the instance, e.g. ``https://mastodon.social``."""
    token_env: str = Field(default="MASTODON_TOKEN", pattern=ENV_NAME_PATTERN)
    """Environment variable holding the access token (scope ``write:statuses``)."""

    @field_validator("instance")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")


def _positive_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value > 0:
        return value
    if isinstance(value, str) and value.isdigit() and int(value) > 0:
        return int(value)
    return None


def _limits_from_instance(data: Any) -> tuple[int | None, int | None]:
    """(max_characters, characters_reserved_per_url) from a v2 or v1 Instance entity."""
    if not isinstance(data, dict):
        return None, None
    config = data.get("configuration")
    statuses = config.get("statuses") if isinstance(config, dict) else None
    if isinstance(statuses, dict):
        return (_positive_int(statuses.get("max_characters")),
                _positive_int(statuses.get("characters_reserved_per_url")))
    # Pleroma/Akkoma v1 answers
    return _positive_int(data.get("max_toot_chars")), None


class MastodonPublisher:
    """Posts statuses to one account on one instance. Idempotent through Idempotency-Key."""

    idempotent = True

    def __init__(self, options: MastodonOptions, ctx: PublisherContext, token: str) -> None:
        self._options = options
        self._channel = options.name
        self._http = ctx.http
        self._log = ctx.logger
        self._clock = ctx.clock
        self._token = token
        self._host = urlsplit(options.instance).netloc
        self._max_chars = DEFAULT_MAX_CHARACTERS
        self._url_length = DEFAULT_URL_LENGTH

    def __repr__(self) -> str:
        return f"MastodonPublisher(channel={self._channel!r}, instance={self._options.instance!r})"

    @property
    def render_env(self) -> RenderEnv:
        return RenderEnv(max_chars=self._options.max_characters or self._max_chars, url_length=self._url_length)

    async def initialize(self) -> None:
        """Learn the instance's limits. Never raises: falls back to 500 characters / 23 per URL."""
        problems: list[str] = []
        for path in ("/api/v2/instance", "/api/v1/instance"):
            try:
                response = await self._request("GET", path, auth=False, sending=False, action=f"GET {path}")
            except PublishError as exc:
                problems.append(exc.reason)
                continue
            if not response.is_success:
                problems.append(f"GET {path}: {describe_status(response.status_code)}")
                continue
            max_chars, url_length = _limits_from_instance(json_body(response))
            if max_chars is None:
                problems.append(f"GET {path}: no configuration.statuses.max_characters in the answer")
                continue
            self._max_chars = max_chars
            self._url_length = url_length or DEFAULT_URL_LENGTH
            return
        event(self._log, logging.WARNING, "mastodon.instance_limits_unknown", channel=self._channel,
              instance=self._host, error="; ".join(problems),
              using=f"max_characters={self._max_chars} characters_reserved_per_url={self._url_length}")

    async def publish(self, message: RenderedMessage, *, idempotency_key: str) -> PublishResult:
        extra = message.extra
        payload: dict[str, Any] = {
            "status": message.text,
            "visibility": extra.get("visibility") or self._options.visibility,
        }
        language = extra.get("language", self._options.language)
        if language:
            payload["language"] = language
        spoiler = extra.get("spoiler_text", self._options.spoiler_text)
        if spoiler:
            payload["spoiler_text"] = spoiler
        response = await self._request("POST", "/api/v1/statuses", json=payload,
                                       headers={"Idempotency-Key": idempotency_key},
                                       sending=True, action="POST /api/v1/statuses")
        if not response.is_success:
            raise self._classify(response, action="POST /api/v1/statuses")
        body = json_body(response)
        if not isinstance(body, dict) or body.get("id") is None:
            raise AmbiguousPublishError(self._channel, f"{self._host} answered {describe_status(response.status_code)} "
                                                       "without a status id; the status may exist")
        status_id = body["id"]
        url = body.get("url") or body.get("uri")
        return PublishResult(remote_id=str(status_id), url=str(url) if url else None)

    async def check(self) -> AccountInfo:
        path = "/api/v1/accounts/verify_credentials"
        response = await self._request("GET", path, sending=False, action=f"GET {path}")
        if not response.is_success:
            raise self._classify(response, action=f"GET {path}")
        body = json_body(response)
        acct = body.get("acct") if isinstance(body, dict) else None
        if not acct:
            raise RetryablePublishError(self._channel, f"GET {path}: {self._host} answered without an account")
        assert isinstance(body, dict)
        detail: dict[str, Any] = {"instance": self._options.instance, "max_characters": self.render_env.max_chars,
                                  "characters_reserved_per_url": self._url_length}
        if body.get("url"):
            detail["profile"] = body["url"]
        return AccountInfo(display=f"@{acct} on {self._host}", detail=detail)

    async def aclose(self) -> None:
        return None  # the shared client belongs to the composition root

    # -- helpers -----------------------------------------------------------------------------

    async def _request(self, method: str, path: str, *, action: str, sending: bool, auth: bool = True,
                       json: Any = None, headers: dict[str, str] | None = None) -> httpx.Response:
        all_headers = {"Accept": "application/json", **(headers or {})}
        if auth:
            all_headers["Authorization"] = f"Bearer {self._token}"
        try:
            return await self._http.request(method, f"{self._options.instance}{path}", json=json,
                                            headers=all_headers, follow_redirects=False)
        except httpx.HTTPError as exc:
            raise transport_error(self._channel, exc, action=action, sending=sending) from exc
        except httpx.InvalidURL as exc:
            raise PermanentPublishError(self._channel, f"{action}: invalid instance URL "
                                                       f"({describe_exception(exc)})") from exc

    def _classify(self, response: httpx.Response, *, action: str) -> PublishError:
        """Branch on the status (the ``error`` text is translated per user locale); quote the text."""
        status = response.status_code
        body = json_body(response)
        error = body.get("error") if isinstance(body, dict) else None
        text = redact(shorten(str(error) if error else response.reason_phrase or ""), [self._token])
        what = f"{describe_status(status)}: {text}" if text else describe_status(status)
        channel, host = self._channel, self._host
        now = self._clock.now()
        if status == 429:
            delay = parse_reset_iso(response.headers.get("X-RateLimit-Reset"), now)
            if delay is None:
                delay = parse_retry_after(response.headers.get("Retry-After"), now)
            if delay is None:
                delay = RATE_LIMIT_FALLBACK
            return RetryAfter(channel, delay, f"{host} rate limit ({what}); retry after {delay:.0f}s")
        if status == 401:
            return CredentialsError(channel, f"{host} rejected the access token in {self._options.token_env} "
                                             f"({what})")
        if status == 403:
            return PermanentPublishError(channel, f"{host} refused {action} ({what}); the account may be disabled, "
                                                  "unconfirmed or unapproved, or the token lacks write:statuses")
        if status == 404:
            return PermanentPublishError(channel, f"{host}: {action} not found ({what}); check `instance`")
        if status == 422:
            return ContentRejectedError(channel, f"{host} rejected the status ({what})")
        if 300 <= status < 400:
            location = response.headers.get("Location", "?")
            return PermanentPublishError(channel, f"{host} redirected {action} to {location} ({what}); "
                                                  "set `instance` to the final URL")
        retry = parse_retry_after(response.headers.get("Retry-After"), now) if status >= 500 else None
        return classify_status(channel, status, f"{host}: {text}" if text else host, retry_delay=retry)


class MastodonPlugin:
    """Entry point ``mastodon = "bot.publishers.mastodon:plugin"``."""

    name = "mastodon"
    api_version = API_VERSION
    options_model: type[ChannelOptions] = MastodonOptions

    def render(self, post: Post, options: Any, env: RenderEnv, *, plain: bool = False) -> RenderedMessage:
        from bot.render.mastodon import render_mastodon

        assert isinstance(options, MastodonOptions)
        return render_mastodon(post, options, env, plain=plain)

    def create(self, options: Any, ctx: PublisherContext) -> MastodonPublisher:
        assert isinstance(options, MastodonOptions)
        token = require_secret(ctx, options.name, options.token_env)
        return MastodonPublisher(options, ctx, token)


plugin = MastodonPlugin()
