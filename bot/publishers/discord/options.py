"""A Discord channel's table, and the webhook URL (a secret) taken apart.

Channel keys (on top of ``DiscordRenderOptions``: ``mode``, ``forum``, the common keys)::

    [[channels]]
    name = "news-discord"
    platform = "discord"
    webhook_url_env = "DISCORD_WEBHOOK_URL"   # the variable holding the webhook URL (a secret)
    api_base = "https://discord.com/api"      # where the webhook URL must point (a test fake, a proxy)
    thread_id = "1234567890123456789"         # post into this thread of the webhook's channel
    at_least_once = false                     # resend when unsure whether a post went out

The webhook URL is what Discord's "Copy Webhook URL" gives,
``https://discord.com/api/webhooks/<id>/<token>``: whoever has it can post, so it
lives in the environment, never in the TOML file, and no error, log line or
status ever quotes it (``parse_webhook_url`` names the variable, not the value).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from bot.publishers.http import ENV_NAME_PATTERN, HTTP_URL_PATTERN
from bot.render.discord import DiscordRenderOptions
from bot.validation import Field, field_validator, model_validator

DEFAULT_API_BASE = "https://discord.com/api"
DISCORD_API_BASES = frozenset({DEFAULT_API_BASE, "https://discordapp.com/api", "https://canary.discord.com/api",
                               "https://ptb.discord.com/api"})
"""Where Discord's own webhook URLs point (the app copies them with any of these hosts)."""
SNOWFLAKE_PATTERN = r"^[0-9]{17,20}$"
"""A Discord id: a 64-bit snowflake, 17 to 20 decimal digits."""

_WEBHOOK_URL = re.compile(r"^(?P<base>https?://[^\s/?#]+(?:/[^\s?#]*)?)/webhooks/(?P<id>[0-9]{17,20})/"
                          r"(?P<token>[A-Za-z0-9_\-]{16,128})/?$")
_VERSION_SUFFIX = re.compile(r"/v[0-9]{1,2}$")


class WebhookURLError(ValueError):
    """The webhook variable does not hold a usable webhook URL. The message never quotes the value."""


@dataclass(frozen=True, slots=True)
class WebhookAddress:
    """A webhook URL taken apart. ``token`` is the secret part; ``__repr__`` never shows it."""

    api_base: str
    webhook_id: str
    token: str

    @property
    def url(self) -> str:
        """``{api_base}/v10/webhooks/{id}/{token}``: the versioned endpoint every call goes to (a secret)."""
        return f"{self.api_base}/v10/webhooks/{self.webhook_id}/{self.token}"

    def __repr__(self) -> str:
        return f"WebhookAddress(api_base={self.api_base!r}, webhook_id={self.webhook_id!r}, token=***)"


def parse_webhook_url(value: str, *, api_base: str, env_name: str) -> WebhookAddress:
    """The webhook URL in ``env_name`` taken apart; ``WebhookURLError`` naming the variable, never the value.

    It must be ``<base>/webhooks/<id>/<token>`` (``<base>`` may end in an API version such as
    ``/v10``), and ``<base>`` must be the channel's ``api_base`` or, with the default ``api_base``,
    one of Discord's own hosts: a URL pointing anywhere else is refused, so that a mistyped
    variable cannot send the token to a stranger.
    """
    match = _WEBHOOK_URL.match(value.strip())
    if match is None:
        raise WebhookURLError(f"environment variable {env_name} does not hold a Discord webhook URL "
                              f"(https://discord.com/api/webhooks/<id>/<token>, as Discord's \"Copy Webhook URL\" "
                              "gives it; no query string: put a thread id in the channel's thread_id)")
    base = _VERSION_SUFFIX.sub("", match["base"]).rstrip("/")
    allowed = DISCORD_API_BASES if api_base == DEFAULT_API_BASE else {api_base}
    if base.lower() not in {a.lower() for a in allowed}:
        where = "one of Discord's hosts (discord.com/api)" if api_base == DEFAULT_API_BASE \
            else f"the channel's api_base ({api_base})"
        raise WebhookURLError(f"environment variable {env_name} holds a webhook URL that does not point at "
                              f"{where}; refusing to send its token elsewhere")
    return WebhookAddress(api_base=api_base, webhook_id=match["id"], token=match["token"])


class DiscordOptions(DiscordRenderOptions):
    """A Discord channel's table: render keys plus the webhook variable and where to post."""

    webhook_url_env: str = Field(default="DISCORD_WEBHOOK_URL", pattern=ENV_NAME_PATTERN)
    """Environment variable holding the webhook URL (https://discord.com/api/webhooks/<id>/<token>)."""
    api_base: str = Field(default=DEFAULT_API_BASE, pattern=HTTP_URL_PATTERN)
    """Discord's API root; the webhook URL must point under it (a test fake or a proxy)."""
    thread_id: str | None = Field(default=None, pattern=SNOWFLAKE_PATTERN)
    """Post into this thread of the webhook's channel (a thread or a forum post), by its id."""
    at_least_once: bool = False
    """On an ambiguous send (no answer after the request left): resend (may duplicate) instead of ``unknown``."""

    @field_validator("thread_id", mode="before")
    @classmethod
    def _thread_id_text(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return value.strip() if isinstance(value, str) else value

    @field_validator("api_base")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @model_validator(mode="after")
    def _one_thread_target(self) -> DiscordOptions:
        if self.forum and self.thread_id is not None:
            raise ValueError("set either forum = true (each post opens a thread) or thread_id (every post goes "
                             "into that thread), not both")
        return self
