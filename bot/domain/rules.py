"""Subscription rules: the conditions a subscription (and, channel-wide, a channel) puts on a post. Pure.

A subscription sends the posts carrying its tag; its ``Rule`` narrows that down. A post passes a rule
when every condition holds, checked in this order, and the first that fails is the reason it was
kept from the channel (``Miss``):

1. ``sources``: the post comes from one of these sources;
2. ``max_age``: it was published at most this many seconds before it was detected (undated: passes);
3. ``all_tags``: it carries every one of these tags too;
4. ``none_tags``: it carries none of these;
5. ``include_keywords``: at least one of these is found;
6. ``exclude_keywords``: none of these is found;
7. ``patterns``: each regular expression matches its field (``FIELD=RE``), or does not (``FIELD!=RE``).

Keywords are matched like tags are (``bot.domain.tags.fold_words``): case, accents, apostrophes and
Arabic/Persian diacritics ignored, on word boundaries, in the post's title, excerpt and content
(``title:Basra`` looks in one field; ``author:`` in the author's name only). Patterns run on RE2
(google-re2), whose matching time is linear in the text whatever the pattern, so no pattern a user
writes can stall a poll; a pattern is at most ``PATTERN_CHARS`` long and must compile.

RE2 is imported the first time a pattern is compiled: a service whose rules have none never loads it.
"""

from __future__ import annotations

import functools
import html
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.domain.limits import EXCERPT_CHARS
from bot.domain.models import Post, Tag
from bot.domain.tags import fold_words, make_tag
from bot.errors import RuleError

FIELDS: tuple[str, ...] = ("title", "excerpt", "content", "author")
"""What keywords and patterns can look at."""
DEFAULT_FIELDS: tuple[str, ...] = ("title", "excerpt", "content")
"""Where a keyword without ``field:`` is looked for."""
KEYWORD_CHARS = 200
"""Longest keyword (a phrase of words)."""
PATTERN_CHARS = 300
"""Longest regular expression."""
RULE_ITEMS = 50
"""Most tags, keywords or sources in one list of a rule."""
RULE_PATTERNS = 10
"""Most patterns in one rule."""
PATTERN_MEMORY = 2 << 20
"""RE2's memory budget per compiled pattern (bytes); past it RE2 falls back to a slower, still linear engine."""
CONDITIONS = ("sources", "max_age", "all_tags", "none_tags", "include_keywords", "exclude_keywords", "patterns")
"""The conditions of a subscription's rule, in the order they are checked."""
CHANNEL_CONDITIONS = ("exclude_tags", "exclude_keywords")
"""The channel-wide conditions (``[[channels]] exclude_tags``/``exclude_keywords``), checked first."""


@dataclass(frozen=True, slots=True)
class Keyword:
    """Words looked for in ``fields`` of a post (``words`` as written, without its ``field:`` prefix)."""

    words: str
    fields: tuple[str, ...] = DEFAULT_FIELDS

    def __str__(self) -> str:
        return self.words if self.fields == DEFAULT_FIELDS else f"{self.fields[0]}:{self.words}"


@dataclass(frozen=True, slots=True)
class Pattern:
    """A regular expression (RE2 syntax) that must match ``field`` (``negate``: must not)."""

    field: str
    regex: str
    negate: bool = False

    def __str__(self) -> str:
        return f"{self.field}{'!=' if self.negate else '='}{self.regex}"


@dataclass(frozen=True, slots=True)
class Rule:
    """A subscription's conditions (see the module docstring). An empty rule passes every post."""

    all_tags: tuple[Tag, ...] = ()
    none_tags: tuple[Tag, ...] = ()
    include_keywords: tuple[Keyword, ...] = ()
    exclude_keywords: tuple[Keyword, ...] = ()
    patterns: tuple[Pattern, ...] = ()
    max_age: float | None = None
    """Seconds."""
    sources: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.all_tags or self.none_tags or self.include_keywords or self.exclude_keywords
                    or self.patterns or self.max_age is not None or self.sources)


@dataclass(frozen=True, slots=True)
class Miss:
    """Why a post fails a rule: the condition (a ``CONDITIONS`` or ``CHANNEL_CONDITIONS`` key) and what
    about the post made it fail, in words."""

    condition: str
    detail: str


