"""Console rendering: the post as a readable plain-text block (no limit, no markup)."""

from __future__ import annotations

from bot.domain.models import Post
from bot.render.fit import prepare

DEFAULT_EXCERPT = 280
"""Excerpt characters when none are given."""


def render_console(post: Post, *, excerpt_length: int | None = None, hashtags: bool = False,
                   max_hashtags: int = 5) -> str:
    """Title, excerpt, link, tags and (optionally) hashtags, one per line."""
    content = prepare(post, excerpt_length=excerpt_length if excerpt_length is not None else DEFAULT_EXCERPT,
                      hashtags=hashtags, max_hashtags=max_hashtags)
    parts = [content.title or "(untitled)"]
    if content.excerpt:
        parts.append(content.excerpt)
    if content.link:
        parts.append(content.link)
    if content.tags:
        parts.append("Tags: " + ", ".join(content.tags))
    if content.hashtags:
        parts.append(" ".join(content.hashtags))
    return "\n".join(parts)
