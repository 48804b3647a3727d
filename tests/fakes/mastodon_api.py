"""``FakeMastodon``: a loopback Mastodon API server (statuses, account statuses, instance, verify_credentials).

Answers like Mastodon 4.x (mastodon/documentation ``methods/statuses.md``,
``entities/Error.md``, ``api/rate-limits.md``):

* ``GET /api/v2/instance`` → ``configuration.statuses.max_characters`` and
  ``characters_reserved_per_url`` (``v2_instance=False`` answers 404, as pre-4.0
  servers do); ``GET /api/v1/instance`` likewise in the v1 shape.
* ``POST /api/v1/statuses`` (JSON or form) → 200 + Status. ``Idempotency-Key`` is
  honoured per account like the real server, and like it **for one hour**
  (``IDEMPOTENCY_TTL``, Redis TTL 3600 s in ``post_status_service.rb``): while
  ``clock()`` is less than 3600 s after the status the key created, the same
  key again returns that status (same id) and creates nothing; later it
  creates a new status (and the key now names that one).
* ``GET /api/v1/accounts/verify_credentials`` → the account.
* ``GET /api/v1/statuses/:id`` and ``/:id/source`` (``id``, ``text``, ``spoiler_text``), ``PUT
  /api/v1/statuses/:id`` (an edit: the old text goes to ``Status.edits``, as Mastodon keeps an edit
  history; validated like a post) and ``DELETE /api/v1/statuses/:id`` (``deletions``; the status is then
  404 everywhere) of the token's own statuses; another account's status or an unknown id → 404
  "Record not found".
* ``GET /api/v1/accounts/:id/statuses`` → that account's statuses, newest first
  (``limit`` default 20, at most 40; ``max_id`` / ``since_id`` page by id;
  other parameters such as ``exclude_reblogs`` are accepted and change nothing:
  the fake has no reblogs). An unknown id → 404 "Record not found". A bad or
  missing token → 401, as on the other routes.
* ``POST /api/v2/media`` (multipart ``file``, ``description``, ``focus``) like
  Mastodon 4.x (``methods/media.md``): the file must be an image of a
  ``supported_mime_types`` type (422 "File content type is invalid"), at most
  ``image_size_limit`` bytes and ``image_matrix_limit`` pixels (422), its
  ``description`` at most 1,500 characters (422). It answers 200 with the
  MediaAttachment, or, while ``media_processing`` > 0, 202 with ``url: null``;
  then ``GET /api/v1/media/:id`` answers 206 that many times, then 200 with the
  ``url``. ``DELETE /api/v1/media/:id`` deletes an unattached upload (4.4+; 422
  when attached). ``media_ids`` on a status must name this account's
  processed, unattached uploads, else 422 (as ``PostStatusService``); the
  Status lists them in ``media_attachments`` with their ``description``.
* Every answer carries ``X-RateLimit-Limit/-Remaining/-Reset`` (Reset is an
  ISO 8601 timestamp, unlike X).
* Errors as ``{"error": "..."}``: unknown token → 401 "The access token is
  invalid"; text over the limit → 422 "Validation failed: Text character limit
  of N exceeded"; blank text → 422.

Scripting (besides ``fail_next`` / ``drop_next`` / ``hold_next`` from
``ScriptedServer``, which match on the URL path)::

    fake.rate_limit(reset_at)           # next POST /api/v1/statuses: 429 + ISO X-RateLimit-Reset
    fake.reject(422, "Validation failed: ...")
    event = fake.hold_next("/api/v1/statuses")   # status created, answer held until event.set()

Recorded: ``fake.statuses`` (created, in order), ``fake.media`` (uploads by id, in
order), ``fake.requests`` (everything).
"""

from __future__ import annotations

import html
import io
import itertools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import grapheme
from PIL import Image as PIL

from tests.fakes.http import Request, Response
from tests.fakes.telegram_api import ScriptedServer

DEFAULT_TOKEN = "mastodon-test-token-0123456789abcdef"
STATUSES = "/api/v1/statuses"
MEDIA_V2 = "/api/v2/media"
DESCRIPTION_LIMIT = 1500
_MEDIA_ONE = re.compile(r"^/api/v1/media/([^/]+)$")
IDEMPOTENCY_TTL = timedelta(seconds=3600)
"""How long the real server (and the fake) honours an Idempotency-Key."""
ACCOUNT_STATUSES_LIMIT = 20
ACCOUNT_STATUSES_MAX = 40
_ACCOUNT_STATUSES = re.compile(r"^/api/v1/accounts/([^/]+)/statuses$")
_STATUS = re.compile(r"^/api/v1/statuses/([^/]+)(/source)?$")
_URL = re.compile(r"https?://[^\s<>\"]+", re.IGNORECASE)
_REMOTE_MENTION = re.compile(r"(@[A-Za-z0-9_]+)@[A-Za-z0-9.\-]+[A-Za-z0-9]")
_VISIBILITIES = ("public", "unlisted", "private", "direct")


