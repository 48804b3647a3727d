"""The Discord publisher: executes one channel's webhook over the shared httpx client.

``publish`` sends ``POST {api_base}/v10/webhooks/{id}/{token}?wait=true`` (``&thread_id=…``
with ``thread_id``) with the body the renderer built (``extra["payload"]``: one embed, or
content; ``thread_name`` for a forum) and ``allowed_mentions: {"parse": []}``, always: a
post's text can never ping ``@everyone``, a role or a user. ``wait=true`` makes Discord
answer with the message, whose id is the delivery's ``remote_id``; its URL is known once
``initialize`` has read the webhook's server (``GET`` of the webhook, which also tells a
deleted webhook at start).

Discord has no idempotency key for webhooks: ``idempotent`` is False. A send whose answer
was lost (read timeout, connection dropped after sending, a 2xx without a message id) raises
``AmbiguousPublishError``; the delivery service then marks the delivery ``unknown`` unless the
channel sets ``at_least_once = true`` (a webhook cannot list the channel's messages, so the
post cannot be looked up either).

Edits and deletions (``edit``, ``delete``: the ``Edits`` and ``Deletes`` abilities) ``PATCH`` and
``DELETE`` the message by its id; a message already gone (10008) is gone for a deletion and
``MessageGoneError`` for an edit.

Rate limits (``limits.DiscordLimits``, shared by the channels on one API host): before each
request a spent bucket, a global limit or a spent invalid-request budget raises ``RetryAfter``
for exactly the wait, sending nothing; every answer's ``X-RateLimit-*`` headers are recorded.
Errors: ``answers.Classifier``. The webhook URL and its token are the secret: no error, log
line or ``repr`` contains either (errors never chain an httpx exception, which may hold the URL).
"""

from __future__ import annotations

import logging
import re
from typing import Any

import httpx

from bot.errors import (
    AmbiguousPublishError,
    CredentialsError,
    MessageGoneError,
    PermanentPublishError,
    PublishError,
    RetryablePublishError,
    RetryAfter,
)
from bot.log import event
from bot.publishers.api import AccountInfo, ChangeResult, PublisherContext, PublishResult, RenderedMessage, RenderEnv
from bot.publishers.discord.answers import UNKNOWN_MESSAGE, Classifier, discord_error, rate_limit_delay
from bot.publishers.discord.limits import DiscordLimits
from bot.publishers.discord.options import DiscordOptions, WebhookAddress
from bot.publishers.http import describe_status, json_body, platform_text, transport_error

ALLOWED_MENTIONS: dict[str, list[str]] = {"parse": []}
"""Nothing in a message may ping anyone (docs.discord.com, Allowed Mentions Object)."""
MESSAGE_LINK = "https://discord.com/channels/{guild}/{channel}/{message}"
"""Where a message is seen in the Discord app."""
NAME_LIMIT = 100
"""Longest webhook name shown by ``check``."""

_SNOWFLAKE = re.compile(r"^[0-9]{1,20}$")


