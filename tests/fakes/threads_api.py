"""``FakeThreads``: a loopback Threads API (graph.threads.net) written from Meta's documentation.

Sources: developers.facebook.com/docs/threads — posts ("Single Thread Posts", "Limitations"),
reference/publishing (``POST /{user}/threads``, ``POST /{user}/threads_publish``, the container
``GET /{container-id}?fields=status,error_message``), overview ("Rate Limiting", "Posts": 250 per
rolling 24 h, ``threads_publishing_limit``), get-started/long-lived-tokens (``refresh_access_token``),
troubleshooting (container statuses), text-attachments (the 5-link rule,
``THREADS_API__LINK_LIMIT_EXCEEDED``), and the Graph API's error-handling guide (the error body,
codes 1/2/4/17/100/190, subcodes 460/463). Where Meta documents a rule but not the exact error
body, the body below is assumed and marked so.

Routes (under ``/v1.0``; a user may be ``me`` or the numeric id)::

    GET  /me?fields=id,username,...                 → the profile
    POST /{user}/threads                             → {"id": container id}      (form, query or JSON params)
    GET  /{container}?fields=status,error_message    → {"id", "status"[, "error_message"]}
    POST /{user}/threads_publish?creation_id=…       → {"id": media id}
    GET  /{media}?fields=id,permalink,…              → the published post
    GET  /{user}/threads?fields=…&limit=…            → {"data": [...newest first], "paging": {...}}
    GET  /{user}/threads_publishing_limit?fields=quota_usage,config
                             → {"data": [{"quota_usage", "config": {"quota_total", "quota_duration"}}]}
    GET  /refresh_access_token?grant_type=th_refresh_token&access_token=…   (no version prefix)
                                                     → {"access_token", "token_type": "bearer", "expires_in"}

The token travels as ``Authorization: Bearer`` or an ``access_token`` parameter (the Graph API takes
both). Errors are the Graph API's ``{"error": {"message", "type", "code", "error_subcode"?,
"fbtrace_id"}}`` with HTTP 400 (auth and parameters), 403 (permissions), 500 (codes 1/2).

Rules it enforces:

* an unknown token → 190 "Invalid OAuth access token"; an expired one (``expires_at`` passed on
  ``clock()``) → 190/463 "Session has expired"; a revoked one → 190/460;
* text over 500 characters (graphemes, emoji as their UTF-8 bytes: Meta's rule) → 100; more than 5
  unique links (text plus ``link_attachment``) → 100 ``THREADS_API__LINK_LIMIT_EXCEEDED``;
  ``link_attachment`` on anything but TEXT, or IMAGE without ``image_url`` → 100;
* an IMAGE container is ``IN_PROGRESS`` for ``image_polls`` status reads, then ``FINISHED`` (or
  ``ERROR`` with ``image_error``); TEXT containers are ``FINISHED`` at once (or after ``text_polls``
  reads); a container not published within 24 h is ``EXPIRED``;
* ``threads_publish``: only a FINISHED container (else 400, code 24 — assumed body), once (a second
  publish → 400 code 100 "already published" — assumed body), and not past the quota: 250 posts
  per rolling 24 h (→ 400 code 4 — assumed body); publishing makes the post and marks the container
  ``PUBLISHED``;
* ``refresh_access_token``: only a token at least 24 h old and not expired (else 400 code 190 — the
  "too young" body is assumed); the refreshed token is a new string valid 60 days; the old one keeps
  working until its own expiry.

Scripting (plus ``fail_next`` / ``drop_next`` / ``hold_next``, matching the URL path, e.g.
``PUBLISH`` or ``CONTAINERS``)::

    fake.rate_limit(seconds, match=PUBLISH)     # 429 + Retry-After, Graph error code 4
    fake.throttle(minutes, match=CONTAINERS)    # 400 code 17 + X-Business-Use-Case-Usage's
                                                # estimated_time_to_regain_access
    fake.expire(token) / fake.revoke(token)
    fake.spend_quota(n)                         # n posts published by "another app" now
    fake.image_polls = 2; fake.image_error = "UNKNOWN"

Recorded: ``fake.containers`` (every container, with its parameters), ``fake.posts`` (published, in
order), ``fake.refreshes`` (tokens issued by refresh), ``fake.requests``.
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import grapheme

from tests.fakes.http import Request, Response
from tests.fakes.telegram_api import ScriptedServer

DEFAULT_TOKEN = "THAAtestLongLivedToken0123456789abcdefghijklmnopqrstuvwxyz"
USER_ID = "17841400000000001"
USERNAME = "tagrelay_threads"
VERSION = "v1.0"
CONTAINERS = f"/{VERSION}/me/threads"
PUBLISH = f"/{VERSION}/me/threads_publish"
QUOTA = f"/{VERSION}/me/threads_publishing_limit"
PROFILE = f"/{VERSION}/me"
REFRESH = "/refresh_access_token"
TEXT_LIMIT = 500
MAX_LINKS = 5
QUOTA_TOTAL = 250
QUOTA_DURATION = 86400
CONTAINER_LIFETIME = timedelta(hours=24)
TOKEN_LIFETIME = timedelta(days=60)
REFRESH_MIN_AGE = timedelta(hours=24)

_EMOJI = re.compile("[\U0001f000-\U0001faff\u2600-\u27bf\u2b00-\u2bff\ufe0f\u20e3\u00a9\u00ae\u203c\u2049"
                    "\u2122\u2139\u2194-\u21aa\u231a-\u23ff\u25aa-\u25fe\u3030\u303d\u3297\u3299]")
_LINK = re.compile(r"(?:https?://|www\.)[^\s]+|\b(?:[a-z0-9-]+\.)+[a-z]{2,}(?:/[^\s]*)?", re.IGNORECASE)


def meta_length(text: str) -> int:
    """Meta's count as documented: characters (graphemes), an emoji counting its UTF-8 bytes."""
    return sum(len(g.encode("utf-8")) if _EMOJI.search(g) else 1 for g in grapheme.graphemes(text))