# -- building a rule (every entry point validates the same way) ------------------------------------------


def parse_tags(names: Iterable[str], what: str) -> tuple[Tag, ...]:
    """Tags for a rule, each with letters or digits, duplicates (by slug) dropped."""
    out: dict[str, Tag] = {}
    for name in names:
        tag = make_tag(name)
        if tag is None:
            raise RuleError(what, "a tag name needs letters or digits")
        out.setdefault(tag.slug, tag)
    if len(out) > RULE_ITEMS:
        raise RuleError(what, f"at most {RULE_ITEMS} tags")
    return tuple(out.values())


def parse_keyword(text: str, what: str = "keyword") -> Keyword:
    """``"Basra"`` (title, excerpt and content) or ``"title:Basra"`` (one field: title, excerpt,
    content or author). A prefix that names no field is part of the keyword."""
    head, sep, rest = text.partition(":")
    fields: tuple[str, ...] = DEFAULT_FIELDS
    words = text.strip()
    if sep and head.strip().lower() in FIELDS:
        fields, words = (head.strip().lower(),), rest.strip()
    if len(words) > KEYWORD_CHARS:
        raise RuleError(what, f"a keyword is at most {KEYWORD_CHARS} characters (this one has {len(words):,})")
    if not fold_words(words):
        raise RuleError(what, "a keyword needs letters or digits")
    return Keyword(" ".join(words.split()), fields)


def parse_keywords(texts: Iterable[str], what: str) -> tuple[Keyword, ...]:
    out = tuple(dict.fromkeys(parse_keyword(t, what) for t in texts))
    if len(out) > RULE_ITEMS:
        raise RuleError(what, f"at most {RULE_ITEMS} keywords")
    return out


def parse_pattern(text: str, what: str = "pattern") -> Pattern:
    """``FIELD=RE`` (the field must match) or ``FIELD!=RE`` (it must not); FIELD is one of ``FIELDS``.
    The expression must compile with RE2 and be at most ``PATTERN_CHARS`` long."""
    head, sep, regex = text.partition("=")
    negate = head.rstrip().endswith("!")
    name = head.rstrip().removesuffix("!").strip().lower()
    if not sep or name not in FIELDS:
        raise RuleError(what, f"write FIELD=REGEX or FIELD!=REGEX, FIELD one of {', '.join(FIELDS)}")
    if not regex:
        raise RuleError(what, "the regular expression is empty")
    if len(regex) > PATTERN_CHARS:
        raise RuleError(what, f"a pattern is at most {PATTERN_CHARS} characters (this one has {len(regex):,})")
    try:
        compiled(regex)
    except ValueError as exc:
        raise RuleError(what, f"not a valid RE2 regular expression ({exc})") from None
    return Pattern(name, regex, negate)


def parse_sources(names: Iterable[str], what: str = "sources") -> tuple[str, ...]:
    out = tuple(dict.fromkeys(n.strip() for n in names))
    if any(not n for n in out):
        raise RuleError(what, "a source name cannot be empty")
    if len(out) > RULE_ITEMS:
        raise RuleError(what, f"at most {RULE_ITEMS} sources")
    return out


@functools.lru_cache(maxsize=512)
def compiled(regex: str) -> Any:
    """The compiled RE2 program of ``regex`` (cached), or ``ValueError`` with RE2's reason (never the
    pattern itself)."""
    import re2  # deliberately lazy: only rules with patterns need RE2 (~4 ms and ~3 MiB on import)

    options = re2.Options()
    options.log_errors = False  # RE2 would print the error (and the pattern) to stderr
    options.max_mem = PATTERN_MEMORY
    try:
        return re2.compile(regex, options)
    except re2.error as exc:
        raw = exc.args[0] if exc.args else b""
        reason = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        raise ValueError(reason.partition(":")[0].strip() or "does not compile") from None


# -- evaluating -----------------------------------------------------------------------------------------

_MARKUP = re.compile(r"<[^<>]*>")
"""A tag: each match stops at the next ``<``, so stripping is linear whatever the text."""


def html_text(markup: str) -> str:
    """The text of an HTML fragment, for matching: tags removed, character references decoded."""
    return html.unescape(_MARKUP.sub(" ", markup)) if markup else ""


