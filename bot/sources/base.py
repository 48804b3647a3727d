"""The source port: one ``poll`` that returns parsed posts or "not modified".

A source is stateless between calls: everything it must remember (validators
for conditional GET, the WordPress ``modified_after`` cursor, what ``auto``
discovered) travels in ``CacheState``, which the polling service stores in the
same transaction as the posts. A failed poll therefore never loses state.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Protocol

from bot.domain.models import ParsedPost


@dataclass(frozen=True, slots=True)
class CacheState:
    """Per-source memory between polls."""

    etag: str | None = None
    last_modified: str | None = None
    cursor: str | None = None
    resolved_url: str | None = None
    resolved_kind: str | None = None

    def but(self, **changes: str | None) -> CacheState:
        return replace(self, **changes)


@dataclass(frozen=True, slots=True)
class Fetched:
    """The source answered with content; ``posts`` in feed order (newest first usually)."""

    posts: tuple[ParsedPost, ...]
    cache: CacheState
    bytes_read: int = 0
    notes: tuple[str, ...] = field(default=())


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
