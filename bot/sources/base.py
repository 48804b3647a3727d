"""The source port: one ``poll`` that returns parsed posts or "not modified".

A source is stateless between calls: everything it must remember (validators
for conditional GET, the WordPress ``modified_after`` cursor, what ``auto``
discovered) travels in ``CacheState``, which the polling service stores in the
same transaction as the posts. A failed poll therefore never loses state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from bot.domain.models import ParsedPost
from bot.domain.push import HubLink
from bot.domain.state import CacheState as CacheState  # its home is the domain; sources name it from here too


@dataclass(frozen=True, slots=True)
class Fetched:
    """The source answered with content; ``posts`` in feed order (newest first usually)."""

    posts: tuple[ParsedPost, ...]
    cache: CacheState
    bytes_read: int = 0
    notes: tuple[str, ...] = field(default=())
    hub: HubLink | None = None
    """The WebSub hub the feed advertises (``bot.sources.hubs``), None when none."""


@dataclass(frozen=True, slots=True)
class NotModified:
    """The source answered 304 (or an unchanged file): nothing was parsed."""

    cache: CacheState


PollResult = Fetched | NotModified


class Source(Protocol):
    """Reads one configured source.

    ``poll`` raises only ``bot.errors.SourceError`` subclasses (``FetchError``,
    ``FeedParseError``) naming the source; it never raises for an empty feed.
    ``first_poll`` lets a source limit how much history it reads on a baseline.
    """

    name: str

    async def poll(self, cache: CacheState, *, first_poll: bool) -> PollResult: ...
