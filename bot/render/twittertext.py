"""twitter-text, loaded piecemeal: its URL extractor without its emoji regex, ``parse_tweet`` on demand.

Importing any ``twitter_text`` module first runs the package's ``__init__``,
which imports ``parse_tweet`` and with it the emoji regex (thousands of
alternatives, compiled at import) and ``pkg_resources``: about 10 MiB of RSS
and 0.1 s. Mastodon's counting and X's counting of text without emoji need
only the URL extractor and the weight table. ``_module`` therefore loads
twitter-text's own ``extract_urls`` and ``config`` files under a private
package name that points at the installed package's directory, without running
its ``__init__`` — the same files, the same code, the same regexes. Once
``twitter_text`` itself is imported (``parse_tweet``, for text that may hold an
emoji), its modules are used instead.

``url_entities`` is ``extract_urls_with_indices`` made cheap for the fitting
loop, which measures many candidates that share most of their words: a URL
match of twitter-text never contains one of its "spaces" (``spaces_group``;
they are invalid domain characters and in no path or query class) except as the
one "preceding character" in front of the URL, and every URL has a "." in its
domain. So the text is cut into tokens with a "." (each with the space before
it), twitter-text's extractor runs on each token and the token's result is
cached. ``tests/unit/test_render_twittertext.py`` checks it against the
extractor on the whole text.
"""

from __future__ import annotations

import functools
import importlib
import importlib.machinery
import importlib.util
import re
import sys
import types
from collections.abc import Callable
from typing import Any

_PRIVATE = "_tagrelay_twitter_text"
"""The private package name twitter-text's URL modules are loaded under (see the module docstring)."""


@functools.cache
def twitter_module(name: str) -> types.ModuleType:
    """``twitter_text.<name>``, without importing the ``twitter_text`` package unless it already is."""
    loaded = sys.modules.get(f"twitter_text.{name}")
    if loaded is not None:
        return loaded
    if _PRIVATE not in sys.modules:
        spec = importlib.util.find_spec("twitter_text")  # a top-level name: finds, does not import
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("twitter_text is not installed")
        package_spec = importlib.machinery.ModuleSpec(_PRIVATE, None, is_package=True)
        package_spec.submodule_search_locations = list(spec.submodule_search_locations)
        package = importlib.util.module_from_spec(package_spec)
        sys.modules[_PRIVATE] = package
    return importlib.import_module(f"{_PRIVATE}.{name}")


def parse_tweet(text: str) -> Any:
    """``twitter_text.parse_tweet`` (imports the whole package, emoji regex included, on first use)."""
    from twitter_text import parse_tweet as parse

    return parse(text)


def weight_config() -> dict[str, Any]:
    """twitter-text's default (v3) weighting configuration."""
    config: dict[str, Any] = twitter_module("config").config["defaults"]
    return config


def extract_urls_with_indices(text: str, extract_urls_without_protocol: bool = True) -> list[dict[str, Any]]:
    """``twitter_text.extract_urls_with_indices`` itself (run on the whole text)."""
    extract: Callable[[str, bool], list[dict[str, Any]]] = twitter_module("extract_urls").extract_urls_with_indices
    return extract(text, extract_urls_without_protocol)


UrlEntity = tuple[int, int, str]
"""(start, end, url) of one URL entity, as twitter-text reports it (code point indices)."""


@functools.cache
def _dotted_token() -> re.Pattern[str]:
    spaces: str = twitter_module("regexp.spaces_group").spaces_group
    return re.compile(f"(?<![^{spaces}])[^{spaces}]*\\.[^{spaces}]*")


_CACHED_TOKEN_CHARS = 300
"""Longer tokens are not cached (a cache entry keeps its token alive)."""


@functools.lru_cache(maxsize=4096)
def _token_entities(token: str, without_protocol: bool) -> tuple[UrlEntity, ...]:
    return tuple((found["indices"][0], found["indices"][1], found["url"])
                 for found in extract_urls_with_indices(token, without_protocol))


def url_entities(text: str, *, without_protocol: bool = True) -> list[UrlEntity]:
    """Exactly ``extract_urls_with_indices(text, without_protocol)``, as tuples, in its order; cached per token."""
    if "." not in text:
        return []
    found: list[UrlEntity] = []
    for match in _dotted_token().finditer(text):
        begin = max(0, match.start() - 1)  # the space before the token is the URL's "preceding character"
        token = text[begin:match.end()]
        if len(token) <= _CACHED_TOKEN_CHARS:
            entities = _token_entities(token, without_protocol)
        else:
            entities = _token_entities.__wrapped__(token, without_protocol)
        found.extend((begin + start, begin + end, url) for start, end, url in entities)
    return found