@dataclass
class Account:
    id: str
    username: str
    display_name: str = "Tagrelay Test"


@dataclass
class Media:
    """An upload the fake holds (``POST /api/v2/media``)."""

    id: str
    account: Account
    mime: str
    size: int
    width: int
    height: int
    description: str | None
    focus: str | None
    polls_left: int
    """206 answers left before ``GET /api/v1/media/:id`` says it is processed."""
    status_id: str | None = None
    deleted: bool = False

    @property
    def processed(self) -> bool:
        return self.polls_left <= 0


@dataclass
class Status:
    """A status the fake created."""

    id: str
    account: Account
    text: str
    visibility: str
    language: str | None
    spoiler_text: str
    idempotency_key: str | None
    created_at: datetime
    """``clock()`` when it was created; its Idempotency-Key holds until ``created_at + IDEMPOTENCY_TTL``."""
    url: str
    uri: str
    media_ids: tuple[str, ...] = ()
    edits: list[str] = field(default_factory=list)
    """Earlier texts, oldest first: one per ``PUT`` that changed it (Mastodon's edit history)."""
    deleted: bool = False
    edited_at: datetime | None = None


def status_length(text: str, spoiler_text: str = "", *, url_length: int = 23) -> int:
    """Mastodon's count: graphemes, every URL as ``url_length``, remote mentions as the local part."""
    def count(s: str) -> int:
        s = _REMOTE_MENTION.sub(r"\1", s)
        s = _URL.sub("x" * url_length, s)
        return int(grapheme.length(s))

    return count(text) + count(spoiler_text)


