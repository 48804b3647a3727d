"""Fitting a post into a platform's limit: shorten the excerpt, drop hashtags, never cut the link.

The order, from the issue:

1. render the template with the full excerpt (already capped at the
   channel's ``excerpt_length``) and all hashtags;
2. if too long, shorten the excerpt at a word boundary with "…" — the
   longest cut that fits (an excerpt cut below ``MIN_EXCERPT_CHARS`` says
   nothing and is dropped);
3. if even no excerpt does not fit, drop hashtags from the end, one at a
   time, each time letting the excerpt grow back as far as it fits;
4. as a last resort cut the title (at a word, else at a character);
5. finally the bare link. The link is never cut; if it alone is too long,
   ``RenderError``.

Every returned text has been measured with the platform's own ``measure``; the
searches assume a longer excerpt never measures shorter, and never return a
candidate they did not check.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bot.domain.models import Post
from bot.errors import TagrelayError
from bot.render.hashtags import hashtags_for, hashtags_in
from bot.render.templates import (
    DEFAULT_TEMPLATE_HTML,
    DEFAULT_TEMPLATE_PLAIN,
    TemplateVars,
    compile_template,
    render_template,
)
from bot.render.text import (
    Measure,
    break_points,
    clean_inline,
    excerpt_of,
    grapheme_length,
    longest_fitting,
    nfc,
    truncate,
)

MAX_TITLE_CHARS = 1000
"""Titles are cut to this many characters before anything else (no platform shows more)."""
MIN_EXCERPT_CHARS = 20
"""A shortened excerpt with fewer characters than this is dropped instead."""


def plain_budget(limit: int) -> int:
    """The limit a ``plain=True`` fallback fits into: 5% (at least 1) under the platform's.

    The fallback follows a refusal; a margin covers a platform counting a little
    differently from us (an unusual URL, a newer emoji).
    """
    return limit - max(1, limit // 20)


class RenderError(TagrelayError):
    """The post cannot be rendered within the platform's limit (e.g. the link alone is too long)."""

    default_message = "cannot render the post"


@dataclass(frozen=True, slots=True)
class Content:
    """The post's text parts, cleaned, before fitting."""

    title: str
    excerpt: str
    link: str
    hashtags: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    date: str = ""
    source: str = ""
    author: str = ""


def prepare(post: Post, *, excerpt_length: int, hashtags: bool, max_hashtags: int,
            plain: bool = False) -> Content:
    """Clean every field of ``post``: plain NFC text, excerpt capped, hashtags chosen.

    ``plain`` (the fallback rendering) halves the excerpt that would otherwise be used.
    """
    title = nfc(clean_inline(post.title))
    if len(title) > MAX_TITLE_CHARS:
        title = truncate(title, MAX_TITLE_CHARS) or title[:MAX_TITLE_CHARS]
    excerpt = nfc(excerpt_of(post.summary_html, post.content_html, title=title))
    cap = max(0, excerpt_length)
    excerpt = truncate(excerpt, cap, lambda text: grapheme_length(text, cap + 1))
    if plain and excerpt:
        excerpt = truncate(excerpt, grapheme_length(excerpt) // 2, grapheme_length)
    names = tuple(name for name in (nfc(clean_inline(tag.name)) for tag in post.tags) if name)
    return Content(
        title=title,
        excerpt=excerpt,
        link=post.url or "",
        hashtags=(tuple(hashtags_for(names, max_hashtags, present=hashtags_in(f"{title} {excerpt}")))
                  if hashtags else ()),
        tags=names,
        date=post.published.date().isoformat() if post.published else "",
        source=nfc(clean_inline(post.source)),
        author=nfc(clean_inline(post.author or "")),
    )


Compose = Callable[[str, str, Sequence[str]], str]
"""(title, excerpt, hashtags) → the full message text."""


def fit(content: Content, compose: Compose, measure: Measure, limit: int, *,
        link_only: str) -> tuple[str, int]:
    """The best message within ``limit`` and its measured length (see the module docstring)."""

    def measured(text: str) -> int | None:
        length = measure(text)
        return length if length <= limit else None

    def done(text: str) -> tuple[str, int]:
        if not text.strip():
            raise RenderError("nothing to publish: the post has no title, excerpt or link")
        return text, measure(text)

    title, excerpt, tags = content.title, content.excerpt, tuple(content.hashtags)
    points = break_points(excerpt) if excerpt else []
    for count in range(len(tags), -1, -1):
        kept = tags[:count]
        full = compose(title, excerpt, kept)
        if measured(full) is not None:
            return done(full)
        bare = compose(title, "", kept) if excerpt else full
        if measured(bare) is None:
            continue
        if excerpt:
            def excerpt_fits(candidate: str, kept: tuple[str, ...] = kept) -> bool:
                return measured(compose(title, candidate, kept)) is not None

            cut = longest_fitting(excerpt, excerpt_fits, points=points)
            if cut and grapheme_length(cut) - 1 >= MIN_EXCERPT_CHARS:
                return done(compose(title, cut, kept))
        return done(bare)

    if title:
        def title_fits(candidate: str) -> bool:
            return measured(compose(candidate, "", ())) is not None

        cut = longest_fitting(title, title_fits) or longest_fitting(title, title_fits, words=False)
        text = compose(cut, "", ())
        if measured(text) is not None:
            return done(text)
    if content.link and measured(link_only) is not None:
        return done(link_only)
    raise RenderError(f"the post does not fit in {limit} characters, not even its link alone")


def template_composer(content: Content, template_text: str | None, *, html_mode: bool,
                      key: str) -> Compose:
    """A ``Compose`` that renders the channel template (or the default) and guards the link.

    If the rendered text somehow lacks the link (a template that hides it
    behind a condition, or cuts it with a filter), the link is appended.
    """
    default = DEFAULT_TEMPLATE_HTML if html_mode else DEFAULT_TEMPLATE_PLAIN
    template = compile_template(template_text or default, html=html_mode, key=key)
    link = content.link
    needle = html.escape(link, quote=True) if html_mode else link

    def compose(title: str, excerpt: str, hashtags: Sequence[str]) -> str:
        variables = TemplateVars(title=title, excerpt=excerpt, link=link, tags=content.tags,
                                 hashtags=" ".join(hashtags), date=content.date,
                                 source=content.source, author=content.author)
        text = render_template(template, variables, key=key)
        if needle and needle not in text:
            text = f"{text}\n\n{needle}" if text else needle
        return text

    return compose


def link_text(link: str, *, html_mode: bool) -> str:
    """The bare link as message text (escaped for HTML)."""
    return html.escape(link, quote=True) if html_mode else link
