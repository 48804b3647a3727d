"""The Telegram publisher: posts to a channel or group through the Bot API, over the shared httpx client.

Channel keys (on top of ``TelegramRenderOptions``)::

    [[channels]]
    name = "tg-main"
    platform = "telegram"
    chat_id = "@mychannel"            # or "-1001234567890" (numeric ids become int64)
    token_env = "TG_BOT_TOKEN"         # environment variable holding the bot token
    api_base = "https://api.telegram.org"
    at_least_once = false              # resend when unsure whether a post went out
    thread_id = 42                     # a forum supergroup's topic (message_thread_id); none: the chat itself

Every send carries ``message_thread_id`` when ``thread_id`` is set; ``channels
test`` checks that the chat is a forum (``getChat`` ``is_forum``), and a
deleted or closed topic (``message thread not found``, ``TOPIC_DELETED``,
``TOPIC_CLOSED``) pauses the channel with that reason (a permanent error: the
queue is kept until an operator fixes ``thread_id`` and resumes it).

The link preview (``sendMessage``'s ``link_preview_options``) follows the
channel's ``link_preview*`` keys: off, the post link's card (default), the
featured image's, or Telegram's own pick; small or large media; above or below
the text.

With ``send_image`` a post with an image goes out as ``sendPhoto`` by URL
(Telegram's servers fetch it) with the text as caption. Telegram has no alt
text: the image's alt text is not sent. When Telegram cannot use the photo
(it cannot fetch the URL, the file is no image, its size is refused) the same
text goes out at once as ``sendMessage`` and the log says why
(``telegram.photo_skipped``): a failed image never blocks the post, and a
refused ``sendPhoto`` created nothing, so nothing is sent twice.
Sends are not idempotent (the Bot API has no idempotency key): a timeout after
the request left raises ``AmbiguousPublishError`` and the delivery service
decides, reading ``at_least_once``, whether to resend (risking a duplicate) or
to hold the delivery for an operator.

The publisher calls the documented Bot API methods (``getMe``, ``getChat``,
``sendMessage``, ``sendPhoto``) itself, form-encoded like python-telegram-bot
does, and reads Telegram's JSON answer (``ok``, ``error_code``, ``description``,
``parameters.retry_after``, ``parameters.migrate_to_chat_id``). It maps a failed
call the way the python-telegram-bot adapter it replaces did (same error classes,
same messages; python-telegram-bot is now loaded only by the admin bot):

==================================================  ============================================
``parameters.migrate_to_chat_id``                   ``ChatMigratedError``
``parameters.retry_after``                          ``RetryAfter`` (that many seconds)
401, 404                                            ``CredentialsError`` (the token)
403                                                 ``PermanentPublishError``
400 about the chat (not found, no rights, ...)      ``PermanentPublishError``
other 400                                           ``ContentRejectedError``
409                                                 ``RetryablePublishError`` (conflict)
anything else (5xx, 429 without retry_after, 3xx)   ``RetryablePublishError`` (server error)
2xx without a readable ``result``                   ``AmbiguousPublishError`` when sending
connection failed, pool full                        ``RetryablePublishError`` (nothing was sent)
timeout or dropped connection after sending         ``AmbiguousPublishError``
==================================================  ============================================

The bot token is part of every Bot API URL. No error raised here chains an
httpx exception (``from None``) or quotes a URL. What an error says of the
server's answer is reduced to what an operator needs — its description (or the
HTTP status phrase), the HTTP status and Telegram's ``error_code`` when it
differs — and passed through ``platform_text``: control characters removed, the
token and its secret part (after ``<bot id>:``) redacted, one bounded line. A
body that is not JSON and unknown ``parameters`` are not quoted.

Size: ~600 lines, one module like the Bot API it speaks: sending, photos, topics, edits and deletions
share one request path, one error mapping (the table above) and one flood-control reading, and the
crash-safety argument of each (what a refused call created) is read against that mapping.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import httpx

from bot import config_bounds as bounds
from bot.config_bounds import within
from bot.domain.models import Post
from bot.errors import (
    AmbiguousPublishError,
    ChangeRefusedError,
    ChatMigratedError,
    ContentRejectedError,
    CredentialsError,
    MessageGoneError,
    PermanentPublishError,
    PublishError,
    RetryablePublishError,
    RetryAfter,
)
from bot.log import event
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
from bot.publishers.http import (
    ENV_NAME_PATTERN,
    HTTP_URL_PATTERN,
    MAX_DETAIL,
    NOT_SENT_ERRORS,
    describe_exception,
    platform_text,
    require_secret,
)
from bot.render.options import TelegramRenderOptions
from bot.render.telegram import render_telegram
from bot.validation import Field, field_validator

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
    "message thread not found",
    "topic_deleted",
    "topic_closed",
    "topic_id_invalid",
)

DELETE_MAX_AGE = 48 * 3600.0
"""Seconds after sending within which the Bot API deletes a message (``deleteMessage``)."""

# What Telegram answers an edit of a message of the other kind (a text edit of a photo, a caption or media
# edit of a text message): the edit is then made the other way.
_OTHER_KIND = ("there is no text in the message", "there is no caption in the message",
               "there is no media in the message", "message has no media", "message can't be edited")
# Bad Request descriptions of sendPhoto that mean "this photo cannot be used" (the text itself is fine).
_PHOTO_PROBLEMS = (
    "wrong file identifier",
    "http url",
    "url content",
    "web page content",
    "wrong remote file",
    "image_process_failed",
    "photo_invalid",
    "photo_ext_invalid",
    "photo_save_file_invalid",
    "photo_content",
    "file must be non-empty",
)
_TOPIC_PROBLEMS = ("message thread not found", "topic_deleted", "topic_closed", "topic_id_invalid")

# Prefixes Telegram puts before a description; like python-telegram-bot, they are dropped and the rest
# capitalised, so the stored error texts stay what they were with the PTB adapter.
_API_PREFIXES = ("Error: ", "[Error]: ", "Bad Request: ")

# The HTTP status of an error answer without usable parameters → the kind of failure (else "NetworkError").
_KIND_BY_STATUS = {403: "Forbidden", 401: "InvalidToken", 404: "InvalidToken", 400: "BadRequest", 409: "Conflict"}


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
    thread_id: int | None = within(bounds.TELEGRAM_THREAD_ID, None)
    """A forum supergroup's topic to post into (Bot API ``message_thread_id``); None: the chat itself."""

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



