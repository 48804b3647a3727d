"""The Telegram publisher: posts to a channel or group through python-telegram-bot's ``Bot``.

Channel keys (on top of ``TelegramRenderOptions``)::

    [[channels]]
    name = "tg-main"
    platform = "telegram"
    chat_id = "@mychannel"            # or "-1001234567890" (numeric ids become int64)
    token_env = "TG_BOT_TOKEN"         # environment variable holding the bot token
    api_base = "https://api.telegram.org"
    at_least_once = false              # resend when unsure whether a post went out

Sends are not idempotent (the Bot API has no idempotency key): a timeout after
the request left raises ``AmbiguousPublishError`` and the delivery service
decides, reading ``at_least_once``, whether to resend (risking a duplicate) or
to hold the delivery for an operator.

The bot token is part of every Bot API URL, and PTB puts it into some
exception messages. No error raised here chains a PTB exception (``from
None``) or quotes a URL, and every server text is scrubbed of the token.
"""

from __future__ import annotations

import logging
import re
import warnings
from datetime import timedelta
from typing import Any

import httpx
from pydantic import Field, field_validator
from telegram import Bot, LinkPreviewOptions, Message
from telegram import error as tg
from telegram.constants import ParseMode
from telegram.request import HTTPXRequest

from bot.domain.models import Post
from bot.errors import (
    AmbiguousPublishError,
    ChatMigratedError,
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
    describe_exception,
    redact,
    require_secret,
    shorten,
)
from bot.render.options import TelegramRenderOptions

_USERNAME = re.compile(r"^@[A-Za-z][A-Za-z0-9_]{2,31}$")
_NUMERIC_ID = re.compile(r"^-?[0-9]{1,19}$")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

# Bad Request descriptions that mean "this chat cannot be posted to" rather than "this message is bad".
_CHAT_LEVEL_BAD_REQUESTS = (
    "chat not found",
    "need administrator rights",
    "not enough rights",
    "have no rights",
    "chat_write_forbidden",
    "bot is not a member",
    "chat is deactivated",
    "peer_id_invalid",
    "chat_admin_required",
)

# httpx errors (the cause of PTB's TimedOut/NetworkError) raised before the request left.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError,
             httpx.LocalProtocolError)


def parse_chat_id(value: str) -> int | str:
    """``"@name"`` stays a string; ``"-1001234567890"`` becomes an int (channel ids exceed 32 bits).

    Raises ``ValueError`` for anything else (the options model turns it into a config error).
    """
    text = value.strip()
    if _USERNAME.match(text):
        return text
    if _NUMERIC_ID.match(text):
        number = int(text)
        if number != 0 and _INT64_MIN <= number <= _INT64_MAX:
            return number
    raise ValueError(f"chat_id must be a public @username or a numeric chat id such as -1001234567890, "
                     f"not {value!r}")


class TelegramOptions(TelegramRenderOptions):
    """A Telegram channel's table: render keys plus where and how to connect."""

    chat_id: str
    """``"@mychannel"`` for a public channel/supergroup, or the numeric id (``"-100…"``)."""
    token_env: str = Field(default="TG_BOT_TOKEN", pattern=ENV_NAME_PATTERN)
    """Environment variable holding the bot token (from @BotFather)."""
    api_base: str = Field(default="https://api.telegram.org", pattern=HTTP_URL_PATTERN)
    """Bot API server; a self-hosted telegram-bot-api server or a test fake."""
    at_least_once: bool = False
    """On an ambiguous send (timeout after the request left): resend (may duplicate) instead of holding."""

    @field_validator("chat_id", mode="before")
    @classmethod
    def _chat_id_text(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str):
            parse_chat_id(value)
            return value.strip()
        return value

    @field_validator("api_base")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @property
    def target(self) -> int | str:
        """The chat id as the Bot API wants it: int for numeric ids, ``"@name"`` otherwise."""
        return parse_chat_id(self.chat_id)


def _retry_after_seconds(exc: tg.RetryAfter) -> float:
    """PTB 22 gives int seconds (deprecated) or a timedelta (``PTB_TIMEDELTA=1``): accept both."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        value: int | float | timedelta = exc.retry_after
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value)


def _make_request(timeout: httpx.Timeout, *, pool_size: int) -> HTTPXRequest:
    """PTB's httpx transport with the same timeouts as the shared client."""
    return HTTPXRequest(
        connection_pool_size=pool_size,
        connect_timeout=timeout.connect,
        read_timeout=timeout.read,
        write_timeout=timeout.write,
        pool_timeout=timeout.pool,
        media_write_timeout=None if timeout.write is None else max(timeout.write, 20.0),
    )


