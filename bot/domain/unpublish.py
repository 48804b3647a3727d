"""Was a post taken down on the site? Pure: which posts to check, what an answer means, when it is confirmed.

Only posts that matter are watched (``Watched``): a post with a message sent within the ``delete_window``
of a channel that deletes (``on_delete = "delete"`` and a platform that can), not confirmed gone yet.
Deleting is irreversible, so nothing is deleted on weak evidence:

* **WordPress REST**: the watched posts' ids are asked for in ONE request per poll (``include=``, at most
  ``MAX_INCLUDE`` ids, newest first); the site lists only what is published. An id it leaves out is then
  confirmed by ONE direct request to the post's own URL: 404 or 410 (trashed, drafted, made private or
  deleted: WordPress shows none of them to a visitor) confirms it.
* **RSS / Atom / JSON Feed**: a post that falls out of the feed is not a deletion (feeds list the latest
  N posts: it may just be old). Only a *hole* is suspect: a watched post missing from a feed that still
  lists an older post (``feed_holes``). Its URL is asked (``probe``); a 404 or 410 is a first strike
  (``missing_since``), and only a second 404/410 at least ``CONFIRM_GAP`` later confirms it. A page
  that answers again clears the strike.
* Anything else (a network error, a timeout, a 5xx, a 401/403, a redirect to a refused URL, an answer
  too big to read, a URL that may not be followed) confirms nothing and clears nothing (``Probe.UNSURE``).

At most ``MAX_PROBES`` post URLs are asked per poll of a source (the oldest strike first).
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import parse_qsl, urlsplit

CONFIRM_GAP = timedelta(minutes=5)
"""A feed post's second 404/410 confirms its unpublishing only this long after the first."""
MAX_PROBES = 10
"""Most post URLs asked per poll of a source."""
MAX_INCLUDE = 100
"""Most post ids in the one ``include=`` request per poll (WordPress answers at most 100 per page)."""
GONE_STATUSES = frozenset({404, 410})


class Probe(enum.Enum):
    """What asking for a post's URL said."""

    PRESENT = "present"
    """A 2xx: the page is there."""
    MISSING = "missing"
    """A 404 or 410: the page is gone."""
    UNSURE = "unsure"
    """Anything else: says nothing (never deletes, never clears a strike)."""


def probe_of(status: int | None) -> Probe:
    """The meaning of a post URL's answer (its final HTTP status after redirects; None: no answer)."""
    if status is None:
        return Probe.UNSURE
    if status in GONE_STATUSES:
        return Probe.MISSING
    if 200 <= status < 300:
        return Probe.PRESENT
    return Probe.UNSURE


@dataclass(frozen=True, slots=True)
class Watched:
    """A post whose unpublishing is watched (a message of it went out recently on a channel that deletes)."""

    post_id: int
    key: str
    url: str | None
    published: datetime | None
    missing_since: datetime | None = None


def wordpress_id(key: str) -> int | None:
    """The WordPress post id in a post's identity (its guid, ``https://site/?p=123``); None if it has none."""
    try:
        query = urlsplit(key).query
    except ValueError:
        return None
    for name, value in parse_qsl(query):
        if name == "p" and value.isdigit() and len(value) <= 18:
            return int(value)
    return None


def feed_holes(watched: Iterable[Watched], feed_keys: Collection[str], oldest_in_feed: datetime | None
               ) -> list[Watched]:
    """The watched posts a feed leaves out while it still lists an older post: possibly taken down.
    A post older than the feed's oldest item has just aged out; an undated one cannot be told apart."""
    if oldest_in_feed is None:
        return []
    return [w for w in watched if w.key not in feed_keys and w.published is not None
            and w.published >= oldest_in_feed]


def to_probe(suspects: Sequence[Watched], pending: Sequence[Watched], now: datetime) -> list[Watched]:
    """Which post URLs to ask this poll, at most ``MAX_PROBES``: first the strikes whose confirmation is
    due (oldest first), then the new suspects. A strike not due yet is not asked again."""
    due = sorted((w for w in pending if w.missing_since is not None and now - w.missing_since >= CONFIRM_GAP),
                 key=lambda w: (w.missing_since, w.post_id))
    seen = {w.post_id for w in due}
    fresh = [w for w in suspects if w.missing_since is None and w.post_id not in seen]
    chosen = [*due, *fresh]
    return [w for w in chosen if w.url][:MAX_PROBES]


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one probe means for a watched post: confirmed gone, or its strike as it now stands."""

    post: Watched
    confirmed: bool
    missing_since: datetime | None

    @property
    def changed(self) -> bool:
        return self.confirmed or self.missing_since != self.post.missing_since


def judge(post: Watched, probe: Probe, now: datetime, *, strikes: int) -> Verdict:
    """The verdict on ``post`` after a probe. ``strikes``: the 404/410 answers that confirm (1 when the
    site already left the post out of an authoritative list: WordPress's ``include=``; 2 for a feed,
    ``CONFIRM_GAP`` apart)."""
    if probe is Probe.UNSURE:
        return Verdict(post, False, post.missing_since)
    if probe is Probe.PRESENT:
        return Verdict(post, False, None)
    if strikes <= 1:
        return Verdict(post, True, post.missing_since or now)
    first = post.missing_since
    if first is not None and now - first >= CONFIRM_GAP:
        return Verdict(post, True, first)
    return Verdict(post, False, first or now)


def newest_first(watched: Iterable[Watched], limit: int) -> list[Watched]:
    """The ``limit`` most recently published watched posts (undated ones last)."""
    ordered = sorted(watched, key=lambda w: (w.published is not None, w.published or datetime.min, w.post_id),
                     reverse=True)
    return ordered[:limit]
