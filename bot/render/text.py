"""Plain text from archive HTML: strip markup, decode entities, drop trailers, cut cleanly."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

ELLIPSIS = "…"

_BLOCK_TAGS = frozenset(
    {"p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote",
     "figure", "figcaption", "tr", "table", "section", "article", "header", "footer", "pre", "hr"}
)
_SKIP_TAGS = frozenset({"script", "style", "noscript", "template", "iframe", "svg", "object"})

_TRAILERS = [
    re.compile(r"\s*The post .{1,400}? appeared first on .{1,300}?\.?\s*$", re.IGNORECASE | re.DOTALL),
    re.compile(r"\s*(?:\[\s*(?:…|\.\.\.|&hellip;)\s*\]|\[…\])\s*$"),
    re.compile(r"\s*(?:Continue reading|Read more|Read the rest|Keep reading)\b[^\n]{0,120}$",
               re.IGNORECASE),
    re.compile(r"\s*(?:…|\.\.\.)\s*$"),
]


class _TextCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            self._skip += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self._skip = max(0, self._skip - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_to_text(fragment: str) -> str:
    """Visible text of an HTML fragment, entities decoded, whitespace collapsed to single spaces."""
    if not fragment:
        return ""
    collector = _TextCollector()
    collector.feed(fragment)
    collector.close()
    text = html.unescape("".join(collector.parts))  # catches double-encoded entities
    return " ".join(text.split())


def strip_trailers(text: str) -> str:
    """Remove "Continue reading", "Read more", "[…]", "The post … appeared first on …"."""
    previous = None
    while previous != text:
        previous = text
        for pattern in _TRAILERS:
            text = pattern.sub("", text)
        text = text.rstrip()
    return text


def excerpt_of(summary_html: str, content_html: str = "") -> str:
    """The excerpt as plain text: the summary if it has text, else the content."""
    text = strip_trailers(html_to_text(summary_html))
    if not text:
        text = strip_trailers(html_to_text(content_html))
    return text


_URL = re.compile(r"https?://\S+")


def truncate(text: str, limit: int, measure: object = len) -> str:
    """Cut ``text`` to at most ``limit`` characters at a word boundary, adding "…".

    Never cuts inside a word or a URL; if a single first word does not fit,
    returns "" rather than half a word.
    """
    if len(text) <= limit:
        return text
    if limit <= len(ELLIPSIS):
        return ""
    budget = limit - len(ELLIPSIS)
    cut = text[: budget + 1]
    # protect URLs: never end inside one
    for match in _URL.finditer(text):
        if match.start() < budget < match.end():
            cut = text[: match.start()]
            break
    else:
        cut = cut[:budget] if len(cut) > budget and not cut[budget].isspace() else cut[:budget]
        if len(text) > budget and not text[budget].isspace():
            space = cut.rfind(" ")
            cut = cut[:space] if space > 0 else ""
    cut = cut.rstrip(" ,;:–—-")
    return f"{cut}{ELLIPSIS}" if cut else ""
