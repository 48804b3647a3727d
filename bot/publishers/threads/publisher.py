"""The Threads publisher: a media container, remembered, then published; the token refreshed before it expires.

A post is two calls (developers.facebook.com/docs/threads/posts): ``POST /{user}/threads`` creates a
media container (``TEXT`` with ``text`` and ``link_attachment``, or ``IMAGE`` with ``image_url``,
``alt_text`` and ``text``), ``POST /{user}/threads_publish?creation_id=<container>`` publishes it.
Before publishing, the container id is handed to the delivery service's ``stage`` (``PublishesStaged``),
which commits it to the delivery's record; only then does the publishing request leave. So a lost
answer, a timeout or a SIGKILL mid-request leaves the container id behind, and the next attempt first
asks what became of it (``GET /{container}?fields=status,error_message``):

=============  ====================================================================================
PUBLISHED      the post exists: sent (its id and permalink looked up among the profile's latest posts)
FINISHED       not published yet: publish that container (if it holds the same rendering)
IN_PROGRESS    wait for it (bounded, ``image_wait``), then publish it
ERROR          Threads could not process it (an image it could not fetch): ``ContentRejectedError``,
               so the plain rendering (a text post) is tried
EXPIRED        never published (containers expire after 24 h): a new container
(no such id)   look for the post among the profile's latest posts; not there: a new container
=============  ====================================================================================

A container staged for a different rendering (the plain fallback, an edited template) is left to
expire unless it was published. Nothing is posted twice: ``idempotent`` is True, and a delivery whose
outcome was unknown is simply retried. An unpublished container costs nothing (it expires).

Limits: before each new container, ``GET /{user}/threads_publishing_limit`` — when ``quota_usage``
has reached ``quota_total`` (250 posts per rolling 24 h) the channel is held (``RetryAfter``,
``QUOTA_RECHECK``) and asked again then; nothing is dropped. Rate-limit errors hold the channel as
long as Threads says (``bot.publishers.threads.client``).

Token: ``bot.publishers.threads.token`` (where the refreshed copy lives, when it is refreshed).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bot.errors import (
    AmbiguousPublishError,
    ContentRejectedError,
    CredentialsError,
    PublishError,
    RetryablePublishError,
    RetryAfter,
)
from bot.log import event
from bot.publishers.api import AccountInfo, PublisherContext, PublishResult, RenderedMessage, RenderEnv, Stage
from bot.publishers.threads.client import ThreadsApi
from bot.publishers.threads.options import ThreadsOptions
from bot.publishers.threads.token import (
    RETRY_AFTER_FAILURE,
    TokenFile,
    TokenFileError,
    TokenState,
    default_token_path,
    fingerprint,
    refresh_due,
    token_notes,
)
from bot.render.threads import LIMIT

QUOTA_RECHECK = 1800.0
"""Seconds a channel whose publishing quota is spent waits before asking again (Threads says how many
posts were made in the rolling 24 hours, not when the oldest of them leaves the window)."""
FIRST_POLL_DELAY = 0.5
"""Seconds before the second status read of an unfinished container; doubled each time up to ``MAX_POLL_DELAY``."""
MAX_POLL_DELAY = 8.0
RECENT_POSTS = 25
"""How many of the profile's latest posts are searched for one whose container cannot be read."""
STATUSES = frozenset({"PUBLISHED", "FINISHED", "IN_PROGRESS", "ERROR", "EXPIRED"})

Sleep = Callable[[float], Awaitable[None]]


def message_digest(message: RenderedMessage) -> str:
    """Which rendering a staged container holds (16 hex digits)."""
    parts = (message.text, message.image_url or "", message.image_alt or "",
             str(message.extra.get("media_type") or ""), str(message.extra.get("link_attachment") or ""))
    return hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()[:16]


async def _no_stage(_value: str) -> None:
    return None


