"""Console rendering: the post as a readable plain-text block."""

from __future__ import annotations

from bot.domain.models import Post
from bot.render.text import excerpt_of, truncate

DEFAULT_EXCERPT = 280


def render_console(post: Post, *, excerpt_length: int | None = None, hashtags: bool = False) -> str:
    """Title, excerpt, link and tags, one per paragraph."""
    excerpt = truncate(excerpt_of(post.summary_html, post.content_html),
                       excerpt_length if excerpt_length is not None else DEFAULT_EXCERPT)
    parts = [post.title or "(untitled)"]
    if excerpt:
        parts.append(excerpt)
    if post.url:
        parts.append(post.url)
    if post.tags:
        parts.append("Tags: " + ", ".join(t.name for t in post.tags))
    return "\n".join(parts)
