"""The Mastodon publisher: posts statuses with httpx (the shared client) and an Idempotency-Key.

Size: one module of ~600 lines because the status, the account lookup, its media (upload, the 202 wait,
reuse per delivery), edits, deletions and the ``find_published`` look-up share one authenticated client,
one request path (``_request``) and one error table (``_classify``); the media half is the candidate to
move out (``bot/publishers/attachments.py`` already holds what every platform's images share).

Channel keys (on top of ``MastodonRenderOptions``: visibility, language,
spoiler_text, max_characters)::

    [[channels]]
    name = "social"
    platform = "mastodon"
    instance = "https://mastodon.example"
    token_env = "MASTODON_TOKEN"      # a user token: write:statuses, read:accounts, read:statuses

Every ``POST /api/v1/statuses`` carries ``Idempotency-Key: <idempotency_key>``.
Mastodon keeps the key per account for **one hour only** (``idempotency_window``;
the server stores ``idempotency:status:<account_id>:<key>`` with a TTL of 3600 s)
and within it answers a repeat with the status it already created, so a send
whose answer was lost can be retried safely: the publisher is ``idempotent``.
After the hour the same key creates a second status. For a delivery whose
earlier attempt may have arrived and is older than that, the delivery service
first calls ``find_published(message, since=...)``: it reads the account's own
statuses (``GET /api/v1/accounts/verify_credentials`` once for the account id,
then ``GET /api/v1/accounts/:id/statuses``, newest first, paged back to
``since`` minus a minute of clock skew) and returns the status whose text
contains the message's link (else its first line), or None. That read needs
the token's ``read:accounts`` and ``read:statuses`` scopes (``read`` covers both).

Start-up reads the instance's character limit and URL weight from
``/api/v2/instance`` (then ``/api/v1/instance``, then 500/23) and never fails
over it; and its media limits (``configuration.media_attachments``:
``supported_mime_types``, ``image_size_limit``, ``image_matrix_limit``; else
8 MiB and 16 megapixels). The token travels only in the Authorization header;
no error message contains it.

The featured image (``send_image``, on by default): fetched once per process
and fitted to those limits (``bot.publishers.attachments.image_for``), then
``POST /api/v2/media`` (multipart ``file``, ``description`` = the alt text,
``focus`` = ``image_focus``). An answer of 202 (or 200 without a ``url``)
means the instance still processes it: ``GET /api/v1/media/:id`` is asked at
``MEDIA_POLL_DELAYS`` (206 while processing, about 30 s in all) until it is
ready. The status attaches it with ``media_ids``. An image that cannot be
fetched, fitted, uploaded or processed in time (the token lacks
``write:media``, the instance refuses the file, a rate limit, a timeout) is
left out: the status goes out without it and the log says why
(``media.skipped``). The media id is remembered per idempotency key
(``UploadMemory``): a status that fails after its upload succeeded reuses the
upload on the retry. After a crash the retry uploads again; the Idempotency-Key
then returns the status the first attempt created, and the new, unattached
upload is deleted (``DELETE /api/v1/media/:id``, Mastodon 4.4+; older instances
drop unattached media by themselves after about a day).

Edits (``edit``: ``PUT /api/v1/statuses/:id``, after reading the status's
source; the text, spoiler and language change, the attached image stays) and
deletions (``delete``: ``DELETE /api/v1/statuses/:id``) need the token's
``write:statuses`` scope, the edit's source read ``read:statuses``.
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from bot.domain.models import Post
from bot.errors import (
    AmbiguousPublishError,
    ContentRejectedError,
    CredentialsError,
    MessageGoneError,
    PermanentPublishError,
    PublishError,
    RetryablePublishError,
    RetryAfter,
)
from bot.log import event
from bot.media import GIF, JPEG, PNG, WEBP, Image
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
    LOCATION_LIMIT,
    classify_status,
    describe_exception,
    describe_status,
    json_body,
    parse_reset_iso,
    parse_retry_after,
    platform_text,
    require_secret,
    transport_error,
)
from bot.render.mastodon import render_mastodon
from bot.render.options import MastodonRenderOptions
from bot.validation import Field, field_validator

DEFAULT_MAX_CHARACTERS = 500
DEFAULT_URL_LENGTH = 23
RATE_LIMIT_FALLBACK = 300.0
"""Seconds to wait after a 429 without a usable X-RateLimit-Reset (Mastodon's window is 5 minutes)."""
IDEMPOTENCY_WINDOW = 3600.0
"""Seconds Mastodon honours an Idempotency-Key (``post_status_service.rb``: Redis TTL 3600 s)."""
CLOCK_SKEW = timedelta(seconds=60)
"""``find_published`` also accepts statuses this much older than ``since`` (our clock vs the server's)."""
LOOKUP_PAGE_SIZE = 40
"""Statuses per page of ``GET /api/v1/accounts/:id/statuses`` (Mastodon's maximum)."""
LOOKUP_MAX_PAGES = 5
"""Pages ``find_published`` reads at most before it gives up (AmbiguousPublishError: cannot tell)."""
MEDIA_POLL_DELAYS: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0)
"""Seconds before each ``GET /api/v1/media/:id`` while an upload is processed (about 30 s in all)."""
DEFAULT_IMAGE_BYTES = 8 * 1024 * 1024
"""The image size limit when the instance names none (Mastodon's has been 8 to 16 MB)."""
DEFAULT_IMAGE_PIXELS = 16_777_216
"""The image pixel limit (width × height) when the instance names none."""
IMAGE_TYPES = frozenset({JPEG, PNG, WEBP, GIF})
"""The image types tagrelay uploads as they are, when the instance supports them."""
_EXTENSIONS = {JPEG: ".jpg", PNG: ".png", WEBP: ".webp", GIF: ".gif"}
_FOCUS = r"^\s*-?(?:0(?:\.[0-9]+)?|1(?:\.0+)?)\s*,\s*-?(?:0(?:\.[0-9]+)?|1(?:\.0+)?)\s*$"

