"""Push triggers, pure: the signed hook, the replay memory, when a pushed poll may run, and the WebSub
subscriber's arithmetic. No clock, no database, no network: everything comes in as arguments.

**The hook** (``POST /hooks/<source>``, ``bot.pushhooks``; the WordPress plugin in
``contrib/wordpress/tagrelay-push.php`` sends exactly this)::

    X-Tagrelay-Timestamp: 1767225600                      (Unix seconds, ASCII digits)
    X-Tagrelay-Signature: sha256=<64 lower-case hex digits>

    signature = HMAC-SHA256(secret, timestamp + "." + source + "." + body)

The source's name is part of the signed text, so a call signed for one source cannot be replayed to
another that shares its secret. The body is a trigger, never content: whatever it says, the source is
polled, and only a post URL it names is logged.

**WebSub** (W3C WebSub): the hub signs each notification with the secret given at subscription,
``X-Hub-Signature: <sha1|sha256|sha384|sha512>=<hex HMAC of the body>``. That secret is derived from
``[push] websub_secret_env`` and the callback and topic (``websub_secret``), so nothing secret is stored.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

TIMESTAMP_HEADER = "X-Tagrelay-Timestamp"
SIGNATURE_HEADER = "X-Tagrelay-Signature"
SIGNATURE_PREFIX = "sha256="
HUB_SIGNATURE_HEADER = "X-Hub-Signature"

_TIMESTAMP_DIGITS = 12
"""A Unix timestamp in seconds has 10 digits until the year 2286; more is not a timestamp."""


# -- the signed hook --------------------------------------------------------------------------------


def signed_text(timestamp: str, source: str, body: bytes) -> bytes:
    """What the hook's signature covers: ``timestamp "." source "." body``."""
    return f"{timestamp}.{source}.".encode() + body


def hook_signature(secret: bytes, timestamp: str, source: str, body: bytes) -> str:
    """The ``X-Tagrelay-Signature`` value for a call (what a sender computes)."""
    return SIGNATURE_PREFIX + hmac.new(secret, signed_text(timestamp, source, body), hashlib.sha256).hexdigest()


class HookCheck(StrEnum):
    """What ``check_hook`` found."""

    OK = "ok"
    MALFORMED = "malformed"
    """A header is missing or not in its format (no secret was used to tell)."""
    BAD_SIGNATURE = "bad_signature"
    STALE = "stale"
    """Correctly signed, but the timestamp is outside the window (an old call replayed, or a wrong clock)."""


def parse_timestamp(value: str | None) -> int | None:
    """``X-Tagrelay-Timestamp`` as Unix seconds: 1 to 12 ASCII digits; None otherwise."""
    if value is None:
        return None
    text = value.strip()
    if not 0 < len(text) <= _TIMESTAMP_DIGITS or not (text.isascii() and text.isdigit()):
        return None
    return int(text)


def parse_hook_signature(value: str | None) -> bytes | None:
    """The digest in ``X-Tagrelay-Signature`` (``sha256=`` and 64 hex digits, any case); None otherwise."""
    if value is None:
        return None
    text = value.strip()
    if len(text) != len(SIGNATURE_PREFIX) + 64 or text[:len(SIGNATURE_PREFIX)].lower() != SIGNATURE_PREFIX:
        return None
    return _hex(text[len(SIGNATURE_PREFIX):])


def _hex(text: str) -> bytes | None:
    if not text.isascii():
        return None
    try:
        return bytes.fromhex(text)
    except ValueError:
        return None


def check_hook(secret: bytes, *, source: str, timestamp: str | None, signature: str | None, body: bytes,
               now: float, window: float) -> HookCheck:
    """Check one call: its headers' format, then the signature (constant-time compare), then that its
    timestamp is within ``window`` seconds of ``now`` (either way: a sender's clock may run ahead)."""
    stamp = parse_timestamp(timestamp)
    given = parse_hook_signature(signature)
    if stamp is None or given is None or timestamp is None:
        return HookCheck.MALFORMED
    expected = hmac.new(secret, signed_text(timestamp.strip(), source, body), hashlib.sha256).digest()
    if not hmac.compare_digest(expected, given):
        return HookCheck.BAD_SIGNATURE
    if abs(now - stamp) > window:
        return HookCheck.STALE
    return HookCheck.OK


