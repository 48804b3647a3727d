"""``FakeBotApi``: a loopback Telegram Bot API server, plus the scripted-fault base all platform fakes share.

It answers ``/bot<token>/<method>`` like api.telegram.org: ``{"ok": true,
"result": ...}`` or ``{"ok": false, "error_code": N, "description": "...",
"parameters": {"retry_after" | "migrate_to_chat_id": ...}}`` with the HTTP status
equal to ``error_code``. Point a channel's ``api_base`` (or PTB's
``base_url=f"{fake.url}/bot"``) at ``fake.url``.

Quick use::

    with FakeBotApi(token=TOKEN) as fake:            # knows @tagrelay_test = -1001234567890
        ...publish...
        assert fake.messages[0].text == "..."
        fake.flood(retry_after=7)                     # next sendMessage: 429 + parameters.retry_after
        fake.migrate(-1009999999999)                  # next sendMessage: 400 + migrate_to_chat_id
        fake.error(403, "Forbidden: bot was kicked from the channel chat")
        event = fake.hold_next("sendMessage")        # posts, but answers only after event.set()
        fake.drop_next("sendMessage", process=True)   # posts, then closes the connection unanswered

Validation it does like Telegram: unknown token → 401 Unauthorized; unknown
chat → 400 "chat not found"; ``parse_mode=HTML`` with a tag outside Telegram's
list → 400 "can't parse entities"; visible text > 4096 → "message is too
long"; caption > 1024 → "message caption is too long". The Bot API documents
these limits in "characters after entities parsing"; ``utf16=True`` (the
default of ``FakeChatBotApi``) counts them in UTF-16 code units like message
entities do, the stricter reading (an emoji counts 2).

Forum topics: ``fake.forum(chat_id, topics=[42])`` adds a forum supergroup
(``getChat`` says ``is_forum``); a send with ``message_thread_id`` must name one
of its topics, else 400 "message thread not found" (also after
``fake.delete_topic``). ``SentMessage.message_thread_id`` records it.
``fetch_photos=True`` makes ``sendPhoto`` fetch a photo URL as Telegram's
servers do (400 "failed to get HTTP URL content" / "wrong type of the web page
content" when it cannot use it).
Edits and deletions of the messages it accepted, as the Bot API answers them:
``editMessageText`` (a text message), ``editMessageCaption`` and
``editMessageMedia`` (a photo; 400 "there is no text/caption/media in the
message to edit" for the other kind), 400 "message is not modified" for an edit
that changes nothing, ``deleteMessage`` (refused with "message can't be deleted"
48 hours after sending, by the fake's ``clock``), 400 "message to edit/delete not
found" for an unknown or deleted one. Applied ones are in ``fake.changes``; a
deleted message stays in ``messages`` with ``deleted`` set.

``fake.error_echoing_token_part(403, "Forbidden: bot {part} was kicked")``
scripts an error whose description quotes the secret part of the token (after
``<bot id>:``) the way a careless Bot API server could.

Extending (e.g. ``getUpdates`` for the admin bot): add a handler to
``fake.methods`` (``name -> callable(params) -> result``), or subclass and
register in ``__init__``. A handler raises ``BotApiError`` for an error answer.
Parameters arrive decoded from JSON, form or query (object-valued form fields
such as ``link_preview_options`` are JSON-decoded, ``chat_id`` becomes an int
when numeric).

``ScriptedServer`` (defined here, used by FakeMastodon and FakeX too) is the
fault queue: ``fail_next``, ``drop_next``, ``hold_next``; faults match a route
key (the Bot API method name here, the URL path for the other fakes) or any
request, and are consumed in order.
"""

from __future__ import annotations

import itertools
import json
import re
import socketserver
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from html.parser import HTMLParser
from typing import Any, Self

from tests.fakes.http import DROP, LoopbackServer, Request, Response

# -- scripted faults (shared by every platform fake) --------------------------------------------


@dataclass
class Fault:
    """One scripted answer for the next request(s) whose route key equals ``match`` (None: any)."""

    response: Response | None = None
    """Answer with this instead of the normal answer (the request then has no effect)."""
    drop: bool = False
    """Close the connection without answering."""
    hold: threading.Event | None = None
    """Answer only once this event is set (the client may time out first)."""
    process: bool = False
    """Let the request take effect first (post created), then apply the fault: 'sent, answer lost'."""
    match: str | None = None
    times: int = 1


