"""What rendering produces and the platform limits it reads: ``RenderedMessage`` and ``RenderEnv``.

They sit below both ``bot.render`` (which builds them) and ``bot.publishers``
(which sends them), so render/ never imports publishers/. Plugins keep
importing them from ``bot.publishers.api``, which re-exports them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class RenderEnv:
    """Limits learnt from the platform at runtime (e.g. a Mastodon instance's)."""

    max_chars: int | None = None
    url_length: int | None = None


@dataclass(frozen=True, slots=True)
class RenderedMessage:
    """A message ready to send. ``length`` is measured by the platform's own rules."""

    text: str
    link: str | None
    format: str = "plain"  # "plain" or "html"
    length: int = 0
    limit: int | None = None
    image_url: str | None = None
    image_alt: str | None = None
    """The image's text alternative, for platforms that take one (Telegram has none)."""
    extra: Mapping[str, Any] = field(default_factory=dict)


def message_hash(message: RenderedMessage) -> str:
    """The hash of what a message shows on its channel: its text, format, image, image text and link.
    Two renderings that hash the same look the same, so an edit between them is not sent."""
    parts = (message.format, message.text, message.image_url or "", message.image_alt or "", message.link or "")
    return hashlib.sha256("\x1f".join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:40]
