"""Broken documents: what may be used of them, and how their bytes are decoded (pure, no I/O).

A post recorded as seen is never evaluated again, so nothing is recorded from a
partial reading:

* **Truncation.** ``scan_structure`` finds the root element and every
  ``<item>``/``<entry>`` of an XML body, skipping CDATA sections, comments,
  processing instructions and the DOCTYPE, in one linear pass. A document whose
  root element is not closed ended early (a dropped connection behind a proxy,
  an origin that died mid-response): the parsers refuse it whole. An item that
  is not closed in a document that is (a template bug) is dropped; the items
  that are closed are used.
* **Bad bytes.** ``repair_encoding`` handles a body that is declared UTF-8 (or
  declares nothing, which means UTF-8) but is not valid UTF-8:

  - when most of its non-ASCII characters *are* valid UTF-8, each invalid sequence
    becomes U+FFFD where it stands: the valid text around it, the other items,
    keep their text (feedparser would re-decode the *whole* document as
    windows-1252, turning every Arabic tag into mojibake);
  - when most of them are not (more invalid sequences than valid non-ASCII
    characters), the document is in a single-byte code page
    mislabelled as UTF-8: windows-1256 when at least half of the non-ASCII
    characters of its first 64 KiB read as Arabic-script words of three
    letters or more under windows-1256, else windows-1252.

  The result is UTF-8 bytes, so the fast path and feedparser read the same text.
* **Damaged items.** ``hold_back_damaged`` holds back a post whose tags, guid or
  link (or title, when it is the post's only identity) contain U+FFFD: routing
  it could match the wrong tag (``إير�ان`` slugs to ``إيران``) or none, and a
  post recorded with a damaged tag stays undelivered after the feed is fixed. A
  held-back post is not recorded, so it is read again on every poll and goes
  out once the feed is repaired. U+FFFD in a summary or the content is kept.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from bot.domain.models import ParsedPost

REPLACEMENT = "\ufffd"

_BOM = b"\xef\xbb\xbf"
_XML_DECL_ENCODING = re.compile(rb"""^<\?xml[^>]*?\bencoding\s*=\s*["']([A-Za-z0-9._\-]+)["']""")
UTF8_NAMES = frozenset({"utf-8", "utf8", "utf_8"})
_REPLACEMENT_BYTES = REPLACEMENT.encode()
_ARABIC_WORD = re.compile("[\u0600-\u06ff]{3,}")
_MARKUP = re.compile(rb"<(?:!\[CDATA\[|!--|\?|!DOCTYPE|(/?)((?:[A-Za-z_][\w.\-]*:)?(?i:item|entry|rss|feed|rdf))"
                     rb"(?=[\s/>]))")
"""What the structure scan stops at: sections to skip whole, and the tags it counts (nothing else)."""
_MARKUP_ENDS = {b"<![CDATA[": b"]]>", b"<!--": b"-->", b"<?": b"?>"}
_ITEM_NAMES = frozenset({b"item", b"entry"})
_SAMPLE_BYTES = 64 * 1024


# --- decoding -------------------------------------------------------------------


def _non_ascii(text: str) -> int:
    return len(text) - len(text.encode("ascii", "ignore"))


def declared_encoding(head: bytes) -> str | None:
    """The encoding an XML declaration names, lower-cased; None without one."""
    declared = _XML_DECL_ENCODING.match(head)
    return declared.group(1).decode("ascii").lower() if declared else None


def _declares_utf8(body: bytes) -> bool:
    name = declared_encoding(body)
    return name is None or name in UTF8_NAMES


def single_byte_codepage(data: bytes) -> str:
    """windows-1256 when the bytes read as Arabic-script words there, else windows-1252.

    The first ``_SAMPLE_BYTES`` decide: a mislabelled document is one code page throughout.
    """
    text = data[:_SAMPLE_BYTES].decode("cp1256")
    non_ascii = _non_ascii(text)
    arabic = len(text) - len(_ARABIC_WORD.sub("", text))
    return "windows-1256" if non_ascii and 2 * arabic >= non_ascii else "windows-1252"


def repair_encoding(body: bytes) -> tuple[bytes, str | None]:
    """A UTF-8-labelled body that is not valid UTF-8, made valid (see the module docstring).

    Returns the bytes to parse and a note saying what was done (None: untouched).
    Bodies declared in another encoding, UTF-16 bodies and valid UTF-8 are
    returned as they are.
    """
    bom = body.startswith(_BOM)
    data = body[len(_BOM):] if bom else body
    if data.startswith((b"\xff\xfe", b"\xfe\xff", b"<\x00", b"\x00<")) or not _declares_utf8(data):
        return body, None
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        return body, None
    # all in C, linear: each invalid sequence became one U+FFFD (minus those the feed itself holds)
    text = data.decode("utf-8", errors="replace")
    invalid = text.count(REPLACEMENT) - data.count(_REPLACEMENT_BYTES)
    valid = _non_ascii(text) - invalid
    if invalid > valid:
        codepage = single_byte_codepage(data)
        text = data.decode("cp1256" if codepage == "windows-1256" else "cp1252", errors="replace")
        note = (f"declared UTF-8, but most of its non-ASCII characters are not UTF-8 ({invalid} invalid "
                f"sequences, {valid} valid characters): decoded as {codepage}")
    else:
        note = (f"{invalid} invalid UTF-8 sequence{'' if invalid == 1 else 's'} replaced by U+FFFD; "
                f"the rest read as UTF-8")
    return (_BOM if bom else b"") + text.encode("utf-8"), note


def repair_json_encoding(body: bytes) -> tuple[bytes, str | None]:
    """``repair_encoding`` for JSON, which is always UTF-8 (RFC 8259) and has no declaration."""
    if body.lstrip()[:1] == b"<":
        return body, None  # not JSON: leave it for the "not a feed" reason
    return repair_encoding(body)


# --- structure ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Structure:
    """What a linear scan found: the root element, whether it closed, and each item's fate."""

    root: bytes | None
    root_closed: bool
    items: tuple[bool, ...]
    """One per ``<item>``/``<entry>`` start tag, in document order: whether it was closed."""

    @property
    def unclosed_items(self) -> int:
        return sum(1 for closed in self.items if not closed)


def _skip_declaration(data: bytes, start: int) -> int:
    """The end of a ``<!DOCTYPE …>`` (with an internal subset) from ``start``; -1 if it never ends."""
    gt = data.find(b">", start)
    if gt == -1:
        return -1
    bracket = data.find(b"[", start, gt)  # bounded by this declaration's ">": linear over many of them
    if bracket != -1:
        close = data.find(b"]", bracket)
        gt = data.find(b">", close) if close != -1 else -1
    return gt


def scan_structure(data: bytes) -> Structure:
    """Scan an XML body for its root element and items (linear; never builds a tree)."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff", b"<\x00", b"\x00<")):
        data = data.decode("utf-16", errors="replace").encode("utf-8")
    root: bytes | None = None
    closed: set[bytes] = set()
    items: list[bool] = []
    open_item: bytes | None = None
    """The name of the item element that is open: an element of the same name opened inside it means
    it was never closed (items do not nest); another item-like name inside it is just a child."""
    pos = 0
    while (match := _MARKUP.search(data, pos)) is not None:
        name = match.group(2)
        if name is None:
            token = match.group(0)
            end_marker = _MARKUP_ENDS.get(token)
            if end_marker is None:
                end = _skip_declaration(data, match.end())
                if end == -1:
                    break
                pos = end + 1
                continue
            end = data.find(end_marker, match.end())
            if end == -1:
                break  # the document ends inside a CDATA section, comment or instruction
            pos = end + len(end_marker)
            continue
        gt = data.find(b">", match.end())
        if gt == -1:
            break  # the document ends inside a tag
        pos = gt + 1
        local = name.rpartition(b":")[2].lower()
        if match.group(1):
            closed.add(name)
            if name == open_item:
                items[-1] = True
                open_item = None
            continue
        if local not in _ITEM_NAMES:
            root = root or name
        elif open_item is None or name == open_item:
            self_closing = data[gt - 1:gt] == b"/"
            items.append(self_closing)
            open_item = None if self_closing else name
    return Structure(root, root is not None and root in closed, tuple(items))


# --- damaged posts ----------------------------------------------------------------


def damaged(post: ParsedPost) -> bool:
    """Whether a post's routing or identity holds U+FFFD (see the module docstring)."""
    if any(REPLACEMENT in tag for tag in post.tags):
        return True
    if REPLACEMENT in (post.guid or "") or REPLACEMENT in (post.url or ""):
        return True
    return not post.guid and not post.url and REPLACEMENT in post.title


def hold_back_damaged(posts: Sequence[ParsedPost]) -> tuple[tuple[ParsedPost, ...], int]:
    """Posts that can be routed as they are; and how many were held back as damaged."""
    kept = tuple(p for p in posts if not damaged(p))
    return kept, len(posts) - len(kept)