class TelegramPublisher:
    """Posts to one Telegram chat with one bot token. Not idempotent."""

    idempotent = False

    def __init__(self, options: TelegramOptions, ctx: PublisherContext, token: str) -> None:
        self._options = options
        self._channel = options.name
        self._chat = options.target
        self._token = token
        self._log = ctx.logger
        timeout = ctx.http.timeout
        self._requests = (_make_request(timeout, pool_size=8), _make_request(timeout, pool_size=1))
        self._bot = Bot(
            token,
            base_url=f"{options.api_base}/bot",
            base_file_url=f"{options.api_base}/file/bot",
            request=self._requests[0],
            get_updates_request=self._requests[1],
        )

    def __repr__(self) -> str:  # never show the Bot: its repr contains the token
        return f"TelegramPublisher(channel={self._channel!r}, chat_id={self._chat!r})"

    @property
    def options(self) -> TelegramOptions:
        return self._options

    @property
    def render_env(self) -> RenderEnv:
        return RenderEnv()

    async def initialize(self) -> None:
        """Open the HTTP pools and check the token with getMe.

        A rejected token raises ``CredentialsError``; a network problem only
        logs a warning, so an unreachable Telegram does not stop start-up.
        """
        try:
            await self._bot.initialize()
        except tg.InvalidToken:
            raise CredentialsError(self._channel, f"Telegram rejected the bot token in {self._options.token_env} "
                                                  "(getMe: Unauthorized); get a new one from @BotFather") from None
        except tg.TelegramError as exc:
            event(self._log, logging.WARNING, "telegram.getme_failed", channel=self._channel,
                  error=self._scrub(describe_exception(exc)), note="will try again on the first send")

    async def publish(self, message: RenderedMessage, *, idempotency_key: str) -> PublishResult:
        extra = message.extra
        parse_mode = ParseMode.HTML if message.format == "html" else None
        silent = bool(extra.get("disable_notification", self._options.disable_notification))
        try:
            if message.image_url:
                sent = await self._bot.send_photo(self._chat, photo=message.image_url, caption=message.text,
                                                  parse_mode=parse_mode, disable_notification=silent)
            else:
                sent = await self._bot.send_message(self._chat, message.text, parse_mode=parse_mode,
                                                    link_preview_options=self._preview(message),
                                                    disable_notification=silent)
        except tg.TelegramError as exc:
            raise self._classify(exc, action="sendPhoto" if message.image_url else "sendMessage",
                                 sending=True) from None
        return PublishResult(remote_id=str(sent.message_id), url=self._public_url(sent))

    async def check(self) -> AccountInfo:
        """getMe and getChat: who posts, and whether the chat is reachable."""
        try:
            me = await self._bot.get_me()
        except tg.TelegramError as exc:
            raise self._classify(exc, action="getMe", sending=False) from None
        try:
            chat = await self._bot.get_chat(self._chat)
        except tg.TelegramError as exc:
            raise self._classify(exc, action="getChat", sending=False) from None
        display = f"@{me.username} (id {me.id}) → chat {self._options.chat_id}"
        detail: dict[str, Any] = {"bot": f"@{me.username}", "bot_id": me.id, "chat_id": chat.id,
                                  "chat_type": str(chat.type)}
        if chat.title:
            detail["chat_title"] = chat.title
        if chat.username:
            detail["chat_username"] = f"@{chat.username}"
        return AccountInfo(display=display, detail=detail)

    async def aclose(self) -> None:
        """Close PTB's HTTP pools (also when ``initialize`` never ran or failed half-way)."""
        try:
            await self._bot.shutdown()
            for request in self._requests:  # Bot.shutdown skips them if initialize() never ran
                await request.shutdown()
        except (tg.TelegramError, httpx.HTTPError) as exc:  # never let closing mask another error
            event(self._log, logging.WARNING, "telegram.shutdown_failed", channel=self._channel,
                  error=self._scrub(describe_exception(exc)))

    # -- helpers -----------------------------------------------------------------------------

    def _preview(self, message: RenderedMessage) -> LinkPreviewOptions:
        show = bool(message.extra.get("link_preview", self._options.link_preview))
        if not show:
            return LinkPreviewOptions(is_disabled=True)
        url = message.extra.get("link_preview_url") or message.link
        if url:
            return LinkPreviewOptions(url=str(url))  # a stable card for the post, not the first URL in the text
        return LinkPreviewOptions()

    def _public_url(self, sent: Message) -> str | None:
        username = sent.chat.username
        if not username and isinstance(self._chat, str):
            username = self._chat.lstrip("@")
        return f"https://t.me/{username}/{sent.message_id}" if username else None

    def _scrub(self, text: str) -> str:
        return redact(text, [self._token])

    def _classify(self, exc: tg.TelegramError, *, action: str, sending: bool) -> PublishError:
        """Map a PTB exception to a ``PublishError``. Order matters: BadRequest subclasses NetworkError."""
        channel = self._channel
        text = self._scrub(shorten(exc.message))
        if isinstance(exc, tg.ChatMigrated):
            return ChatMigratedError(channel, int(exc.new_chat_id))
        if isinstance(exc, tg.RetryAfter):
            delay = _retry_after_seconds(exc)
            return RetryAfter(channel, delay, f"Telegram flood control on {action}; retry after {delay:.0f}s")
        if isinstance(exc, tg.InvalidToken):
            return CredentialsError(channel, f"Telegram rejected the bot token in {self._options.token_env} "
                                             f"({action}: {text})")
        if isinstance(exc, tg.Forbidden):
            return PermanentPublishError(channel, f"Telegram refused {action} to {self._options.chat_id}: {text} "
                                                  "(is the bot an administrator allowed to post there?)")
        if isinstance(exc, tg.BadRequest):
            lowered = text.lower()
            if any(marker in lowered for marker in _CHAT_LEVEL_BAD_REQUESTS):
                return PermanentPublishError(channel, f"Telegram cannot post to {self._options.chat_id}: {text}")
            return ContentRejectedError(channel, f"Telegram rejected the message ({action}): {text}")
        if isinstance(exc, tg.TimedOut | tg.NetworkError):
            cause = exc.__cause__
            what = self._scrub(describe_exception(cause)) if cause is not None else text
            if isinstance(cause, _NOT_SENT):
                return RetryablePublishError(channel, f"{action}: {what} (nothing was sent)")
            if isinstance(exc, tg.TimedOut) or isinstance(cause, httpx.HTTPError):
                # read/write timeout, connection dropped mid-answer: the request may have arrived
                if sending:
                    return AmbiguousPublishError(channel, f"{action}: {what} after the request was sent; "
                                                          "the message may or may not have been posted")
                return RetryablePublishError(channel, f"{action}: {what}")
            if cause is None or isinstance(cause, tg.TelegramError):
                # an HTTP 5xx/502 answer (PTB chains a JSON parse error at most): the server said no
                return RetryablePublishError(channel, f"Telegram server error on {action}: {text}")
            # a failure inside the HTTP layer before any I/O (e.g. a closed pool)
            return RetryablePublishError(channel, f"{action}: {what} (nothing was sent)")
        if isinstance(exc, tg.Conflict):
            return RetryablePublishError(channel, f"Telegram conflict on {action}: {text}")
        # Anything else (e.g. an unreadable 2xx answer): the request got through.
        if sending:
            return AmbiguousPublishError(channel, f"{action}: {text}; the message may or may not have been posted")
        return RetryablePublishError(channel, f"{action}: {text}")


class TelegramPlugin:
    """Entry point ``telegram = "bot.publishers.telegram:plugin"``."""

    name = "telegram"
    api_version = API_VERSION
    options_model: type[ChannelOptions] = TelegramOptions

    def render(self, post: Post, options: Any, env: RenderEnv, *, plain: bool = False) -> RenderedMessage:
        from bot.render.telegram import render_telegram

        assert isinstance(options, TelegramOptions)
        return render_telegram(post, options, env, plain=plain)

    def create(self, options: Any, ctx: PublisherContext) -> TelegramPublisher:
        assert isinstance(options, TelegramOptions)
        token = require_secret(ctx, options.name, options.token_env)
        return TelegramPublisher(options, ctx, token)


plugin = TelegramPlugin()
