"""Human-friendly formatting shared by the CLI and the admin bot."""

from __future__ import annotations

from datetime import datetime


def ago(when: datetime | None, now: datetime) -> str:
    """Relative time such as "12s ago", "in 5m", "3.5h ago", "2d ago"; "never" for None."""
    if when is None:
        return "never"
    seconds = (now - when).total_seconds()
    future, seconds = seconds < 0, abs(seconds)
    if seconds < 90:
        text = f"{seconds:.0f}s"
    elif seconds < 5400:
        text = f"{seconds / 60:.0f}m"
    elif seconds < 172800:
        text = f"{seconds / 3600:.1f}h"
    else:
        text = f"{seconds / 86400:.0f}d"
    return f"in {text}" if future else f"{text} ago"


def size(n: int) -> str:
    """Bytes as "812 B", "4.2 KiB", "12.3 MiB", "1.5 GiB"."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"  # pragma: no cover - the loop returns


# -- text safe to show -------------------------------------------------------------------------
#
# Every byte of a feed, a platform answer or a chat message is someone else's. Shown raw, C0/C1
# control characters drive the terminal (ESC[2J clears the screen, ESC]0;…BEL retitles it, CSI
# U+009B does the same on terminals that honour 8-bit controls, CR rewrites the line) and the
# Unicode bidi embedding, override and isolate controls reorder what a reader sees (U+202E turns
# "txt.exe" into "exe.txt"). ``visible_controls`` shows each of them as an escape the reader can
# see (``\x1b``, ``\u202e``) instead. The left-to-right / right-to-left marks U+200E, U+200F and
# U+061C are kept: they are strong directional characters with no scope (they cannot reorder
# anything beyond themselves), and Persian, Arabic and Hebrew titles use them legitimately, as
# they use ZWJ/ZWNJ. A backslash is not escaped: the output is for reading, not for parsing.

BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
"""LRE, RLE, PDF, LRO, RLO, LRI, RLI, FSI, PDI: the controls that reorder text around them."""

_UNSAFE = frozenset([*map(chr, range(0x20)), "\x7f", *map(chr, range(0x80, 0xA0)), "\u2028", "\u2029",
                     *BIDI_CONTROLS])
"""C0, DEL, C1, the Unicode line and paragraph separators, and the bidi controls."""


_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _escape(char: str) -> str:
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


_ONE_LINE = str.maketrans({c: _escape(c) for c in _UNSAFE})
_MULTI_LINE = str.maketrans({c: _escape(c) for c in _UNSAFE - {"\n", "\t"}})
_JSON = str.maketrans({c: f"\\u{ord(c):04x}" for c in _UNSAFE if ord(c) >= 0x20})  # C0: json.dumps did


_REMOVE = str.maketrans({c: " " if c.isspace() else None for c in _UNSAFE})


def without_controls(text: str) -> str:
    """``text`` with control and bidi characters removed (line breaks and tabs become spaces): for
    text kept as data, such as a platform's error description, rather than shown as it came."""
    return text.translate(_REMOVE)


def visible_controls(text: str, *, multiline: bool = False) -> str:
    """``text`` with every control character shown as an escape (``\\x1b``, ``\\u202e``); linear time.

    ``multiline`` keeps newlines and tabs (a console message, a whole report); otherwise they are
    escaped too, so that one value stays on one line (a table cell, a log field, a quoted name).
    """
    return text.translate(_MULTI_LINE if multiline else _ONE_LINE)


def json_visible_controls(document: str) -> str:
    """A JSON document (as ``json.dumps(..., ensure_ascii=False)`` writes it) with DEL, C1, U+2028/9
    and bidi controls written as ``\\uXXXX`` escapes: it parses to the same value, and shows nothing
    raw in a terminal. (``json.dumps`` escapes C0 itself; these are the characters it leaves raw.)"""
    return document.translate(_JSON)


CUT_MARK = "… (cut)"


def cut(text: str, limit: int, *, tail: int = 0) -> str:
    """``text`` if it has at most ``limit`` characters, else its first characters + ``"… (cut)"``
    (+ its last ``tail`` characters), ``limit`` characters in all."""
    if len(text) <= limit:
        return text
    tail = min(tail, max(0, limit - len(CUT_MARK)))
    keep = max(0, limit - len(CUT_MARK) - tail)
    return text[:keep] + CUT_MARK + (text[len(text) - tail:] if tail else "")