class PostText:
    """One post's fields as text, each made once and only when a condition asks for it: plain (for
    patterns: the HTML's text, without the whitespace around it, so ``^`` and ``$`` are its ends) and
    folded (for keywords, ``" word word "``)."""

    __slots__ = ("_folded", "_plain", "post")

    def __init__(self, post: Post) -> None:
        self.post = post
        self._plain: dict[str, str] = {}
        self._folded: dict[str, str] = {}

    def plain(self, name: str) -> str:
        text = self._plain.get(name)
        if text is None:
            post = self.post
            if name == "title":
                text = post.title
            elif name == "author":
                text = post.author or ""
            elif name == "content":
                text = html_text(post.content_html).strip() or html_text(post.summary_html).strip()
            else:  # the excerpt: what a message's excerpt is made from (summary, else content)
                text = (html_text(post.summary_html).strip() or self.plain("content"))[:EXCERPT_CHARS]
            self._plain[name] = text
        return text

    def folded(self, name: str) -> str:
        text = self._folded.get(name)
        if text is None:
            text = self._folded[name] = f" {fold_words(self.plain(name))} "
        return text

    def find(self, keyword: Keyword) -> str | None:
        """The first of the keyword's fields that contains it (on word boundaries), or None."""
        needle = f" {folded_keyword(keyword.words)} "
        return next((name for name in keyword.fields if needle in self.folded(name)), None)


@functools.lru_cache(maxsize=4096)
def folded_keyword(words: str) -> str:
    return fold_words(words)


def _names(tags: Iterable[Tag]) -> str:
    return ", ".join(t.name for t in tags)


def span(seconds: float) -> str:
    """``90000`` → ``"1d 1h"``: an age or a duration, to the two largest units."""
    seconds = max(0.0, seconds)
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            parts.append(f"{int(seconds // size)}{unit}")
            seconds %= size
    if not parts:
        parts.append(f"{int(seconds)}s")
    return " ".join(parts[:2])


def check(rule: Rule | None, post: Post, text: PostText, now: datetime | None) -> Miss | None:
    """The first condition of ``rule`` that ``post`` fails, or None when it passes (``now``: when it was
    detected; without it ``max_age`` is not checked). ``text`` is ``PostText(post)``, shared by every
    rule that looks at the post."""
    if not rule:
        return None
    if rule.sources and post.source not in rule.sources:
        return Miss("sources", f"it comes from source {post.source}, not from {', '.join(rule.sources)}")
    if rule.max_age is not None and now is not None and post.published is not None:
        age = (now - post.published).total_seconds()
        if age > rule.max_age:
            return Miss("max_age", f"it was {span(age)} old when detected, over max_age {span(rule.max_age)}")
    if rule.all_tags:
        missing = [t for t in rule.all_tags if t.slug not in post.tag_slugs]
        if missing:
            return Miss("all_tags", f"it is not tagged {_names(missing)}")
    if rule.none_tags:
        present = [t for t in rule.none_tags if t.slug in post.tag_slugs]
        if present:
            return Miss("none_tags", f"it is tagged {_names(present)}")
    if rule.include_keywords and not any(text.find(k) for k in rule.include_keywords):
        return Miss("include_keywords", f"none of {', '.join(repr(str(k)) for k in rule.include_keywords)} "
                                        "is in it")
    for keyword in rule.exclude_keywords:
        where = text.find(keyword)
        if where is not None:
            return Miss("exclude_keywords", f"its {where} contains {str(keyword)!r}")
    for pattern in rule.patterns:
        try:
            found = compiled(pattern.regex).search(text.plain(pattern.field)) is not None
        except ValueError as exc:  # stored before this RE2 refused it: kept out rather than sent unchecked
            return Miss("patterns", f"pattern {pattern} does not compile ({exc})")
        if found == pattern.negate:
            verb = "matches" if pattern.negate else "does not match"
            return Miss("patterns", f"its {pattern.field} {verb} {pattern.regex}")
    return None


def check_channel(rule: Rule | None, post: Post, text: PostText) -> Miss | None:
    """The channel-wide conditions (``none_tags`` and ``exclude_keywords`` of the channel's rule), named
    as the channel's keys: ``exclude_tags``, ``exclude_keywords``."""
    miss = check(rule, post, text, None)
    if miss is not None and miss.condition == "none_tags":
        return Miss("exclude_tags", miss.detail)
    return miss


