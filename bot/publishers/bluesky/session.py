"""The Bluesky session: one login per process at most, renewed with the refresh token, logins limited.

``com.atproto.server.createSession`` (handle + app password) is limited per
handle and IP to 30 per 5 minutes and 300 per day (100 per day at the bsky.social
entryway), and an account that hits the limit cannot log in for hours. So:

* the session (access and refresh JWTs) lives in this object, in memory only,
  for the process's life; nothing of it is ever written to the database, a
  log or an error;
* a login happens lazily, when there is something to post or ``channels test``
  asks: a process that crash-loops before it has anything to post never logs in;
* an expired access token (``ExpiredToken``) is renewed with
  ``com.atproto.server.refreshSession`` (the refresh token rotates), once per
  call; only a refused refresh (revoked or expired: about two months) leads to
  a new login;
* every login attempt takes a token from a persisted bucket first
  (``LOGIN_LIMIT``: at most 48 a day, 12 at once, then one every 40 minutes),
  kept in the database's ``rate_buckets`` under ``login:bluesky:<service>:<handle>``
  (two numbers: tokens and a time). A restart does not refill it, so a
  container restarted in a loop cannot spend the account's daily logins: when
  the bucket is empty the channel is held (``RetryAfter``) until a login is
  allowed again, and nothing is dropped. Without a database (checking a
  configuration) the same limit is kept in memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from bot.clock import Clock
from bot.domain.pacing import bucket_shape, take_if_free
from bot.errors import PublishError, RetryablePublishError, RetryAfter
from bot.log import event
from bot.publishers.api import AttemptLimiter
from bot.publishers.bluesky.xrpc import Xrpc
from bot.publishers.http import json_body

LOGIN_LIMIT = (48.0, 86400.0)
"""Login attempts per handle: at most 48 in any 24 hours (the bucket: 12 at once, then one per 40 min)."""
MAX_KEY = 255
"""``rate_buckets.key`` is at most this long."""
REFRESH_ERRORS = frozenset({"ExpiredToken", "InvalidToken"})
"""Error names that mean "this token is no good any more": renew it (once) and try again."""


@dataclass(frozen=True, slots=True)
class Session:
    """A logged-in session. ``pds``: where the account's repository is (from its DID document)."""

    did: str
    handle: str
    access: str
    refresh: str
    pds: str

    def __repr__(self) -> str:
        return f"Session(did={self.did!r}, handle={self.handle!r}, pds={self.pds!r})"


