"""The Bluesky publisher: posts ``app.bsky.feed.post`` records over XRPC, each under a key of its own.

Channel keys (on top of ``BlueskyRenderOptions``: langs, link_card, link_in_text, card_image)::

    [[channels]]
    name = "bsky"
    platform = "bluesky"
    handle = "newsroom.example.org"          # the account's handle (or its DID)
    app_password_env = "BLUESKY_APP_PASSWORD" # an app password (Settings → Privacy and security → App passwords)
    service = "https://bsky.social"          # the account's PDS or entryway

Nothing twice: every attempt of a delivery writes its post under the same
record key (``records.record_key``, a TID derived from the delivery's idempotency
key), and ``publish`` first reads that key back with ``com.atproto.repo.getRecord``:
if the post is there (an earlier attempt whose answer was lost, in this process
or before a crash), it is the result and nothing is sent. Only then is the
record created (``com.atproto.repo.createRecord`` with ``rkey``). A create that
fails with a 5xx (the reference PDS answers 500 for a key that already exists,
bluesky-social/atproto#3718) or says the record exists is read back once more.
So the publisher is ``idempotent`` for the delivery service, for ever (no
``idempotency_window``): an ambiguous outcome is simply sent again, and the
read-back decides. The read costs one GET per post (no write points).

The session (``session.SessionKeeper``): one login per process at most, renewed
with refreshSession on ``ExpiredToken`` (once per call, then the call is made
again), logins limited through a persisted bucket. A refused app password
pauses the channel (``CredentialsError``); a 429 (``RateLimit-Reset``, epoch
seconds) holds it until the reset.

Deletions (``delete``, the ``Deletes`` ability): ``com.atproto.repo.deleteRecord`` of the post's record.
Bluesky has no edit (a post record is not edited in the app), so there is no ``edit``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from bot.domain.models import Post
from bot.errors import (
    AmbiguousPublishError,
    ChangeRefusedError,
    ContentRejectedError,
    CredentialsError,
    MediaError,
    PermanentPublishError,
    PublishError,
    RetryablePublishError,
    RetryAfter,
)
from bot.log import event
from bot.media import JPEG, PNG, WEBP, prepare_image
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
from bot.publishers.bluesky.records import COLLECTION, matches, post_record, record_key, timestamp
from bot.publishers.bluesky.session import REFRESH_ERRORS, MemoryAttempts, Session, SessionKeeper
from bot.publishers.bluesky.xrpc import Xrpc
from bot.publishers.http import (
    ENV_NAME_PATTERN,
    HTTP_URL_PATTERN,
    LOCATION_LIMIT,
    classify_status,
    json_body,
    parse_reset_epoch,
    parse_retry_after,
    platform_text,
    require_secret,
)
from bot.render.bluesky import MAX_GRAPHEMES, BlueskyRenderOptions, render_bluesky
from bot.validation import Field, field_validator

DEFAULT_SERVICE = "https://bsky.social"
WEB = "https://bsky.app"
"""Where a post is shown: ``{WEB}/profile/{did}/post/{rkey}``."""
RATE_LIMIT_FALLBACK = 300.0
"""Seconds to wait after a 429 without a usable ``RateLimit-Reset`` or ``Retry-After``."""
THUMB_MAX_BYTES = 1_000_000
"""``maxSize`` of ``app.bsky.embed.external#external.thumb``."""
THUMB_MAX_SIDE = 2000
"""Longest side of a thumbnail (the Bluesky app scales card images to at most 2,000 px as well)."""
THUMB_TYPES = frozenset({JPEG, PNG, WEBP})
"""Image types a thumbnail is uploaded as (the lexicon accepts ``image/*``; these are shown everywhere)."""
ACCOUNT_UNAVAILABLE = frozenset({"AccountTakedown", "AccountDeactivated", "AccountSuspended", "RepoTakendown",
                                 "RepoDeactivated", "RepoSuspended"})
"""XRPC error names that mean the account cannot post at all (an operator must act)."""
_HANDLE = (r"^@?(?:(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
           r"|did:[a-z]+:[A-Za-z0-9._:%-]{0,2000}[A-Za-z0-9._-])$")


class BlueskyOptions(BlueskyRenderOptions):
    """A Bluesky channel's table: render keys plus the account, its app password variable and the service."""

    handle: str = Field(pattern=_HANDLE, max_length=2048)
    """The account's handle (``newsroom.example.org``, a leading ``@`` is dropped) or its DID."""
    app_password_env: str = Field(default="BLUESKY_APP_PASSWORD", pattern=ENV_NAME_PATTERN)
    """Environment variable holding an app password of the account (never the account's own password)."""
    service: str = Field(default=DEFAULT_SERVICE, pattern=HTTP_URL_PATTERN)
    """The account's PDS or entryway (``https://bsky.social``; a self-hosted PDS; a test server)."""

    @field_validator("handle")
    @classmethod
    def _no_at(cls, value: str) -> str:
        return value.removeprefix("@")

    @field_validator("service")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")