@dataclass(frozen=True, slots=True)
class _Failure:
    """A failed Bot API call, described the way python-telegram-bot's exceptions described it.

    ``kind`` is the name of the PTB exception class the old adapter received
    (``BadRequest``, ``Forbidden``, ``InvalidToken``, ``Conflict``, ``NetworkError``,
    ``TimedOut``, ``TelegramError``); ``message`` its (token-free) message; ``cause``
    the transport exception, if any. ``_classify`` turns it into a ``PublishError``.
    """

    kind: str
    message: str
    cause: BaseException | None = None


def _phrase(code: int) -> str:
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return "Unknown HTTPError"


def _api_text(message: str) -> str:
    """Telegram's description as python-telegram-bot's ``TelegramError`` presented it."""
    text = message
    for prefix in _API_PREFIXES:
        text = text.removeprefix(prefix)
    return text.capitalize() if text != message else text


def _parse(payload: bytes) -> Any:
    """The JSON of an answer; raises ``ValueError`` when it is not JSON."""
    return json.loads(payload.decode("utf-8", "replace"))


def _seconds(value: Any) -> float | None:
    """``parameters.retry_after`` as seconds; None when absent, zero or not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value or value != value:
        return None
    return float(value)


def _chat_id(value: Any) -> int | None:
    """``parameters.migrate_to_chat_id`` as an int; None when absent or unusable."""
    if isinstance(value, bool) or not value:
        return None
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _form(params: dict[str, Any]) -> dict[str, str]:
    """Form fields as python-telegram-bot sends them: strings as they are, everything else as JSON."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in params.items() if v is not None}