# -- storing a rule -------------------------------------------------------------------------------------


def rule_to_json(rule: Rule | None) -> str | None:
    """A rule as stored (``subscriptions.rule``); None for no rule."""
    if not rule:
        return None
    data: dict[str, Any] = {}
    if rule.all_tags:
        data["all_tags"] = [t.name for t in rule.all_tags]
    if rule.none_tags:
        data["none_tags"] = [t.name for t in rule.none_tags]
    if rule.include_keywords:
        data["include_keywords"] = [str(k) for k in rule.include_keywords]
    if rule.exclude_keywords:
        data["exclude_keywords"] = [str(k) for k in rule.exclude_keywords]
    if rule.patterns:
        data["patterns"] = [str(p) for p in rule.patterns]
    if rule.max_age is not None:
        data["max_age"] = rule.max_age
    if rule.sources:
        data["sources"] = list(rule.sources)
    return json.dumps(data, ensure_ascii=False, sort_keys=True)


def rule_from_json(text: str | None) -> Rule | None:
    """A stored rule (``rule_to_json``). Written validated; a pattern RE2 no longer compiles is kept and
    fails at evaluation (``check`` says so) rather than being dropped unseen."""
    if not text:
        return None
    data = json.loads(text)
    return Rule(
        all_tags=tuple(t for t in (make_tag(n) for n in data.get("all_tags", ())) if t is not None),
        none_tags=tuple(t for t in (make_tag(n) for n in data.get("none_tags", ())) if t is not None),
        include_keywords=tuple(parse_keyword(k) for k in data.get("include_keywords", ())),
        exclude_keywords=tuple(parse_keyword(k) for k in data.get("exclude_keywords", ())),
        patterns=tuple(_stored_pattern(p) for p in data.get("patterns", ())),
        max_age=float(data["max_age"]) if data.get("max_age") is not None else None,
        sources=tuple(data.get("sources", ())),
    ) or None


def _stored_pattern(text: str) -> Pattern:
    head, _, regex = text.partition("=")
    return Pattern(head.removesuffix("!"), regex, head.endswith("!"))


def rule_dict(rule: Rule | None) -> dict[str, Any]:
    """The rule in full, for ``--json`` output."""
    rule = rule or Rule()
    return {"all_tags": [t.name for t in rule.all_tags], "none_tags": [t.name for t in rule.none_tags],
            "include_keywords": [str(k) for k in rule.include_keywords],
            "exclude_keywords": [str(k) for k in rule.exclude_keywords],
            "patterns": [str(p) for p in rule.patterns], "max_age": rule.max_age, "sources": list(rule.sources)}


@dataclass(frozen=True, slots=True)
class RuleParts:
    """A rule's parts as a user gives them (TOML, CLI flags, the admin bot), before validation."""

    all_tags: tuple[str, ...] = ()
    none_tags: tuple[str, ...] = ()
    include_keywords: tuple[str, ...] = ()
    exclude_keywords: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    max_age: float | None = None
    sources: tuple[str, ...] = ()
    names: dict[str, str] = field(default_factory=dict)
    """How each part is called where it came from (``"exclude_tags"`` → ``"--exclude-tags"``), for errors."""

    def build(self) -> Rule | None:
        """The validated rule (None when empty), or ``RuleError`` naming the part."""
        name = self.names.get
        if len(self.patterns) > RULE_PATTERNS:
            raise RuleError(name("patterns", "patterns"), f"at most {RULE_PATTERNS} patterns")
        return Rule(
            all_tags=parse_tags(self.all_tags, name("all_tags", "all_tags")),
            none_tags=parse_tags(self.none_tags, name("none_tags", "none_tags")),
            include_keywords=parse_keywords(self.include_keywords, name("include_keywords", "include_keywords")),
            exclude_keywords=parse_keywords(self.exclude_keywords, name("exclude_keywords", "exclude_keywords")),
            patterns=tuple(dict.fromkeys(parse_pattern(p, name("patterns", "patterns")) for p in self.patterns)),
            max_age=self.max_age,
            sources=parse_sources(self.sources, name("sources", "sources")),
        ) or None