_BREAK = re.compile(r"<br\s*/?>|</p\s*>", re.IGNORECASE)
_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")
_URL_GOES_ON = r"(?![-\w.~%/?#=&+@:;,!*'()$]*[-\w~%/#=&+@$])"
"""After a link: not followed by more of a URL (so .../post/1 does not match .../post/10); punctuation may follow."""


class MastodonOptions(MastodonRenderOptions):
    """A Mastodon channel's table: render keys plus the instance and the token variable."""

    instance: str = Field(pattern=HTTP_URL_PATTERN)
    """Base URL of the instance, e.g. ``https://mastodon.social``."""
    token_env: str = Field(default="MASTODON_TOKEN", pattern=ENV_NAME_PATTERN)
    """Environment variable holding the access token (scopes ``write:statuses``; ``write:media`` for images;
    ``read:accounts`` and ``read:statuses`` for ``channels test`` and ``find_published``)."""
    image_focus: str | None = Field(default=None, pattern=_FOCUS)
    """The focal point of attached images, ``"x,y"`` with each from -1.0 to 1.0 (0,0 is the centre);
    Mastodon crops previews around it. None: the centre."""

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


def _media_limits(data: Any) -> tuple[frozenset[str] | None, int | None, int | None]:
    """(image types we can send as they are, image_size_limit, image_matrix_limit) from an Instance entity."""
    config = data.get("configuration") if isinstance(data, dict) else None
    media = config.get("media_attachments") if isinstance(config, dict) else None
    if not isinstance(media, dict):
        return None, None, None
    types = media.get("supported_mime_types")
    accept = (frozenset(t for t in types if isinstance(t, str) and t in IMAGE_TYPES) or None
              if isinstance(types, list) else None)
    return accept, _positive_int(media.get("image_size_limit")), _positive_int(media.get("image_matrix_limit"))


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


