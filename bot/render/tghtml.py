"""Telegram's HTML parse mode: the allowed subset, a well-formedness check, the visible length.

Telegram accepts only a few tags (``b``, ``i``, ``a href`` …), the named entities
``&lt; &gt; &amp; &quot;`` and numeric character references; every other ``<``,
``>`` or ``&`` must be escaped (platform-apis §1.2). Its length limits (4096 for
a message, 1024 for a caption) apply to the *visible* text after entity
parsing: tags count nothing and ``&amp;`` counts as one character.

How Telegram counts astral characters (emoji, rare CJK) is disputed: its entity
offsets are UTF-16 code units, and reports differ on whether the length check
is too. We count UTF-16 code units, which is never less than the number of
code points, so a message we accept is never too long for either reading.
"""

from __future__ import annotations

import re

ALLOWED_TAGS = frozenset(
    {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler", "a",
     "tg-emoji", "tg-time", "code", "pre", "blockquote"}
)
"""Tags Telegram's HTML parse mode accepts (``span`` only with ``class="tg-spoiler"``)."""

_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}

_TOKEN = re.compile(
    r"""<(?P<close>/?)(?P<name>[A-Za-z][A-Za-z0-9-]*)(?P<attrs>(?:\s+[^<>]*?)?)\s*>"""
    r"""|&(?P<entity>\#[0-9]{1,8}|\#[xX][0-9a-fA-F]{1,8}|[A-Za-z][A-Za-z0-9]{0,31});"""
    r"""|(?P<stray>[<>&])"""
)
_ATTR = re.compile(r"""([A-Za-z][A-Za-z0-9_-]*)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?""")


def utf16_length(text: str) -> int:
    """Length in UTF-16 code units (an astral character counts two)."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def _decode_entity(ref: str) -> str | None:
    if ref.startswith("#"):
        try:
            code = int(ref[2:], 16) if ref[1:2] in ("x", "X") else int(ref[1:])
        except ValueError:
            return None
        if code == 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
            return None
        return chr(code)
    return _NAMED_ENTITIES.get(ref)


def telegram_visible_text(message_html: str) -> str:
    """The text Telegram shows for an HTML message: tags removed, entities decoded.

    Stray ``<``, ``>``, ``&`` and unknown entities are kept as written (Telegram
    would reject most of them; ``telegram_html_problems`` reports them).
    """
    parts: list[str] = []
    pos = 0
    for match in _TOKEN.finditer(message_html):
        parts.append(message_html[pos:match.start()])
        pos = match.end()
        if match.group("name") is not None:
            continue
        entity = match.group("entity")
        if entity is not None:
            decoded = _decode_entity(entity)
            parts.append(decoded if decoded is not None else match.group(0))
        else:
            parts.append(match.group(0))
    parts.append(message_html[pos:])
    return "".join(parts)


def telegram_visible_length(message_html: str) -> int:
    """Telegram's length of an HTML message: visible text, in UTF-16 code units (see module doc)."""
    return utf16_length(telegram_visible_text(message_html))


def _attributes(raw: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for match in _ATTR.finditer(raw):
        value = next((g for g in match.groups()[1:] if g is not None), "")
        found[match.group(1).lower()] = value
    return found


def telegram_html_problems(message_html: str) -> list[str]:
    """Why Telegram would refuse this HTML, as readable strings; empty when it is fine.

    Checks: only allowed tags, balanced and properly nested; ``a`` has an
    ``href``; ``span`` is a spoiler; no tags inside ``code``/``pre`` (except
    ``pre > code``); no nested ``blockquote``; no stray ``<``/``>``/``&``; only
    the four named entities and valid numeric references.
    """
    problems: list[str] = []
    stack: list[str] = []
    for match in _TOKEN.finditer(message_html):
        where = f"at offset {match.start()}"
        name = match.group("name")
        if name is not None:
            name = name.lower()
            if name not in ALLOWED_TAGS:
                problems.append(f"unsupported tag <{name}> {where}")
                continue
            if match.group("close"):
                if not stack or stack[-1] != name:
                    problems.append(f"unexpected </{name}> {where}")
                else:
                    stack.pop()
                continue
            attrs = _attributes(match.group("attrs") or "")
            if name == "a" and not attrs.get("href"):
                problems.append(f"<a> without href {where}")
            if name == "span" and attrs.get("class") != "tg-spoiler":
                problems.append(f'<span> without class="tg-spoiler" {where}')
            if stack and stack[-1] in ("code", "pre") and not (stack[-1] == "pre" and name == "code"):
                problems.append(f"<{name}> inside <{stack[-1]}> {where}")
            if name == "blockquote" and "blockquote" in stack:
                problems.append(f"nested <blockquote> {where}")
            stack.append(name)
        elif match.group("entity") is not None:
            if _decode_entity(match.group("entity")) is None:
                problems.append(f"unsupported entity {match.group(0)} {where}")
        else:
            problems.append(f"unescaped {match.group('stray')!r} {where}")
    problems.extend(f"unclosed <{name}>" for name in reversed(stack))
    return problems
