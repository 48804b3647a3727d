"""``FakeDiscord``: a loopback Discord API for one incoming webhook (execute, get, edit and delete messages).

Written from Discord's documentation (docs.discord.com: Webhook resource "Execute Webhook",
"Get Webhook with Token", "Edit/Delete Webhook Message"; "Rate Limits"; "Opcodes and Status
Codes" for the JSON error codes; Message and Embed objects for the limits) and platform-apis §5.2.
Point a channel's ``api_base`` at ``fake.api_base`` and its webhook variable at ``fake.webhook_url``.

Routes (``/api/v10/webhooks/{id}/{token}``; the unversioned ``/api/webhooks/...`` too):

* ``POST`` executes the webhook: JSON body with ``content`` and/or ``embeds``, ``allowed_mentions``,
  ``thread_name``; query ``wait`` and ``thread_id``. ``wait=true`` → 200 + the Message object,
  else 204. Checked like Discord: content ≤ 2,000; ≤ 10 embeds, title ≤ 256, description ≤
  4,096, footer ≤ 2,048, author name ≤ 256, all embeds ≤ 6,000, ``url``/``image.url`` http(s),
  ``timestamp`` ISO 8601 (→ 400 code 50035 "Invalid Form Body" with the ``errors`` tree naming the
  field); nothing to show → 400 50006; a body that is not JSON → 400 50109. Discord does not say
  in which unit it counts: the fake counts UTF-16 code units, the stricter reading. Threads: with
  ``thread_id`` the message goes into that thread of the webhook's channel (unknown → 400 10003,
  archived → 400 50083); on a forum webhook (``forum=True``) a ``thread_name`` (≤ 100) opens a new
  thread per message (whose id is the message's id, as for Discord's forum posts), and neither →
  400 220001, both → 400 220002; ``thread_name`` on a webhook that is not a forum's → 400 220003.
* ``GET`` → the Webhook object (type 1, name, channel_id, guild_id, **and the token**, as Discord
  answers a request authenticated by it).
* ``PATCH``/``DELETE .../messages/{message_id}`` edit and delete a message of this webhook
  (unknown → 404 10008).

Every answer carries the route's bucket: ``X-RateLimit-Limit/-Remaining/-Reset`` (epoch seconds,
fractional) ``/-Reset-After`` (seconds, fractional) ``/-Bucket``. A bucket allows ``bucket_limit``
requests per ``bucket_window`` seconds of ``clock()``, starting when its first request comes; one
more → 429 ``{"message": "You are being rate limited.", "retry_after": <s>, "global": false}`` with
``Retry-After`` and ``X-RateLimit-Scope: user`` (a client that ignores ``Remaining: 0`` meets it).
An unknown webhook id → 404 ``{"message": "Unknown Webhook", "code": 10015}``; a wrong token → 401
``{"message": "Invalid Webhook Token", "code": 50027}``. ``invalid_requests`` counts the 401, 403
and (not ``shared``) 429 answers, as Cloudflare does.

Scripting (besides ``fail_next`` / ``drop_next`` / ``hold_next`` of ``ScriptedServer``; route keys
``execute``, ``get``, ``edit``, ``delete``)::

    fake.rate_limit(37.25)                      # next execute: 429, retry_after 37.25 (is_global, scope)
    fake.cloudflare_ban()                       # next execute: Cloudflare's HTML 429 (no Discord JSON)
    fake.error(403, 50013, "Missing Permissions")
    fake.delete_webhook()                       # from now on: 404 10015 everywhere
    fake.regenerate_token()                     # the old token: 401 50027

Recorded: ``fake.messages`` (every message created, with the body's ``allowed_mentions`` and
whether it pinged anyone), ``fake.requests``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from tests.fakes.http import Request, Response
from tests.fakes.telegram_api import Fault, ScriptedServer

WEBHOOK_ID = "1198765432109876543"
WEBHOOK_TOKEN = "Zx9-FakeWebhookToken_for_tagrelay_tests_0123456789abcdefghijklmnopQRS"
"""68 characters of [A-Za-z0-9_-], like a real webhook token."""
NEW_TOKEN = "Rg3-RegeneratedToken_0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJ"
"""The token after ``regenerate_token``."""
GUILD_ID = "1100000000000000001"
CHANNEL_ID = "1100000000000000002"
THREAD_ID = "1100000000000000003"
ARCHIVED_THREAD_ID = "1100000000000000004"
WEBHOOK_NAME = "tagrelay"

CONTENT_LIMIT = 2000
EMBEDS_LIMIT = 10
TITLE_LIMIT = 256
DESCRIPTION_LIMIT = 4096
FOOTER_LIMIT = 2048
AUTHOR_LIMIT = 256
FIELDS_LIMIT = 25
FIELD_NAME_LIMIT = 256
FIELD_VALUE_LIMIT = 1024
EMBEDS_TOTAL_LIMIT = 6000
THREAD_NAME_LIMIT = 100
_PATH = re.compile(r"^/api(?:/v(?P<version>[0-9]+))?/webhooks/(?P<id>[0-9]+)/(?P<token>[^/]+)"
                   r"(?:/messages/(?P<message>[^/]+))?/?$")
_MENTIONS = ("everyone", "users", "roles")


def utf16(text: str) -> int:
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def error_body(code: int, message: str, errors: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"message": message, "code": code}
    if errors:
        body["errors"] = errors
    return body


def field_error(path: list[str], code: str, message: str) -> dict[str, Any]:
    """``{"embeds": {"0": {"title": {"_errors": [{"code", "message"}]}}}}`` for ``path``."""
    node: dict[str, Any] = {"_errors": [{"code": code, "message": message}]}
    for part in reversed(path):
        node = {part: node}
    return node


@dataclass
class Message:
    """A message the webhook created."""

    id: str
    channel_id: str
    """The channel, or the thread it went into (a new thread's id for a forum post)."""
    content: str
    embeds: list[dict[str, Any]]
    allowed_mentions: Any
    """The body's ``allowed_mentions`` as sent (``None``: absent, which lets Discord parse every mention)."""
    pinged: list[str]
    """What the message notified: ``everyone`` (an @everyone/@here Discord let through), ``users``, ``roles``."""
    thread_name: str | None
    thread_id: str | None
    created_at: datetime
    edits: list[dict[str, Any]] = field(default_factory=list)
    deleted: bool = False


class FakeDiscord(ScriptedServer):
    """One incoming webhook on 127.0.0.1. ``forum``: the webhook's channel is a forum channel."""

    def __init__(self, *, forum: bool = False, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 bucket_limit: int = 5, bucket_window: float = 2.0, name: str = WEBHOOK_NAME) -> None:
        super().__init__()
        self.forum = forum
        self.clock = clock
        self.bucket_limit = bucket_limit
        self.bucket_window = bucket_window
        self.name = name
        self.token = WEBHOOK_TOKEN
        self.deleted = False
        self.threads: dict[str, bool] = {THREAD_ID: False, ARCHIVED_THREAD_ID: True}
        """Threads of the webhook's channel: id → archived."""
        self.messages: list[Message] = []
        self.invalid_requests = 0
        self.rate_limited = 0
        """429s the fake's own buckets answered (a client that ignored ``Remaining: 0``)."""
        self._windows: dict[str, tuple[datetime, int]] = {}
        self._ids = itertools.count(1300000000000000001)

    # -- addresses ------------------------------------------------------------------------------

    @property
    def api_base(self) -> str:
        return f"{self.url}/api"

    @property
    def webhook_url(self) -> str:
        """The URL Discord's "Copy Webhook URL" would give (unversioned), pointing here."""
        return f"{self.url}/api/webhooks/{WEBHOOK_ID}/{self.token}"

    # -- scripting ------------------------------------------------------------------------------

    def rate_limit(self, retry_after: float, *, is_global: bool = False, scope: str = "user",
                   match: str | None = "execute", times: int = 1) -> None:
        """The next ``times`` matching requests: 429 with ``retry_after`` (and the headers Discord sends)."""
        headers = {"Retry-After": str(math.ceil(retry_after)), "X-RateLimit-Scope": "global" if is_global else scope}
        if is_global:
            headers["X-RateLimit-Global"] = "true"
        else:
            headers.update({"X-RateLimit-Limit": str(self.bucket_limit), "X-RateLimit-Remaining": "0",
                            "X-RateLimit-Reset-After": f"{retry_after:.3f}",
                            "X-RateLimit-Reset": f"{self.clock().timestamp() + retry_after:.3f}",
                            "X-RateLimit-Bucket": _bucket_hash(match or "execute")})
        body = {"message": "You are being rate limited.", "retry_after": retry_after, "global": is_global}
        self.add_fault(Fault(response=Response.json(body, 429, headers), match=match, times=times))

    def cloudflare_ban(self, *, match: str | None = "execute", retry_after: int | None = None) -> None:
        """The next matching request: Cloudflare's 429 page (an IP ban), HTML, no Discord JSON."""
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        page = "<!DOCTYPE html><html><head><title>Access denied | discord.com used Cloudflare to restrict access" \
               "</title></head><body>Error 1015 You are being rate limited</body></html>"
        self.add_fault(Fault(response=Response.text(page, 429, "text/html; charset=UTF-8", headers), match=match))

    def error(self, status: int, code: int, message: str, errors: dict[str, Any] | None = None, *,
              match: str | None = "execute", times: int = 1) -> None:
        """The next ``times`` matching requests: ``status`` with Discord's error JSON."""
        self.fail_next(status, error_body(code, message, errors), match=match, times=times)

    def delete_webhook(self) -> None:
        with self.lock:
            self.deleted = True

    def restore_webhook(self) -> None:
        with self.lock:
            self.deleted = False

    def regenerate_token(self, token: str = NEW_TOKEN) -> None:
        """Discord's "Reset" of the webhook URL: the old token is refused from now on."""
        with self.lock:
            self.token = token

    def live(self) -> list[Message]:
        """Messages not deleted, in creation order."""
        with self.lock:
            return [m for m in self.messages if not m.deleted]

    # -- plumbing -------------------------------------------------------------------------------

    def route_key(self, request: Request) -> str:
        match = _PATH.match(request.path)
        if match is None:
            return "other"
        if match["message"] is not None:
            return {"PATCH": "edit", "DELETE": "delete", "GET": "get-message"}.get(request.method, "other")
        return {"POST": "execute", "GET": "get"}.get(request.method, "other")

    def handle(self, request: Request) -> Response | object:
        result = super().handle(request)
        if isinstance(result, Response):
            scope = {k.lower(): v for k, v in result.headers.items()}.get("x-ratelimit-scope", "")
            if result.status in (401, 403) or (result.status == 429 and scope != "shared"):
                with self.lock:
                    self.invalid_requests += 1
        return result

    def route(self, request: Request) -> Response | object:
        match = _PATH.match(request.path)
        if match is None:
            return Response.json(error_body(0, "404: Not Found"), 404)
        with self.lock:
            deleted, token = self.deleted, self.token
        if match["id"] != WEBHOOK_ID or deleted:
            return Response.json(error_body(10015, "Unknown Webhook"), 404)
        if match["token"] != token:
            return Response.json(error_body(50027, "Invalid Webhook Token"), 401)
        key = self.route_key(request)
        limited = self._take(key)
        if limited is not None:
            return limited
        headers = self._bucket_headers(key)
        if key == "get":
            return Response.json(self._webhook_json(), 200, headers)
        if key == "execute":
            return self._execute(request, headers)
        if key in ("edit", "delete"):
            return self._message_call(request, str(match["message"]), headers)
        return Response.json(error_body(0, "405: Method Not Allowed"), 405, headers)

    def _take(self, key: str) -> Response | None:
        """Count the request in its bucket; a 429 when the bucket is spent."""
        now = self.clock()
        with self.lock:
            start, used = self._windows.get(key, (now, 0))
            if now >= start + timedelta(seconds=self.bucket_window):
                start, used = now, 0
            if used >= self.bucket_limit:
                self.rate_limited += 1
                after = (start + timedelta(seconds=self.bucket_window) - now).total_seconds()
                headers = {**self._headers_for(key, start, 0, now), "Retry-After": str(math.ceil(after)),
                           "X-RateLimit-Scope": "user"}
                return Response.json({"message": "You are being rate limited.", "retry_after": round(after, 3),
                                      "global": False}, 429, headers)
            self._windows[key] = (start, used + 1)
        return None

    def _bucket_headers(self, key: str) -> dict[str, str]:
        now = self.clock()
        with self.lock:
            start, used = self._windows[key]
        return self._headers_for(key, start, self.bucket_limit - used, now)

    def _headers_for(self, key: str, start: datetime, remaining: int, now: datetime) -> dict[str, str]:
        reset = start + timedelta(seconds=self.bucket_window)
        return {"X-RateLimit-Limit": str(self.bucket_limit), "X-RateLimit-Remaining": str(remaining),
                "X-RateLimit-Reset": f"{reset.timestamp():.3f}",
                "X-RateLimit-Reset-After": f"{max(0.0, (reset - now).total_seconds()):.3f}",
                "X-RateLimit-Bucket": _bucket_hash(key)}

    def _webhook_json(self) -> dict[str, Any]:
        return {"application_id": None, "avatar": None, "channel_id": CHANNEL_ID, "guild_id": GUILD_ID,
                "id": WEBHOOK_ID, "name": self.name, "type": 1, "token": self.token}

    def _execute(self, request: Request, headers: dict[str, str]) -> Response:
        body, problem = _json_body(request)
        if problem is not None:
            return Response.json(problem, 400, headers)
        assert isinstance(body, dict)
        errors = validate_message(body)
        thread_name = body.get("thread_name")
        if isinstance(thread_name, str) and (utf16(thread_name) > THREAD_NAME_LIMIT or not thread_name.strip()):
            errors.update(field_error(["thread_name"], "BASE_TYPE_BAD_LENGTH",
                                      f"Must be between 1 and {THREAD_NAME_LIMIT} in length."))
        if errors:
            return Response.json(error_body(50035, "Invalid Form Body", errors), 400, headers)
        content = body.get("content") or ""
        if not (isinstance(content, str) and content.strip()) and not body.get("embeds"):
            return Response.json(error_body(50006, "Cannot send an empty message"), 400, headers)
        thread_id = request.arg("thread_id")
        message_id = str(next(self._ids))
        with self.lock:
            threads = dict(self.threads)
        if thread_id is not None and thread_name is not None:
            return Response.json(error_body(220002, "Webhooks posted to forum channels cannot have both a "
                                                    "thread_name and thread_id"), 400, headers)
        if thread_id is not None:
            if thread_id not in threads:
                return Response.json(error_body(10003, "Unknown Channel"), 400, headers)
            if threads[thread_id]:
                return Response.json(error_body(50083, "Thread is archived"), 400, headers)
            channel = thread_id
        elif thread_name is not None:
            if not self.forum:
                return Response.json(error_body(220003, "Webhooks can only create threads in forum channels"),
                                     400, headers)
            channel = message_id  # a forum post: the thread's id is its starter message's id
        elif self.forum:
            return Response.json(error_body(220001, "Webhooks posted to forum channels must have a thread_name "
                                                    "or thread_id"), 400, headers)
        else:
            channel = CHANNEL_ID
        message = Message(id=message_id, channel_id=channel, content=content,
                          embeds=[{**e, "type": "rich"} for e in body.get("embeds") or []],
                          allowed_mentions=body.get("allowed_mentions"), pinged=_pings(content, body),
                          thread_name=thread_name if isinstance(thread_name, str) else None,
                          thread_id=thread_id, created_at=self.clock())
        with self.lock:
            self.messages.append(message)
            if thread_name is not None:
                self.threads[channel] = False
        if request.arg("wait") != "true":
            return Response(204, b"", headers)
        return Response.json(self._message_json(message), 200, headers)

    def _message_call(self, request: Request, message_id: str, headers: dict[str, str]) -> Response:
        """Edit or delete: a message in a thread is found only with that thread's ``thread_id``."""
        where = request.arg("thread_id") or CHANNEL_ID
        with self.lock:
            message = next((m for m in self.messages if m.id == message_id and not m.deleted
                            and m.channel_id == where), None)
        if message is None:
            return Response.json(error_body(10008, "Unknown Message"), 404, headers)
        if request.method == "DELETE":
            with self.lock:
                message.deleted = True
            return Response(204, b"", headers)
        body, problem = _json_body(request)
        if problem is not None:
            return Response.json(problem, 400, headers)
        assert isinstance(body, dict)
        errors = validate_message(body)
        if errors:
            return Response.json(error_body(50035, "Invalid Form Body", errors), 400, headers)
        with self.lock:
            message.edits.append(body)
            if "content" in body:
                message.content = body.get("content") or ""
            if "embeds" in body:
                message.embeds = [{**e, "type": "rich"} for e in body.get("embeds") or []]
        return Response.json(self._message_json(message), 200, headers)

    def _message_json(self, message: Message) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": message.id, "type": 0, "content": message.content, "channel_id": message.channel_id,
            "author": {"bot": True, "id": WEBHOOK_ID, "username": self.name, "avatar": None,
                       "discriminator": "0000"},
            "attachments": [], "embeds": message.embeds, "mentions": [], "mention_roles": [], "pinned": False,
            "mention_everyone": "everyone" in message.pinged, "tts": False,
            "timestamp": message.created_at.isoformat(), "edited_timestamp": None, "flags": 0, "components": [],
            "webhook_id": WEBHOOK_ID}
        if message.thread_name is not None or message.thread_id is not None:
            data["position"] = 0
        return data


