"""Subscription rules as one line of text: what an editor types to the admin bot on a phone, and how
``tagrelay subscriptions`` and ``/subscriptions`` show a rule (the same syntax both ways). Pure.

::

    /subscribe Iraq -Opinion +MEK "title:Basra" news-tg

=====================  ====================================================================
``+TAG``               the post must also carry TAG (``all_tags``)
``-TAG``               the post must not carry TAG (``none_tags``)
``"words"``            at least one such keyword is in it (``include_keywords``);
                       ``"title:words"`` looks in one field (title, excerpt, content, author)
``-"words"``           no such keyword is in it (``exclude_keywords``)
``FIELD=RE``           the field matches the regular expression; ``FIELD!=RE``: it does not
                       (``patterns``; quote it when it has spaces: ``"title=^Breaking news"``)
``age:D``              at most D old when detected (``max_age``: ``12h``, ``1d``)
``source:NAME``        only from that source (``sources``)
``rule:none``          no rule (``/subscribe`` replaces a subscription's rule; this removes it)
=====================  ====================================================================

Every other word belongs to the tag, except the last one when it names a channel. A tag after ``+``
or ``-`` is one word: write its spaces as dashes (``-Opinion-pieces``): tags match by slug, where a
space and a dash are the same. Phones' curly quotes (“ ” „ « ») work like ``"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bot import config_bounds as bounds
from bot.domain.rules import FIELDS, Rule, RuleParts
from bot.errors import RuleError

_OPEN = {'"': '"', "“": "”", "”": "”", "„": "“", "«": "»", "»": "«"}
"""Each opening quote and the quote that closes it (a straight quote closes any of them too)."""
NO_RULE = "rule:none"


def tokens(text: str) -> list[tuple[str, bool]]:
    """``text`` as (token, quoted) pairs: words split on whitespace; a quoted run (with an optional ``-``
    before it, kept) is one token whatever it holds. An unclosed quote runs to the end."""
    out: list[tuple[str, bool]] = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        sign = ""
        if text[i] == "-" and i + 1 < n and text[i + 1] in _OPEN:
            sign, i = "-", i + 1
        if text[i] in _OPEN:
            close = _OPEN[text[i]]
            end = i + 1
            while end < n and text[end] not in (close, '"'):
                end += 1
            out.append((sign + text[i + 1:end], True))
            i = end + 1
            continue
        end = i
        while end < n and not text[end].isspace():
            end += 1
        out.append((text[i:end], False))
        i = end
    return out


def _is_pattern(token: str) -> bool:
    head, sep, _ = token.partition("=")
    return bool(sep) and head.rstrip().removesuffix("!").strip().lower() in FIELDS


@dataclass(frozen=True, slots=True)
class Parsed:
    """A ``/subscribe`` line: the tag, the channel (None: not named) and the rule given (``given``
    False: no rule word at all, so an existing subscription's rule is left as it is)."""

    tag: str
    channel: str | None
    rule: Rule | None
    given: bool


def parse(text: str, channels: Sequence[str]) -> Parsed:
    """Read a ``/subscribe`` line (see the module docstring); ``RuleError`` names the word that is wrong."""
    words: list[str] = []
    all_tags: list[str] = []
    none_tags: list[str] = []
    include: list[str] = []
    exclude: list[str] = []
    patterns: list[str] = []
    sources: list[str] = []
    max_age: float | None = None
    cleared = False
    for token, quoted in tokens(text):
        low = token.lower()
        if quoted:
            if token.startswith("-"):
                exclude.append(token[1:])
            elif _is_pattern(token):
                patterns.append(token)
            else:
                include.append(token)
        elif low == NO_RULE:
            cleared = True
        elif low.startswith("age:"):
            try:
                max_age = bounds.MAX_AGE(token[4:])
            except ValueError as exc:
                raise RuleError(token[:40], str(exc)) from None
        elif low.startswith("source:"):
            sources.append(token[7:])
        elif _is_pattern(token):
            patterns.append(token)
        elif len(token) > 1 and token[0] in "+-":
            (all_tags if token[0] == "+" else none_tags).append(token[1:])
        else:
            words.append(token)
    channel = words.pop() if words and words[-1] in channels else None
    parts = RuleParts(all_tags=tuple(all_tags), none_tags=tuple(none_tags), include_keywords=tuple(include),
                      exclude_keywords=tuple(exclude), patterns=tuple(patterns), max_age=max_age,
                      sources=tuple(sources), names={"all_tags": "+tag", "none_tags": "-tag",
                                                     "include_keywords": '"keyword"', "exclude_keywords": '-"keyword"',
                                                     "patterns": "FIELD=RE", "sources": "source:"})
    rule = parts.build()
    if cleared and rule is not None:
        raise RuleError(NO_RULE, "removes the rule: give no other rule word with it")
    return Parsed(" ".join(words), channel, rule, cleared or rule is not None)


def duration(seconds: float) -> str:
    """``90000`` → ``"1d1h"``: exactly, in the units ``age:`` reads."""
    parts: list[str] = []
    rest = seconds
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if rest >= size:
            parts.append(f"{int(rest // size)}{unit}")
            rest -= size * int(rest // size)
    if rest or not parts:
        parts.append(f"{rest:g}s")
    return "".join(parts)


def _word(text: str) -> str:
    return "-".join(text.split())


def _quoted(text: str) -> str:
    return f'"{text}"'


def describe(rule: Rule | None) -> str:
    """The rule in the syntax ``parse`` reads, on one line (``""``: no rule)."""
    if not rule:
        return ""
    parts = [f"source:{s}" for s in rule.sources]
    if rule.max_age is not None:
        parts.append(f"age:{duration(rule.max_age)}")
    parts += [f"+{_word(t.name)}" for t in rule.all_tags]
    parts += [f"-{_word(t.name)}" for t in rule.none_tags]
    parts += [_quoted(str(k)) for k in rule.include_keywords]
    parts += ["-" + _quoted(str(k)) for k in rule.exclude_keywords]
    parts += [_quoted(str(p)) if any(c.isspace() for c in str(p)) else str(p) for p in rule.patterns]
    return " ".join(parts)
