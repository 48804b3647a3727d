"""The push endpoints, served on the service's HTTP listener (the health sidecar's, ``bot.health``).

::

    POST /hooks/<source>     a signed trigger: poll <source> now (the WordPress plugin sends it)
    GET  /websub/<source>    a WebSub hub's verification of intent
    POST /websub/<source>    a WebSub hub's notification

**The hook**, in this order (the format: ``bot.domain.push``; a sender needs the source's secret):
405 for any method but POST; 413 for a body over ``[push] hook_max_body`` (refused unread when its
``Content-Length`` says so); 401 unless ``X-Tagrelay-Signature`` is the HMAC-SHA256 of
``timestamp "." source "." body`` under the source's secret, compared in constant time; 401 when the
signed ``X-Tagrelay-Timestamp`` is more than ``[push] window`` from now; 409 for a call already
accepted within the window (a replay); 429 when the window's memory of accepted calls is full; else 202
with what the push did (``{"source": …, "poll": "queued"|"due"|"held", "at": …}``). An unknown
source, or one without a hook, gets the same 401 as a wrong signature, after the same work (an HMAC
under a throwaway key): a caller without a secret learns nothing about which sources exist. A refused
call changes nothing. The body is never believed: a ``url`` in a JSON body is logged, nothing else is
read.

**WebSub**: a verification is answered 200 with ``hub.challenge`` (at most 1024 printable characters)
only when tagrelay asked for it (``bot.services.websub``), else 404; a notification over
``[push] notification_max_body`` gets 413; one for a source without a subscription 404; otherwise 202,
and only a correct ``X-Hub-Signature`` polls the source (a wrong one is ignored, as WebSub requires).
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from bot.domain.push import (
    HUB_SIGNATURE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    HookCheck,
    check_hook,
    parse_hook_signature,
    parse_timestamp,
)
from bot.domain.urls import url_refusal
from bot.httpserver import answer
from bot.log import event, redact_url
from bot.services.push import PushService
from bot.services.websub import MAX_CHALLENGE

log = logging.getLogger("tagrelay.push")

HOOKS = "/hooks/"
WEBSUB = "/websub/"
REFUSAL_LOG_EVERY = 10.0
"""Seconds between two log lines about refused calls of one kind (a flood is counted, not logged)."""
_LOGGED_URL = 300


class PushEndpoint:
    """The handlers behind ``HOOKS`` and ``WEBSUB`` (see the module docstring)."""

    def __init__(self, push: PushService) -> None:
        self.push = push
        self.settings = push.settings
        self._decoy = secrets.token_bytes(32)
        """The key an unknown source's call is checked with: the same work, the same 401."""
        self._refusals: dict[str, tuple[float, int]] = {}

    @staticmethod
    def handles(path: str) -> bool:
        return path.startswith((HOOKS, WEBSUB))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path.startswith(HOOKS):
            return await self._hook(request, request.path[len(HOOKS):])
        return await self._websub(request, request.path[len(WEBSUB):])

    # -- the hook ---------------------------------------------------------------------------------------

    async def _hook(self, request: web.Request, source: str) -> web.Response:
        if request.method != "POST":
            return answer(405, "only POST\n", headers={"Allow": "POST"})
        body = await _read(request, self.settings.hook_max_body)
        if body is None:
            return self._refuse("hook", "oversize", 413, "body too large\n")
        secret = self.push.hook_secret(source)
        known = secret is not None
        now = self.push.clock.now().timestamp()
        verdict = check_hook(secret or self._decoy, source=source, timestamp=request.headers.get(TIMESTAMP_HEADER),
                             signature=request.headers.get(SIGNATURE_HEADER), body=body, now=now,
                             window=self.settings.window)
        if not known:
            return self._refuse("hook", "unknown", 401, "invalid signature\n", source=source[:64])
        if verdict in (HookCheck.MALFORMED, HookCheck.BAD_SIGNATURE):
            return self._refuse("hook", verdict.value, 401, "invalid signature\n", source=source)
        if verdict == HookCheck.STALE:
            return self._refuse("hook", "stale", 401, "timestamp outside the accepted window\n", source=source)
        stamp = parse_timestamp(request.headers.get(TIMESTAMP_HEADER))
        digest = parse_hook_signature(request.headers.get(SIGNATURE_HEADER))
        assert stamp is not None and digest is not None  # check_hook said OK
        admitted = self.push.replays.admit(digest, expires=stamp + self.settings.window + 1.0, now=now)
        if admitted is False:
            return self._refuse("hook", "replay", 409, "already received\n", source=source)
        if admitted is None:
            return self._refuse("hook", "busy", 429, "too many calls; try again later\n", source=source,
                                headers={"Retry-After": str(int(self.settings.window))})
        request_ = await self.push.trigger(source, via="hook")
        if request_ is None:  # configured but not (yet) in the database: nothing to poll
            return answer(503, "the source is not ready yet\n", headers={"Retry-After": "5"})
        _log_payload(source, body)
        return answer(202, json.dumps({"source": source, "poll": request_.outcome.value,
                                       "at": request_.at.isoformat(timespec="seconds")}) + "\n",
                      content_type="application/json")

    # -- WebSub -----------------------------------------------------------------------------------------

    async def _websub(self, request: web.Request, source: str) -> web.Response:
        websub = self.push.websub
        if websub is None or source not in websub.sources:
            return answer(404, "not found\n")
        if request.method == "GET":
            query = request.query
            challenge = query.get("hub.challenge")
            if challenge is not None and (len(challenge) > MAX_CHALLENGE or not challenge.isprintable()):
                return answer(400, "hub.challenge is too long or holds control characters\n")
            reply = await websub.verify(source, query.get("hub.mode"), query.get("hub.topic"), challenge,
                                        query.get("hub.lease_seconds"), query.get("hub.reason"))
            if reply is None:
                return answer(404, "not found\n")
            return answer(200, reply, headers={"X-Content-Type-Options": "nosniff"})
        if request.method != "POST":
            return answer(405, "only GET and POST\n", headers={"Allow": "GET, POST"})
        body = await _read(request, self.settings.notification_max_body)
        if body is None:
            return self._refuse("websub", "oversize", 413, "body too large\n", source=source)
        verdict = await websub.notified(source, request.headers.get(HUB_SIGNATURE_HEADER), body)
        if verdict == "unknown":
            return answer(404, "not found\n")
        if verdict == "bad_signature":  # WebSub: ignored, but acknowledged (no oracle, no retries)
            return self._refuse("websub", "bad_signature", 202, "ok\n", source=source)
        await self.push.trigger(source, via="websub")
        return answer(202, "ok\n")

    # -- refusals ---------------------------------------------------------------------------------------

    def _refuse(self, via: str, reason: str, status: int, text: str, *, source: str = "",
                headers: Mapping[str, str] | None = None) -> web.Response:
        self.push.metrics.push(via, reason)
        key = f"{via}:{reason}"
        last, suppressed = self._refusals.get(key, (0.0, 0))
        clock = time.monotonic()
        if clock - last >= REFUSAL_LOG_EVERY:
            fields: dict[str, Any] = {"via": via, "reason": reason, "status": status}
            if source:
                fields["source"] = source
            if suppressed:
                fields["more"] = suppressed
            event(log, logging.WARNING, "push.refused", **fields)
            self._refusals[key] = (clock, 0)
        else:
            self._refusals[key] = (last, suppressed + 1)
        return answer(status, text, headers=headers)


async def _read(request: web.Request, cap: int) -> bytes | None:
    """The request's body, or None when it is longer than ``cap`` bytes (not read past the cap)."""
    if request.content_length is not None and request.content_length > cap:
        return None
    data = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        data += chunk
        if len(data) > cap:
            return None
    return bytes(data)


def _log_payload(source: str, body: bytes) -> None:
    """Log the post URL a hook's JSON body names, if it names one a link could be (nothing else is read)."""
    url: str | None = None
    kind: str | None = None
    try:
        data = json.loads(body) if body else None
    except (ValueError, RecursionError):
        data = None
    if isinstance(data, dict):
        candidate = data.get("url")
        if isinstance(candidate, str) and url_refusal(candidate) is None:
            url = redact_url(candidate)[:_LOGGED_URL]
        what = data.get("event")
        if isinstance(what, str) and what.isascii() and what.isalpha() and len(what) <= 20:
            kind = what
    event(log, logging.INFO, "push.hook", source=source, **({"event": kind} if kind else {}),
          **({"post_url": url} if url else {}))
