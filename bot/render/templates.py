"""Per-channel message templates: sandboxed Jinja2, escaped per platform.

A channel's ``template`` option is a Jinja2 template string set by the
operator. It runs in ``jinja2.sandbox.ImmutableSandboxedEnvironment`` with
``StrictUndefined``, so it cannot reach Python internals
(``{{ ''.__class__.__mro__ }}`` raises) and a misspelt variable is an error,
not an empty string. On top of the sandbox, the cheap ways to blow up memory
are closed: ``*``, ``**`` and ``%`` on strings are checked, padding filters
and methods (``center``, ``format``, ``ljust`` …) and the ``namespace`` and
``lipsum`` globals are gone, every filter and call result is size-checked and
the output is capped. CPU-bound loops (nested ``range``) are not limited: the
template comes from the operator's configuration, not from the archive.

Variables (all strings unless noted):

==========  =====================================================================
title       the post title, plain text
excerpt     the excerpt, shortened by the fitting step (may be "")
link        the post URL; must appear in the template — it is never cut
tags        list of the post's tag names
hashtags    "#EditorsPicks #News" (empty unless the channel enables hashtags)
date        publication date, ISO ``YYYY-MM-DD`` ("" if unknown)
source      name of the source the post came from
author      the author's name ("" if unknown)
==========  =====================================================================

Escaping: for Telegram (HTML parse mode) every ``{{ … }}`` output is escaped
with ``html.escape(…, quote=True)``, always — ``|safe`` does not exist — while
the template's own text is the operator's markup and must use only the tags
Telegram accepts. For plain platforms (X, Mastodon) nothing is escaped.

Rendered output is tidied: trailing spaces removed, runs of blank lines
collapsed to one, leading and trailing blank lines dropped — so an empty
variable on its own paragraph simply disappears.
"""

from __future__ import annotations

import functools
import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jinja2
from jinja2 import meta
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from bot.errors import ConfigError
from bot.render.tghtml import telegram_html_problems

VARIABLES: tuple[str, ...] = ("title", "excerpt", "link", "tags", "hashtags", "date", "source", "author")
"""Names a template may use."""

DEFAULT_TEMPLATE_HTML = "{% if title %}<b>{{ title }}</b>\n\n{% endif %}{{ excerpt }}\n\n{{ link }}\n\n{{ hashtags }}"
"""Telegram's default: bold title, excerpt, link, hashtags — one paragraph each, empty ones dropped."""

DEFAULT_TEMPLATE_PLAIN = "{{ title }}\n\n{{ excerpt }}\n\n{{ link }}\n\n{{ hashtags }}"
"""Default for plain-text platforms (X, Mastodon) and for every ``plain=True`` fallback."""

MAX_TEMPLATE_CHARS = 4000
"""Longest template accepted."""
MAX_OUTPUT_CHARS = 100_000
"""Longest string a template may produce, in total or in any one filter or call result."""
_MAX_INT_ARG = 10_000
_MAX_EXPONENT = 100
_REMOVED_FILTERS = ("center", "indent", "format", "wordwrap", "random", "batch", "slice", "pprint",
                    "xmlattr", "tojson", "urlize", "safe", "e", "escape", "forceescape", "filesizeformat")
_REMOVED_GLOBALS = ("namespace", "lipsum", "cycler", "joiner", "dict")
_BLOCKED_STR_METHODS = frozenset({"format", "format_map", "center", "ljust", "rjust", "zfill",
                                  "expandtabs", "encode", "translate", "maketrans"})


class TemplateError(ConfigError):
    """A channel template does not compile, uses unknown names, or failed while rendering.

    ``key`` is the configuration key, e.g. ``channels.news_tg.template``.
    """

    default_message = "invalid template"

    def __init__(self, reason: str, *, key: str = "template") -> None:
        super().__init__(key, reason)


@dataclass(frozen=True, slots=True)
class TemplateVars:
    """The values a template sees (see the module docstring)."""

    title: str
    excerpt: str
    link: str
    tags: tuple[str, ...] = ()
    hashtags: str = ""
    date: str = ""
    source: str = ""
    author: str = ""

    def as_context(self) -> dict[str, Any]:
        return {"title": self.title, "excerpt": self.excerpt, "link": self.link,
                "tags": list(self.tags), "hashtags": self.hashtags, "date": self.date,
                "source": self.source, "author": self.author}


def _check_size(value: Any) -> Any:
    if isinstance(value, (str, list, tuple)) and len(value) > MAX_OUTPUT_CHARS:
        raise SecurityError(f"template produced a value longer than {MAX_OUTPUT_CHARS}")
    return value


def _guard_filter(func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)  # keeps jinja_pass_arg, so context-taking filters still work
    def guarded(*args: Any, **kwargs: Any) -> Any:
        return _check_size(func(*args, **kwargs))

    return guarded