class ScriptedServer(LoopbackServer):
    """A ``LoopbackServer`` with a queue of scripted faults in front of ``route``.

    Subclasses implement ``route(request)`` (the normal behaviour) and may
    override ``route_key(request)`` (what ``match=`` compares with; default: the path).
    """

    def __init__(self) -> None:
        super().__init__()
        self._faults: list[Fault] = []
        self._holds: list[threading.Event] = []
        self._server.handle_error = self._handle_error  # type: ignore[method-assign]
        # serve_forever's default 0.5 s poll makes every stop() take that long; poll faster
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True, name=type(self).__name__)

    def _handle_error(self, request: Any, client_address: Any) -> None:
        """A client that timed out on a held answer has gone: say nothing; report anything else."""
        exc = sys.exc_info()[1]
        if isinstance(exc, BrokenPipeError | ConnectionResetError):
            return
        socketserver.BaseServer.handle_error(self._server, request, client_address)

    # -- the scripting API -------------------------------------------------------------------

    def fail_next(self, status: int, body: Any = None, headers: dict[str, str] | None = None, *,
                  times: int = 1, match: str | None = None) -> None:
        """The next ``times`` matching requests get ``status`` with JSON ``body`` and ``headers``."""
        self.add_fault(Fault(response=Response.json(body if body is not None else {}, status, headers),
                             match=match, times=times))

    def drop_next(self, match: str | None = None, *, times: int = 1, process: bool = False) -> None:
        """Close the connection of the next matching request(s) without an answer.

        ``process=True``: the request takes effect first (the post exists), as when
        an answer is lost on the way back.
        """
        self.add_fault(Fault(drop=True, process=process, match=match, times=times))

    def hold_next(self, match: str | None = None, *, response: Response | None = None) -> threading.Event:
        """Hold the answer to the next matching request until the returned event is set.

        Without ``response`` the request takes effect and its normal answer is
        held (a client with a short read timeout sees an ambiguous timeout). All
        held answers are released when the server stops.
        """
        event = threading.Event()
        with self.lock:
            self._holds.append(event)
        self.add_fault(Fault(response=response, hold=event, process=response is None, match=match))
        return event

    def add_fault(self, fault: Fault) -> None:
        with self.lock:
            self._faults.append(fault)

    def clear_faults(self) -> None:
        with self.lock:
            self._faults.clear()

    @property
    def pending_faults(self) -> int:
        with self.lock:
            return sum(f.times for f in self._faults)

    # -- plumbing ----------------------------------------------------------------------------

    def route_key(self, request: Request) -> str:
        return request.path

    def route(self, request: Request) -> Response | object:
        raise NotImplementedError

    def _take_fault(self, key: str) -> Fault | None:
        with self.lock:
            for i, fault in enumerate(self._faults):
                if fault.match is None or fault.match == key:
                    fault.times -= 1
                    if fault.times <= 0:
                        del self._faults[i]
                    return fault
        return None

    def handle(self, request: Request) -> Response | object:
        fault = self._take_fault(self.route_key(request))
        if fault is None:
            return self.route(request)
        normal = self.route(request) if fault.process else None
        if fault.drop:
            return DROP
        answer = fault.response or normal
        if not isinstance(answer, Response):
            return DROP
        return replace(answer, hold=fault.hold) if fault.hold is not None else answer

    def __enter__(self) -> Self:
        self.start()
        return self

    def stop(self) -> None:
        with self.lock:
            holds = list(self._holds)
        for event in holds:
            event.set()
        super().stop()


# -- the Bot API --------------------------------------------------------------------------------

DEFAULT_TOKEN = "123456789:AAFakeTokenForTagrelayTests-0123456789"
DEFAULT_CHANNEL_ID = -1001234567890
DEFAULT_CHANNEL_USERNAME = "tagrelay_test"

MAX_TEXT_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024
PHOTO_URL_MAX_BYTES = 5 * 1024 * 1024
"""Telegram fetches photos given by URL up to 5 MB (Bot API, "Sending files")."""
_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a")
_ALLOWED_TAGS = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler", "a",
                 "tg-emoji", "tg-time", "code", "pre", "blockquote"}
_OBJECT_FIELDS = {"link_preview_options", "reply_markup", "entities", "caption_entities", "reply_parameters",
                  "allowed_updates", "commands", "scope", "media"}
_BOOL_FIELDS = {"disable_notification", "protect_content", "show_caption_above_media", "has_spoiler",
                "allow_paid_broadcast"}
_PATH = re.compile(r"^/bot(?P<token>[^/]+)/(?P<method>[A-Za-z]+)$")


class BotApiError(Exception):
    """Raise from a method handler to answer ``{"ok": false, ...}`` with HTTP status ``code``."""

    def __init__(self, code: int, description: str, parameters: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.parameters = parameters


def bot_api_error(code: int, description: str, parameters: dict[str, Any] | None = None) -> Response:
    """The Bot API's error answer."""
    body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if parameters:
        body["parameters"] = parameters
    return Response.json(body, code)


@dataclass
class Chat:
    """A chat the fake knows. Channels and supergroups have ids like -100…; ``username`` without '@'.

    A forum supergroup (``is_forum=True``) has topics: ``message_thread_id`` must name one of ``topics``,
    else (deleted, never created, or the chat is no forum) Telegram answers 400 "message thread not found".
    """

    id: int
    type: str = "channel"
    title: str | None = "Tagrelay test channel"
    username: str | None = None
    is_forum: bool = False
    topics: set[int] = field(default_factory=set)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "type": self.type}
        if self.is_forum:
            data["is_forum"] = True
        if self.title is not None:
            data["title"] = self.title
        if self.username is not None:
            data["username"] = self.username
        return data