class ReplayGuard:
    """The signatures of the calls accepted within the window, each kept until its timestamp could no
    longer pass the window check; a call whose signature is remembered is a replay.

    Bounded: with ``capacity`` signatures remembered and none expired, ``admit`` answers None (the caller
    refuses the call: a flood of distinct, correctly signed calls cannot grow the memory without end).
    """

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self._expiry: dict[bytes, float] = {}
        self._heap: list[tuple[float, bytes]] = []

    def __len__(self) -> int:
        return len(self._expiry)

    def admit(self, key: bytes, *, expires: float, now: float) -> bool | None:
        """True: first seen (remembered until ``expires``); False: a replay; None: the memory is full."""
        self._forget(now)
        if key in self._expiry:
            return False
        if len(self._expiry) >= self.capacity:
            return None
        self._expiry[key] = expires
        heapq.heappush(self._heap, (expires, key))
        return True

    def _forget(self, now: float) -> None:
        while self._heap and self._heap[0][0] < now:
            _, key = heapq.heappop(self._heap)
            self._expiry.pop(key, None)


# -- when a pushed poll may run ----------------------------------------------------------------------


class PushOutcome(StrEnum):
    QUEUED = "queued"
    """The source's next poll was moved forward to ``at``."""
    DUE = "due"
    """The source was due at ``at`` or sooner already (a poll is queued or running): nothing moved."""
    HELD = "held"
    """The source is backing off after failures (or a ``Retry-After``) until ``at``: a push does not
    shorten that."""


@dataclass(frozen=True, slots=True)
class PollRequest:
    outcome: PushOutcome
    at: datetime
    """When the source's next poll is due after the request."""


def poll_request(*, next_poll_at: datetime | None, failures: int, last_poll_at: datetime | None,
                 now: datetime, min_gap: float) -> PollRequest:
    """What a push does to a source's schedule.

    A failing source keeps its backoff (a push must not make tagrelay hammer a source that fails or asked
    it to wait). Otherwise the next poll moves forward to now, but to no sooner than ``min_gap`` seconds
    after the last poll, so that a burst of pushes makes a few polls, not one per push; a source due
    sooner already is left as it is.
    """
    if failures > 0 and next_poll_at is not None and next_poll_at > now:
        return PollRequest(PushOutcome.HELD, next_poll_at)
    earliest = now
    if last_poll_at is not None:
        earliest = max(now, last_poll_at + timedelta(seconds=min_gap))
    if next_poll_at is None or next_poll_at <= earliest:
        return PollRequest(PushOutcome.DUE, next_poll_at or now)
    return PollRequest(PushOutcome.QUEUED, earliest)


# -- WebSub ------------------------------------------------------------------------------------------

HUB_ALGORITHMS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha384": hashlib.sha384,
                  "sha512": hashlib.sha512}
"""The ``X-Hub-Signature`` methods WebSub allows."""

MIN_LEASE = 300.0
"""A hub's lease shorter than this counts as this (a 1-second lease would make renewal a tight loop)."""
MAX_LEASE = 366 * 86400.0
"""A hub's lease longer than this counts as this (the arithmetic stays within datetime)."""
VERIFY_TIMEOUT = 600.0
"""Seconds a subscription request waits for the hub's verification before it is sent again."""
MAX_RETRY = 86400.0
"""The longest wait before a failed or denied subscription is requested again."""


class WebSubState(StrEnum):
    PENDING = "pending"
    """A hub was found; no request sent yet."""
    REQUESTED = "requested"
    """A (re)subscription was sent; the hub's verification is awaited."""
    ACTIVE = "active"
    """The hub verified it: notifications are expected until ``expires_at``."""
    DENIED = "denied"
    """The hub refused it (``hub.mode=denied``); asked again after a while."""
    FAILED = "failed"
    """The request did not reach the hub or was refused; retried with backoff."""
    DROPPED = "dropped"
    """The feed no longer advertises the hub (or WebSub is off for it): not renewed, lapses at lease end."""


