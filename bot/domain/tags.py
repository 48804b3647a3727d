"""Tag names to slugs: the one key every tag comparison uses.

For ASCII names the slug equals WordPress's own (``sanitize_title``):
``Editor's picks`` → ``editors-picks``, ``Mujahedin-e Khalq`` →
``mujahedin-e-khalq``. Beyond WordPress, the slug is Unicode-aware: the name is
NFKC-normalised and case-folded, accents on Latin letters are dropped (as
WordPress's ``remove_accents`` does), every apostrophe-like character is
dropped, so ``Iran’s`` and ``Iran's`` are one tag, and letters of other scripts
are kept as they are instead of being percent-encoded.

``fold_words`` is the same normalisation for running text (the keywords of subscription rules and the
posts' title, excerpt, content and author they are looked for in): case, accents and every kind of
apostrophe ignored, words kept apart so that a keyword matches on word boundaries only, and Arabic and
Persian written without their diacritics and with their letter variants unified.
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


_WORD_JOINERS = "\u200c\u200d\u00ad\u0640"
"""Inside a word, dropped: zero-width non-joiner and joiner (Persian), soft hyphen, tatweel (Arabic)."""
_LETTER_VARIANTS = {
    "\u0649": "\u064a",  # alef maksura → yeh
    "\u06cc": "\u064a",  # Farsi yeh → yeh
    "\u06a9": "\u0643",  # keheh (Persian kaf) → kaf
    "\u0629": "\u0647",  # teh marbuta → heh
    "\u06c1": "\u0647",  # heh goal → heh
    "\u06d5": "\u0647",  # ae (what ۀ leaves once its hamza is dropped) → heh
    "\u0671": "\u0627",  # alef wasla → alef
}
"""Arabic and Persian spellings of one letter (after NFKD: أ إ آ are alef plus a mark, dropped)."""


class _FoldTable(dict[int, str]):
    """``str.translate`` table of ``fold_words``, filled once per code point met: a letter or digit is
    kept (a variant unified, any decimal digit as its ASCII digit), a nonspacing mark or a word joiner
    dropped, anything else (space, punctuation, apostrophes) separates words."""

    def __missing__(self, code: int) -> str:
        ch = chr(code)
        category = unicodedata.category(ch)
        if ch in _WORD_JOINERS or category in ("Mn", "Me"):
            out = ""
        elif category == "Nd":
            out = str(unicodedata.decimal(ch))
        elif ch.isalnum() or category == "Mc":
            out = _LETTER_VARIANTS.get(ch, ch)
        else:
            out = " "
        self[code] = out
        return out


_FOLD = _FoldTable()


def fold_words(text: str) -> str:
    """``text`` as lower-case words without accents, marks or punctuation, one space apart
    (``"Iran’s  Café!"`` → ``"iran s cafe"``; ``"إيران"`` and ``"ايران"`` alike). Linear in ``text``.

    An apostrophe separates words (``Iran`` is a word of ``Iran's``), whichever apostrophe it is.
    """
    folded = unicodedata.normalize("NFKC", text).casefold()
    if folded.isascii():
        return " ".join(folded.translate(_FOLD).split())
    folded = unicodedata.normalize("NFKD", folded).translate(_FOLD)
    return " ".join(unicodedata.normalize("NFC", folded).split())


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
