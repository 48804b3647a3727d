"""The WebSub subscriber: subscribe to the hub a feed advertises, answer the hub's verification of intent,
renew before the lease ends, and check each notification's signature (a valid one is a push).

The life of a source's subscription (``websub_subscriptions``, one row per source)::

    feed advertises a hub ─▶ pending ─(request sent)─▶ requested ─(hub verifies)─▶ active
                                 ▲        │ hub unreachable / refuses: failed, retried with backoff
                                 │        │ hub says hub.mode=denied: denied, asked again later
                                 └────────┴── renewal due (renew_before the lease ends): requested again
    feed stops advertising it (or websub = false) ─▶ dropped: not renewed, lapses with its lease

Requests are claimed in the database before they are sent (``Store.websub_claim_due``), so the hub's
verification, which may come before the request's answer and reach any instance, finds the row; and
two instances never send the same request. A request whose verification never comes is sent again
after ``VERIFY_TIMEOUT``. The ``hub.secret`` is derived, never stored (``bot.domain.push.websub_secret``).
A hub's answer body is never kept (it could repeat the secret): only its status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Literal

import httpx

from bot.domain.push import (
    MAX_RETRY,
    VERIFY_TIMEOUT,
    HubLink,
    Verification,
    WebSubState,
    callback_url,
    hub_lease,
    hub_signature_ok,
    renewal_time,
    retry_delay,
    verification,
    websub_secret,
)
from bot.log import event, redact_url
from bot.publishers.api import Clock
from bot.settings import PushSettings
from bot.storage.store import Store

log = logging.getLogger("tagrelay.websub")

CHECK_EVERY = 60.0
"""Seconds between looks at the subscriptions due (a new hub wakes the loop at once)."""
RENEW_AT_START = 3600.0
"""At start every wanted subscription is requested again (a changed secret, a hub that forgot it), unless
it was requested within this many seconds (a service restarting in a loop must not flood its hubs)."""
REQUEST_TIMEOUT = 20.0
"""Seconds a subscription request to a hub may take."""
MAX_CHALLENGE = 1024
"""Longest ``hub.challenge`` echoed back (hubs send a few dozen characters)."""

Notification = Literal["accepted", "bad_signature", "unknown"]


class WebSubService:
    """Subscriptions of the sources in ``sources`` (those with ``websub = true``); see the module docstring."""

    def __init__(self, store: Store, clock: Clock, http: httpx.AsyncClient, settings: PushSettings,
                 master: bytes, *, sources: Collection[str]) -> None:
        assert settings.public_url is not None
        self.store = store
        self.clock = clock
        self.http = http
        self.settings = settings
        self.public_url = settings.public_url
        self._master = master
        self.sources = frozenset(sources)
        self.wake = asyncio.Event()
        """Set when a subscription became due (a new hub): the loop sends it at once."""
        self._known: dict[str, HubLink | None] = {}
        """What each source's feed was last seen advertising (saves a write per poll)."""

    def __repr__(self) -> str:
        return f"<WebSubService {len(self.sources)} source(s)>"

    def callback(self, source: str) -> str:
        return callback_url(self.public_url, source)

    def _secret(self, source: str, topic: str) -> str:
        return websub_secret(self._master, self.callback(source), topic)

    def subscribed(self, source: str) -> bool:
        """Whether notifications may come for ``source`` (its feed advertises a hub tagrelay wants)."""
        return self._known.get(source) is not None

    async def start(self) -> None:
        """Read the stored subscriptions; stop renewing those of sources that no longer want WebSub; request
        the others again unless that was done within ``RENEW_AT_START``."""
        now = self.clock.now()
        for sub in await self.store.websub_subscriptions():
            if sub.source not in self.sources:
                if sub.state != WebSubState.DROPPED:
                    await self.store.websub_drop(sub.source, now)
                continue
            self._known[sub.source] = None if sub.state == WebSubState.DROPPED else sub.link
        if await self.store.websub_renew_all(sorted(self.sources), now, now - timedelta(seconds=RENEW_AT_START)):
            self.wake.set()

    async def observe(self, source: str, hub: HubLink | None) -> None:
        """A poll of ``source`` fetched its feed, which advertises ``hub`` (None: none)."""
        if source not in self.sources or (source in self._known and self._known[source] == hub):
            return
        now = self.clock.now()
        if hub is None:
            if await self.store.websub_drop(source, now):
                event(log, logging.INFO, "websub.dropped", source=source,
                      note="the feed no longer advertises a hub; the subscription lapses with its lease")
        else:
            sub = await self.store.websub_want(source, hub, now)
            if sub is not None and sub.state == WebSubState.PENDING:
                event(log, logging.INFO, "websub.hub_found", source=source, hub=redact_url(hub.hub),
                      topic=redact_url(hub.topic))
                self.wake.set()
        self._known[source] = hub

    # -- requests to hubs -------------------------------------------------------------------------------

    async def renew_due(self) -> int:
        """Send every subscription request that is due (new, renewal, retry); returns how many were sent."""
        now = self.clock.now()
        due = await self.store.websub_claim_due(now, VERIFY_TIMEOUT, sorted(self.sources))
        for sub in due:
            await self._request(sub.source, HubLink(sub.hub, sub.topic), sub.attempts, now)
        return len(due)

    async def _request(self, source: str, link: HubLink, attempts: int, claimed_at: datetime) -> None:
        callback = self.callback(source)
        form = {"hub.callback": callback, "hub.mode": "subscribe", "hub.topic": link.topic,
                "hub.lease_seconds": str(int(self.settings.lease)), "hub.secret": self._secret(source, link.topic)}
        error: str
        try:
            answer = await self.http.post(link.hub, data=form, follow_redirects=False, timeout=REQUEST_TIMEOUT)
        except httpx.HTTPError as exc:
            error = f"could not reach the hub: {type(exc).__name__}"
        else:
            if 200 <= answer.status_code < 300:
                event(log, logging.INFO, "websub.requested", source=source, hub=redact_url(link.hub),
                      status=answer.status_code, note="waiting for the hub's verification")
                return
            error = f"the hub answered HTTP {answer.status_code}"
        now = self.clock.now()
        wait = retry_delay(attempts + 1)
        await self.store.websub_failed(source, claimed_at, error, now, now + timedelta(seconds=wait))
        event(log, logging.WARNING, "websub.request_failed", source=source, hub=redact_url(link.hub), error=error,
              retry_in=round(wait))

    async def run(self, stop: asyncio.Event) -> None:
        """Send what is due, then again whenever woken or every ``CHECK_EVERY`` seconds, until ``stop``."""
        while not stop.is_set():
            self.wake.clear()
            try:
                await self.renew_due()
            except Exception as exc:  # noqa: BLE001 - a database blip must not stop the subscriber
                log.warning("could not send the due WebSub requests: %s", type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_either(stop, self.wake), CHECK_EVERY)

    # -- the callback -----------------------------------------------------------------------------------

    async def verify(self, source: str, mode: str | None, topic: str | None, challenge: str | None,
                     lease_seconds: str | None, reason: str | None = None) -> str | None:
        """A hub's ``GET <callback>``: the text to answer 200 with (the challenge), or None to answer 404."""
        sub = await self.store.websub_subscription(source) if source in self.sources else None
        decision = verification(mode, topic, sub)
        now = self.clock.now()
        if decision == Verification.DENIED and topic is not None:
            # a hub's "no" is not asked again soon
            await self.store.websub_denied(source, topic, (reason or "no reason given")[:300], now,
                                           now + timedelta(seconds=MAX_RETRY))
            event(log, logging.WARNING, "websub.denied", source=source, reason=(reason or "")[:300])
            return ""
        if decision != Verification.CONFIRM or challenge is None or topic is None:
            event(log, logging.INFO, "websub.verification_refused", source=source, mode=(mode or "")[:20])
            return None
        if mode == "subscribe":
            lease = hub_lease(lease_seconds, self.settings.lease)
            renew = renewal_time(now, lease, self.settings.renew_before)
            if not await self.store.websub_verified(source, topic, lease, now, renew):
                return None
            self._known[source] = HubLink(sub.hub, topic) if sub is not None else None
            event(log, logging.INFO, "websub.active", source=source, lease=round(lease),
                  renew_at=renew.isoformat(timespec="seconds"))
        return challenge

    async def notified(self, source: str, signature: str | None, body: bytes) -> Notification:
        """A hub's ``POST <callback>``: whether it is a correctly signed notification for a subscription
        tagrelay wants (then the caller triggers a poll)."""
        sub = await self.store.websub_subscription(source) if source in self.sources else None
        if sub is None or sub.state == WebSubState.DROPPED:
            return "unknown"
        if not hub_signature_ok(self._secret(source, sub.topic), signature, body):
            return "bad_signature"
        return "accepted"


async def _either(*events: asyncio.Event) -> None:
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