def meta_links(text: str, attachment: str | None = None) -> set[str]:
    """The unique links Meta counts: every URL in the text (with or without a scheme), plus the attachment."""
    def key(url: str) -> str:
        return re.sub(r"^https?://", "", url, flags=re.IGNORECASE).rstrip(".,;:!?)/").lower()

    found = {key(m.group(0)) for m in _LINK.finditer(text)}
    if attachment:
        found.add(key(attachment))
    return found


@dataclass
class Token:
    value: str
    issued_at: datetime
    expires_at: datetime
    revoked: bool = False


@dataclass
class Container:
    id: str
    media_type: str
    params: dict[str, str]
    created_at: datetime
    polls: int = 0
    ready_after: int = 0
    """Status reads it stays IN_PROGRESS for."""
    status: str = "IN_PROGRESS"
    error_message: str | None = None
    media_id: str | None = None


@dataclass
class ThreadsPost:
    id: str
    container_id: str
    media_type: str
    text: str
    link_attachment: str | None
    image_url: str | None
    alt_text: str | None
    published_at: datetime
    shortcode: str
    permalink: str
    token: str = field(repr=False)


class GraphError(Exception):
    def __init__(self, status: int, code: int, message: str, *, subcode: int | None = None,
                 kind: str = "OAuthException", headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.subcode, self.kind = status, code, message, subcode, kind
        self.headers = dict(headers or {})


def graph_error(status: int, code: int, message: str, *, subcode: int | None = None,
                kind: str = "OAuthException") -> dict[str, Any]:
    """The Graph API's error body."""
    error: dict[str, Any] = {"message": message, "type": kind, "code": code,
                             "fbtrace_id": "A" + secrets.token_hex(8)}
    if subcode is not None:
        error["error_subcode"] = subcode
    return {"error": error}


class FakeThreads(ScriptedServer):
    """A Threads profile on 127.0.0.1. ``token`` is its long-lived token, issued ``token_age`` ago."""

    def __init__(self, *, token: str = DEFAULT_TOKEN, token_age: timedelta = timedelta(days=2),
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC), quota_total: int = QUOTA_TOTAL) -> None:
        super().__init__()
        self.clock = clock
        self.quota_total = quota_total
        now = clock()
        self.tokens: dict[str, Token] = {token: Token(token, now - token_age, now - token_age + TOKEN_LIFETIME)}
        self.containers: list[Container] = []
        self.posts: list[ThreadsPost] = []
        self.refreshes: list[str] = []
        self.other_posts: list[datetime] = []
        """Publication times of posts made by another app on this profile (they count against the quota)."""
        self.image_polls = 0
        """Status reads an IMAGE container stays IN_PROGRESS for."""
        self.text_polls = 0
        """Status reads a TEXT container stays IN_PROGRESS for (0: FINISHED at once)."""
        self.image_error: str | None = None
        """When set, IMAGE containers end in ERROR with this ``error_message``."""
        self._ids = itertools.count(18000000000000001)

    # -- scripting ---------------------------------------------------------------------------

    def rate_limit(self, seconds: int, *, match: str | None = PUBLISH, times: int = 1) -> None:
        """429 with ``Retry-After: seconds`` and the Graph API's "Application request limit reached" (code 4)."""
        self.fail_next(429, graph_error(429, 4, "Application request limit reached"),
                       {"Retry-After": str(seconds)}, match=match, times=times)

    def throttle(self, minutes: int, *, match: str | None = PUBLISH, times: int = 1) -> None:
        """400 code 17 "User request limit reached" with ``X-Business-Use-Case-Usage`` naming the wait."""
        usage = {USER_ID: [{"type": "threads", "call_count": 100, "total_cputime": 40, "total_time": 60,
                            "estimated_time_to_regain_access": minutes}]}
        self.fail_next(400, graph_error(400, 17, "User request limit reached"),
                       {"X-Business-Use-Case-Usage": json.dumps(usage)}, match=match, times=times)

    def expire(self, token: str) -> None:
        with self.lock:
            self.tokens[token].expires_at = self.clock() - timedelta(seconds=1)

    def revoke(self, token: str) -> None:
        with self.lock:
            self.tokens[token].revoked = True

    def spend_quota(self, count: int, *, at: datetime | None = None) -> None:
        with self.lock:
            self.other_posts.extend([at or self.clock()] * count)

    def token(self, value: str) -> Token:
        with self.lock:
            return self.tokens[value]

    def posted_texts(self) -> list[str]:
        with self.lock:
            return [p.text for p in self.posts]

    # -- plumbing ----------------------------------------------------------------------------

    def route(self, request: Request) -> Response | object:
        try:
            return self._route(request)
        except GraphError as exc:
            return Response.json(graph_error(exc.status, exc.code, exc.message, subcode=exc.subcode, kind=exc.kind),
                                 exc.status, exc.headers)

    def _route(self, request: Request) -> Response:
        params = self._params(request)
        path = request.path
        if path == REFRESH and request.method == "GET":
            return self._refresh(params)
        prefix = f"/{VERSION}/"
        if not path.startswith(prefix):
            raise GraphError(400, 100, "Unknown path components")
        parts = path[len(prefix):].split("/")
        token = self._auth(request, params)
        if parts[0] not in ("me", USER_ID):
            if len(parts) == 1 and request.method == "GET":
                return self._object(parts[0])
            raise GraphError(400, 100, f"Unsupported {request.method.lower()} request. Object with ID "
                                       f"'{parts[0][:40]}' does not exist, cannot be loaded due to missing "
                                       "permissions, or does not support this operation", subcode=33)
        edge = parts[1] if len(parts) > 1 else ""
        if edge == "" and request.method == "GET":
            return Response.json({"id": USER_ID, "username": USERNAME, "name": "Tagrelay Test",
                                  "threads_profile_picture_url": f"{self.url}/pic.jpg"})
        if edge == "threads" and request.method == "POST":
            return self._create(params)
        if edge == "threads" and request.method == "GET":
            return self._list(params)
        if edge == "threads_publish" and request.method == "POST":
            return self._publish(params, token)
        if edge == "threads_publishing_limit" and request.method == "GET":
            return Response.json({"data": [{"quota_usage": self._usage(),
                                            "config": {"quota_total": self.quota_total,
                                                       "quota_duration": QUOTA_DURATION}}]})
        raise GraphError(400, 100, "Unknown path components")

    @staticmethod
    def _params(request: Request) -> dict[str, str]:
        params = {k: v[-1] for k, v in request.query.items()}
        ctype = (request.header("content-type") or "").lower()
        if request.body and ctype.startswith("application/json"):
            body = request.json()
            if isinstance(body, dict):
                params.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in body.items()})
        elif request.body:
            params.update({k: v[-1] for k, v in request.form().items()})
        return params

    def _auth(self, request: Request, params: Mapping[str, str]) -> str:
        auth = request.header("authorization") or ""
        value = auth[7:].strip() if auth.lower().startswith("bearer ") else params.get("access_token", "")
        with self.lock:
            token = self.tokens.get(value)
        now = self.clock()
        if token is None:
            raise GraphError(400, 190, "Invalid OAuth access token - Cannot parse access token")
        if token.revoked:
            raise GraphError(400, 190, "Error validating access token: The session has been invalidated because "
                                       "the user changed their password or Facebook has changed the session for "
                                       "security reasons.", subcode=460)
        if now >= token.expires_at:
            raise GraphError(400, 190, "Error validating access token: Session has expired on "
                                       f"{token.expires_at:%A, %d-%b-%y %H:%M:%S} PST.", subcode=463)
        return value

    def _usage(self) -> int:
        since = self.clock() - timedelta(seconds=QUOTA_DURATION)
        with self.lock:
            return sum(1 for p in self.posts if p.published_at > since) + sum(1 for t in self.other_posts
                                                                               if t > since)

    def _create(self, params: Mapping[str, str]) -> Response:
        media_type = params.get("media_type", "")
        text = params.get("text", "")
        attachment = params.get("link_attachment") or None
        if media_type not in ("TEXT", "IMAGE"):
            raise GraphError(400, 100, "Param media_type must be one of {TEXT, IMAGE, VIDEO, CAROUSEL}")
        if media_type == "TEXT" and not text:
            raise GraphError(400, 100, "The parameter text is required for text posts")
        if media_type == "IMAGE" and not params.get("image_url"):
            raise GraphError(400, 100, "The parameter image_url is required")
        if attachment and media_type != "TEXT":
            raise GraphError(400, 100, "link_attachment is only supported on text posts")
        if meta_length(text) > TEXT_LIMIT:
            raise GraphError(400, 100, f"Param text must be at most {TEXT_LIMIT} characters long")
        if len(meta_links(text, attachment)) > MAX_LINKS:
            raise GraphError(400, 100, "THREADS_API__LINK_LIMIT_EXCEEDED: posts may contain at most 5 links")
        if len(params.get("alt_text", "")) > 1000:
            raise GraphError(400, 100, "Param alt_text must be at most 1000 characters long")
        with self.lock:
            ready_after = self.image_polls if media_type == "IMAGE" else self.text_polls
            container = Container(id=str(next(self._ids)), media_type=media_type,
                                  params={k: v for k, v in params.items() if k != "access_token"},
                                  created_at=self.clock(), ready_after=ready_after,
                                  status="FINISHED" if media_type == "TEXT" and not ready_after else "IN_PROGRESS")
            self.containers.append(container)
        return Response.json({"id": container.id})

    def _status(self, container: Container) -> str:
        """Moves an IMAGE container along as it is read; a container unpublished for 24 h expires."""
        if container.status in ("FINISHED", "IN_PROGRESS") and self.clock() - container.created_at \
                >= CONTAINER_LIFETIME:
            container.status = "EXPIRED"
        if container.status == "IN_PROGRESS":
            if container.polls >= container.ready_after:
                failed = self.image_error if container.media_type == "IMAGE" else None
                container.status = "ERROR" if failed else "FINISHED"
                container.error_message = failed
            container.polls += 1
        return container.status

    def _container(self, container_id: str) -> Container | None:
        with self.lock:
            return next((c for c in self.containers if c.id == container_id), None)

    def _object(self, object_id: str) -> Response:
        container = self._container(object_id)
        if container is not None:
            with self.lock:
                status = self._status(container)
            body: dict[str, Any] = {"id": container.id, "status": status}
            if container.error_message:
                body["error_message"] = container.error_message
            return Response.json(body)
        with self.lock:
            post = next((p for p in self.posts if p.id == object_id), None)
        if post is None:
            raise GraphError(400, 100, f"Unsupported get request. Object with ID '{object_id[:40]}' does not "
                                       "exist, cannot be loaded due to missing permissions, or does not support "
                                       "this operation", subcode=33)
        return Response.json(self._post_json(post))

    def _publish(self, params: Mapping[str, str], token: str) -> Response:
        container = self._container(params.get("creation_id", ""))
        if container is None:
            raise GraphError(400, 100, "Invalid parameter: creation_id does not exist", subcode=33)
        with self.lock:
            status = self._status(container)
            if status == "PUBLISHED":  # assumed body: Meta documents no error for a second publish
                raise GraphError(400, 100, "The media has already been published")
            if status == "EXPIRED":
                raise GraphError(400, 100, "The media container has expired")
            if status != "FINISHED":  # assumed body (the Instagram API answers code 9007 "not ready")
                raise GraphError(400, 24, "The media is not ready for publishing, please wait for a moment")
            if self._usage() >= self.quota_total:  # assumed body
                raise GraphError(400, 4, "Application request limit reached: this profile has published "
                                         f"{self.quota_total} posts in 24 hours")
            media_id = str(next(self._ids))
            shortcode = f"C{media_id[-9:]}"
            post = ThreadsPost(id=media_id, container_id=container.id, media_type=container.media_type,
                               text=container.params.get("text", ""),
                               link_attachment=container.params.get("link_attachment") or None,
                               image_url=container.params.get("image_url") or None,
                               alt_text=container.params.get("alt_text") or None, published_at=self.clock(),
                               shortcode=shortcode, permalink=f"{self.url}/@{USERNAME}/post/{shortcode}",
                               token=token)
            self.posts.append(post)
            container.status = "PUBLISHED"
            container.media_id = media_id
        return Response.json({"id": media_id})

    def _post_json(self, post: ThreadsPost) -> dict[str, Any]:
        body: dict[str, Any] = {"id": post.id, "media_product_type": "THREADS", "media_type":
                                "TEXT_POST" if post.media_type == "TEXT" else post.media_type,
                                "permalink": post.permalink, "owner": {"id": USER_ID}, "username": USERNAME,
                                "text": post.text, "timestamp": post.published_at.strftime("%Y-%m-%dT%H:%M:%S+0000"),
                                "shortcode": post.shortcode, "is_quote_post": False}
        if post.link_attachment:
            body["link_attachment_url"] = post.link_attachment
        if post.image_url:
            body["media_url"] = post.image_url
        return body

    def _list(self, params: Mapping[str, str]) -> Response:
        try:
            limit = max(1, min(100, int(params.get("limit", "25"))))
        except ValueError:
            limit = 25
        with self.lock:
            newest = list(reversed(self.posts))[:limit]
        return Response.json({"data": [self._post_json(p) for p in newest],
                              "paging": {"cursors": {"before": "b", "after": "a"}}})

    def _refresh(self, params: Mapping[str, str]) -> Response:
        if params.get("grant_type") != "th_refresh_token":
            raise GraphError(400, 100, "Unsupported grant_type")
        value = params.get("access_token", "")
        with self.lock:
            token = self.tokens.get(value)
        now = self.clock()
        if token is None or token.revoked:
            raise GraphError(400, 190, "Invalid OAuth access token - Cannot parse access token")
        if now >= token.expires_at:
            raise GraphError(400, 190, "Error validating access token: Session has expired", subcode=463)
        if now - token.issued_at < REFRESH_MIN_AGE:  # assumed body: Meta documents the rule only
            raise GraphError(400, 190, "The access token is too new to be refreshed: tokens can be refreshed once "
                                       "they are at least 24 hours old")
        fresh = f"THAArefreshed{len(self.refreshes) + 1}-{secrets.token_hex(16)}"
        with self.lock:
            self.tokens[fresh] = Token(fresh, now, now + TOKEN_LIFETIME)
            self.refreshes.append(fresh)
        return Response.json({"access_token": fresh, "token_type": "bearer",
                              "expires_in": int(TOKEN_LIFETIME.total_seconds())})
