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
from bot.validation import Field, field_validator, model_validator


def _checked_template(value: str | None, platform: str) -> str | None:
    if value is None:
        return None
    try:
        validate_template(value, platform=platform)
    except TemplateError as exc:
        raise ValueError(exc.reason) from None
    return value


_PREVIEW_DETAILS = ("link_preview_url", "link_preview_media", "link_preview_above_text")


class TelegramRenderOptions(ChannelOptions):
    link_preview: bool = True
    """Show a link preview under (or above) the message; false turns it off."""
    link_preview_url: Literal["post", "image", "first"] = "post"
    """Which URL the preview shows: the post link, the post's featured image (the post link when it has none),
    or ``first``: Telegram's own choice, the first URL in the text."""
    link_preview_media: Literal["auto", "small", "large"] = "auto"
    """The size of the preview's picture (``small``/``large`` need ``link_preview_url`` post or image)."""
    link_preview_above_text: bool = False
    """Show the preview above the text instead of below it."""
    send_image: bool = False
    """Send the post's featured image as a photo with the message as caption (≤ 1024 chars). Telegram has no
    alt text: the image's alt text is not sent."""
    disable_notification: bool = False

    @model_validator(mode="after")
    def _preview_details_need_a_preview(self) -> TelegramRenderOptions:
        if not self.link_preview:
            set_details = [k for k in _PREVIEW_DETAILS if k in self.model_fields_set]
            if set_details:
                raise ValueError(f"{set_details[0]} has no effect with link_preview = false (no preview is shown); "
                                 "remove it or turn the preview on")
        if self.link_preview_media != "auto" and self.link_preview_url == "first":
            raise ValueError("link_preview_media needs link_preview_url = 'post' or 'image': Telegram ignores the "
                             "size of a preview it chose itself")
        return self

    @field_validator("template")
    @classmethod
    def _valid_template(cls, value: str | None) -> str | None:
        return _checked_template(value, "telegram")


class XRenderOptions(ChannelOptions):
    send_image: bool = False
    """Upload the post's featured image with its alt text. Off by default: on pay-per-use X every upload
    and its alt text are requests of their own (docs/configuration.md)."""

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
    send_image: bool = True
    """Attach the post's featured image, its alt text as the media description."""

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
