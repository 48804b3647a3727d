"""The ``Notifier`` port: how the service tells its administrators something needs them.

A channel paused by a channel error and a burst held for an admin are announced
through it. The composition root (``bot.bootstrap``) chooses the implementation
and injects it into ``App``, ``Poller`` and ``Deliverer``: the Telegram admin bot
(``bot.admin.bot.AdminBot``) when ``[admin]`` is enabled, none otherwise (the
log line of the event is then all there is). Callers guard each call: an
announcement that fails is logged and never retried, never raised into a poll
or a delivery.
"""

from __future__ import annotations

from typing import Protocol


class Notifier(Protocol):
    """Tells the administrators ``text`` (plain text, one announcement)."""

    async def notify(self, text: str) -> None: ...