class MemoryAttempts:
    """``AttemptLimiter`` within one process (when there is no database)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    async def take(self, key: str, count: float, per: float) -> float:
        burst, rate = bucket_shape(count, per)
        now = self._clock.now().timestamp()
        tokens, stamp = self._buckets.get(key, (burst, now))
        tokens, stamp, wait = take_if_free(tokens, stamp, now, burst, rate)
        self._buckets[key] = (tokens, stamp)
        return wait


def login_key(service: str, handle: str) -> str:
    key = f"login:bluesky:{urlsplit(service).netloc}:{handle.lower()}"
    return key[:MAX_KEY]


def pds_endpoint(did_doc: Any, service: str) -> str:
    """The ``#atproto_pds`` service endpoint of a DID document, if it is https (or the configured service
    itself); else the configured service. The access token is only ever sent to one of these."""
    services = did_doc.get("service") if isinstance(did_doc, dict) else None
    for entry in services if isinstance(services, list) else []:
        if not isinstance(entry, dict) or not str(entry.get("id", "")).endswith("#atproto_pds"):
            continue
        endpoint = entry.get("serviceEndpoint")
        if not isinstance(endpoint, str):
            break
        endpoint = endpoint.rstrip("/")
        parts = urlsplit(endpoint)
        same = (parts.scheme, parts.netloc) == (urlsplit(service).scheme, urlsplit(service).netloc)
        if (parts.scheme == "https" and parts.netloc and not parts.query and not parts.fragment) or same:
            return endpoint
        break
    return service


class SessionKeeper:
    """Holds the channel's session; logs in, refreshes, and limits logins (module docstring).

    ``login_failed(response)`` / ``refused(response)`` come from the publisher: it turns a refused
    login or refresh into the right ``PublishError``.
    """

    def __init__(self, *, channel: str, service: str, handle: str, password: str, xrpc: Xrpc,
                 attempts: AttemptLimiter, log: logging.Logger,
                 classify: Callable[[httpx.Response, str], PublishError]) -> None:
        self._channel = channel
        self._service = service
        self._handle = handle
        self._password = password
        self._xrpc = xrpc
        self._attempts = attempts
        self._log = log
        self._classify = classify
        self._session: Session | None = None
        self._lock = asyncio.Lock()
        self.logins = 0
        self.refreshes = 0

    @property
    def secrets(self) -> list[str]:
        """Everything secret this keeper holds (for redaction)."""
        found = [self._password]
        if self._session is not None:
            found += [self._session.access, self._session.refresh]
        return found

    @property
    def session(self) -> Session | None:
        return self._session

    async def current(self) -> Session:
        """The session, logging in first if there is none."""
        async with self._lock:
            if self._session is None:
                self._session = await self._login()
            return self._session

    async def renew(self, stale: Session) -> Session:
        """A new session after ``stale``'s access token was refused: refreshed, else a new login.
        A caller that finds the session already renewed by another gets the new one."""
        async with self._lock:
            if self._session is not None and self._session is not stale:
                return self._session
            response = await self._xrpc.call("POST", self._service, "com.atproto.server.refreshSession",
                                             token=stale.refresh)
            if response.is_success:
                self.refreshes += 1
                self._session = self._from(json_body(response), "refreshSession", pds=stale.pds)
                event(self._log, logging.INFO, "bluesky.session_refreshed", channel=self._channel)
                return self._session
            problem = self._xrpc.failure(response)
            if problem.status == 429 or problem.status >= 500 or problem.error not in (
                    *REFRESH_ERRORS, "AuthenticationRequired", "AuthMissing", ""):
                raise self._classify(response, "refreshSession")
            event(self._log, logging.WARNING, "bluesky.refresh_refused", channel=self._channel,
                  error=problem.describe(), action="logging in again")
            self._session = None  # spent: a transport error above keeps it, to be refreshed next time
            self._session = await self._login()
            return self._session

    async def _login(self) -> Session:
        key = login_key(self._service, self._handle)
        wait = await self._attempts.take(key, *LOGIN_LIMIT)
        if wait > 0:
            raise RetryAfter(self._channel, wait, (
                f"login to {urlsplit(self._service).netloc} postponed {wait:.0f}s: at most "
                f"{LOGIN_LIMIT[0]:.0f} logins a day per handle (a restarted or crash-looping process must not "
                "spend the account's createSession limit)"))
        self.logins += 1
        event(self._log, logging.INFO, "bluesky.login", channel=self._channel, handle=self._handle,
              service=urlsplit(self._service).netloc)
        response = await self._xrpc.call("POST", self._service, "com.atproto.server.createSession",
                                         json={"identifier": self._handle, "password": self._password})
        if not response.is_success:
            raise self._classify(response, "createSession")
        return self._from(json_body(response), "createSession")

    def _from(self, body: Any, call: str, *, pds: str | None = None) -> Session:
        if not isinstance(body, dict):
            body = {}
        access, refresh, did = body.get("accessJwt"), body.get("refreshJwt"), body.get("did")
        if not (isinstance(access, str) and access and isinstance(refresh, str) and refresh
                and isinstance(did, str) and did.startswith("did:")):
            raise RetryablePublishError(self._channel, f"{call}: the answer holds no session (accessJwt, "
                                                       "refreshJwt, did)")
        handle = body.get("handle") if isinstance(body.get("handle"), str) else self._handle
        return Session(did=did, handle=str(handle), access=access, refresh=refresh,
                       pds=pds_endpoint(body["didDoc"], self._service) if "didDoc" in body
                       else pds or self._service)
