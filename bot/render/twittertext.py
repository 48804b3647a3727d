"""twitter-text through its public API: URL entities cached per token, the v3 weighting, ``parse_tweet``.

Only the names ``twitter_text`` exports are used (``extract_urls_with_indices``
and ``parse_tweet``), imported on first use: importing the package compiles
its URL and emoji regexes and loads ``pkg_resources`` (about 0.35 s and
10 MiB), which loading a configuration with an X or Mastodon channel, or any
CLI command, need not pay; the first X or Mastodon message rendered does.

``X_WEIGHTING`` is twitter-text's configuration v3 (the table X counts with),
passed to ``parse_tweet`` as its documented ``options`` so that X's fast count
(``bot.render.x``) and ``parse_tweet`` read one table;
``tests/unit/test_render_twittertext.py`` checks it equals ``parse_tweet``'s
default.

``url_entities`` is ``extract_urls_with_indices`` made cheap for the fitting
loop, which measures many candidates that share most of their words: a URL
match of twitter-text never contains one of its "spaces" (``SPACES``; they are
invalid domain characters and in no path or query class) except as the one
"preceding character" in front of the URL, and every URL has a "." in its
domain. So the text is cut into tokens with a "." (each with the space before
it), twitter-text's extractor runs on each token and the token's result is
cached. ``tests/unit/test_render_twittertext.py`` checks it against the
extractor on the whole text.
"""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

X_WEIGHTING: dict[str, Any] = {
    "version": 3,
    "max_weighted_tweet_length": 280,
    "scale": 100,
    "default_weight": 200,
    "emoji_parsing_enabled": True,
    "transformed_url_length": 23,
    "ranges": [
        {"start": 0, "end": 4351, "weight": 100},
        {"start": 8192, "end": 8205, "weight": 100},
        {"start": 8208, "end": 8223, "weight": 100},
        {"start": 8242, "end": 8247, "weight": 100},
    ],
}
"""twitter-text's configuration v3 (``parse_tweet``'s ``options``): what X weighs each character with."""

SPACES = "\\x09-\\x0D\\x20\\x85\\xA0\\u1680\\u180E\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000"
"""twitter-text's "spaces" (a regex character class body): Unicode White_Space and U+180E. Its URL
pattern never matches one inside a URL; one may stand just before a URL."""


class _TwitterText(NamedTuple):
    extract_urls_with_indices: Callable[[str, bool], list[dict[str, Any]]]
    parse_tweet: Callable[[str, dict[str, Any]], Any]


@functools.cache
def _twitter_text() -> _TwitterText:
    # Deliberately lazy (see the module docstring): the package's import costs ~0.35 s and ~10 MiB.
    # It imports pkg_resources (a declared dependency of ours: twitter-text-parser does not declare it),
    # which setuptools 67.5+ marks deprecated with a warning at import: not the operator's concern.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*pkg_resources.*")
        from twitter_text import extract_urls_with_indices, parse_tweet

    return _TwitterText(extract_urls_with_indices, parse_tweet)


def parse_tweet(text: str) -> Any:
    """``twitter_text.parse_tweet`` with the v3 weighting (``X_WEIGHTING``)."""
    return _twitter_text().parse_tweet(text, X_WEIGHTING)


UrlEntity = tuple[int, int, str]
"""(start, end, url) of one URL entity, as twitter-text reports it (code point indices)."""

_DOTTED_TOKEN = re.compile(f"(?<![^{SPACES}])[^{SPACES}]*\\.[^{SPACES}]*")
"""A run of non-spaces holding a "." (only such a run can hold a URL), starting after a space or at 0."""

_CACHED_TOKEN_CHARS = 300
"""Longer tokens are not cached (a cache entry keeps its token alive)."""


def _entities(token: str, without_protocol: bool) -> tuple[UrlEntity, ...]:
    return tuple((found["indices"][0], found["indices"][1], found["url"])
                 for found in _twitter_text().extract_urls_with_indices(token, without_protocol))


_cached_entities = functools.lru_cache(maxsize=4096)(_entities)


def url_entities(text: str, *, without_protocol: bool = True) -> list[UrlEntity]:
    """Exactly ``twitter_text.extract_urls_with_indices(text, without_protocol)``, as tuples, in its order;
    cached per token."""
    if "." not in text:
        return []
    found: list[UrlEntity] = []
    for match in _DOTTED_TOKEN.finditer(text):
        begin = max(0, match.start() - 1)  # the space before the token is the URL's "preceding character"
        token = text[begin:match.end()]
        extract = _cached_entities if len(token) <= _CACHED_TOKEN_CHARS else _entities
        found.extend((begin + start, begin + end, url) for start, end, url in extract(token, without_protocol))
    return found
