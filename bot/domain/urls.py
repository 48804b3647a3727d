"""Where a URL handed over by the network may lead (pure): http and https only.

The operator's configuration may name any source URL, a local ``file:`` path included. Every
URL that arrives *from the network* instead, a page's ``<link>``, a ``Link`` header, a redirect's
``Location``, an API's link to its next page, is checked by ``url_refusal`` before tagrelay
follows it. Followed: an absolute ``http``/``https`` URL with a host, at most
``MAX_URL_LENGTH`` characters, without control or format characters, and without credentials
(except the very credentials of the ``trusted`` URL it was found on, on that same host and port).
Refused: ``file:``, ``data:``, ``ftp:``, ``javascript:``, ``ws:``, every other scheme, and a
URL without a scheme (resolve relative links first). A refusal names the scheme or the rule,
never the rest of the URL (a path could be a secret or a local file's name).

A post's image URL passes the same check when a post is normalised (``followable_or_none``).

Another host or port is allowed, as browsers and feed readers allow it; loopback and private
addresses are not refused (docs/operations.md, "What a source may lead to", says why).
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import SplitResult, urlsplit

FOLLOWED_SCHEMES = frozenset({"http", "https"})

MAX_URL_LENGTH = 4096
"""Longer URLs are refused: real feed URLs are far shorter, and this bounds what is logged."""

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]{0,31}(?=:)")
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})
"""Control characters, format characters (bidi overrides, zero-width), line/paragraph separators."""


def _has_control(url: str) -> bool:
    if url.isascii():  # the usual case, without a per-character lookup: only C0 and DEL can be bad
        return not url.isprintable()
    return any(unicodedata.category(c) in _REFUSED_CATEGORIES for c in url)


def _origin(parts: SplitResult) -> tuple[str, str, int | None]:
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port


def url_scheme(url: str) -> str | None:
    """The scheme of ``url``, lower-cased (``"file"``); None when it has none a URL could have."""
    match = _SCHEME.match(url.lstrip())
    return match.group(0).lower() if match else None


def url_refusal(url: str, *, trusted: str | None = None) -> str | None:
    """Why ``url``, handed over by the network, may not be followed; None when it may.

    ``trusted`` is the URL it was found on: credentials are accepted only when they are that
    URL's own, on the same scheme, host and port (a relative link on a page behind Basic auth).
    """
    if len(url) > MAX_URL_LENGTH:
        return f"the URL is {len(url)} characters long, more than {MAX_URL_LENGTH}"
    if _has_control(url):
        return "the URL contains control characters"
    scheme = url_scheme(url)
    if scheme is None:
        return "the URL has no scheme"
    if scheme not in FOLLOWED_SCHEMES:
        return f"its scheme is '{scheme}:' and only http and https URLs are followed"
    try:
        parts = urlsplit(url)
        origin = _origin(parts)
    except ValueError:
        return "it is not a valid URL"
    if not parts.hostname:
        return "the URL has no host"
    has_credentials = parts.username is not None or parts.password is not None
    if has_credentials and (trusted is None or not _same_credentials(parts, origin, trusted)):
        return "the URL carries credentials (user:password@), which are only taken from the configuration"
    return None


def followable_or_none(url: str | None) -> str | None:
    """``url`` when the policy lets it be followed, else None (for optional URLs such as a post's
    image, which a publisher or the platform fetches: a local Bot API server uploads a ``file://``
    photo from its own disk)."""
    return url if url is not None and url_refusal(url) is None else None


def _same_credentials(parts: SplitResult, origin: tuple[str, str, int | None], trusted: str) -> bool:
    try:
        base = urlsplit(trusted)
        base_origin = _origin(base)
    except ValueError:
        return False
    return (base_origin == origin and base.username == parts.username
            and base.password == parts.password)