class ThreadsPublisher:
    """Posts to one Threads profile. Idempotent through ``publish_staged`` (the module docstring)."""

    idempotent = True

    def __init__(self, options: ThreadsOptions, ctx: PublisherContext, env_token: str, token_file: TokenFile, *,
                 sleep: Sleep = asyncio.sleep) -> None:
        self._options = options
        self._channel = options.name
        self._log = ctx.logger
        self._clock = ctx.clock
        self._sleep = sleep
        self._env_token = env_token
        self._token = env_token
        self._file = token_file
        self._state = TokenState(fingerprint(env_token))
        self._user = ThreadsApi.node(options.user_id)
        self._api = ThreadsApi(ctx.http, channel=options.name, api_base=options.api_base,
                               api_version=options.api_version, token=lambda: self._token,
                               secrets=lambda: [self._env_token, self._token], clock_now=ctx.clock.now,
                               token_where=self._token_where)

    def __repr__(self) -> str:
        return f"ThreadsPublisher(channel={self._channel!r}, api_base={self._options.api_base!r})"

    @property
    def render_env(self) -> RenderEnv:
        return RenderEnv(max_chars=LIMIT)

    @property
    def token_state(self) -> TokenState:
        return self._state

    def _token_where(self) -> str:
        if self._state.access_token is not None:
            return f"the refreshed copy in {self._file.path} of the token in {self._options.token_env}"
        return f"the token in {self._options.token_env}"

    # -- lifecycle ---------------------------------------------------------------------------

    async def initialize(self) -> None:
        """Read the token file (no network): its refreshed token if it descends from the environment's."""
        try:
            state, warning = await asyncio.to_thread(self._file.load)
        except TokenFileError as exc:
            event(self._log, logging.WARNING, "threads.token_file_unusable", channel=self._channel, error=str(exc),
                  action=f"using the token in {self._options.token_env}; the file is rewritten at the next refresh")
            return
        if warning:
            event(self._log, logging.WARNING, "threads.token_file_mode", channel=self._channel, note=warning)
        if state is None:
            return
        if state.source != self._state.source:
            event(self._log, logging.INFO, "threads.token_replaced", channel=self._channel,
                  note=f"{self._options.token_env} holds a new token: the refreshed one in {self._file.path} is "
                       "no longer used")
            return
        self._state = state
        if state.access_token is not None:
            self._token = state.access_token

    async def aclose(self) -> None:
        return None  # the shared client belongs to the composition root

    # -- publishing --------------------------------------------------------------------------

    async def publish(self, message: RenderedMessage, *, idempotency_key: str) -> PublishResult:
        """Without the delivery service's staging (``publish_staged`` is what it calls)."""
        return await self.publish_staged(message, idempotency_key=idempotency_key, staged=None, stage=_no_stage)

    async def publish_staged(self, message: RenderedMessage, *, idempotency_key: str, staged: str | None,
                             stage: Stage) -> PublishResult:
        await self._refresh_if_due()
        digest = message_digest(message)
        if staged:
            done = await self._resume(staged, message, digest)
            if done is not None:
                return done
        await self._check_quota()
        container = await self._create(message)
        await stage(f"{container}:{digest}")
        # an image takes Threads a moment to fetch; a text container is published at once (were it not ready,
        # the refusal is followed by a status read and a wait: ``_publish``)
        if message.image_url and await self._wait_finished(container) == "PUBLISHED":
            return await self._published(message)
        return await self._publish(container, message)

    async def _resume(self, staged: str, message: RenderedMessage, digest: str) -> PublishResult | None:
        """What became of an earlier attempt's container (the module docstring's table). None: make a new one."""
        container, _, staged_digest = staged.partition(":")
        if not container.isdigit():
            return None  # not one of ours: nothing to ask about
        found = await self._status(container)
        if found is None:
            event(self._log, logging.WARNING, "threads.container_unknown", channel=self._channel, container=container,
                  note="Threads does not know the container an earlier attempt made; looking for the post")
            return await self._find_recent(message, strict=True)
        status, error_message = found
        if status == "PUBLISHED":
            return await self._published(message)
        if staged_digest != digest:
            return None  # another rendering: left to expire
        if status == "ERROR":
            raise ContentRejectedError(self._channel, f"{self._api.host} could not process the container "
                                                      f"({error_message or 'no error_message'})")
        if status in ("FINISHED", "IN_PROGRESS"):
            await self._check_quota()
            if status == "IN_PROGRESS" and await self._wait_finished(container) == "PUBLISHED":
                return await self._published(message)
            return await self._publish(container, message)
        return None  # EXPIRED (never published), or a status Threads did not document

    async def _create(self, message: RenderedMessage) -> str:
        """``POST /{user}/threads``. Creating a container posts nothing: a lost answer is merely retryable."""
        media_type = "IMAGE" if message.image_url else "TEXT"
        data: dict[str, str] = {"media_type": media_type, "text": message.text}
        if media_type == "IMAGE":
            assert message.image_url is not None
            data["image_url"] = message.image_url
            if message.image_alt:
                data["alt_text"] = message.image_alt
        else:
            attachment = message.extra.get("link_attachment")
            if isinstance(attachment, str) and attachment:
                data["link_attachment"] = attachment
        body = await self._api.call("POST", f"{self._user}/threads", data=data, sending=False, posting=True)
        container = str(body.get("id") or "") if body else ""
        if not container.isdigit() or len(container) > 64:
            raise RetryablePublishError(self._channel, f"POST /{self._user}/threads: {self._api.host} answered "
                                                       "without a container id")
        return container

    async def _status(self, container: str) -> tuple[str, str | None] | None:
        """The container's (status, error_message); None when Threads knows no such container."""
        body = await self._api.call("GET", ThreadsApi.node(container), params={"fields": "status,error_message"},
                                    sending=False, missing_ok=True)
        if body is None:
            return None
        status = str(body.get("status") or "").upper()
        error = body.get("error_message")
        return status, str(error)[:200] if error else None

    async def _wait_finished(self, container: str) -> str:
        """Read the container's status until it is FINISHED (or PUBLISHED), waiting at most ``image_wait`` seconds
        in all between the reads."""
        waited = 0.0
        delay = FIRST_POLL_DELAY
        while True:
            found = await self._status(container)
            if found is None:
                raise RetryablePublishError(self._channel, f"{self._api.host} lost container {container} before "
                                                           "it was published")
            status, error_message = found
            if status in ("FINISHED", "PUBLISHED"):
                return status
            if status == "ERROR":
                raise ContentRejectedError(self._channel, f"{self._api.host} could not process the container "
                                                          f"({error_message or 'no error_message'})")
            if status == "EXPIRED":
                raise RetryablePublishError(self._channel, f"container {container} expired before it was published")
            if waited + delay > self._options.image_wait:
                raise RetryablePublishError(self._channel, f"{self._api.host} is still processing container "
                                                           f"{container} after {self._options.image_wait:.0f}s "
                                                           f"(status {status}); tried again later")
            await self._sleep(delay)
            waited += delay
            delay = min(delay * 2, MAX_POLL_DELAY)

    async def _publish(self, container: str, message: RenderedMessage, *, again: bool = False) -> PublishResult:
        """``POST /{user}/threads_publish``: the request that makes the post. A refusal is checked against the
        container's status first (published after all? still processing?)."""
        try:
            body = await self._api.call("POST", f"{self._user}/threads_publish", params={"creation_id": container},
                                        sending=True, posting=True)
        except (CredentialsError, RetryAfter, AmbiguousPublishError):
            raise
        except PublishError as refused:
            try:
                found = await self._status(container)
            except PublishError:
                raise refused from None
            if found is not None and found[0] == "PUBLISHED":
                return await self._published(message)
            if found is not None and found[0] == "IN_PROGRESS" and not again:
                if await self._wait_finished(container) == "PUBLISHED":
                    return await self._published(message)
                return await self._publish(container, message, again=True)
            raise
        media_id = str(body.get("id") or "") if body else ""
        if not media_id:
            raise AmbiguousPublishError(self._channel, f"{self._api.host} answered threads_publish without a "
                                                       "media id; the post may exist")
        return PublishResult(remote_id=media_id, url=await self._permalink(media_id))

    async def _permalink(self, media_id: str) -> str | None:
        """The post's public URL; None when it cannot be read (the post exists either way)."""
        try:
            body = await self._api.call("GET", ThreadsApi.node(media_id), params={"fields": "id,permalink"},
                                        sending=False)
        except PublishError as exc:
            event(self._log, logging.INFO, "threads.permalink_unknown", channel=self._channel, media=media_id,
                  error=exc.reason)
            return None
        link = body.get("permalink") if body else None
        return link if isinstance(link, str) and link.startswith(("https://", "http://")) else None

    async def _published(self, message: RenderedMessage) -> PublishResult:
        """An earlier attempt's container is published: its post, found among the latest (best effort)."""
        try:
            found = await self._find_recent(message, strict=False)
        except PublishError:
            found = None
        return found or PublishResult()

    async def _find_recent(self, message: RenderedMessage, *, strict: bool) -> PublishResult | None:
        """The profile's latest post with this text (or this link), if any. ``strict``: a failed read raises."""
        try:
            body = await self._api.call("GET", f"{self._user}/threads", sending=False,
                                        params={"fields": "id,permalink,text,link_attachment_url,timestamp",
                                                "limit": str(RECENT_POSTS)})
        except PublishError:
            if strict:
                raise
            return None
        posts = body.get("data") if body else None
        for post in posts if isinstance(posts, list) else []:
            if not isinstance(post, dict) or not post.get("id"):
                continue
            raw = post.get("text")
            text = raw if isinstance(raw, str) else ""
            same = text == message.text or (message.link is not None and (
                message.link in text or post.get("link_attachment_url") == message.link))
            if same:
                link = post.get("permalink")
                return PublishResult(remote_id=str(post["id"]), url=link if isinstance(link, str) else None)
        return None

    async def _check_quota(self) -> None:
        """Hold the channel (``RetryAfter``) when the profile's 24-hour publishing quota is spent."""
        body = await self._api.call("GET", f"{self._user}/threads_publishing_limit",
                                    params={"fields": "quota_usage,config"}, sending=False)
        usage, total, hours = _quota(body)
        if usage is not None and total is not None and usage >= total:
            raise RetryAfter(self._channel, QUOTA_RECHECK,
                             f"Threads publishing quota spent: {usage} of {total} posts in the last {hours} h; "
                             f"the channel waits and asks again in {QUOTA_RECHECK / 60:.0f} min")

    # -- the token ---------------------------------------------------------------------------

    async def _refresh_if_due(self) -> None:
        """Refresh the token when ``refresh_due`` says so; a failure is logged and recorded, never raised."""
        now = self._clock.now()
        if not refresh_due(self._state, now):
            return
        try:
            fresh, lasts = await self._api.refresh(self._token)
        except PublishError as exc:
            self._state = self._state.failed(exc.reason, now)
            event(self._log, logging.WARNING, "threads.token_refresh_failed", channel=self._channel, error=exc.reason,
                  next_try_in=round(RETRY_AFTER_FAILURE.total_seconds()),
                  note="the current token keeps being used until Threads refuses it")
            await self._save()
            return
        self._state = self._state.refreshed(fresh, lasts, now)
        self._token = fresh
        event(self._log, logging.INFO, "threads.token_refreshed", channel=self._channel,
              expires_at=self._state.expires_at.isoformat(timespec="seconds") if self._state.expires_at else None,
              kept_in=str(self._file.path))
        await self._save()

    async def _save(self) -> None:
        try:  # a few hundred bytes and an fsync, off the event loop
            await asyncio.to_thread(self._file.save, self._state, self._channel)
        except OSError as exc:
            event(self._log, logging.ERROR, "threads.token_file_unwritable", channel=self._channel,
                  file=str(self._file.path), error=exc.strerror or type(exc).__name__,
                  note="the refreshed token is used but will be lost at a restart; fix the directory's permissions")

    # -- channels test -----------------------------------------------------------------------

    async def check(self) -> AccountInfo:
        """``GET /{user}?fields=id,username,name`` and the publishing quota: read-only, nothing is posted,
        the token is not refreshed."""
        profile = await self._api.call("GET", self._user, params={"fields": "id,username,name"}, sending=False)
        username = profile.get("username") if profile else None
        if not isinstance(username, str) or not username:
            raise RetryablePublishError(self._channel, f"GET /{self._user}: {self._api.host} answered without a "
                                                       "username")
        assert profile is not None
        quota = await self._api.call("GET", f"{self._user}/threads_publishing_limit",
                                     params={"fields": "quota_usage,config"}, sending=False)
        usage, total, hours = _quota(quota)
        notes = token_notes(self._state, self._clock.now(), env_name=self._options.token_env, channel=self._channel)
        api = f"{self._options.api_base}/{self._options.api_version}"
        detail: dict[str, Any] = {"id": profile.get("id"), "api": api,
                                  "publishing quota": f"{usage} of {total} posts in the last {hours} h"
                                  if usage is not None and total is not None else "unknown",
                                  "access token": "; ".join(n.text for n in notes),
                                  "token file": str(self._file.path)}
        return AccountInfo(display=f"@{username} on Threads", detail=detail)


def _quota(body: dict[str, Any] | None) -> tuple[int | None, int | None, int]:
    """(quota_usage, quota_total, hours) from a ``threads_publishing_limit`` answer; None where unreadable."""
    data = body.get("data") if body else None
    first: dict[str, Any] = data[0] if isinstance(data, list) and data and isinstance(data[0], dict) else {}
    raw = first.get("config")
    config: dict[str, Any] = raw if isinstance(raw, dict) else {}

    def number(value: Any) -> int | None:
        return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**9 else None

    duration = number(config.get("quota_duration")) or 86400
    return number(first.get("quota_usage")), number(config.get("quota_total")), max(1, round(duration / 3600))


def token_path(options: ThreadsOptions, state_dir: Path | None) -> Path | None:
    """The channel's token file: ``token_file``, else ``threads-<name>.token`` beside the SQLite database."""
    if options.token_file is not None:
        return options.token_file.expanduser()
    return default_token_path(state_dir, options.name) if state_dir is not None else None
