"""Rendering options per platform: the keys of a channel that shape its messages.

Publisher plugins subclass these with their connection keys (chat_id, token_env,
instance, ...), so one channel table validates against one model.

The ``template`` key is checked here, at configuration load: a template that
does not compile, uses unknown variables, omits ``{{ link }}``, trips the
sandbox or (on Telegram) yields HTML Telegram would refuse makes the channel
table invalid (``ConfigError`` on ``channels[i].template``, exit code 2).
"""

from __future__ import annotations

from typing import Literal

from bot import config_bounds as bounds
from bot.channel_options import ChannelOptions
from bot.config_bounds import within
from bot.render.templates import TemplateError, validate_template
from bot.validation import Field, field_validator


def _checked_template(value: str | None, platform: str) -> str | None:
    if value is None:
        return None
    try:
        validate_template(value, platform=platform)
    except TemplateError as exc:
        raise ValueError(exc.reason) from None
    return value


class TelegramRenderOptions(ChannelOptions):
    link_preview: bool = True
    """Show Telegram's link preview card for the post link."""
    send_image: bool = False
    """Send the post's featured image as a photo with the message as caption (≤ 1024 chars)."""
    disable_notification: bool = False

    @field_validator("template")
    @classmethod
    def _valid_template(cls, value: str | None) -> str | None:
        return _checked_template(value, "telegram")


class XRenderOptions(ChannelOptions):
    @field_validator("template")
    @classmethod
    def _valid_template(cls, value: str | None) -> str | None:
        return _checked_template(value, "x")


class MastodonRenderOptions(ChannelOptions):
    visibility: Literal["public", "unlisted", "private", "direct"] = "public"
    language: str | None = Field(default=None, pattern=r"^[a-z]{2,3}$")
    """ISO 639 language code of the statuses."""
    spoiler_text: str | None = None
    """Content warning shown before the status; counts toward the limit."""
    max_characters: int | None = within(bounds.MASTODON_MAX_CHARACTERS, None)
    """Override the instance's advertised limit (read from /api/v2/instance otherwise)."""

    @field_validator("template")
    @classmethod
    def _valid_template(cls, value: str | None) -> str | None:
        return _checked_template(value, "mastodon")


class ThreadsRenderOptions(ChannelOptions):
    send_image: bool = False
    """Post the featured image (an IMAGE post, by its public URL, with its alt text) instead of a text post
    with the link's preview card."""

    @field_validator("template")
    @classmethod
    def _valid_template(cls, value: str | None) -> str | None:
        return _checked_template(value, "threads")
