"""Push: a signed hook call or a WebSub notification polls its source now instead of at its next interval.

A push is a trigger, never content: it brings the source's next poll forward in the database
(``Store.request_poll``, so every instance on PostgreSQL agrees) and wakes the poll driver, which polls
the source like any other time. What the push says is not believed; the poll reads the source.

- **Coalescing.** A source already due (a poll queued) absorbs the push. A poll running absorbs it too,
  but the push may have come after that poll's fetch, so the count of pushes (``sources.push_requests``)
  is compared when the poll is recorded: if it moved, one more poll follows (``polled``), however many
  pushes came meanwhile. A push brings a poll no sooner than ``[push] min_gap`` after the last one.
- **No hammering.** A source backing off after failures, or told to wait by its ``Retry-After``, keeps
  its time (``bot.domain.push.poll_request``).
- **Polling stays the safety net**: a lost push only means the post comes with the next interval's poll.

The HTTP side (checking the hook's signature, the WebSub callback) is ``bot.pushhooks``; the WebSub
subscriber is ``bot.services.websub``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from bot.domain.push import PollRequest, PushOutcome, ReplayGuard
from bot.domain.state import SourceState
from bot.log import event
from bot.observability import Metrics
from bot.publishers.api import Clock
from bot.services.websub import WebSubService
from bot.settings import PushSettings
from bot.sources.base import Fetched, PollResult
from bot.storage.store import Store

log = logging.getLogger("tagrelay.push")


@dataclass(frozen=True)
class PushSecrets:
    """The hook secret of each source that has one, and the WebSub master secret (None: no WebSub)."""

    hooks: Mapping[str, bytes] = field(default_factory=dict)
    websub: bytes | None = None

    def __repr__(self) -> str:
        return f"<push secrets: {len(self.hooks)} hook(s), websub {'on' if self.websub else 'off'}>"

    @property
    def any(self) -> bool:
        return bool(self.hooks) or self.websub is not None


class PushService:
    """Turns pushes into polls (see the module docstring). ``wake`` wakes the poll driver."""

    def __init__(self, store: Store, clock: Clock, metrics: Metrics, settings: PushSettings, secrets: PushSecrets,
                 *, wake: Callable[[], None], websub: WebSubService | None = None) -> None:
        self.store = store
        self.clock = clock
        self.metrics = metrics
        self.settings = settings
        self.secrets = secrets
        self.wake = wake
        self.websub = websub
        self.replays = ReplayGuard()
        """Signatures of the hook calls accepted within ``[push] window`` (a repeat is a replay)."""
        self.active = False
        """Set while ``tagrelay run`` serves (``run --once`` receives no pushes and subscribes to no hub)."""

    def hook_secret(self, source: str) -> bytes | None:
        """The hook secret of ``source``; None when it has no hook (or does not exist)."""
        return self.secrets.hooks.get(source)

    async def trigger(self, source: str, *, via: str) -> PollRequest | None:
        """Poll ``source`` as soon as its schedule allows (see the module docstring). None: no such source."""
        request = await self.store.request_poll(source, self.clock.now(), self.settings.min_gap)
        if request is None:
            return None
        self.metrics.push(via, request.outcome.value)
        if request.outcome != PushOutcome.HELD:
            self.wake()
        event(log, logging.INFO, "push", source=source, via=via, outcome=request.outcome.value,
              poll_at=request.at.isoformat(timespec="seconds"))
        return request

    def _pushed(self, source: str) -> bool:
        """Whether pushes can come for ``source`` (a hook, or a WebSub subscription)."""
        return source in self.secrets.hooks or (self.websub is not None and self.websub.subscribed(source))

    def watches(self, source: str) -> bool:
        """A poll of ``source`` answered 304 is written at once and reported to ``polled`` only while pushes
        are served and can come for it (else ``polled`` has nothing to do with a 304: the ``Poller`` buffers
        its record, whose UPDATE keeps a time a push set meanwhile)."""
        return self.active and self._pushed(source)

    async def polled(self, state: SourceState, result: PollResult) -> None:
        """After a poll of ``state.name`` was recorded (the ``Poller``'s observer): note the hub its feed
        advertises, and poll once more if pushes came while it ran."""
        if not self.active:
            return
        if self.websub is not None and isinstance(result, Fetched):
            await self.websub.observe(state.name, result.hub)
        if self._pushed(state.name) and await self.store.push_requests(state.name) != state.push_requests:
            await self.trigger(state.name, via="follow_up")
