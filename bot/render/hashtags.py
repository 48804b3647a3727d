"""Hashtags from tag names: ``Editor’s picks`` → ``#EditorsPicks``.

A hashtag is the tag's words in CamelCase, made of letters (any script, with
their combining marks), decimal digits and ``_``; apostrophes are dropped so
``Iran's`` stays one word, every other character separates words. A word that
is all lower case gets a capital first letter; a word that already mixes cases
(``iPhone``, ``macOS``) is kept as written. Tags without a letter (``2024``)
give no hashtag, and duplicates are removed case-insensitively.

Whether and how many hashtags a message carries is a channel option
(``hashtags``, ``max_hashtags``); the fitting step then keeps only as many as
fit the platform's limit.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

_APOSTROPHES = frozenset("'’‘ʼʻ`´′＇ꞌ")
_ZWNJ = "\u200c"  # joins Persian words inside one hashtag; allowed by X and Mastodon
MAX_HASHTAG_CHARS = 100
"""Longer tag names are not turned into hashtags (unreadable, and they crowd out the text)."""


def _word_char(ch: str) -> bool:
    category = unicodedata.category(ch)
    return category[0] in ("L", "M") or category == "Nd" or ch == "_"


def _words(name: str) -> list[str]:
    words: list[str] = []
    current: list[str] = []
    for ch in name:
        if ch in _APOSTROPHES:
            continue
        if _word_char(ch) or (ch == _ZWNJ and current):
            current.append(ch)
        else:
            if current:
                words.append("".join(current))
            current = []
    if current:
        words.append("".join(current))
    cleaned = []
    for word in words:
        # a word cannot start with a combining mark or end with a joiner
        word = word.rstrip(_ZWNJ)
        while word and unicodedata.category(word[0])[0] == "M":
            word = word[1:]
        if word:
            cleaned.append(word)
    return cleaned


def _camel(word: str) -> str:
    if word != word.lower():
        return word  # already has capitals: iPhone, NASA, macOS
    return word[0].title() + word[1:]


def hashtag(name: str) -> str | None:
    """The hashtag for one tag name, with "#", or None when it has no letter."""
    text = unicodedata.normalize("NFC", name)
    body = "".join(_camel(word) for word in _words(text))
    if not body or len(body) > MAX_HASHTAG_CHARS:
        return None
    if not any(unicodedata.category(ch)[0] == "L" for ch in body):
        return None
    return f"#{body}"


def hashtags_in(text: str) -> set[str]:
    """The hashtags ``text`` already carries (``#MEK`` in a title), case-folded: whitespace-separated words
    that start with ``#``, trailing punctuation dropped. Linear in ``len(text)``."""
    found: set[str] = set()
    for word in text.split():
        if word.startswith("#"):
            body = "".join(_camel(w) for w in _words(word[1:]))
            if body:
                found.add(f"#{body}".casefold())
    return found


def hashtags_for(names: Iterable[str], max_count: int, *, present: Iterable[str] = ()) -> list[str]:
    """Hashtags for ``names`` in order: at most ``max_count``, no case-insensitive duplicates, none that the
    text already carries (``present``, case-folded as ``hashtags_in`` gives them)."""
    found: list[str] = []
    seen: set[str] = set(present)
    if max_count <= 0:
        return found
    for name in names:
        tag = hashtag(name)
        if tag is None:
            continue
        key = tag.casefold()
        if key in seen:
            continue
        seen.add(key)
        found.append(tag)
        if len(found) >= max_count:
            break
    return found
