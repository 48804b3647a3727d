"""Stable post identity: guid/id, else the canonical link, else a hash.

A feed that re-dates an item, reorders items or appends tracking parameters to
links must not make an old post look new. Identity is computed once, when a
post is first seen, and never changes afterwards.

A post is also known by its canonical link (``link_key``), per source: a feed
whose guids change between requests while the links stay (guid churn) does
not make its posts new again (``bot.domain.detect``).
"""

from __future__ import annotations

import hashlib
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from bot.domain.models import ParsedPost

_TRACKING_PREFIXES = ("utm_", "mtm_", "pk_")
_TRACKING_NAMES = frozenset(
    {"fbclid", "gclid", "dclid", "msclkid", "yclid", "xtor", "mc_cid", "mc_eid", "igshid",
     "_ga", "_gl", "ref_src", "spm", "wt.mc_id"}
)
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def _is_tracking(name: str) -> bool:
    low = name.lower()
    return low.startswith(_TRACKING_PREFIXES) or low in _TRACKING_NAMES


def canonical_url(url: str) -> str:
    """Lower-case scheme and host, drop default port, fragment and tracking parameters.

    The path keeps its case; an empty path becomes ``/``. Remaining query
    parameters keep their order.
    """
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    port = parts.port if parts.port is not None else None
    netloc = host
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    if port is not None and _DEFAULT_PORTS.get(scheme) != str(port):
        netloc = f"{netloc}:{port}"
    query = urlencode(
        [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _is_tracking(k)]
    )
    path = parts.path or "/"
    return urlunsplit((scheme, netloc, path, query, ""))


def link_key(url: str | None) -> str | None:
    """The canonical form of a post's link, its second identity (None: no link)."""
    if url is None or not url.strip():
        return None
    return canonical_url(url)


def post_key(post: ParsedPost) -> str:
    """The identity of a parsed post (see module docstring)."""
    if post.guid and post.guid.strip():
        return post.guid.strip()
    if post.url and post.url.strip():
        return canonical_url(post.url)
    stamp = post.published.isoformat() if post.published else ""
    digest = hashlib.sha256(f"{post.title.strip()}\n{stamp}".encode()).hexdigest()
    return f"sha256:{digest[:32]}"