class TelegramPublisher:
    """Posts to one Telegram chat with one bot token. Not idempotent. Edits (``editMessageText``,
    ``editMessageCaption``, ``editMessageMedia``) and deletes (``deleteMessage``, within 48 hours) its
    own messages."""

    idempotent = False
    delete_max_age: float = DELETE_MAX_AGE
    """Telegram lets a bot delete a message only within 48 hours of sending it (Bot API, deleteMessage)."""

    def __init__(self, options: TelegramOptions, ctx: PublisherContext, token: str) -> None:
        self._options = options
        self._channel = options.name
        self._chat = options.target
        self._token = token
        self._log = ctx.logger
        self._http = ctx.http
        self._base = f"{options.api_base}/bot{token}/"  # holds the token: never logged, never in an error
        self._closed = False

    def __repr__(self) -> str:  # never show the base URL: it contains the token
        return f"TelegramPublisher(channel={self._channel!r}, chat_id={self._chat!r})"

    @property
    def options(self) -> TelegramOptions:
        return self._options

    @property
    def render_env(self) -> RenderEnv:
        return RenderEnv()

    async def initialize(self) -> None:
        """Check the token with getMe.

        A rejected token raises ``CredentialsError``; a network problem only
        logs a warning, so an unreachable Telegram does not stop start-up.
        """
        try:
            await self._call("getMe", None, action="getMe", sending=False)
        except CredentialsError:
            raise CredentialsError(self._channel, f"Telegram rejected the bot token in {self._options.token_env} "
                                                  "(getMe: Unauthorized); get a new one from @BotFather") from None
        except PublishError as exc:
            event(self._log, logging.WARNING, "telegram.getme_failed", channel=self._channel,
                  error=self._scrub(exc.reason), note="will try again on the first send")

    async def publish(self, message: RenderedMessage, *, idempotency_key: str) -> PublishResult:
        extra = message.extra
        parse_mode = "HTML" if message.format == "html" else None
        silent = bool(extra.get("disable_notification", self._options.disable_notification))
        thread = self._options.thread_id
        text_params: dict[str, Any] = {"chat_id": self._chat, "message_thread_id": thread, "text": message.text,
                                       "parse_mode": parse_mode, "link_preview_options": self._preview(message),
                                       "disable_notification": silent}
        action = "sendMessage"
        if message.image_url:
            photo_params: dict[str, Any] = {"chat_id": self._chat, "message_thread_id": thread,
                                            "photo": message.image_url, "caption": message.text,
                                            "parse_mode": parse_mode, "disable_notification": silent}
            try:
                sent = await self._call("sendPhoto", photo_params, action="sendPhoto", sending=True)
            except ContentRejectedError as exc:
                if not any(marker in exc.reason.lower() for marker in _PHOTO_PROBLEMS):
                    raise
                # Telegram refused the photo itself, and a refused sendPhoto created nothing
                event(self._log, logging.WARNING, "telegram.photo_skipped", channel=self._channel,
                      reason=exc.reason, note="sent as a text message without the image")
                sent = await self._call(action, text_params, action=action, sending=True)
            else:
                action = "sendPhoto"
        else:
            sent = await self._call(action, text_params, action=action, sending=True)
        message_id = sent.get("message_id") if isinstance(sent, dict) else None
        if isinstance(message_id, bool) or not isinstance(message_id, int):
            raise self._classify(_Failure("TelegramError", "Invalid server response"), action=action, sending=True)
        return PublishResult(remote_id=str(message_id), url=self._public_url(sent, message_id))

    async def edit(self, remote_id: str, message: RenderedMessage) -> ChangeResult:
        """Make message ``remote_id`` show ``message``: ``editMessageMedia`` (photo and caption) when it has
        an image, else ``editMessageText``; a message of the other kind (a photo post whose edit lost its
        image, a text post whose edit gained one) gets its text as a caption, or the image is left out.
        Telegram's "message is not modified" means it is done already (a repeat after a lost answer)."""
        message_id = self._message_id(remote_id)
        parse_mode = "HTML" if message.format == "html" else None
        target: dict[str, Any] = {"chat_id": self._chat, "message_id": message_id}
        text_call = ("editMessageText", {**target, "text": message.text, "parse_mode": parse_mode,
                                         "link_preview_options": self._preview(message)})
        caption_call = ("editMessageCaption", {**target, "caption": message.text, "parse_mode": parse_mode})
        calls = [text_call, caption_call]
        if message.image_url:
            media: dict[str, Any] = {"type": "photo", "media": message.image_url, "caption": message.text}
            if parse_mode:
                media["parse_mode"] = parse_mode
            calls = [("editMessageMedia", {**target, "media": media}), text_call]
        for i, (method, params) in enumerate(calls):
            try:
                await self._call(method, params, action=method, sending=True)
            except ContentRejectedError as exc:
                said = exc.reason.lower()
                if "not modified" in said:
                    return ChangeResult(already="Telegram: message is not modified")
                if i == 0 and any(marker in said for marker in _OTHER_KIND):
                    continue  # the message is of the other kind: the second way
                raise self._change_error(exc, "edit") from None
            return ChangeResult()
        raise ChangeRefusedError(self._channel, "Telegram: the message has neither text nor a caption to edit")

    async def delete(self, remote_id: str) -> ChangeResult:
        """``deleteMessage``. Telegram deletes a bot's message only within 48 hours of sending
        (``delete_max_age``); "message to delete not found" means it is gone already."""
        params = {"chat_id": self._chat, "message_id": self._message_id(remote_id)}
        try:
            await self._call("deleteMessage", params, action="deleteMessage", sending=True)
        except ContentRejectedError as exc:
            raise self._change_error(exc, "delete") from None
        return ChangeResult()

    def _message_id(self, remote_id: str) -> int:
        text = remote_id.strip()
        if not text.isdigit() or len(text) > 18:
            raise ChangeRefusedError(self._channel, "the message id recorded for it is not a Telegram message id")
        return int(text)

    def _change_error(self, exc: ContentRejectedError, what: str) -> PublishError:
        """A refused edit or deletion: the message is gone, will not change, or the content was refused."""
        said = exc.reason.lower()
        if "not found" in said:
            return MessageGoneError(self._channel, f"Telegram: {exc.reason}")
        if "can't be" in said or "can not be" in said:
            why = (" (a bot deletes its messages only within 48 hours of sending, and needs the right to)"
                   if what == "delete" else "")
            return ChangeRefusedError(self._channel, f"Telegram will not {what} the message: {exc.reason}{why}")
        if what == "delete":
            return ChangeRefusedError(self._channel, f"Telegram refused to delete the message: {exc.reason}")
        return exc

    async def check(self) -> AccountInfo:
        """getMe and getChat: who posts, and whether the chat is reachable."""
        me = await self._call("getMe", None, action="getMe", sending=False)
        if not isinstance(me, dict):
            raise self._classify(_Failure("TelegramError", "Invalid server response"), action="getMe", sending=False)
        chat = await self._call("getChat", {"chat_id": self._chat}, action="getChat", sending=False)
        if not isinstance(chat, dict):
            raise self._classify(_Failure("TelegramError", "Invalid server response"), action="getChat",
                                 sending=False)
        thread = self._options.thread_id
        if thread is not None and chat.get("is_forum") is not True:
            raise PermanentPublishError(self._channel, f"thread_id = {thread} is set, but {self._options.chat_id} is "
                                                       "not a forum (getChat: is_forum is not true); topics exist "
                                                       "only in forum supergroups: remove thread_id or point chat_id "
                                                       "at the forum")
        where = f" topic {thread}" if thread is not None else ""
        display = f"@{me.get('username')} (id {me.get('id')}) → chat {self._options.chat_id}{where}"
        detail: dict[str, Any] = {"bot": f"@{me.get('username')}", "bot_id": me.get("id"), "chat_id": chat.get("id"),
                                  "chat_type": str(chat.get("type"))}
        if thread is not None:
            detail["thread_id"] = thread
        if chat.get("title"):
            detail["chat_title"] = chat["title"]
        if chat.get("username"):
            detail["chat_username"] = f"@{chat['username']}"
        return AccountInfo(display=display, detail=detail)

    async def aclose(self) -> None:
        """Stop sending: later calls fail as retryable, nothing is sent. The HTTP client is the caller's."""
        self._closed = True

    # -- helpers -----------------------------------------------------------------------------

    async def _call(self, method: str, params: dict[str, Any] | None, *, action: str, sending: bool) -> Any:
        """POST one Bot API method; the ``result`` of a successful answer, else a ``PublishError``."""
        if self._closed:
            raise RetryablePublishError(self._channel, f"{action}: the publisher is closed (not initialized) "
                                                       "(nothing was sent)")
        try:
            response = await self._http.post(f"{self._base}{method}", data=_form(params) if params else None,
                                             follow_redirects=False)
        except httpx.TimeoutException as exc:
            raise self._classify(_Failure("TimedOut", "Timed out", exc), action=action, sending=sending) from None
        except httpx.HTTPError as exc:
            failure = _Failure("NetworkError", f"httpx.{type(exc).__name__}: {exc}", exc)
            raise self._classify(failure, action=action, sending=sending) from None
        except Exception as exc:  # noqa: BLE001 - e.g. a closed client: reported, never raised as is (URL)
            failure = _Failure("NetworkError", f"Unknown error in HTTP implementation: {exc!r}", exc)
            raise self._classify(failure, action=action, sending=sending) from None
        code = response.status_code
        if 200 <= code <= 299:
            try:
                answer = _parse(response.content)
            except ValueError:
                answer = None
            if not isinstance(answer, dict) or "result" not in answer:
                raise self._classify(_Failure("TelegramError", "Invalid server response"), action=action,
                                     sending=sending)
            return answer["result"]
        raise self._api_error(response, action=action, sending=sending)

    def _api_error(self, response: httpx.Response, *, action: str, sending: bool) -> PublishError:
        """Classify a non-2xx answer as python-telegram-bot did: parameters first, then the HTTP status.

        The failure's text is the description (else the status phrase) and the codes; nothing else of
        the answer (a non-JSON body, unknown parameters) is quoted.
        """
        code = response.status_code
        channel = self._channel
        try:
            body = _parse(response.content)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            body = {}
        parameters = body.get("parameters")
        if isinstance(parameters, dict):
            new_chat = _chat_id(parameters.get("migrate_to_chat_id"))
            if new_chat is not None:
                return ChatMigratedError(channel, new_chat)
            delay = _seconds(parameters.get("retry_after"))
            if delay is not None:
                return RetryAfter(channel, delay, f"Telegram flood control on {action}; retry after {delay:.0f}s")
        description = body.get("description")
        # scrubbed before _api_text, which changes the case of all but the first letter
        text = (_api_text(platform_text(description, [self._token], MAX_DETAIL - 40))
                if isinstance(description, str) and description.strip() else _phrase(code))
        error_code = body.get("error_code")
        codes = f"HTTP {code}"
        if isinstance(error_code, int) and not isinstance(error_code, bool) and error_code != code:
            codes += f", error_code {error_code}"
        kind = _KIND_BY_STATUS.get(code, "NetworkError")
        return self._classify(_Failure(kind, f"{text} ({codes})"), action=action, sending=sending)

    def _preview(self, message: RenderedMessage) -> dict[str, Any]:
        """``link_preview_options``: off; or a card for the post link (a stable card, not the first URL in
        the text), the featured image or Telegram's own choice; small or large media; above the text."""
        show = bool(message.extra.get("link_preview", self._options.link_preview))
        if not show:
            return {"is_disabled": True}
        url = message.extra.get("link_preview_url", message.link)  # None: Telegram picks the first URL
        preview: dict[str, Any] = {}
        if url:
            preview["url"] = str(url)
            size = self._options.link_preview_media
            if size != "auto":
                preview["prefer_small_media" if size == "small" else "prefer_large_media"] = True
        if self._options.link_preview_above_text:
            preview["show_above_text"] = True
        return preview

    def _public_url(self, sent: dict[str, Any], message_id: int) -> str | None:
        chat = sent.get("chat")
        username = chat.get("username") if isinstance(chat, dict) else None
        if not username and isinstance(self._chat, str):
            username = self._chat.lstrip("@")
        return f"https://t.me/{username}/{message_id}" if username else None

    def _scrub(self, text: str) -> str:
        return platform_text(text, [self._token])

    def _classify(self, failure: _Failure, *, action: str, sending: bool) -> PublishError:
        """Map a failed call to a ``PublishError`` (the rules of the PTB adapter this module replaced)."""
        channel = self._channel
        text = self._scrub(failure.message)
        kind = failure.kind
        if kind == "InvalidToken":
            return CredentialsError(channel, f"Telegram rejected the bot token in {self._options.token_env} "
                                             f"({action}: {text})")
        if kind == "Forbidden":
            return PermanentPublishError(channel, f"Telegram refused {action} to {self._options.chat_id}: {text} "
                                                  "(is the bot an administrator allowed to post there?)")
        if kind == "BadRequest":
            lowered = text.lower()
            if any(marker in lowered for marker in _TOPIC_PROBLEMS) and self._options.thread_id is not None:
                return PermanentPublishError(channel, f"Telegram cannot post to topic {self._options.thread_id} of "
                                                      f"{self._options.chat_id}: {text} (was the topic deleted or "
                                                      "closed? fix thread_id, then resume the channel)")
            if any(marker in lowered for marker in _CHAT_LEVEL_BAD_REQUESTS):
                return PermanentPublishError(channel, f"Telegram cannot post to {self._options.chat_id}: {text}")
            return ContentRejectedError(channel, f"Telegram rejected the message ({action}): {text}")
        if kind in ("TimedOut", "NetworkError"):
            cause = failure.cause
            what = self._scrub(describe_exception(cause)) if cause is not None else text
            if isinstance(cause, NOT_SENT_ERRORS):
                return RetryablePublishError(channel, f"{action}: {what} (nothing was sent)")
            if kind == "TimedOut" or isinstance(cause, httpx.HTTPError):
                # read/write timeout, connection dropped mid-answer: the request may have arrived
                if sending:
                    return AmbiguousPublishError(channel, f"{action}: {what} after the request was sent; "
                                                          "the message may or may not have been posted")
                return RetryablePublishError(channel, f"{action}: {what}")
            if cause is None:
                # an HTTP error status (5xx, 429 without retry_after, 3xx ...): the server said no
                return RetryablePublishError(channel, f"Telegram server error on {action}: {text}")
            # a failure inside the HTTP layer before any I/O (e.g. a closed client)
            return RetryablePublishError(channel, f"{action}: {what} (nothing was sent)")
        if kind == "Conflict":
            return RetryablePublishError(channel, f"Telegram conflict on {action}: {text}")
        # Anything else (an unreadable 2xx answer): the request got through.
        if sending:
            return AmbiguousPublishError(channel, f"{action}: {text}; the message may or may not have been posted")
        return RetryablePublishError(channel, f"{action}: {text}")


class TelegramPlugin:
    """Entry point ``telegram = "bot.publishers.telegram:plugin"``."""

    name = "telegram"
    api_version = API_VERSION
    options_model: type[ChannelOptions] = TelegramOptions

    def render(self, post: Post, options: Any, env: RenderEnv, *, plain: bool = False) -> RenderedMessage:
        assert isinstance(options, TelegramOptions)
        return render_telegram(post, options, env, plain=plain)

    def create(self, options: Any, ctx: PublisherContext) -> TelegramPublisher:
        assert isinstance(options, TelegramOptions)
        token = require_secret(ctx, options.name, options.token_env)
        return TelegramPublisher(options, ctx, token)


plugin = TelegramPlugin()
