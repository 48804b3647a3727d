"""Is a post still on the site? The two requests the unpublishing watch makes (``bot.services.unpublish``).

* ``published_ids``: ONE WordPress REST request, ``/wp/v2/posts?include=<ids>&_fields=id`` (at most 100
  ids): the site lists the ones that are published; a trashed, drafted, private or deleted post is
  left out. A failed request raises ``SourceError`` (and nothing is concluded).
* ``probe_status``: a GET of a post's own URL, of which only the final status (after redirects) is read,
  never the body. A URL the network handed over passes ``bot.domain.urls.url_refusal`` first (http and
  https only, no credentials, no control characters); a refused one, a network error or a timeout is
  ``None``. ``bot.domain.unpublish.probe_of`` says what a status means (only 404 and 410 count as gone).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import httpx
import orjson

from bot.domain.state import CacheState
from bot.domain.urls import url_refusal
from bot.errors import FeedParseError
from bot.sources.http import DEADLINE_FACTOR, fetch
from bot.sources.wordpress import WP_MAX_PER_PAGE, api_base, endpoint

_ACCEPT = {"Accept": "application/json"}


def wordpress_api(kind: str, url: str, cache: CacheState) -> str | None:
    """The REST API root of a source that reads WordPress's REST API (``kind = "wordpress"``, or ``auto``
    resolved to it); None for a feed."""
    if kind == "wordpress":
        return api_base(url)
    if kind == "auto" and cache.resolved_kind == "wordpress" and cache.resolved_url:
        return api_base(cache.resolved_url)
    return None


async def published_ids(client: httpx.AsyncClient, base: str, ids: Sequence[int], *, source: str,
                        max_bytes: int) -> set[int]:
    """Which of ``ids`` (at most ``WP_MAX_PER_PAGE``) WordPress lists as published posts: ONE request."""
    chosen = sorted(set(ids))[:WP_MAX_PER_PAGE]
    if not chosen:
        return set()
    url = endpoint(base, "/wp/v2/posts", [("include", ",".join(map(str, chosen))),
                                          ("per_page", str(WP_MAX_PER_PAGE)), ("_fields", "id")])
    outcome = await fetch(client, url, source=source, etag=None, last_modified=None, max_bytes=max_bytes,
                          extra_headers=_ACCEPT)
    try:
        rows = orjson.loads(outcome.body)
    except orjson.JSONDecodeError as exc:
        raise FeedParseError(source, f"the WordPress REST API answered something else than JSON ({url})") from exc
    if not isinstance(rows, list):
        raise FeedParseError(source, f"the WordPress REST API answered something else than a list ({url})")
    wanted = set(chosen)
    return {row["id"] for row in rows if isinstance(row, dict) and isinstance(row.get("id"), int)
            and not isinstance(row.get("id"), bool) and row["id"] in wanted}


async def probe_status(client: httpx.AsyncClient, url: str) -> int | None:
    """The final HTTP status of a GET of ``url`` (redirects followed by the client, the body never read);
    None when the URL may not be followed or no answer came."""
    if url_refusal(url) is not None:
        return None
    deadline = max(1.0, (client.timeout.read or 30.0) * DEADLINE_FACTOR)
    try:
        async with asyncio.timeout(deadline), client.stream("GET", url, headers={"Accept": "text/html"}) as response:
            return int(response.status_code)
    except (TimeoutError, httpx.HTTPError, httpx.InvalidURL, httpx.StreamError, OSError):
        return None
    except Exception:  # noqa: BLE001 - the feed client's transport may raise its own: no answer, nothing concluded
        return None