class BlueskyPublisher:
    """Posts to one Bluesky account. Idempotent: one record key per delivery, read back before sending."""

    idempotent = True
    deduplicates = True
    """A resend finds the record under its key: the delivery service may send in claimed groups."""

    def __init__(self, options: BlueskyOptions, ctx: PublisherContext, password: str) -> None:
        self._options = options
        self._channel = options.name
        self._http = ctx.http
        self._log = ctx.logger
        self._clock = ctx.clock
        self._host = urlsplit(options.service).netloc
        self._xrpc = Xrpc(ctx.http, options.name, lambda: self._keeper.secrets)
        self._keeper = SessionKeeper(channel=options.name, service=options.service, handle=options.handle,
                                     password=password, xrpc=self._xrpc,
                                     attempts=ctx.attempts or MemoryAttempts(ctx.clock), log=ctx.logger,
                                     classify=lambda response, call: self._classify(response, call))

    def __repr__(self) -> str:
        return f"BlueskyPublisher(channel={self._channel!r}, handle={self._options.handle!r})"

    @property
    def render_env(self) -> RenderEnv:
        return RenderEnv(max_chars=MAX_GRAPHEMES)

    @property
    def logins(self) -> int:
        """Logins (createSession) this publisher made."""
        return self._keeper.logins

    async def initialize(self) -> None:
        """Nothing: the login waits until there is something to post (see ``session``)."""
        return

    async def publish(self, message: RenderedMessage, *, idempotency_key: str) -> PublishResult:
        rkey = record_key(idempotency_key)
        session = await self._keeper.current()
        found = await self._read_back(session, rkey, message)
        if found is not None:
            event(self._log, logging.INFO, "bluesky.already_posted", channel=self._channel, rkey=rkey,
                  note="an earlier attempt had made the post: nothing sent")
            return found
        extra: Mapping[str, Any] = message.extra
        card = extra.get("card") if isinstance(extra.get("card"), Mapping) else None
        thumb = await self._thumb(session, message) if card is not None and message.image_url else None
        record = post_record(message.text, timestamp(self._clock.now()), facets=list(extra.get("facets") or []),
                             langs=list(extra.get("langs") or []), card=card, thumb=thumb)
        nsid = "com.atproto.repo.createRecord"

        def body(current: Session) -> dict[str, Any]:
            return {"repo": current.did, "collection": COLLECTION, "rkey": rkey, "record": record}

        response, session = await self._call(session, "POST", nsid, json=body, sending=True)
        if response.is_success:
            answer = json_body(response)
            uri = answer.get("uri") if isinstance(answer, dict) else None
            if not isinstance(uri, str) or not uri:
                raise AmbiguousPublishError(self._channel, f"{self._host} answered createRecord without a "
                                                           "record URI; the post may exist")
            return PublishResult(remote_id=uri, url=self._web_url(session, rkey))
        problem = self._xrpc.failure(response)
        if problem.status >= 500 or "exist" in problem.message.lower() or "Exist" in problem.error:
            # the reference PDS answers 500 when the key is taken: perhaps by our own earlier attempt
            try:
                found = await self._read_back(session, rkey, message)
            except PublishError:
                found = None
            if found is not None:
                return found
        raise self._classify(response, "createRecord", posting=True)

    async def check(self) -> AccountInfo:
        """Logs in if needed (a login counts against the limit) and reads ``getSession``: posts nothing."""
        session = await self._keeper.current()
        response, session = await self._call(session, "GET", "com.atproto.server.getSession",
                                             base=self._options.service)
        if not response.is_success:
            raise self._classify(response, "getSession")
        body = json_body(response)
        body = body if isinstance(body, dict) else {}
        if body.get("active") is False:
            state = platform_text(str(body.get("status") or "inactive"), self._keeper.secrets, 60)
            raise PermanentPublishError(self._channel, f"{self._host}: the account {self._options.handle} is not "
                                                       f"active ({state})")
        handle = platform_text(str(body.get("handle") or session.handle), self._keeper.secrets, 253)
        detail: dict[str, Any] = {"did": session.did, "service": self._options.service, "pds": session.pds,
                                  "link_card": self._options.link_card}
        if self._options.langs:
            detail["langs"] = ", ".join(self._options.langs)
        return AccountInfo(display=f"@{handle} on {self._host}", detail=detail)

    async def delete(self, remote_id: str) -> ChangeResult:
        """The ``Deletes`` ability: ``com.atproto.repo.deleteRecord`` of the post ``publish`` made (its
        ``at://`` URI, in this account's repo and the post collection: nothing else is ever named). Deleting
        a record that is not there is a no-op for the PDS, so a repeat is safe. Bluesky has no edit."""
        rkey = self._own_rkey(remote_id)
        session = await self._keeper.current()
        nsid = "com.atproto.repo.deleteRecord"

        def body(current: Session) -> dict[str, Any]:
            return {"repo": current.did, "collection": COLLECTION, "rkey": rkey}

        response, session = await self._call(session, "POST", nsid, json=body, sending=True)
        if not response.is_success:
            raise self._classify(response, "deleteRecord")
        return ChangeResult()

    def _own_rkey(self, remote_id: str) -> str:
        """The record key of one of this channel's posts, from its ``at://<did>/app.bsky.feed.post/<rkey>`` URI."""
        parts = remote_id.removeprefix("at://").split("/")
        if not remote_id.startswith("at://") or len(parts) != 3 or parts[1] != COLLECTION or not parts[2] \
                or not parts[2].replace("-", "").replace("_", "").replace(".", "").replace("~", "").isalnum():
            raise ChangeRefusedError(self._channel, "the id recorded for it is not one of this account's post "
                                                    "records (at://…/app.bsky.feed.post/…)")
        return parts[2]

    async def aclose(self) -> None:
        return None  # the shared client belongs to the composition root; the session dies with us

    # -- helpers -----------------------------------------------------------------------------

    def _web_url(self, session: Session, rkey: str) -> str:
        return f"{WEB}/profile/{quote(session.did, safe=':')}/post/{rkey}"

    async def _call(self, session: Session, method: str, nsid: str, *, base: str | None = None,
                    json: Any = None, params: dict[str, str] | None = None, content: bytes | None = None,
                    content_type: str | None = None, sending: bool = False) -> tuple[httpx.Response, Session]:
        """An authenticated call; if the access token is refused (``ExpiredToken``, ``InvalidToken``, 401)
        the session is renewed (``refreshSession``) once and the call made once more. ``json`` may be a
        function of the session (the repo is the session's DID)."""
        for attempt in range(2):
            payload = json(session) if callable(json) else json
            response = await self._xrpc.call(method, base or session.pds, nsid, token=session.access,
                                             params=params, json=payload, content=content,
                                             content_type=content_type, sending=sending)
            if attempt == 0 and self._stale_token(response):
                event(self._log, logging.INFO, "bluesky.token_refused", channel=self._channel, call=nsid,
                      error=self._xrpc.failure(response).describe(), action="refreshing the session once")
                session = await self._keeper.renew(session)
                continue
            return response, session
        raise AssertionError("unreachable")  # pragma: no cover

    def _stale_token(self, response: httpx.Response) -> bool:
        if response.status_code not in (400, 401):
            return False
        problem = self._xrpc.failure(response)
        if problem.error in ACCOUNT_UNAVAILABLE:
            return False
        return problem.error in REFRESH_ERRORS or response.status_code == 401

    async def _read_back(self, session: Session, rkey: str, message: RenderedMessage) -> PublishResult | None:
        """The post under ``rkey`` if it is there (it is ours), None if there is none; a record there that
        is not this message's post makes this delivery fail (``ContentRejectedError``)."""
        params = {"repo": session.did, "collection": COLLECTION, "rkey": rkey}
        response = await self._xrpc.call("GET", session.pds, "com.atproto.repo.getRecord", params=params)
        if response.status_code == 400 and self._xrpc.failure(response).error == "RecordNotFound":
            return None
        if not response.is_success:
            raise self._classify(response, "getRecord")
        body = json_body(response)
        if not isinstance(body, dict):
            raise RetryablePublishError(self._channel, f"getRecord: {self._host} answered without a record")
        if not matches(body.get("value"), text=message.text, link=message.link):
            raise ContentRejectedError(self._channel, f"the record key {rkey} already holds another record on "
                                                      f"{session.did}; this delivery cannot be posted under it")
        uri = body.get("uri") if isinstance(body.get("uri"), str) else f"at://{session.did}/{COLLECTION}/{rkey}"
        return PublishResult(remote_id=str(uri), url=self._web_url(session, rkey))

    async def _thumb(self, session: Session, message: RenderedMessage) -> dict[str, Any] | None:
        """The card's thumbnail: the post's image, fitted to ``THUMB_MAX_BYTES`` (``bot.media``), uploaded
        with ``com.atproto.repo.uploadBlob``; its blob reference, or None: a failed image (unreachable,
        not an image, too big to shrink) or a refused upload leaves the card without a thumbnail and is
        logged; it never blocks the post. A rate limit or refused credentials are the channel's errors."""
        assert message.image_url is not None
        try:
            image = await prepare_image(self._http, message.image_url, alt=message.image_alt,
                                        max_bytes=THUMB_MAX_BYTES, max_side=THUMB_MAX_SIDE, accept=THUMB_TYPES)
        except MediaError as exc:
            event(self._log, logging.WARNING, "bluesky.thumb_skipped", channel=self._channel, reason=exc.reason,
                  note="the card goes without a thumbnail")
            return None
        response, session = await self._call(session, "POST", "com.atproto.repo.uploadBlob", content=image.data,
                                             content_type=image.mime)
        answer = json_body(response) if response.is_success else None
        blob = answer.get("blob") if isinstance(answer, dict) else None
        if isinstance(blob, dict) and isinstance(blob.get("ref"), dict):
            return blob
        if response.status_code == 429 or response.status_code == 401 or self._stale_token(response):
            raise self._classify(response, "uploadBlob")
        reason = self._xrpc.failure(response).describe() if not response.is_success else "no blob in the answer"
        event(self._log, logging.WARNING, "bluesky.thumb_skipped", channel=self._channel,
              reason=f"uploadBlob: {reason}", note="the card goes without a thumbnail")
        return None

    def _classify(self, response: httpx.Response, call: str, *, posting: bool = False) -> PublishError:
        """An XRPC error answer as a ``PublishError`` (branching on the status and the error name; the
        server's message is quoted, cleaned)."""
        problem = self._xrpc.failure(response)
        status, error, what = problem.status, problem.error, problem.describe()
        channel, host, handle = self._channel, self._host, self._options.handle
        now = self._clock.now()
        if status == 429:
            delay = parse_reset_epoch(response.headers.get("RateLimit-Reset"), now)
            if delay is None:
                delay = parse_retry_after(response.headers.get("Retry-After"), now)
            if delay is None:
                delay = RATE_LIMIT_FALLBACK
            return RetryAfter(channel, delay, f"{host} rate limit on {call} ({what}); retry after {delay:.0f}s")
        if error in ACCOUNT_UNAVAILABLE:
            return PermanentPublishError(channel, f"{host}: the account {handle} cannot post ({what})")
        if error == "AuthFactorTokenRequired":
            return CredentialsError(channel, f"{host} asks for an email sign-in code for {handle} ({what}): put "
                                             f"an app password into {self._options.app_password_env}, not the "
                                             "account's password")
        if call == "createSession" and (status == 401 or error == "AuthenticationRequired"):
            return CredentialsError(channel, f"{host} refused the login of {handle} with the app password in "
                                             f"{self._options.app_password_env} ({what}); create a new app "
                                             "password, set it, then resume the channel")
        if status == 401 or error in ("AuthenticationRequired", "AuthMissing", *REFRESH_ERRORS):
            return CredentialsError(channel, f"{host} refused the session of {handle} on {call} ({what})")
        if error == "ConcurrentWrites":
            return RetryablePublishError(channel, f"{host}: {call}: {what}")
        if posting and status in (400, 413):
            return ContentRejectedError(channel, f"{host} refused the post ({what})")
        if status == 400:
            return PermanentPublishError(channel, f"{host} refused {call} for {handle} ({what})")
        if status == 404:
            return PermanentPublishError(channel, f"{host}: {call} not found ({what}); check `service`")
        if 300 <= status < 400:
            location = platform_text(response.headers.get("Location", "?"), self._keeper.secrets, LOCATION_LIMIT)
            return PermanentPublishError(channel, f"{host} redirected {call} to {location} ({what}); set "
                                                  "`service` to the final URL")
        retry = parse_retry_after(response.headers.get("Retry-After"), now) if status >= 500 else None
        detail = f"{host}: {call}: {error}: {problem.message}" if error else f"{host}: {call}: {problem.message}"
        return classify_status(channel, status, detail.rstrip(": "), retry_delay=retry)


class BlueskyPlugin:
    """Entry point ``bluesky = "bot.publishers.bluesky:plugin"``."""

    name = "bluesky"
    api_version = API_VERSION
    options_model: type[ChannelOptions] = BlueskyOptions

    def render(self, post: Post, options: Any, env: RenderEnv, *, plain: bool = False) -> RenderedMessage:
        assert isinstance(options, BlueskyOptions)
        return render_bluesky(post, options, env, plain=plain)

    def create(self, options: Any, ctx: PublisherContext) -> BlueskyPublisher:
        assert isinstance(options, BlueskyOptions)
        password = require_secret(ctx, options.name, options.app_password_env)
        return BlueskyPublisher(options, ctx, password)


plugin = BlueskyPlugin()