@dataclass(frozen=True, slots=True)
class HubLink:
    """A hub a feed advertises, and the topic URL to subscribe to (the feed's ``rel="self"``)."""

    hub: str
    topic: str


@dataclass(frozen=True, slots=True)
class WebSubSubscription:
    """A source's subscription as stored (``websub_subscriptions``)."""

    source: str
    hub: str
    topic: str
    state: WebSubState
    requested_at: datetime | None = None
    verified_at: datetime | None = None
    lease_seconds: int | None = None
    expires_at: datetime | None = None
    renew_at: datetime | None = None
    attempts: int = 0
    last_error: str | None = None

    @property
    def link(self) -> HubLink:
        return HubLink(self.hub, self.topic)


def callback_url(public_url: str, source: str) -> str:
    """The callback a hub calls for ``source``: ``<public_url>/websub/<source>``."""
    return f"{public_url.rstrip('/')}/websub/{source}"


def websub_secret(master: bytes, callback: str, topic: str) -> str:
    """The ``hub.secret`` for one subscription: 64 hex digits derived from the master secret, so it is
    never stored, differs per subscription, and stays the same across renewals."""
    return hmac.new(master, f"websub\n{callback}\n{topic}".encode(), hashlib.sha256).hexdigest()


def hub_signature_ok(secret: str, header: str | None, body: bytes) -> bool:
    """Whether ``X-Hub-Signature`` (``method=hex``) is the HMAC of ``body`` under ``secret`` (constant-time)."""
    if header is None or "=" not in header or len(header) > 200:
        return False
    method, _, digest = header.strip().partition("=")
    algorithm = HUB_ALGORITHMS.get(method.strip().lower())
    given = _hex(digest.strip())
    if algorithm is None or given is None:
        return False
    return hmac.compare_digest(hmac.new(secret.encode(), body, algorithm).digest(), given)


def hub_lease(value: str | None, asked: float) -> float:
    """The lease a hub granted (``hub.lease_seconds``: ASCII digits), within ``MIN_LEASE``–``MAX_LEASE``;
    ``asked`` when the hub did not say."""
    seconds = asked
    if value is not None:
        text = value.strip()
        if 0 < len(text) <= 12 and text.isascii() and text.isdigit():
            seconds = float(int(text))
    return min(MAX_LEASE, max(MIN_LEASE, seconds))


def renewal_time(verified_at: datetime, lease: float, before: float) -> datetime:
    """When to renew a subscription verified at ``verified_at`` for ``lease`` seconds: ``before`` seconds
    ahead of its end, but never before half the lease has run."""
    return verified_at + timedelta(seconds=lease - min(before, lease / 2))


def retry_delay(attempts: int) -> float:
    """Seconds before a failed subscription request is sent again: 1 min, doubling, at most a day."""
    return float(min(MAX_RETRY, 60.0 * 2.0 ** min(max(0, attempts - 1), 20)))


class Verification(StrEnum):
    CONFIRM = "confirm"
    """Answer 200 with the challenge."""
    REFUSE = "refuse"
    """Answer 404: tagrelay did not ask for this."""
    DENIED = "denied"
    """The hub says it refused the subscription: record it, answer 200."""


def verification(mode: str | None, topic: str | None, sub: WebSubSubscription | None) -> Verification:
    """How to answer a hub's verification of intent (``GET <callback>?hub.mode=…&hub.topic=…``).

    ``subscribe``: confirmed only for the topic the source's subscription names, while tagrelay still
    wants it (anything but ``dropped``). ``unsubscribe``: confirmed only when tagrelay does *not* want
    that topic from this source any more (so nobody else can unsubscribe tagrelay through the hub).
    ``denied`` for the wanted topic is recorded.
    """
    wanted = sub is not None and sub.state != WebSubState.DROPPED and topic == sub.topic
    if mode == "subscribe":
        return Verification.CONFIRM if wanted else Verification.REFUSE
    if mode == "unsubscribe":
        return Verification.REFUSE if wanted or topic is None else Verification.CONFIRM
    if mode == "denied" and wanted:
        return Verification.DENIED
    return Verification.REFUSE