@dataclass
class SentMessage:
    """A message the fake accepted (sendMessage or sendPhoto)."""

    method: str
    chat_id: int
    message_id: int
    text: str | None
    caption: str | None = None
    photo: str | None = None
    parse_mode: str | None = None
    link_preview_options: dict[str, Any] | None = None
    disable_notification: bool = False
    params: dict[str, Any] = field(default_factory=dict)
    message_thread_id: int | None = None
    photo_bytes: int | None = None
    """With ``fetch_photos``: the size of the photo the fake fetched from the URL."""
    sent_at: float = 0.0
    """The fake's ``clock()`` when it was sent (``deleteMessage`` refuses after 48 hours, as Telegram does)."""
    deleted: bool = False
    """Removed by ``deleteMessage`` (kept in ``messages``, marked)."""


@dataclass
class Change:
    """An edit or a deletion the fake applied (``FakeBotApi.changes``)."""

    method: str
    chat_id: int
    message_id: int
    text: str | None = None
    photo: str | None = None


class _EntityChecker(HTMLParser):
    """Telegram's HTML parse mode, roughly: allowed tags only; collects the visible text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.visible: list[str] = []
        self.problem: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.problem is None and tag not in _ALLOWED_TAGS:
            line, col = self.getpos()
            self.problem = f'Unsupported start tag "{tag}" at byte offset {col if line == 1 else 0}'

    def handle_data(self, data: str) -> None:
        self.visible.append(data)


def utf16_length(text: str) -> int:
    """Length in UTF-16 code units (a character outside the BMP counts 2)."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def visible_length(text: str, parse_mode: str | None, *, utf16: bool = False) -> tuple[int, str | None]:
    """(length after entity parsing, in characters or UTF-16 code units; parse problem or None)."""
    measure = utf16_length if utf16 else len
    if (parse_mode or "").upper() != "HTML":
        return measure(text), None
    checker = _EntityChecker()
    checker.feed(text)
    checker.close()
    return measure("".join(checker.visible)), checker.problem


