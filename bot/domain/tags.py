"""Tag names to slugs: the one key every tag comparison uses.

For ASCII names the slug equals WordPress's own (``sanitize_title``):
``Editor's picks`` → ``editors-picks``, ``Mujahedin-e Khalq`` →
``mujahedin-e-khalq``. Beyond WordPress, the slug is Unicode-aware: the name is
NFKC-normalised and case-folded, accents on Latin letters are dropped (as
WordPress's ``remove_accents`` does), every apostrophe-like character is
dropped, so ``Iran’s`` and ``Iran's`` are one tag, and letters of other scripts
are kept as they are instead of being percent-encoded.
"""

from __future__ import annotations

import html
import re
import unicodedata

from bot.domain.limits import TAG_CHARS
from bot.domain.models import Tag

_APOSTROPHES = "'\u2018\u2019\u201a\u201b\u2032\u02bc\u02b9\u0060\u00b4\uff07"
_DASHLIKE = "\u2010\u2011\u2012\u2013\u2014\u2015\u2212./"
_TAGS = re.compile(r"<[^>]*>")
_SEPARATORS = re.compile(r"[\s_\-]+")
"""Maximal runs of separators, each matched once (linear; see ``_separator``)."""
_WHITESPACE = re.compile(r"\s")
_DASHES = re.compile(r"-+")
_LATIN_LIMIT = 0x0250  # Latin-1 Supplement + Latin Extended-A/B


def _drop_latin_accents(text: str) -> str:
    out: list[str] = []
    for ch in unicodedata.normalize("NFKD", text):
        if unicodedata.combining(ch) and out and ord(out[-1][-1]) < _LATIN_LIMIT:
            continue
        out.append(ch)
    return unicodedata.normalize("NFC", "".join(out))


def _separator(run: str) -> str:
    """A run of whitespace, ``_`` and ``-``: "-" when it holds whitespace but no ``_``; with ``_``,
    the run without its outer whitespace; without whitespace, each dash sequence as one "-"."""
    if _WHITESPACE.search(run):
        return run.strip() if "_" in run else "-"
    return _DASHES.sub("-", run)


def clean_tag_name(name: str) -> str:
    """The display form of a tag name: entities decoded, whitespace collapsed."""
    text = html.unescape(_TAGS.sub("", name))
    return " ".join(text.split())


def slugify(name: str) -> str:
    """Return the normalised slug of a tag name (may be empty for pure punctuation).

    At most ``TAG_CHARS`` characters (normalisation can lengthen a name: "ß" → "ss").
    """
    text = clean_tag_name(name)
    text = unicodedata.normalize("NFKC", text).casefold()
    text = _drop_latin_accents(text)
    text = text.replace("ß", "ss")
    for ch in _APOSTROPHES:
        text = text.replace(ch, "")
    for ch in _DASHLIKE:
        text = text.replace(ch, "-")
    kept = "".join(ch for ch in text if ch.isalnum() or ch in " _-" or ch.isspace())
    kept = _SEPARATORS.sub(lambda m: _separator(m.group(0)), kept)
    return kept.strip("-_ ")[:TAG_CHARS].strip("-_ ")


def make_tag(name: str) -> Tag | None:
    """A ``Tag`` for a raw name, or None when the name has no letters or digits."""
    display = clean_tag_name(name)
    slug = slugify(display)
    if not slug:
        return None
    return Tag(slug=slug, name=display)


def make_tags(names: tuple[str, ...] | list[str]) -> tuple[Tag, ...]:
    """Normalise and deduplicate tag names, keeping the first display form seen."""
    seen: dict[str, Tag] = {}
    for name in names:
        tag = make_tag(name)
        if tag is not None and tag.slug not in seen:
            seen[tag.slug] = tag
    return tuple(seen.values())