class FakeMastodon(ScriptedServer):
    """A Mastodon instance on 127.0.0.1. ``tokens`` maps access tokens to usernames."""

    def __init__(self, *, tokens: Mapping[str, str] | None = None, max_characters: int = 500,
                 characters_reserved_per_url: int = 23, v2_instance: bool = True, rate_limit_total: int = 300,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC), image_size_limit: int = 16 * 1024 * 1024,
                 image_matrix_limit: int = 33_177_600,
                 supported_mime_types: tuple[str, ...] = ("image/jpeg", "image/png", "image/gif", "image/webp",
                                                          "image/heic", "image/avif", "video/mp4")) -> None:
        super().__init__()
        self.max_characters = max_characters
        self.characters_reserved_per_url = characters_reserved_per_url
        self.v2_instance = v2_instance
        self.rate_limit_total = rate_limit_total
        self.clock = clock
        self.accounts: dict[str, Account] = {}
        for i, (token, username) in enumerate((tokens or {DEFAULT_TOKEN: "tagrelay"}).items(), start=1):
            self.accounts[token] = Account(id=str(109000000000000000 + i), username=username)
        self.statuses: list[Status] = []
        self.deletions: list[str] = []
        """Ids of the statuses deleted, in order."""
        self.media: dict[str, Media] = {}
        self.image_size_limit = image_size_limit
        self.image_matrix_limit = image_matrix_limit
        self.supported_mime_types = supported_mime_types
        self.media_processing = 0
        """Uploads answer 202 and ``GET /api/v1/media/:id`` 206 this many times before the media is ready."""
        self.idempotent_replays = 0
        self._by_key: dict[tuple[str, str], Status] = {}
        self._ids = itertools.count(113000000000000001)
        self._calls = 0

    # -- scripting helpers -------------------------------------------------------------------

    def rate_limit(self, reset_at: datetime, *, match: str | None = STATUSES, times: int = 1) -> None:
        """429 ``{"error": "Too many requests"}`` with ``X-RateLimit-Reset`` = ``reset_at`` (ISO 8601)."""
        headers = {"X-RateLimit-Limit": str(self.rate_limit_total), "X-RateLimit-Remaining": "0",
                   "X-RateLimit-Reset": _iso(reset_at)}
        self.fail_next(429, {"error": "Too many requests"}, headers, match=match, times=times)

    def reject(self, status: int, error: str, *, match: str | None = STATUSES, times: int = 1) -> None:
        """Answer ``status`` with ``{"error": error}``."""
        self.fail_next(status, {"error": error}, match=match, times=times)

    # -- plumbing ----------------------------------------------------------------------------

    def route(self, request: Request) -> Response | object:
        method, path = request.method, request.path
        if method == "GET" and path == "/api/v2/instance":
            return self._answer(self._instance_v2()) if self.v2_instance else self._error(404, "Record not found")
        if method == "GET" and path == "/api/v1/instance":
            return self._answer(self._instance_v1())
        account = self._account(request)
        if method == "GET" and path == "/api/v1/accounts/verify_credentials":
            return self._answer(self._account_json(account)) if account else self._invalid_token()
        if method == "POST" and path == STATUSES:
            return self._post_status(request, account) if account else self._invalid_token()
        if method == "POST" and path == MEDIA_V2:
            return self._upload(request, account) if account else self._invalid_token()
        one = _MEDIA_ONE.match(path)
        if one and method in ("GET", "DELETE"):
            if not account:
                return self._invalid_token()
            return self._media_get(one.group(1), account) if method == "GET" else self._media_delete(one.group(1),
                                                                                                     account)
        listing = _ACCOUNT_STATUSES.match(path)
        if method == "GET" and listing:
            return self._account_statuses(request, listing.group(1)) if account else self._invalid_token()
        one = _STATUS.match(path)
        if one and method in ("GET", "PUT", "DELETE"):
            if account is None:
                return self._invalid_token()
            return self._status_route(request, account, one.group(1), one.group(2))
        return self._error(404, "Record not found")

    def _status_route(self, request: Request, account: Account, status_id: str, source: str | None) -> Response:
        """``GET /api/v1/statuses/:id[/source]``, ``PUT`` (edit) and ``DELETE`` of one's own status; another
        account's or a deleted one is 404 "Record not found", as Mastodon answers."""
        with self.lock:
            status = next((x for x in self.statuses if x.id == status_id and not x.deleted), None)
        if status is None or (request.method != "GET" and status.account.id != account.id):
            return self._error(404, "Record not found")
        if request.method == "GET":
            if source:
                return self._answer({"id": status.id, "text": status.text, "spoiler_text": status.spoiler_text})
            return self._answer(self._status_json(status))
        if request.method == "DELETE":
            with self.lock:
                status.deleted = True
                self.deletions.append(status.id)
            return self._answer({**self._status_json(status), "text": status.text})
        params = self._params(request)
        text = str(params.get("status") or "")
        spoiler = str(params.get("spoiler_text") or "")
        if not text.strip():
            return self._error(422, "Validation failed: Text can't be blank")
        if status_length(text, spoiler, url_length=self.characters_reserved_per_url) > self.max_characters:
            return self._error(422, f"Validation failed: Text character limit of {self.max_characters} exceeded")
        with self.lock:
            status.edits.append(status.text)
            status.text, status.spoiler_text = text, spoiler
            status.language = params.get("language") or status.language
            status.edited_at = self.clock()
        return self._answer(self._status_json(status))

    def _account(self, request: Request) -> Account | None:
        auth = request.header("authorization") or ""
        if not auth.lower().startswith("bearer "):
            return None
        return self.accounts.get(auth[7:].strip())

    def _rate_headers(self) -> dict[str, str]:
        with self.lock:
            self._calls += 1
            remaining = max(0, self.rate_limit_total - self._calls)
        reset = self.clock() + timedelta(minutes=5)
        return {"X-RateLimit-Limit": str(self.rate_limit_total), "X-RateLimit-Remaining": str(remaining),
                "X-RateLimit-Reset": _iso(reset)}

    def _answer(self, data: Any, status: int = 200) -> Response:
        return Response.json(data, status, self._rate_headers())

    def _error(self, status: int, error: str) -> Response:
        return Response.json({"error": error}, status, self._rate_headers())

    def _invalid_token(self) -> Response:
        return self._error(401, "The access token is invalid")

    def _instance_v2(self) -> dict[str, Any]:
        return {"domain": "127.0.0.1", "title": "Fake Mastodon", "version": "4.3.0", "source_url": "",
                "configuration": {"urls": {"streaming": ""},
                                  "statuses": {"max_characters": self.max_characters, "max_media_attachments": 4,
                                               "characters_reserved_per_url": self.characters_reserved_per_url},
                                  "media_attachments": {"supported_mime_types": list(self.supported_mime_types),
                                                        "description_limit": DESCRIPTION_LIMIT,
                                                        "image_size_limit": self.image_size_limit,
                                                        "image_matrix_limit": self.image_matrix_limit,
                                                        "video_size_limit": 103809024,
                                                        "video_frame_rate_limit": 120,
                                                        "video_matrix_limit": 8294400},
                                  "accounts": {"max_featured_tags": 10}}}

    def _instance_v1(self) -> dict[str, Any]:
        return {"uri": "127.0.0.1", "title": "Fake Mastodon", "version": "4.3.0",
                "configuration": {"statuses": {"max_characters": self.max_characters, "max_media_attachments": 4,
                                               "characters_reserved_per_url": self.characters_reserved_per_url}}}

    def _account_json(self, account: Account) -> dict[str, Any]:
        return {"id": account.id, "username": account.username, "acct": account.username,
                "display_name": account.display_name, "url": f"{self.url}/@{account.username}",
                "locked": False, "bot": True, "created_at": "2026-01-01T00:00:00.000Z"}

    @staticmethod
    def _params(request: Request) -> dict[str, Any]:
        ctype = (request.header("content-type") or "").lower()
        if ctype.startswith("application/json"):
            body = request.json()
            return body if isinstance(body, dict) else {}
        if not request.body:
            return {}
        form = request.form()
        params: dict[str, Any] = {k: v[-1] for k, v in form.items()}
        if "media_ids[]" in form:
            params["media_ids"] = form["media_ids[]"]
        return params

    # -- media -------------------------------------------------------------------------------

    def _upload(self, request: Request, account: Account) -> Response:
        parts = request.multipart()
        file = parts.get("file")
        if file is None or not file.data:
            return self._error(422, "Validation failed: File can't be blank")
        description = parts["description"].text if "description" in parts else None
        focus = parts["focus"].text if "focus" in parts else None
        try:
            with PIL.open(io.BytesIO(file.data)) as image:
                mime = PIL.MIME.get(str(image.format), "application/octet-stream")
                width, height = image.size
        except (OSError, ValueError, SyntaxError):
            mime, width, height = "application/octet-stream", 0, 0
        if mime not in self.supported_mime_types:
            return self._error(422, "Validation failed: File content type is invalid, File is invalid")
        if len(file.data) > self.image_size_limit:
            return self._error(422, f"Validation failed: File file size must be less than "
                                    f"{self.image_size_limit // (1024 * 1024)} MB")
        if width * height > self.image_matrix_limit:
            return self._error(422, f"Validation failed: File dimensions {width}x{height} exceed the limit")
        if description is not None and len(description) > DESCRIPTION_LIMIT:
            return self._error(422, f"Validation failed: Description is too long (maximum is {DESCRIPTION_LIMIT} "
                                    "characters)")
        with self.lock:
            media = Media(id=str(next(self._ids)), account=account, mime=mime, size=len(file.data), width=width,
                          height=height, description=description, focus=focus, polls_left=self.media_processing)
            self.media[media.id] = media
        return self._answer(self._media_json(media), 202 if not media.processed else 200)

    def _media_get(self, media_id: str, account: Account) -> Response:
        with self.lock:
            media = self.media.get(media_id)
            if media is None or media.deleted or media.account.id != account.id:
                return self._error(404, "Record not found")
            if not media.processed:
                media.polls_left -= 1
                return self._answer(self._media_json(media, processing=True), 206)
        return self._answer(self._media_json(media))

    def _media_delete(self, media_id: str, account: Account) -> Response:
        with self.lock:
            media = self.media.get(media_id)
            if media is None or media.deleted or media.account.id != account.id:
                return self._error(404, "Record not found")
            if media.status_id is not None:
                return self._error(422, "Cannot delete media attachment that is already attached to a post")
            media.deleted = True
        return self._answer(self._media_json(media))

    def _media_json(self, media: Media, *, processing: bool = False) -> dict[str, Any]:
        ready = media.processed and not processing
        ext = {"image/png": "png", "image/gif": "gif", "image/webp": "webp"}.get(media.mime, "jpg")
        return {"id": media.id, "type": "gifv" if media.mime == "image/gif" else "image",
                "url": f"{self.url}/system/media/{media.id}/original.{ext}" if ready else None,
                "preview_url": f"{self.url}/system/media/{media.id}/small.{ext}", "remote_url": None,
                "text_url": None, "description": media.description, "blurhash": "UFAAAA00000000000000000000",
                "meta": {"original": {"width": media.width, "height": media.height},
                         **({"focus": _focus_json(media.focus)} if media.focus else {})}}

    def _take_media(self, ids: Any, account: Account) -> tuple[str, ...] | Response:
        """The media of a new status, checked like ``PostStatusService``: this account's unattached,
        processed uploads, at most 4."""
        if ids is None:
            return ()
        wanted = [str(i) for i in (ids if isinstance(ids, list) else [ids])][:4]
        with self.lock:
            found = [self.media.get(i) for i in wanted]
            missing = [i for i, m in zip(wanted, found, strict=True)
                       if m is None or m.deleted or m.account.id != account.id or m.status_id is not None]
            if missing:
                return self._error(422, f"Media {', '.join(missing)} not found or already attached to another post")
            if any(m is not None and not m.processed for m in found):
                return self._error(422, "Cannot attach files that have not finished processing. "
                                        "Try again in a moment!")
        return tuple(wanted)

    def _post_status(self, request: Request, account: Account) -> Response:
        key = request.header("idempotency-key")
        with self.lock:
            existing = self._by_key.get((account.id, key)) if key else None
            if existing is not None and self.clock() - existing.created_at >= IDEMPOTENCY_TTL:
                existing = None  # expired: the server has forgotten the key
            if existing is not None:
                self.idempotent_replays += 1
        if existing is not None:
            return self._answer(self._status_json(existing))
        params = self._params(request)
        text = str(params.get("status") or "")
        spoiler = str(params.get("spoiler_text") or "")
        visibility = str(params.get("visibility") or "public")
        if not text.strip():
            return self._error(422, "Validation failed: Text can't be blank")
        if visibility not in _VISIBILITIES:
            return self._error(422, "Validation failed: Visibility is not included in the list")
        if status_length(text, spoiler, url_length=self.characters_reserved_per_url) > self.max_characters:
            return self._error(422, f"Validation failed: Text character limit of {self.max_characters} exceeded")
        media_ids = self._take_media(params.get("media_ids"), account)
        if isinstance(media_ids, Response):
            return media_ids
        with self.lock:
            status_id = str(next(self._ids))
            status = Status(id=status_id, account=account, text=text, visibility=visibility,
                            language=params.get("language") or None, spoiler_text=spoiler, idempotency_key=key,
                            created_at=self.clock(), url=f"{self.url}/@{account.username}/{status_id}",
                            uri=f"{self.url}/users/{account.username}/statuses/{status_id}", media_ids=media_ids)
            for media_id in media_ids:
                self.media[media_id].status_id = status_id
            self.statuses.append(status)
            if key:
                self._by_key[(account.id, key)] = status
        return self._answer(self._status_json(status))

    def _account_statuses(self, request: Request, account_id: str) -> Response:
        with self.lock:
            known = any(a.id == account_id for a in self.accounts.values())
            mine = [s for s in self.statuses if s.account.id == account_id and not s.deleted]
        if not known:
            return self._error(404, "Record not found")
        limit = _int_arg(request.arg("limit"))
        limit = min(limit, ACCOUNT_STATUSES_MAX) if limit else ACCOUNT_STATUSES_LIMIT
        max_id, since_id = _int_arg(request.arg("max_id")), _int_arg(request.arg("since_id"))
        newest_first = sorted(mine, key=lambda s: int(s.id), reverse=True)
        page = [s for s in newest_first
                if (max_id is None or int(s.id) < max_id) and (since_id is None or int(s.id) > since_id)][:limit]
        return self._answer([self._status_json(s) for s in page])

    def _status_json(self, status: Status) -> dict[str, Any]:
        content = "<p>" + html.escape(status.text).replace("\n", "<br />") + "</p>"
        return {"id": status.id, "created_at": _iso(status.created_at), "in_reply_to_id": None,
                "sensitive": bool(status.spoiler_text), "spoiler_text": status.spoiler_text,
                "visibility": status.visibility, "language": status.language, "uri": status.uri, "url": status.url,
                "replies_count": 0, "reblogs_count": 0, "favourites_count": 0, "content": content,
                "account": self._account_json(status.account),
                "media_attachments": [self._media_json(self.media[m]) for m in status.media_ids], "mentions": [],
                "tags": [], "emojis": [], "card": None, "poll": None, "reblog": None,
                "edited_at": _iso(status.edited_at) if status.edited_at else None}


def _int_arg(value: str | None) -> int | None:
    """A query parameter as a non-negative int (Mastodon takes ``to_i.abs``), None if absent or not a number."""
    try:
        return abs(int(value)) if value is not None else None
    except ValueError:
        return None


def _focus_json(focus: str) -> dict[str, float]:
    x, _, y = focus.partition(",")
    return {"x": float(x), "y": float(y)}


def _iso(when: datetime) -> str:
    """Mastodon's format: ``2026-08-01T15:00:00.627625Z``."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