class FakeBotApi(ScriptedServer):
    """A Telegram Bot API server on 127.0.0.1 for one bot token. See the module docstring."""

    def __init__(self, token: str = DEFAULT_TOKEN, *, bot_id: int = 123456789,
                 bot_username: str = "tagrelay_test_bot", chats: Iterable[Chat] | None = None,
                 clock: Callable[[], float] = time.time, utf16: bool = False, fetch_photos: bool = False) -> None:
        super().__init__()
        self.token = token
        self.fetch_photos = fetch_photos
        """sendPhoto with an http(s) URL fetches it, as Telegram's servers do: a URL that does not answer
        is 400 "failed to get HTTP URL content", bytes that are no image 400 "wrong type of the web page
        content", more than ``PHOTO_URL_MAX_BYTES`` 400 "failed to get HTTP URL content"."""
        self.utf16 = utf16
        """Count text limits in UTF-16 code units instead of characters."""
        self.bot_id = bot_id
        self.bot_username = bot_username
        self.clock = clock
        self.chats: dict[int, Chat] = {}
        for chat in chats if chats is not None else [Chat(DEFAULT_CHANNEL_ID, username=DEFAULT_CHANNEL_USERNAME)]:
            self.add_chat(chat)
        self.messages: list[SentMessage] = []
        self.changes: list[Change] = []
        """Every edit and deletion applied, in order (a refused one is not here)."""
        self._ids: dict[int, itertools.count[int]] = {}
        self.methods: dict[str, Callable[[dict[str, Any]], Any]] = {
            "getMe": self._get_me,
            "getChat": self._get_chat,
            "sendMessage": self._send_message,
            "sendPhoto": self._send_photo,
            "editMessageText": self._edit_text,
            "editMessageCaption": self._edit_caption,
            "editMessageMedia": self._edit_media,
            "deleteMessage": self._delete_message,
        }

    @property
    def api_base(self) -> str:
        """What a channel's ``api_base`` should be."""
        return self.url

    # -- scripting helpers -------------------------------------------------------------------

    def add_chat(self, chat: Chat) -> Chat:
        with self.lock:
            self.chats[chat.id] = chat
        return chat

    def error(self, code: int, description: str, parameters: dict[str, Any] | None = None, *,
              match: str | None = "sendMessage", times: int = 1) -> None:
        """The next ``times`` calls of ``match`` (a method name; None: any) fail with this Bot API error."""
        self.add_fault(Fault(response=bot_api_error(code, description, parameters), match=match, times=times))

    def error_echoing_token_part(self, code: int, description: str, *, match: str | None = "sendMessage",
                                 times: int = 1) -> None:
        """Like ``error``, with ``{part}`` in ``description`` replaced by the token's secret part (after ``id:``)."""
        self.error(code, description.format(part=self.token.split(":", 1)[-1]), match=match, times=times)

    def flood(self, retry_after: int, *, match: str | None = "sendMessage", times: int = 1) -> None:
        """429 "Too Many Requests: retry after N" with ``parameters.retry_after``."""
        self.error(429, f"Too Many Requests: retry after {retry_after}", {"retry_after": retry_after},
                   match=match, times=times)

    def migrate(self, new_chat_id: int, *, match: str | None = "sendMessage", times: int = 1) -> None:
        """400 "group chat was upgraded to a supergroup chat" with ``parameters.migrate_to_chat_id``."""
        self.error(400, "Bad Request: group chat was upgraded to a supergroup chat",
                   {"migrate_to_chat_id": new_chat_id}, match=match, times=times)

    def forum(self, chat_id: int, topics: Iterable[int], *, username: str | None = None,
              title: str = "Tagrelay forum") -> Chat:
        """A forum supergroup with these topic ids."""
        return self.add_chat(Chat(chat_id, type="supergroup", title=title, username=username, is_forum=True,
                                  topics=set(topics)))

    def delete_topic(self, chat_id: int, topic: int) -> None:
        with self.lock:
            self.chats[chat_id].topics.discard(topic)

    def sent_to(self, chat_id: int) -> list[SentMessage]:
        with self.lock:
            return [m for m in self.messages if m.chat_id == chat_id]

    # -- plumbing ----------------------------------------------------------------------------

    def route_key(self, request: Request) -> str:
        m = _PATH.match(request.path)
        return m["method"] if m else request.path

    def route(self, request: Request) -> Response | object:
        m = _PATH.match(request.path)
        if m is None:
            return bot_api_error(404, "Not Found")
        if m["token"] != self.token:
            return bot_api_error(401, "Unauthorized")
        handler = self.methods.get(m["method"]) or self.methods.get(_lower_first(m["method"]))
        if handler is None:
            return bot_api_error(404, "Not Found")
        try:
            params = self._params(request)
            result = handler(params)
        except BotApiError as exc:
            return bot_api_error(exc.code, exc.description, exc.parameters)
        return Response.json({"ok": True, "result": result})

    @staticmethod
    def _params(request: Request) -> dict[str, Any]:
        ctype = (request.header("content-type") or "").lower()
        params: dict[str, Any] = {k: v[-1] for k, v in request.query.items()}
        if ctype.startswith("application/json"):
            body = request.json()
            if isinstance(body, dict):
                params.update(body)
            return params
        if ctype.startswith("multipart/"):
            raise BotApiError(400, "Bad Request: FakeBotApi does not accept file uploads")
        for key, values in request.form().items() if request.body else ():
            value: Any = values[-1]
            if key in _OBJECT_FIELDS:
                try:
                    value = json.loads(value)
                except ValueError:
                    raise BotApiError(400, f"Bad Request: can't parse {key} JSON object") from None
            elif key in _BOOL_FIELDS:
                value = value.lower() == "true"
            params[key] = value
        return params

    def _chat(self, params: dict[str, Any]) -> Chat:
        raw = params.get("chat_id")
        if raw is None or raw == "":
            raise BotApiError(400, "Bad Request: chat_id is empty")
        text = str(raw).strip()
        with self.lock:
            if text.startswith("@"):
                for chat in self.chats.values():
                    if chat.username and chat.username.lower() == text[1:].lower():
                        return chat
            else:
                try:
                    chat_id = int(text)
                except ValueError:
                    chat_id = 0
                if chat_id in self.chats:
                    return self.chats[chat_id]
        raise BotApiError(400, "Bad Request: chat not found")

    @staticmethod
    def _topic(chat: Chat, params: dict[str, Any]) -> int | None:
        """The ``message_thread_id`` of a send, checked like Telegram: a topic of a forum, or 400."""
        raw = params.get("message_thread_id")
        if raw is None or raw == "":
            return None
        try:
            topic = int(raw)
        except (TypeError, ValueError):
            raise BotApiError(400, "Bad Request: message thread not found") from None
        if not chat.is_forum or topic not in chat.topics:
            raise BotApiError(400, "Bad Request: message thread not found")
        return topic

    def _fetch_photo(self, url: str) -> int:
        """Fetch a photo URL the way Telegram's servers do (see ``fetch_photos``); its size in bytes."""
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 - http(s) only, checked below
                data = answer.read(PHOTO_URL_MAX_BYTES + 1)
        except (OSError, ValueError):
            raise BotApiError(400, "Bad Request: failed to get HTTP URL content") from None
        if len(data) > PHOTO_URL_MAX_BYTES:
            raise BotApiError(400, "Bad Request: failed to get HTTP URL content")
        if not (data.startswith(_IMAGE_MAGIC) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")):
            raise BotApiError(400, "Bad Request: wrong type of the web page content")
        return len(data)

    def _next_id(self, chat_id: int) -> int:
        with self.lock:
            counter = self._ids.setdefault(chat_id, itertools.count(1))
            return next(counter)

    def _message_json(self, chat: Chat, message_id: int) -> dict[str, Any]:
        data: dict[str, Any] = {"message_id": message_id, "date": int(self.clock()), "chat": chat.to_json()}
        if chat.type == "channel":
            data["sender_chat"] = chat.to_json()
        else:
            data["from"] = self._me()
        return data

    def _me(self) -> dict[str, Any]:
        return {"id": self.bot_id, "is_bot": True, "first_name": "Tagrelay Test", "username": self.bot_username,
                "can_join_groups": True, "can_read_all_group_messages": False, "supports_inline_queries": False}

    # -- methods -----------------------------------------------------------------------------

    def _get_me(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._me()

    def _get_chat(self, params: dict[str, Any]) -> dict[str, Any]:
        chat = self._chat(params)
        return {**chat.to_json(), "accent_color_id": 0, "max_reaction_count": 11,
                "accepted_gift_types": {"unlimited_gifts": False, "limited_gifts": False, "unique_gifts": False,
                                        "premium_subscription": False, "gifts_from_channels": False}}

    def _send_message(self, params: dict[str, Any]) -> dict[str, Any]:
        chat = self._chat(params)
        text = str(params.get("text") or "")
        parse_mode = params.get("parse_mode")
        if not text.strip():
            raise BotApiError(400, "Bad Request: message text is empty")
        length, problem = visible_length(text, parse_mode, utf16=self.utf16)
        if problem:
            raise BotApiError(400, f"Bad Request: can't parse entities: {problem}")
        if length > MAX_TEXT_LENGTH:
            raise BotApiError(400, "Bad Request: message is too long")
        thread = self._topic(chat, params)
        message_id = self._next_id(chat.id)
        preview = params.get("link_preview_options")
        sent = SentMessage("sendMessage", chat.id, message_id, text, parse_mode=parse_mode,
                           link_preview_options=preview if isinstance(preview, dict) else None,
                           disable_notification=bool(params.get("disable_notification", False)), params=params,
                           message_thread_id=thread, sent_at=self.clock())
        with self.lock:
            self.messages.append(sent)
        data = self._message_json(chat, message_id)
        data["text"] = text if (parse_mode or "").upper() != "HTML" else _strip_tags(text)
        if isinstance(preview, dict):
            data["link_preview_options"] = preview
        return data

    def _send_photo(self, params: dict[str, Any]) -> dict[str, Any]:
        chat = self._chat(params)
        photo = params.get("photo")
        if not photo:
            raise BotApiError(400, "Bad Request: there is no photo in the request")
        caption = params.get("caption")
        parse_mode = params.get("parse_mode")
        if caption:
            length, problem = visible_length(str(caption), parse_mode, utf16=self.utf16)
            if problem:
                raise BotApiError(400, f"Bad Request: can't parse entities: {problem}")
            if length > MAX_CAPTION_LENGTH:
                raise BotApiError(400, "Bad Request: message caption is too long")
        thread = self._topic(chat, params)
        size = None
        if self.fetch_photos and str(photo).lower().startswith(("http://", "https://")):
            size = self._fetch_photo(str(photo))
        message_id = self._next_id(chat.id)
        sent = SentMessage("sendPhoto", chat.id, message_id, None, caption=caption, photo=str(photo),
                           parse_mode=parse_mode, disable_notification=bool(params.get("disable_notification", False)),
                           params=params, message_thread_id=thread, photo_bytes=size, sent_at=self.clock())
        with self.lock:
            self.messages.append(sent)
        data = self._message_json(chat, message_id)
        data["photo"] = [{"file_id": f"AgAC-fake-{message_id}-{size}", "file_unique_id": f"u{message_id}{size}",
                          "width": size, "height": size, "file_size": size * 40} for size in (90, 320, 800)]
        if caption:
            data["caption"] = caption if (parse_mode or "").upper() != "HTML" else _strip_tags(str(caption))
        return data


    # -- edits and deletions (Bot API: editMessageText/Caption/Media, deleteMessage) ----------------------

    NOT_MODIFIED = ("Bad Request: message is not modified: specified new message content and reply markup are "
                    "exactly the same as a current content and reply markup of the message")
    DELETE_WINDOW = 48 * 3600.0

    def _target(self, params: dict[str, Any], what: str) -> tuple[Chat, SentMessage]:
        """The message an edit or deletion names (``what``: "edit" / "delete"), with Telegram's errors."""
        chat = self._chat(params)
        try:
            message_id = int(params.get("message_id") or 0)
        except (TypeError, ValueError):
            raise BotApiError(400, "Bad Request: message identifier is not specified") from None
        with self.lock:
            target = next((m for m in self.messages if m.chat_id == chat.id and m.message_id == message_id
                           and not m.deleted), None)
        if target is None:
            raise BotApiError(400, f"Bad Request: message to {what} not found")
        return chat, target

    def _check_text(self, text: str, parse_mode: Any, limit: int, too_long: str) -> None:
        length, problem = visible_length(text, parse_mode, utf16=self.utf16)
        if problem:
            raise BotApiError(400, f"Bad Request: can't parse entities: {problem}")
        if length > limit:
            raise BotApiError(400, f"Bad Request: {too_long}")

    def _edited(self, chat: Chat, target: SentMessage, method: str) -> dict[str, Any]:
        with self.lock:
            self.changes.append(Change(method, chat.id, target.message_id, target.text or target.caption,
                                       target.photo))
        data = self._message_json(chat, target.message_id)
        shown = target.text if target.method == "sendMessage" else target.caption
        if shown:
            plain = shown if (target.parse_mode or "").upper() != "HTML" else _strip_tags(shown)
            data["text" if target.method == "sendMessage" else "caption"] = plain
        return data

    def _edit_text(self, params: dict[str, Any]) -> dict[str, Any]:
        chat, target = self._target(params, "edit")
        if target.method != "sendMessage":
            raise BotApiError(400, "Bad Request: there is no text in the message to edit")
        text = str(params.get("text") or "")
        if not text.strip():
            raise BotApiError(400, "Bad Request: message text is empty")
        parse_mode = params.get("parse_mode")
        self._check_text(text, parse_mode, MAX_TEXT_LENGTH, "MESSAGE_TOO_LONG")
        with self.lock:
            if target.text == text:
                raise BotApiError(400, self.NOT_MODIFIED)
            target.text, target.parse_mode = text, parse_mode
        return self._edited(chat, target, "editMessageText")

    def _edit_caption(self, params: dict[str, Any]) -> dict[str, Any]:
        chat, target = self._target(params, "edit")
        if target.method != "sendPhoto":
            raise BotApiError(400, "Bad Request: there is no caption in the message to edit")
        caption = str(params.get("caption") or "")
        parse_mode = params.get("parse_mode")
        self._check_text(caption, parse_mode, MAX_CAPTION_LENGTH, "message caption is too long")
        with self.lock:
            if target.caption == caption:
                raise BotApiError(400, self.NOT_MODIFIED)
            target.caption, target.parse_mode = caption, parse_mode
        return self._edited(chat, target, "editMessageCaption")

    def _edit_media(self, params: dict[str, Any]) -> dict[str, Any]:
        chat, target = self._target(params, "edit")
        media = params.get("media")
        if not isinstance(media, dict) or media.get("type") != "photo" or not media.get("media"):
            raise BotApiError(400, "Bad Request: can't parse InputMedia: media not found")
        if target.method != "sendPhoto":
            raise BotApiError(400, "Bad Request: there is no media in the message to edit")
        caption = str(media.get("caption") or "")
        parse_mode = media.get("parse_mode")
        self._check_text(caption, parse_mode, MAX_CAPTION_LENGTH, "message caption is too long")
        with self.lock:
            if target.caption == caption and target.photo == str(media["media"]):
                raise BotApiError(400, self.NOT_MODIFIED)
            target.caption, target.photo, target.parse_mode = caption, str(media["media"]), parse_mode
        return self._edited(chat, target, "editMessageMedia")

    def _delete_message(self, params: dict[str, Any]) -> bool:
        chat, target = self._target(params, "delete")
        if self.clock() - target.sent_at > self.DELETE_WINDOW:
            raise BotApiError(400, "Bad Request: message can't be deleted")
        with self.lock:
            target.deleted = True
            self.changes.append(Change("deleteMessage", chat.id, target.message_id))
        return True


def _lower_first(name: str) -> str:
    return name[:1].lower() + name[1:]


def _strip_tags(text: str) -> str:
    checker = _EntityChecker()
    checker.feed(text)
    checker.close()
    return "".join(checker.visible)


# -- the update side: a bot that receives (appended for the admin bot) ---------------------------

_BOT_COMMAND = re.compile(r"^/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,32})?")
_COMMAND_NAME = re.compile(r"^[a-z0-9_]{1,32}$")


@dataclass(frozen=True)
class FakeUser:
    """A Telegram user who talks to the bot. ``username`` without '@'."""

    id: int
    username: str | None = None
    first_name: str = "Test"

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        if self.username is not None:
            data["username"] = self.username
        return data


class FakeChatBotApi(FakeBotApi):
    """``FakeBotApi`` plus what a bot that *receives* needs: updates, commands, callbacks, edits, webhooks.

    Scripting::

        fake.send(ALICE, "/subscribe MEK news")            # a message in ALICE's private chat
        fake.send(ALICE, "/status", chat=group)             # ... or in a group (see ``group``)
        fake.press(ALICE, fake.sent_to(ALICE.id)[-1], "Next »")   # a callback query from that button

    ``getUpdates`` has long-poll semantics: ``offset`` confirms (drops) older
    updates; with nothing queued it waits for ``min(timeout, max_wait)`` seconds
    and answers as soon as an update is queued (so a test never waits long),
    else answers ``[]``. While a webhook is set, ``getUpdates`` answers 409 as
    Telegram does. ``setMyCommands`` validates like Telegram and records the
    list per scope in ``commands`` (key ``"chat:<id>"`` or the scope type); a
    chat scope for an unknown chat is 400 "chat not found". Each callback query
    can be answered once (``answers``); ``editMessageText`` edits the recorded
    ``SentMessage`` in place (text and ``params["reply_markup"]``) and logs
    ``edits``; an edit that changes nothing is 400 "message is not modified".
    """

    def __init__(self, token: str = DEFAULT_TOKEN, *, max_wait: float = 0.2, utf16: bool = True,
                 **kwargs: Any) -> None:
        super().__init__(token, utf16=utf16, **kwargs)
        self.max_wait = max_wait
        self._queue: list[dict[str, Any]] = []
        self._update_ids = itertools.count(1)
        self._query_ids = itertools.count(1)
        self._arrived = threading.Condition(self.lock)
        self._closing = False
        self._open_queries: set[str] = set()
        self.commands: dict[str, list[dict[str, Any]]] = {}
        self.answers: list[dict[str, Any]] = []
        self.edits: list[dict[str, Any]] = []
        self.webhook: dict[str, Any] | None = None
        self.get_updates_calls = 0
        self.methods.update({
            "getUpdates": self._get_updates,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": self._get_my_commands,
            "answerCallbackQuery": self._answer_callback_query,
            "editMessageText": self._edit_message_text,
            "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
        })

    # -- scripting ---------------------------------------------------------------------------

    def private_chat(self, user: FakeUser) -> Chat:
        """The user's private chat with the bot (known to the fake from now on)."""
        with self.lock:
            known = self.chats.get(user.id)
        return known or self.add_chat(Chat(user.id, type="private", title=None, username=user.username))

    def group(self, chat_id: int, title: str = "Admins") -> Chat:
        return self.add_chat(Chat(chat_id, type="supergroup", title=title))

    def message_update(self, user: FakeUser, text: str, chat: Chat | None = None) -> dict[str, Any]:
        """A ``message`` update (not queued): bot_command entity as Telegram marks it."""
        chat = chat or self.private_chat(user)
        message: dict[str, Any] = {"message_id": self._next_id(chat.id), "date": int(self.clock()),
                                   "chat": chat.to_json(), "from": user.to_json(), "text": text}
        command = _BOT_COMMAND.match(text)
        if command:
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command.group(0))}]
        return {"update_id": next(self._update_ids), "message": message}

    def send(self, user: FakeUser, text: str, chat: Chat | None = None) -> dict[str, Any]:
        """Queue a message from ``user`` (in their private chat unless ``chat``) for getUpdates."""
        return self.enqueue(self.message_update(user, text, chat))

    def press(self, user: FakeUser, message: SentMessage, label: str) -> dict[str, Any]:
        """Queue a callback query: ``user`` presses the button of ``message`` whose text starts with ``label``."""
        for row in self.keyboard(message):
            for button in row:
                if button["text"].startswith(label):
                    return self.callback(user, message, button["callback_data"])
        raise AssertionError(f"no button {label!r}; buttons: {self.labels(message)}")

    def callback(self, user: FakeUser, message: SentMessage, data: str) -> dict[str, Any]:
        """Queue a callback query with any ``data`` (e.g. stale or forged) from ``message``."""
        with self.lock:
            chat = self.chats[message.chat_id]
            query_id = f"cq{next(self._query_ids)}"
            self._open_queries.add(query_id)
        shown: dict[str, Any] = {**self._message_json(chat, message.message_id),
                                 "text": _strip_tags(message.text or "")}
        markup = message.params.get("reply_markup")
        if isinstance(markup, dict):
            shown["reply_markup"] = markup
        update = {"update_id": next(self._update_ids),
                  "callback_query": {"id": query_id, "from": user.to_json(), "chat_instance": f"ci{chat.id}",
                                     "data": data, "message": shown}}
        return self.enqueue(update)

    def enqueue(self, update: dict[str, Any]) -> dict[str, Any]:
        with self._arrived:
            self._queue.append(update)
            self._arrived.notify_all()
        return update

    @staticmethod
    def keyboard(message: SentMessage) -> list[list[dict[str, Any]]]:
        markup = message.params.get("reply_markup")
        if not isinstance(markup, dict):
            return []
        return list(markup.get("inline_keyboard") or [])

    def labels(self, message: SentMessage) -> list[str]:
        return [b["text"] for row in self.keyboard(message) for b in row]

    @property
    def pending_updates(self) -> int:
        with self.lock:
            return len(self._queue)

    def stop(self) -> None:
        with self._arrived:
            self._closing = True
            self._arrived.notify_all()
        super().stop()

    # -- methods -----------------------------------------------------------------------------

    def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        offset = int(params.get("offset") or 0)
        limit = int(params.get("limit") or 100)
        timeout = float(params.get("timeout") or 0)
        with self._arrived:
            self.get_updates_calls += 1
            if self.webhook is not None:
                raise BotApiError(409, "Conflict: can't use getUpdates method while webhook is active; "
                                       "use deleteWebhook to delete the webhook first")
            if offset:
                self._queue = [u for u in self._queue if u["update_id"] >= offset]
            if not self._queue and timeout > 0 and not self._closing:
                self._arrived.wait(min(timeout, self.max_wait))
            return list(self._queue[: max(1, min(limit, 100))])

    def _set_my_commands(self, params: dict[str, Any]) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise BotApiError(400, "Bad Request: commands must be an array of at most 100 BotCommand")
        for command in commands:
            if not _COMMAND_NAME.match(str(command.get("command", ""))):
                raise BotApiError(400, "Bad Request: BOT_COMMAND_INVALID")
            if not 1 <= len(str(command.get("description", ""))) <= 256:
                raise BotApiError(400, "Bad Request: BOT_COMMAND_DESCRIPTION_INVALID")
        key = self._scope_key(params.get("scope"))
        with self.lock:
            self.commands[key] = [dict(c) for c in commands]
        return True

    def _get_my_commands(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        key = self._scope_key(params.get("scope"))
        with self.lock:
            return list(self.commands.get(key, []))

    def _scope_key(self, scope: Any) -> str:
        if not isinstance(scope, dict) or scope.get("type", "default") == "default":
            return "default"
        if scope.get("type") in ("chat", "chat_administrators", "chat_member"):
            chat = self._chat({"chat_id": scope.get("chat_id")})
            return f"{scope['type']}:{chat.id}"
        return str(scope["type"])

    def _answer_callback_query(self, params: dict[str, Any]) -> bool:
        query_id = str(params.get("callback_query_id") or "")
        with self.lock:
            if query_id not in self._open_queries:
                raise BotApiError(400, "Bad Request: query is too old and response timeout expired or "
                                       "query ID is invalid")
            self._open_queries.discard(query_id)
            self.answers.append({"callback_query_id": query_id, "text": params.get("text"),
                                 "show_alert": str(params.get("show_alert", "")).lower() == "true"})
        return True

    def _edit_message_text(self, params: dict[str, Any]) -> dict[str, Any]:
        chat = self._chat(params)
        message_id = int(params.get("message_id") or 0)
        text = str(params.get("text") or "")
        parse_mode = params.get("parse_mode")
        if not text.strip():
            raise BotApiError(400, "Bad Request: message text is empty")
        length, problem = visible_length(text, parse_mode, utf16=self.utf16)
        if problem:
            raise BotApiError(400, f"Bad Request: can't parse entities: {problem}")
        if length > MAX_TEXT_LENGTH:
            raise BotApiError(400, "Bad Request: MESSAGE_TOO_LONG")
        markup = params.get("reply_markup")
        with self.lock:
            target = next((m for m in self.messages if m.chat_id == chat.id and m.message_id == message_id), None)
            if target is None:
                raise BotApiError(400, "Bad Request: message to edit not found")
            if target.text == text and target.params.get("reply_markup") == markup:
                raise BotApiError(400, "Bad Request: message is not modified: specified new message content "
                                       "and reply markup are exactly the same as a current content and reply "
                                       "markup of the message")
            target.text = text
            target.parse_mode = parse_mode
            target.params = {**target.params, "reply_markup": markup}
            self.edits.append({"chat_id": chat.id, "message_id": message_id, "text": text,
                               "reply_markup": markup})
        data = self._message_json(chat, message_id)
        data["text"] = text if (parse_mode or "").upper() != "HTML" else _strip_tags(text)
        if isinstance(markup, dict):
            data["reply_markup"] = markup
        return data

    def _set_webhook(self, params: dict[str, Any]) -> bool:
        url = str(params.get("url") or "")
        if not url.startswith("https://"):
            raise BotApiError(400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
        with self.lock:
            self.webhook = {"url": url, "secret_token": params.get("secret_token"),
                            "allowed_updates": params.get("allowed_updates")}
        return True

    def _delete_webhook(self, params: dict[str, Any]) -> bool:
        with self.lock:
            self.webhook = None
            if str(params.get("drop_pending_updates", "")).lower() == "true":
                self._queue.clear()
        return True

    def _get_webhook_info(self, params: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            return {"url": (self.webhook or {}).get("url", ""), "has_custom_certificate": False,
                    "pending_update_count": len(self._queue)}