def _bucket_hash(key: str) -> str:
    """A stable 32-hex-digit bucket id per route, like Discord's."""
    return hashlib.sha256(f"fake-discord:{key}".encode()).hexdigest()[:32]


def _json_body(request: Request) -> tuple[Any, dict[str, Any] | None]:
    """The request's JSON object, or Discord's 400 body for one that is not."""
    if not (request.header("content-type") or "").lower().startswith("application/json"):
        return None, error_body(50035, "Invalid Form Body", field_error([], "CONTENT_TYPE_INVALID",
                                                                       "Expected \"Content-Type\" header to be "
                                                                       "one of {'application/json', "
                                                                       "'multipart/form-data'}."))
    try:
        body = json.loads(request.body or b"null")
    except ValueError:
        return None, error_body(50109, "The request body contains invalid JSON.")
    if not isinstance(body, dict):
        return None, error_body(50109, "The request body contains invalid JSON.")
    return body, None


def _too_long(errors: dict[str, Any], path: list[str], value: Any, limit: int) -> int:
    if value is None:
        return 0
    if not isinstance(value, str):
        _merge(errors, field_error(path, "STRING_TYPE_CONVERT", "Could not interpret value as string."))
        return 0
    if utf16(value) > limit:
        _merge(errors, field_error(path, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length."))
    return utf16(value)


def _merge(into: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if key in into and isinstance(into[key], dict) and isinstance(value, dict):
            _merge(into[key], value)
        else:
            into[key] = value


def _url_problem(value: Any) -> tuple[str, str] | None:
    if not isinstance(value, str):
        return "URL_TYPE_INVALID_URL", "Not a well formed URL."
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https"):
        return ("URL_TYPE_INVALID_SCHEME", f"Scheme \"{parts.scheme}\" is not supported. Scheme must be one of "
                                           "('http', 'https').")
    if not parts.netloc:
        return "URL_TYPE_INVALID_URL", "Not a well formed URL."
    return None


def validate_message(body: dict[str, Any]) -> dict[str, Any]:
    """Discord's ``errors`` tree for the body's content and embeds ({} when valid)."""
    errors: dict[str, Any] = {}
    _too_long(errors, ["content"], body.get("content"), CONTENT_LIMIT)
    embeds = body.get("embeds")
    if embeds is not None and not isinstance(embeds, list):
        _merge(errors, field_error(["embeds"], "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType"))
        embeds = []
    embeds = embeds or []
    if len(embeds) > EMBEDS_LIMIT:
        _merge(errors, field_error(["embeds"], "BASE_TYPE_MAX_LENGTH", f"Must be {EMBEDS_LIMIT} or fewer in length."))
    total = 0
    for i, embed in enumerate(embeds):
        where = ["embeds", str(i)]
        if not isinstance(embed, dict):
            _merge(errors, field_error(where, "MODEL_TYPE_CONVERT", "Only dictionaries may be used in a ModelType"))
            continue
        total += _too_long(errors, [*where, "title"], embed.get("title"), TITLE_LIMIT)
        total += _too_long(errors, [*where, "description"], embed.get("description"), DESCRIPTION_LIMIT)
        footer = embed.get("footer")
        if footer is not None:
            total += _too_long(errors, [*where, "footer", "text"],
                               footer.get("text") if isinstance(footer, dict) else footer, FOOTER_LIMIT)
        author = embed.get("author")
        if author is not None:
            total += _too_long(errors, [*where, "author", "name"],
                               author.get("name") if isinstance(author, dict) else author, AUTHOR_LIMIT)
        fields = embed.get("fields") or []
        if len(fields) > FIELDS_LIMIT:
            _merge(errors, field_error([*where, "fields"], "BASE_TYPE_MAX_LENGTH",
                                       f"Must be {FIELDS_LIMIT} or fewer in length."))
        for j, item in enumerate(fields if isinstance(fields, list) else []):
            if isinstance(item, dict):
                total += _too_long(errors, [*where, "fields", str(j), "name"], item.get("name"), FIELD_NAME_LIMIT)
                total += _too_long(errors, [*where, "fields", str(j), "value"], item.get("value"),
                                   FIELD_VALUE_LIMIT)
        if "url" in embed:
            problem = _url_problem(embed["url"])
            if problem:
                _merge(errors, field_error([*where, "url"], *problem))
        image = embed.get("image")
        if image is not None:
            problem = _url_problem(image.get("url") if isinstance(image, dict) else None)
            if problem:
                _merge(errors, field_error([*where, "image", "url"], *problem))
        if "timestamp" in embed:
            try:
                datetime.fromisoformat(str(embed["timestamp"]))
            except ValueError:
                _merge(errors, field_error([*where, "timestamp"], "DATE_TIME_TYPE_PARSE",
                                           "Could not parse the timestamp. Should be ISO8601."))
    if total > EMBEDS_TOTAL_LIMIT:
        _merge(errors, field_error(["embeds"], "MAX_EMBED_SIZE_EXCEEDED",
                                   f"Embed size exceeds maximum size of {EMBEDS_TOTAL_LIMIT}"))
    allowed = body.get("allowed_mentions")
    if allowed is not None:
        parse = allowed.get("parse") if isinstance(allowed, dict) else None
        if not isinstance(parse, list) or any(p not in _MENTIONS for p in parse):
            _merge(errors, field_error(["allowed_mentions", "parse"], "ENUM_TYPE_COERCE",
                                       "Value must be one of ('everyone', 'users', 'roles')."))
    return errors


def _pings(content: str, body: dict[str, Any]) -> list[str]:
    """What Discord would notify for this content under the body's ``allowed_mentions`` (absent: all)."""
    allowed = body.get("allowed_mentions")
    parse = set(_MENTIONS) if allowed is None else set((allowed or {}).get("parse") or [])
    found = []
    if ("@everyone" in content or "@here" in content) and "everyone" in parse:
        found.append("everyone")
    if re.search(r"<@!?[0-9]+>", content) and "users" in parse:
        found.append("users")
    if re.search(r"<@&[0-9]+>", content) and "roles" in parse:
        found.append("roles")
    return found