def _squash(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


def _status_text(content: Any) -> str:
    """A Status's HTML ``content`` as text: line breaks kept as spaces, tags stripped, entities unescaped."""
    if not isinstance(content, str):
        return ""
    return _squash(html.unescape(_TAG.sub("", _BREAK.sub("\n", content))))


def _matcher(message: RenderedMessage) -> re.Pattern[str] | None:
    """What identifies the message in a status's text: its link if the text carries it (as a whole URL),
    else its first non-blank line. None for a blank message."""
    text = _status_text(message.text) if message.format == "html" else _squash(message.text)
    if message.link and message.link in text:
        return re.compile(re.escape(message.link) + _URL_GOES_ON)
    raw = message.text.replace("<br>", "\n").replace("<br/>", "\n") if message.format == "html" else message.text
    for line in raw.splitlines():
        line = _status_text(line) if message.format == "html" else _squash(line)
        if line:
            return re.compile(re.escape(line))
    return None


def _attached(status: dict[str, Any]) -> set[str]:
    """The ids of a Status's media attachments."""
    media = status.get("media_attachments")
    return {str(m["id"]) for m in media if isinstance(m, dict) and m.get("id") is not None} \
        if isinstance(media, list) else set()


def _created_at(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


class MastodonPublisher:
    """Posts statuses to one account on one instance. Idempotent through Idempotency-Key."""

    idempotent = True
    idempotency_window: float = IDEMPOTENCY_WINDOW
    """Seconds the instance honours an Idempotency-Key (Mastodon: one hour); after that a resend may post twice."""
    deduplicates = True
    """A resend within the hour returns the first status: the delivery service may send in claimed groups."""

    def __init__(self, options: MastodonOptions, ctx: PublisherContext, token: str, *,
                 media_poll_delays: Sequence[float] = MEDIA_POLL_DELAYS) -> None:
        self._options = options
        self._channel = options.name
        self._http = ctx.http
        self._log = ctx.logger
        self._clock = ctx.clock
        self._token = token
        self._host = urlsplit(options.instance).netloc
        self._max_chars = DEFAULT_MAX_CHARACTERS
        self._url_length = DEFAULT_URL_LENGTH
        self._account_id: str | None = None
        self._image_types = IMAGE_TYPES
        self._image_bytes = DEFAULT_IMAGE_BYTES
        self._image_pixels = DEFAULT_IMAGE_PIXELS
        self._uploads = UploadMemory(ctx.clock)
        self._media_poll_delays = tuple(media_poll_delays)

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
            data = json_body(response)
            accept, image_bytes, image_pixels = _media_limits(data)
            self._image_types = accept or self._image_types
            self._image_bytes = image_bytes or self._image_bytes
            self._image_pixels = image_pixels or self._image_pixels
            max_chars, url_length = _limits_from_instance(data)
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
        payload = self._status_payload(message)
        media_id = await self._media_for(message, idempotency_key)
        if media_id is not None:
            payload["media_ids"] = [media_id]
        response = await self._request("POST", "/api/v1/statuses", json=payload,
                                       headers={"Idempotency-Key": idempotency_key},
                                       sending=True, action="POST /api/v1/statuses")
        if not response.is_success:
            error = self._classify(response, action="POST /api/v1/statuses")
            if isinstance(error, ContentRejectedError):
                self._uploads.forget(idempotency_key)  # the retry is plain, without the image
            raise error
        body = json_body(response)
        if not isinstance(body, dict) or body.get("id") is None:
            raise AmbiguousPublishError(self._channel, f"{self._host} answered {describe_status(response.status_code)} "
                                                       "without a status id; the status may exist")
        self._remember_account(body.get("account"))
        self._uploads.forget(idempotency_key)
        if media_id is not None and media_id not in _attached(body):
            await self._delete_unused(media_id)  # an idempotent replay: the status has the first upload
        status_id = body["id"]
        url = body.get("url") or body.get("uri")
        return PublishResult(remote_id=str(status_id), url=str(url) if url else None)

    async def check(self) -> AccountInfo:
        path = "/api/v1/accounts/verify_credentials"
        response = await self._request("GET", path, sending=False, action=f"GET {path}")
        if not response.is_success:
            raise self._classify(response, action=f"GET {path}", scope="read:accounts")
        body = json_body(response)
        acct = body.get("acct") if isinstance(body, dict) else None
        if not acct:
            raise RetryablePublishError(self._channel, f"GET {path}: {self._host} answered without an account")
        assert isinstance(body, dict)
        self._remember_account(body)
        detail: dict[str, Any] = {"instance": self._options.instance, "max_characters": self.render_env.max_chars,
                                  "characters_reserved_per_url": self._url_length}
        if body.get("url"):
            detail["profile"] = body["url"]
        return AccountInfo(display=f"@{acct} on {self._host}", detail=detail)

    async def find_published(self, message: RenderedMessage, *, since: datetime) -> PublishResult | None:
        """This account's status for ``message`` created at or after ``since`` (less ``CLOCK_SKEW``), or None.

        For a delivery whose earlier, unconfirmed attempt is older than ``idempotency_window``:
        the key no longer protects a resend, so the delivery service asks first. Reads the
        account's statuses newest first (``limit=40``, then ``max_id`` pages) until one is older
        than the cut-off; the newest whose text (tags stripped, unescaped) contains the
        message's link - or, when the text has no link, its first line - is the answer.
        Raises only ``PublishError`` subclasses (classified like the other calls);
        ``AmbiguousPublishError`` when ``LOOKUP_MAX_PAGES`` pages did not reach ``since``.
        """
        matcher = _matcher(message)
        if matcher is None:
            return None  # a blank status cannot have been posted
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        cutoff = since - CLOCK_SKEW
        account_id = await self._own_account_id()
        path = f"/api/v1/accounts/{quote(account_id, safe='')}/statuses"
        action = f"GET {path}"
        params: dict[str, str] = {"limit": str(LOOKUP_PAGE_SIZE), "exclude_reblogs": "true"}
        for _ in range(LOOKUP_MAX_PAGES):
            response = await self._request("GET", path, params=params, sending=False, action=action)
            if not response.is_success:
                raise self._classify(response, action=action, scope="read:statuses")
            page = json_body(response)
            if not isinstance(page, list):
                raise RetryablePublishError(self._channel, f"{action}: {self._host} answered without a list "
                                                           f"of statuses ({describe_status(response.status_code)})")
            last_id: str | None = None
            for status in page:
                if not isinstance(status, dict) or status.get("id") is None:
                    continue
                last_id = str(status["id"])
                created = _created_at(status.get("created_at"))
                if created is not None and created < cutoff:
                    return None  # newest first: everything further down is older still
                if status.get("reblog") or not matcher.search(_status_text(status.get("content"))):
                    continue
                url = status.get("url") or status.get("uri")
                return PublishResult(remote_id=last_id, url=str(url) if url else None)
            if len(page) < LOOKUP_PAGE_SIZE or last_id is None:
                return None  # the account's oldest status
            params = {**params, "max_id": last_id}
        raise AmbiguousPublishError(self._channel, f"{action}: {LOOKUP_MAX_PAGES * LOOKUP_PAGE_SIZE} statuses "
                                                   f"since {since.isoformat()} read without finding the post or "
                                                   "reaching that time; cannot tell whether it was posted")

    async def edit(self, remote_id: str, message: RenderedMessage) -> ChangeResult:
        """``PUT /api/v1/statuses/:id`` (Mastodon 3.5+) with the message's text, spoiler and language (a
        status's visibility cannot change). The status's source is read first (``GET
        /api/v1/statuses/:id/source``): one that already holds this text is not edited again, so a repeat
        after a lost answer adds no second entry to the status's edit history."""
        path = f"/api/v1/statuses/{quote(remote_id, safe='')}"
        source = await self._request("GET", f"{path}/source", sending=False, action=f"GET {path}/source")
        if source.status_code == 404:
            raise MessageGoneError(self._channel, f"{self._host}: status {remote_id} is not there (any more)")
        if not source.is_success:
            raise self._classify(source, action=f"GET {path}/source", scope="read:statuses")
        payload = self._status_payload(message)
        body = json_body(source)
        if isinstance(body, dict) and body.get("text") == payload["status"] \
                and (body.get("spoiler_text") or "") == payload.get("spoiler_text", ""):
            return ChangeResult(already=f"{self._host}: the status already shows this text")
        payload.pop("visibility", None)
        response = await self._request("PUT", path, json=payload, sending=True, action=f"PUT {path}")
        if response.status_code == 404:
            raise MessageGoneError(self._channel, f"{self._host}: status {remote_id} is not there (any more)")
        if not response.is_success:
            raise self._classify(response, action=f"PUT {path}")
        return ChangeResult()

    async def delete(self, remote_id: str) -> ChangeResult:
        """``DELETE /api/v1/statuses/:id``; a 404 means it is gone already. Mastodon allows 30 deletions per
        30 minutes per account (a 429 holds the channel until its ``X-RateLimit-Reset``)."""
        path = f"/api/v1/statuses/{quote(remote_id, safe='')}"
        response = await self._request("DELETE", path, sending=True, action=f"DELETE {path}")
        if response.status_code == 404:
            raise MessageGoneError(self._channel, f"{self._host}: status {remote_id} is not there (any more)")
        if not response.is_success:
            raise self._classify(response, action=f"DELETE {path}")
        return ChangeResult()

    def _status_payload(self, message: RenderedMessage) -> dict[str, Any]:
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
        return payload

    async def aclose(self) -> None:
        return None  # the shared client belongs to the composition root

    # -- media -------------------------------------------------------------------------------

    async def _media_for(self, message: RenderedMessage, key: str) -> str | None:
        """The media id to attach for this delivery: the one uploaded by an earlier attempt, or a new upload;
        None when there is no image or it cannot be used (logged, the status goes out without it)."""
        if not message.image_url:
            return None
        known = self._uploads.get(key, message.image_url)
        if known is not None:
            event(self._log, logging.INFO, "media.reused", channel=self._channel, media_id=known.media_id)
            return known.media_id
        image = await image_for(message, self._http, channel=self._channel, log=self._log,
                                max_bytes=self._image_bytes, max_pixels=self._image_pixels,
                                accept=self._image_types)
        if image is None:
            return None
        try:
            media_id = await self._upload(image)
        except PublishError as exc:
            event(self._log, logging.WARNING, "media.skipped", channel=self._channel, reason=exc.reason,
                  note="the status goes out without the image")
            return None
        self._uploads.remember(key, message.image_url, media_id)
        return media_id

    async def _upload(self, image: Image) -> str:
        """``POST /api/v2/media``, then wait while the instance processes it; the media id."""
        action = "POST /api/v2/media"
        fields: dict[str, str] = {}
        if image.alt:
            fields["description"] = image.alt
        if self._options.image_focus:
            fields["focus"] = self._options.image_focus.replace(" ", "")
        files = {"file": (f"image{_EXTENSIONS.get(image.mime, '')}", image.data, image.mime)}
        response = await self._request("POST", "/api/v2/media", files=files, data=fields, sending=True,
                                       action=action)
        if not response.is_success:
            raise self._classify(response, action=action, scope="write:media")
        body = json_body(response)
        media_id = body.get("id") if isinstance(body, dict) else None
        if media_id is None:
            raise RetryablePublishError(self._channel, f"{action}: {self._host} answered "
                                                       f"{describe_status(response.status_code)} without a media id")
        media_id = str(media_id)
        if response.status_code == 202 or not (isinstance(body, dict) and body.get("url")):
            await self._wait_processed(media_id)
        return media_id

    async def _wait_processed(self, media_id: str) -> None:
        """Ask ``GET /api/v1/media/:id`` until the instance has processed the upload (200 with a ``url``)."""
        path = f"/api/v1/media/{quote(media_id, safe='')}"
        action = f"GET {path}"
        for delay in self._media_poll_delays:
            await asyncio.sleep(delay)
            response = await self._request("GET", path, sending=False, action=action)
            if response.status_code == 206:
                continue
            if not response.is_success:
                raise self._classify(response, action=action, scope="write:media")
            body = json_body(response)
            if isinstance(body, dict) and body.get("url"):
                return
        waited = sum(self._media_poll_delays)
        raise RetryablePublishError(self._channel, f"{self._host} was still processing the image after "
                                                   f"{waited:g}s ({action})")

    async def _delete_unused(self, media_id: str) -> None:
        """Best effort: delete an upload no status uses (Mastodon 4.4+; older instances expire it)."""
        path = f"/api/v1/media/{quote(media_id, safe='')}"
        try:
            response = await self._request("DELETE", path, sending=False, action=f"DELETE {path}")
        except PublishError as exc:
            response_text = exc.reason
        else:
            response_text = describe_status(response.status_code)
        event(self._log, logging.INFO, "media.unused", channel=self._channel, media_id=media_id,
              delete=response_text)

    # -- helpers -----------------------------------------------------------------------------

    def _remember_account(self, account: Any) -> None:
        """Cache the account id from an Account entity (verify_credentials, or a Status's ``account``)."""
        if isinstance(account, dict) and account.get("id") is not None and self._account_id is None:
            self._account_id = str(account["id"])

    async def _own_account_id(self) -> str:
        if self._account_id is None:
            path = "/api/v1/accounts/verify_credentials"
            response = await self._request("GET", path, sending=False, action=f"GET {path}")
            if not response.is_success:
                raise self._classify(response, action=f"GET {path}", scope="read:accounts")
            self._remember_account(json_body(response))
            if self._account_id is None:
                raise RetryablePublishError(self._channel, f"GET {path}: {self._host} answered without an "
                                                           "account id")
        return self._account_id

    async def _request(self, method: str, path: str, *, action: str, sending: bool, auth: bool = True,
                       json: Any = None, headers: dict[str, str] | None = None,
                       params: dict[str, str] | None = None, files: dict[str, tuple[str, bytes, str]] | None = None,
                       data: dict[str, str] | None = None) -> httpx.Response:
        all_headers = {"Accept": "application/json", **(headers or {})}
        if auth:
            all_headers["Authorization"] = f"Bearer {self._token}"
        try:
            return await self._http.request(method, f"{self._options.instance}{path}", json=json, params=params,
                                            files=files, data=data, headers=all_headers, follow_redirects=False)
        except httpx.HTTPError as exc:
            raise transport_error(self._channel, exc, action=action, sending=sending) from exc
        except httpx.InvalidURL as exc:
            raise PermanentPublishError(self._channel, f"{action}: invalid instance URL "
                                                       f"({describe_exception(exc)})") from exc

    def _classify(self, response: httpx.Response, *, action: str, scope: str = "write:statuses") -> PublishError:
        """Branch on the status (the ``error`` text is translated per user locale); quote the text."""
        status = response.status_code
        body = json_body(response)
        error = body.get("error") if isinstance(body, dict) else None
        text = platform_text(str(error) if error else response.reason_phrase or "", [self._token])
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
                                                  f"unconfirmed or unapproved, or the token lacks {scope}")
        if status == 404:
            return PermanentPublishError(channel, f"{host}: {action} not found ({what}); check `instance`")
        if status == 422:
            return ContentRejectedError(channel, f"{host} rejected the status ({what})")
        if 300 <= status < 400:
            location = platform_text(response.headers.get("Location", "?"), [self._token], LOCATION_LIMIT)
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
        assert isinstance(options, MastodonOptions)
        return render_mastodon(post, options, env, plain=plain)

    def create(self, options: Any, ctx: PublisherContext) -> MastodonPublisher:
        assert isinstance(options, MastodonOptions)
        token = require_secret(ctx, options.name, options.token_env)
        return MastodonPublisher(options, ctx, token)


plugin = MastodonPlugin()