class _Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox plus limits against memory blow-ups."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        for name in _REMOVED_FILTERS:
            self.filters.pop(name, None)
        for name in _REMOVED_GLOBALS:
            self.globals.pop(name, None)
        self.filters = {name: _guard_filter(func) for name, func in self.filters.items()}

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "%" and isinstance(left, str):
            raise SecurityError("%-formatting of strings is not allowed in templates")
        if operator == "**" and isinstance(right, (int, float)) and abs(right) > _MAX_EXPONENT:
            raise SecurityError(f"exponent larger than {_MAX_EXPONENT}")
        if operator == "*":
            for seq, count in ((left, right), (right, left)):
                if (isinstance(seq, (str, list, tuple)) and isinstance(count, int)
                        and len(seq) * count > MAX_OUTPUT_CHARS):
                    raise SecurityError(f"repetition longer than {MAX_OUTPUT_CHARS}")
        return _check_size(super().call_binop(context, operator, left, right))

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, str) and attribute in _BLOCKED_STR_METHODS:
            return self.unsafe_undefined(obj, attribute)
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(obj, str) and argument in _BLOCKED_STR_METHODS:
            return self.unsafe_undefined(obj, argument)
        return super().getitem(obj, argument)

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        for value in (*args, *kwargs.values()):
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) > _MAX_INT_ARG:
                raise SecurityError(f"numeric argument larger than {_MAX_INT_ARG}")
        return _check_size(super().call(context, obj, *args, **kwargs))


def _escape_output(value: Any) -> str:
    return html.escape(str(value), quote=True)


@functools.lru_cache(maxsize=2)
def _environment(html_mode: bool) -> _Sandbox:
    options: dict[str, Any] = {"undefined": jinja2.StrictUndefined, "autoescape": False,
                               "trim_blocks": True, "keep_trailing_newline": False,
                               "auto_reload": False, "cache_size": 0}
    if html_mode:
        options["finalize"] = _escape_output
    return _Sandbox(**options)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return f"syntax error on line {exc.lineno}: {exc.message}"
    if isinstance(exc, SecurityError):
        return f"not allowed in a template: {exc}"
    if isinstance(exc, jinja2.UndefinedError):
        return f"undefined value: {exc.message}"
    if isinstance(exc, RecursionError):
        return "recursion too deep"
    return f"{type(exc).__name__}: {exc}"


@functools.lru_cache(maxsize=128)
def _compile(text: str, html_mode: bool) -> tuple[jinja2.Template | None, str | None]:
    """Compile once per (text, mode); returns (template, None) or (None, reason)."""
    if len(text) > MAX_TEMPLATE_CHARS:
        return None, f"template longer than {MAX_TEMPLATE_CHARS} characters"
    env = _environment(html_mode)
    try:
        parsed = env.parse(text)
        used = meta.find_undeclared_variables(parsed)
        template = env.from_string(parsed)
    except Exception as exc:  # noqa: BLE001 - anything the parser raises is the template's fault
        return None, _describe(exc)
    unknown = sorted(used - set(VARIABLES) - set(env.globals))
    if unknown:
        return None, (f"unknown variable{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                      f"available: {', '.join(VARIABLES)}")
    if "link" not in used:
        return None, "the template must contain {{ link }}: the post link is never left out"
    return template, None


def compile_template(text: str, *, html: bool, key: str = "template") -> jinja2.Template:
    """The compiled template, cached; raises ``TemplateError`` naming ``key``."""
    template, reason = _compile(text, html)
    if template is None:
        raise TemplateError(reason or "invalid template", key=key)
    return template


_TRAILING_SPACE = re.compile(r"[ \t]+(?=\n|$)")
_BLANK_LINES = re.compile(r"\n{3,}")


def tidy(text: str) -> str:
    """Trailing spaces off, at most one blank line in a row, no blank lines at the ends."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _TRAILING_SPACE.sub("", text)
    text = _BLANK_LINES.sub("\n\n", text)
    return text.strip("\n ")


def render_template(template: jinja2.Template, variables: TemplateVars, *, key: str = "template") -> str:
    """Render and tidy; any failure inside the template becomes ``TemplateError``."""
    parts: list[str] = []
    size = 0
    try:
        for chunk in template.generate(variables.as_context()):
            size += len(chunk)
            if size > MAX_OUTPUT_CHARS:
                raise SecurityError(f"template output longer than {MAX_OUTPUT_CHARS} characters")
            parts.append(chunk)
    except Exception as exc:  # the sandbox boundary: report, never leak
        raise TemplateError(_describe(exc), key=key) from exc
    return tidy("".join(parts))


_SAMPLES = (
    TemplateVars(
        title='Q&A: <script> in "quotes" — it’s 日本語 😀',
        excerpt="Fish & chips <b>are</b> served; prices > 5 €…",
        link="https://example.com/2024/05/q-a/?utm_source=x&id=1",
        tags=("Editor’s picks", "Q&A"),
        hashtags="#EditorsPicks #QA",
        date="2024-05-01",
        source="example",
        author="Jane <Doe>",
    ),
    TemplateVars(title="", excerpt="", link="https://example.com/p/1"),
)


def validate_template(text: str, *, platform: str | None = None, key: str = "template") -> None:
    """Check a channel template at configuration load; raises ``TemplateError``.

    Compiles it, rejects unknown variables and templates without ``{{ link }}``,
    renders it with sample posts (tricky characters, empty fields) and, for
    ``platform="telegram"``, checks the output is HTML Telegram accepts.
    """
    html_mode = platform == "telegram"
    template = compile_template(text, html=html_mode, key=key)
    for sample in _SAMPLES:
        output = render_template(template, sample, key=key)
        if html_mode:
            problems = telegram_html_problems(output)
            if problems:
                raise TemplateError(f"Telegram would reject the HTML: {'; '.join(problems[:3])}", key=key)