def _snowflake(value: Any) -> str | None:
    """A Discord id from an answer (a string of digits, or an int), else None."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        value = str(value)
    return value if isinstance(value, str) and _SNOWFLAKE.match(value) else None


class DiscordPublisher:
    """Executes one webhook. Not idempotent: an ambiguous send becomes ``unknown`` unless at-least-once."""

    idempotent = False

    def __init__(self, options: DiscordOptions, ctx: PublisherContext, address: WebhookAddress,
                 limits: DiscordLimits, secrets: list[str]) -> None:
        self._options = options
        self._channel = options.name
        self._http = ctx.http
        self._clock = ctx.clock
        self._log = ctx.logger
        self._address = address
        self._limits = limits
        self._secrets = [s for s in secrets if s]
        self._answers = Classifier(options.name, options.webhook_url_env, self._secrets, ctx.clock)
        self._guild_id: str | None = None
        self._closed = False

    def __repr__(self) -> str:  # never the URL: it holds the token
        return f"DiscordPublisher(channel={self._channel!r}, webhook_id={self._address.webhook_id!r})"

    @property
    def options(self) -> DiscordOptions:
        return self._options

    @property
    def render_env(self) -> RenderEnv:
        return RenderEnv()

    async def initialize(self) -> None:
        """Read the webhook (``GET``): its server, for message links. A deleted webhook or a rejected token
        raises ``CredentialsError`` (the service pauses the channel); anything else only logs a warning,
        so an unreachable Discord does not stop start-up."""
        try:
            await self._read_webhook()
        except CredentialsError:
            raise
        except PublishError as exc:
            event(self._log, logging.WARNING, "discord.webhook_unread", channel=self._channel,
                  error=exc.reason, note="message links stay unknown until a restart; sending goes on")

    async def publish(self, message: RenderedMessage, *, idempotency_key: str) -> PublishResult:
        body = self._body(message)
        action = "POST execute webhook"
        response = await self._request("POST", "", action=action, sending=True, json=body,
                                       params=self._params(wait=True))
        if not response.is_success:
            raise self._failure(response, action=action)
        return self._result(response, action=action)

    async def check(self) -> AccountInfo:
        """``GET`` the webhook (read-only; sends nothing): its name, channel and server."""
        data = await self._read_webhook()
        name = platform_text(str(data.get("name") or "?"), self._secrets, NAME_LIMIT)
        channel_id = _snowflake(data.get("channel_id"))
        detail: dict[str, Any] = {"webhook": name, "webhook_id": self._address.webhook_id,
                                  "channel_id": channel_id, "guild_id": self._guild_id,
                                  "mode": self._options.mode, "api_base": self._options.api_base}
        if self._options.thread_id is not None:
            detail["thread_id"] = self._options.thread_id
        if self._options.forum:
            detail["forum"] = True
        where = f"thread {self._options.thread_id} of channel {channel_id}" if self._options.thread_id \
            else f"{'forum ' if self._options.forum else ''}channel {channel_id}"
        return AccountInfo(display=f"webhook {name!r} → {where} (server {self._guild_id})", detail=detail)

    async def edit_message(self, message_id: str, message: RenderedMessage) -> PublishResult:
        """``PATCH`` a message this webhook sent (content, embeds) - a thin call for the edit pipeline."""
        response, action = await self._patch(message_id, message)
        if not response.is_success:
            raise self._failure(response, action=action)
        return self._result(response, action=action)

    async def edit(self, remote_id: str, message: RenderedMessage) -> ChangeResult:
        """The ``Edits`` ability (``bot.publishers.api``): ``PATCH`` the message to show ``message``. A repeat
        sets the same content again (harmless); a message that is gone (10008) raises ``MessageGoneError``."""
        response, action = await self._patch(remote_id, message)
        if response.is_success:
            return ChangeResult()
        code, _ = discord_error(json_body(response))
        if response.status_code == 404 and code == UNKNOWN_MESSAGE:
            raise MessageGoneError(self._channel, f"Discord: message {remote_id} is not there (any more)")
        raise self._failure(response, action=action)

    async def delete(self, remote_id: str) -> ChangeResult:
        """The ``Deletes`` ability: ``delete_message`` (a message already gone counts as deleted)."""
        await self.delete_message(remote_id)
        return ChangeResult()

    async def _patch(self, message_id: str, message: RenderedMessage) -> tuple[httpx.Response, str]:
        mid = self._message_id(message_id)
        body = {k: v for k, v in self._body(message).items() if k != "thread_name"}  # a thread is named once
        action = "PATCH webhook message"
        response = await self._request("PATCH", f"/messages/{mid}", action=action, sending=False, json=body,
                                       params=self._params(wait=False, message_id=mid))
        return response, action

    async def delete_message(self, message_id: str) -> None:
        """``DELETE`` a message this webhook sent; one that is already gone (10008) counts as deleted."""
        mid = self._message_id(message_id)
        action = "DELETE webhook message"
        response = await self._request("DELETE", f"/messages/{mid}", action=action, sending=False,
                                       params=self._params(wait=False, message_id=mid))
        if response.is_success:
            return
        code, _ = discord_error(json_body(response))
        if response.status_code == 404 and code == UNKNOWN_MESSAGE:
            return
        raise self._failure(response, action=action)

    async def aclose(self) -> None:
        """Stop sending: later calls fail as retryable, nothing is sent. The HTTP client is the caller's."""
        self._closed = True

    # -- helpers -----------------------------------------------------------------------------

    def _body(self, message: RenderedMessage) -> dict[str, Any]:
        """The JSON body: the renderer's payload (else the text as content) and ``allowed_mentions``."""
        payload = message.extra.get("payload")
        body: dict[str, Any] = dict(payload) if isinstance(payload, dict) else {"content": message.text}
        body["allowed_mentions"] = ALLOWED_MENTIONS  # last: a payload cannot turn pings back on
        return body

    def _params(self, *, wait: bool, message_id: str | None = None) -> dict[str, str]:
        """Query parameters: ``wait``, and the thread a message is in (``thread_id``; on a forum, the
        thread a post opened, whose id is its starter message's)."""
        params = {"wait": "true"} if wait else {}
        if self._options.thread_id is not None:
            params["thread_id"] = self._options.thread_id
        elif self._options.forum and message_id is not None:
            params["thread_id"] = message_id
        return params

    def _message_id(self, value: str) -> str:
        mid = _snowflake(value)
        if mid is None:
            raise PermanentPublishError(self._channel, "not a Discord message id (expected digits)")
        return mid

    async def _read_webhook(self) -> dict[str, Any]:
        action = "GET webhook"
        response = await self._request("GET", "", action=action, sending=False)
        if not response.is_success:
            raise self._failure(response, action=action)
        data = json_body(response)
        if not isinstance(data, dict) or _snowflake(data.get("channel_id")) is None:
            raise RetryablePublishError(self._channel, f"{action}: Discord answered "
                                                       f"{describe_status(response.status_code)} without a webhook")
        self._guild_id = _snowflake(data.get("guild_id")) or self._guild_id
        return data

    def _result(self, response: httpx.Response, *, action: str) -> PublishResult:
        data = json_body(response)
        message_id = _snowflake(data.get("id")) if isinstance(data, dict) else None
        if message_id is None:
            raise AmbiguousPublishError(self._channel, f"{action}: Discord answered "
                                                       f"{describe_status(response.status_code)} without a message "
                                                       "id; the message may or may not have been posted")
        assert isinstance(data, dict)
        channel_id = _snowflake(data.get("channel_id"))
        guild_id = _snowflake(data.get("guild_id")) or self._guild_id
        url = MESSAGE_LINK.format(guild=guild_id, channel=channel_id, message=message_id) \
            if guild_id and channel_id else None
        return PublishResult(remote_id=message_id, url=url)

    async def _request(self, method: str, suffix: str, *, action: str, sending: bool,
                       json: Any = None, params: dict[str, str] | None = None) -> httpx.Response:
        """One call to the webhook (``suffix`` after its URL), paced by ``DiscordLimits``; any transport
        failure as a ``PublishError`` (ambiguous after the request left, when ``sending``)."""
        if self._closed:
            raise RetryablePublishError(self._channel, f"{action}: the publisher is closed (nothing was sent)")
        route = f"{method}{' messages' if suffix else ''} {self._address.webhook_id}"
        wait = self._limits.wait_before(route, self._clock.now())
        if wait is not None:
            raise RetryAfter(self._channel, wait.seconds, f"{action}: {wait.why}; waiting {wait.seconds:.3f}s "
                                                          "(nothing was sent)")
        try:
            response = await self._http.request(method, f"{self._address.url}{suffix}", json=json, params=params,
                                                headers={"Accept": "application/json"}, follow_redirects=False)
        except httpx.HTTPError as exc:
            raise self._scrubbed(transport_error(self._channel, exc, action=action, sending=sending)) from None
        except httpx.InvalidURL:
            raise PermanentPublishError(self._channel, f"{action}: unusable URL; check api_base and the webhook "
                                                       f"URL in {self._options.webhook_url_env}") from None
        except Exception as exc:  # noqa: BLE001 - e.g. a closed client: reported, never raised as is (URL)
            raise RetryablePublishError(self._channel, f"{action}: {type(exc).__name__} in the HTTP client "
                                                       "(nothing was sent)") from None
        headers = {k.lower(): v for k, v in response.headers.items()}
        now = self._clock.now()
        self._limits.observe(route, response.status_code, headers, now)
        if response.status_code == 429:
            delay, is_global = rate_limit_delay(response, now, json_body(response))
            if delay is not None:
                self._limits.rate_limited(route, delay, now, is_global=is_global)
        return response

    def _failure(self, response: httpx.Response, *, action: str) -> PublishError:
        delay, is_global = (rate_limit_delay(response, self._clock.now(), json_body(response))
                            if response.status_code == 429 else (None, False))
        return self._answers.classify(response, action=action, delay=delay, is_global=is_global)

    def _scrubbed(self, error: PublishError) -> PublishError:
        """The same error with anything secret in its text redacted (an httpx message may quote the URL)."""
        error.reason = platform_text(error.reason, self._secrets, 600)
        error.message = f"channel {self._channel!r}: {error.reason}"
        error.args = (error.message,)
        return error
