"""``make_source``: a configured source as a ``Source``, and the ``auto`` kind that finds one.

``kind = "rss" | "jsonfeed" | "wordpress"`` read ``cfg.url`` with that parser.
``kind = "auto"`` resolves once, on the first poll, and records the outcome in
``CacheState.resolved_url`` / ``resolved_kind`` (returned with every result,
so the polling service stores it with the posts):

* a feed (RSS/Atom/RDF or JSON Feed, by body, content type as tie-breaker) is
  used directly, and this first body is parsed, not fetched twice;
* a WordPress posts list or API index becomes the REST source;
* an HTML page is searched for ``rel="https://api.w.org/"`` (preferred: tags
  and categories kept apart, stable ids, ``modified_after``) and then for
  ``rel="alternate"`` feeds; when the REST API turns out to be closed (many
  sites answer 401/403/404 to anonymous callers) the announced feed is used.

When the resolved URL later answers 404 or 410, discovery runs again, once per
poll, from ``cfg.url``. Each source is stateless apart from caches; failures are
``SourceError`` naming the source with one reason.

What discovery finds came from the network, so it only ever leads to http/https
(``bot.domain.urls``; docs/operations.md, "What a source may lead to"): a page
announcing nothing else is a ``FetchError`` naming the refused scheme, and the
source's stored state is left as it was. A stored ``resolved_url`` the policy
refuses (written before that rule) is re-discovered rather than polled.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import ClassVar

import httpx

from bot.domain.urls import url_refusal
from bot.errors import FeedParseError, FetchError, SourceError
from bot.settings import HttpConfig, SourceConfig
from bot.sources.base import CacheState, Fetched, PollResult, Source
from bot.sources.discover import FeedKind, discover_links, not_a_feed_reason, sniff
from bot.sources.http import FetchOutcome, fetch
from bot.sources.jsonfeed import JsonFeedSource
from bot.sources.rss import FeedSource, RssSource
from bot.sources.wordpress import WordPressSource, api_base

DISCOVERY_ACCEPT = ("application/rss+xml, application/atom+xml, application/feed+json, "
                    "application/json;q=0.9, text/html;q=0.8, application/xml;q=0.8, */*;q=0.5")
REDISCOVER_STATUSES = frozenset({404, 410})

Delegate = FeedSource | WordPressSource


def _with_note(result: PollResult, note: str) -> PollResult:
    if isinstance(result, Fetched):
        return replace(result, notes=(*result.notes, note))
    return result


class AutoSource:
    """``kind = "auto"``: find the feed or REST API behind ``cfg.url`` once, then poll it."""

    kind: ClassVar[str] = "auto"

    def __init__(self, cfg: SourceConfig, client: httpx.AsyncClient, http_cfg: HttpConfig) -> None:
        self.name = cfg.name
        self.cfg = cfg
        self.client = client
        self.http_cfg = http_cfg
        self._delegates: dict[tuple[str, str], Delegate] = {}

    def delegate(self, kind: str, url: str) -> Delegate:
        """The source for a resolved (kind, url), kept across polls for its caches."""
        key = (kind, url)
        found = self._delegates.get(key)
        if found is None:
            if kind == "rss":
                found = RssSource(self.cfg, self.client, self.http_cfg, url=url, explicit=False)
            elif kind == "jsonfeed":
                found = JsonFeedSource(self.cfg, self.client, self.http_cfg, url=url, explicit=False)
            elif kind == "wordpress":
                found = WordPressSource(self.cfg, self.client, self.http_cfg, url=url, explicit=False)
            else:
                raise FeedParseError(self.name, f"unknown resolved kind {kind!r}")
            self._delegates[key] = found
        return found

    async def poll(self, cache: CacheState, *, first_poll: bool) -> PollResult:
        if cache.resolved_url and cache.resolved_kind in ("rss", "jsonfeed", "wordpress"):
            refusal = self._stored_refusal(cache.resolved_url)
            if refusal is not None:
                gone = f"the stored resolved URL is not followed ({refusal})"
            else:
                source = self.delegate(cache.resolved_kind, cache.resolved_url)
                try:
                    return await source.poll(cache, first_poll=first_poll)
                except FetchError as exc:
                    if exc.status not in REDISCOVER_STATUSES:
                        raise
                    gone = f"{cache.resolved_url} answered {exc.status}"
            # The old validators and cursor belonged to the old URL.
            result = await self.discover(CacheState(), first_poll=first_poll)
            resolved = result.cache
            return _with_note(result, f"re-discovered: {gone}; now {resolved.resolved_kind} "
                                      f"{resolved.resolved_url}")
        return await self.discover(cache, first_poll=first_poll)

    def _stored_refusal(self, resolved_url: str) -> str | None:
        """Why a stored ``resolved_url`` may not be polled: it is not ``cfg.url`` (the operator's own,
        which may be a file) and the URL policy refuses it."""
        if resolved_url == self.cfg.url:
            return None
        return url_refusal(resolved_url, trusted=self.cfg.url)

    async def discover(self, cache: CacheState, *, first_poll: bool) -> PollResult:
        """Fetch ``cfg.url``, decide what it is, and poll that."""
        outcome = await fetch(self.client, self.cfg.url, source=self.name, etag=None, last_modified=None,
                              max_bytes=self.http_cfg.max_bytes, extra_headers={"Accept": DISCOVERY_ACCEPT})
        kind = sniff(outcome.body, outcome.content_type, outcome.headers)
        if kind in ("rss", "jsonfeed"):
            feed = self.delegate(kind, self.cfg.url)
            assert isinstance(feed, FeedSource)
            resolved = cache.but(resolved_url=self.cfg.url, resolved_kind=kind)
            return await asyncio.to_thread(feed.result, outcome, resolved, first_poll=first_poll)  # CPU: off the loop
        if kind in ("wordpress", "wp-index"):
            return await self._use("wordpress", api_base(outcome.url), cache, first_poll)
        if kind == "html":
            return await self._from_page(outcome, cache, first_poll)
        reason = not_a_feed_reason(kind, outcome.body, expected="a feed, a WordPress REST API or a web page",
                                   hint=False)
        raise FeedParseError(self.name, reason)

    async def _use(self, kind: FeedKind, url: str, cache: CacheState, first_poll: bool) -> PollResult:
        resolved = cache.but(resolved_url=url, resolved_kind=kind, etag=None, last_modified=None, cursor=None)
        return await self.delegate(kind, url).poll(resolved, first_poll=first_poll)

    async def _from_page(self, page: FetchOutcome, cache: CacheState, first_poll: bool) -> PollResult:
        found = await asyncio.to_thread(discover_links, page.body, page.url, page.headers)  # CPU: off the loop
        best = found.best()
        if best is None and found.refused:
            raise FetchError(self.name, f"the page {page.url} announces no feed that may be followed: "
                                        f"{found.refused[0]}")
        if best is None:
            raise FeedParseError(self.name, f"the page {page.url} announces no feed and no WordPress REST API "
                                            f'(no <link rel="alternate"> feed, no rel="https://api.w.org/")')
        kind, url = best
        if kind != "wordpress":
            return await self._use(kind, url, cache, first_poll)
        try:
            return await self._use("wordpress", api_base(url), cache, first_poll)
        except SourceError as exc:
            feeds = [f for f in found.feeds if f.kind != "wordpress"]
            if not feeds:
                raise
            fallback = next((f for f in feeds if "comments" not in f.title.lower()
                             and "/comments/feed" not in f.url), feeds[0])
            result = await self._use(fallback.kind, fallback.url, cache, first_poll)
            return _with_note(result, f"the WordPress REST API is not usable ({exc.reason}); "
                                      f"using the feed {fallback.url}")


def make_source(cfg: SourceConfig, client: httpx.AsyncClient, http_cfg: HttpConfig) -> Source:
    """The ``Source`` for one configured source (``cfg.kind`` picks the adapter)."""
    if cfg.kind == "rss":
        return RssSource(cfg, client, http_cfg)
    if cfg.kind == "jsonfeed":
        return JsonFeedSource(cfg, client, http_cfg)
    if cfg.kind == "wordpress":
        return WordPressSource(cfg, client, http_cfg)
    return AutoSource(cfg, client, http_cfg)

