"""The unpublishing watch: after each poll of a source, are its recently sent posts still on the site?

Runs only when a channel deletes (``on_delete = "delete"`` and a platform that can): without one it
costs nothing, not even a database read. Otherwise, after every poll of a source (also one answered
304), ``check``:

1. reads the source's watched posts (``Store.watched_posts``: a message sent within a deleting channel's
   ``delete_window``, not confirmed gone, no deletion queued);
2. asks the site, as ``bot.domain.unpublish`` decides: for the WordPress REST API one ``include=``
   request and a direct request to each post it leaves out; for a feed, the URLs of the posts it has a
   hole for (and of the first strikes due for confirmation); a feed answered 304 has the holes of the
   last document this process read (after a restart, from the next document that changed);
3. records the verdicts (``Store.record_unpublishing``): strikes, and for each confirmed post its
   deletions and cancellations (``bot.domain.lifecycle.plan_unpublished``) with an audit line.

Nothing here ever fails a poll: a check that cannot be made (the site or the database failing) is logged
and concludes nothing; the next poll checks again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

import httpx

from bot.domain.lifecycle import ChannelLifecycle
from bot.domain.models import Post
from bot.domain.state import SourceState
from bot.domain.unpublish import (
    MAX_INCLUDE,
    MAX_PROBES,
    Verdict,
    Watched,
    feed_holes,
    judge,
    newest_first,
    probe_of,
    to_probe,
    wordpress_id,
)
from bot.errors import SourceError, StorageError
from bot.log import event, redact_url
from bot.publishers.api import Clock
from bot.sources.base import CacheState
from bot.sources.presence import probe_status, published_ids, wordpress_api
from bot.storage.lifecycle import Removal
from bot.storage.store import Store

log = logging.getLogger("tagrelay.poll")


class Unpublisher:
    """Checks a source's recently sent posts after each poll (see the module docstring)."""

    def __init__(self, store: Store, client: httpx.AsyncClient, clock: Clock,
                 lifecycle: Mapping[str, ChannelLifecycle], *, max_bytes: int,
                 on_queued: Callable[[], None] = lambda: None) -> None:
        self.store = store
        self.client = client
        self.clock = clock
        self.lifecycle = dict(lifecycle)
        self.windows = {name: p.delete_window for name, p in lifecycle.items() if p.deletes}
        """The deleting channels and their ``delete_window``: none, and the watch costs nothing."""
        self.max_bytes = max_bytes
        self.on_queued = on_queued
        self._feeds: dict[str, tuple[frozenset[str], datetime | None]] = {}
        """Per feed source, the identities and the oldest date its last document listed: a poll answered
        304 has the same holes as the last one (a check that met a 5xx is made again)."""

    @property
    def active(self) -> bool:
        return bool(self.windows)

    async def check(self, state: SourceState, cache: CacheState, posts: Sequence[Post] | None) -> list[Removal]:
        """After a poll of ``state``'s source (``posts``: what it read, normalised; None: 304). Never raises."""
        if not self.windows:
            return []
        try:
            return await self._check(state, cache, posts)
        except (SourceError, StorageError) as exc:
            event(log, logging.WARNING, "unpublish.check_failed", source=state.name, error=redact_url(str(exc)),
                  note="nothing concluded; the next poll checks again")
        except Exception:  # a bug here must not fail the poll (already recorded); logged with its traceback
            log.exception("the unpublishing check of source %s failed", state.name)
        return []

    async def _check(self, state: SourceState, cache: CacheState, posts: Sequence[Post] | None) -> list[Removal]:
        now = self.clock.now()
        watched = await self.store.watched_posts(state.id, self.windows, now)
        if not watched:
            return []
        base = wordpress_api(state.kind, state.url, cache)
        if base is not None:
            verdicts, evidence = await self._wordpress(state, base, watched, now)
        else:
            verdicts, evidence = await self._feed(state.name, watched, posts, now)
        if not verdicts:
            return []
        removals = await self.store.record_unpublishing(state.name, verdicts, self.lifecycle, now, evidence)
        for verdict in verdicts:
            if not verdict.confirmed and verdict.missing_since is not None and verdict.post.missing_since is None:
                event(log, logging.INFO, "unpublish.suspected", source=state.name, post=verdict.post.url,
                      note="its page answered 404/410 once; a second answer some minutes later confirms it")
        for removal in removals:
            event(log, logging.WARNING, "unpublish.confirmed", source=state.name, post=removal.url,
                  title=removal.title, action=removal.text)
        if any(r.queued for r in removals):
            self.on_queued()
        return removals

    async def _wordpress(self, state: SourceState, base: str, watched: Sequence[Watched], now: datetime
                         ) -> tuple[list[Verdict], dict[int, str]]:
        """One ``include=`` request for the newest watched posts; each one it leaves out is confirmed by a
        404/410 of its own page."""
        ids = {w.post_id: wp for w in watched if (wp := wordpress_id(w.key)) is not None}
        asked = newest_first([w for w in watched if w.post_id in ids], MAX_INCLUDE)
        if not asked:
            return [], {}
        present = await published_ids(self.client, base, [ids[w.post_id] for w in asked], source=state.name,
                                      max_bytes=self.max_bytes)
        absent = [w for w in asked if ids[w.post_id] not in present and w.url][:MAX_PROBES]
        verdicts: list[Verdict] = []
        evidence: dict[int, str] = {}
        for post in absent:
            status = await probe_status(self.client, post.url or "")
            verdict = judge(post, probe_of(status), now, strikes=1)
            if verdict.changed:
                verdicts.append(verdict)
                evidence[post.post_id] = (f"the REST API no longer lists post {ids[post.post_id]} as published, "
                                          f"and its page answered {status}")
            else:
                event(log, logging.INFO, "unpublish.not_confirmed", source=state.name, post=post.url,
                      answer=status if status is not None else "none",
                      note="left out of the REST API's published posts, but its page did not answer 404/410")
        return verdicts, evidence

    async def _feed(self, source: str, watched: Sequence[Watched], posts: Sequence[Post] | None, now: datetime
                    ) -> tuple[list[Verdict], dict[int, str]]:
        """The posts a feed has a hole for, and the first strikes due: their pages asked, two 404/410 answers
        ``CONFIRM_GAP`` apart confirm. A struck post that is back in the feed loses its strike. ``posts``
        None (a 304): the holes of the last document this process read."""
        if posts is not None:
            dates = [p.published for p in posts if p.published is not None]
            self._feeds[source] = (frozenset(p.key for p in posts), min(dates) if dates else None)
        keys, oldest = self._feeds.get(source, (frozenset(), None))
        suspects = feed_holes(watched, keys, oldest) if source in self._feeds else []
        pending = [w for w in watched if w.missing_since is not None]
        verdicts = [Verdict(w, False, None) for w in pending if w.key in keys]  # back in the feed
        cleared = {v.post.post_id for v in verdicts}
        evidence: dict[int, str] = {}
        for post in to_probe(suspects, [w for w in pending if w.post_id not in cleared], now):
            status = await probe_status(self.client, post.url or "")
            verdict = judge(post, probe_of(status), now, strikes=2)
            if verdict.changed:
                verdicts.append(verdict)
                if verdict.confirmed:
                    evidence[post.post_id] = (f"left the feed, and its page answered {status} twice, the first "
                                              f"time at {_when(verdict.missing_since)}")
        return verdicts, evidence


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment is not None else "?"

