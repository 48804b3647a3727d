"""Rendering options per platform: the keys of a channel that shape its messages.

Publisher plugins subclass these with their connection keys (chat_id, token_env,
instance, ...), so one channel table validates against one model.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from bot.publishers.api import ChannelOptions


class TelegramRenderOptions(ChannelOptions):
    link_preview: bool = True
    """Show Telegram's link preview card for the post link."""
    send_image: bool = False
    """Send the post's featured image as a photo with the message as caption (≤ 1024 chars)."""
    disable_notification: bool = False


class XRenderOptions(ChannelOptions):
    pass


class MastodonRenderOptions(ChannelOptions):
    visibility: Literal["public", "unlisted", "private", "direct"] = "public"
    language: str | None = Field(default=None, pattern=r"^[a-z]{2,3}$")
    """ISO 639 language code of the statuses."""
    spoiler_text: str | None = None
    """Content warning shown before the status; counts toward the limit."""
    max_characters: int | None = Field(default=None, ge=50)
    """Override the instance's advertised limit (read from /api/v2/instance otherwise)."""
