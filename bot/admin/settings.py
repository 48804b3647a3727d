"""The ``[admin]`` table of the config file, and ``TAGRELAY_ADMIN_IDS`` (docs/admin-bot.md).

One small module on purpose: ``bot.settings.Config.admin`` is an ``AdminSettings`` (pydantic, through
``bot.validation``), so loading a configuration imports this module and never python-telegram-bot:
``config check`` validates the table without loading the bot (``bot.admin.bot``), which is built
only when ``[admin]`` is enabled.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Annotated, Literal
from urllib.parse import urlsplit

from bot import config_bounds as bounds
from bot.config_bounds import between, within
from bot.errors import ConfigError
from bot.publishers.http import ENV_NAME_PATTERN, HTTP_URL_PATTERN
from bot.validation import Field, Model, ValidationError, field_validator

ADMIN_IDS_ENV = "TAGRELAY_ADMIN_IDS"
_SECRET_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


class AdminSettings(Model):
    """The validated ``[admin]`` table (docs/admin-bot.md). ``admin_ids`` includes ``TAGRELAY_ADMIN_IDS``."""

    enabled: bool = False
    """Run the admin bot beside the service (needs the token in ``token_env``)."""
    token_env: str = Field(default="TG_BOT_TOKEN", pattern=ENV_NAME_PATTERN)
    """Environment variable holding the bot token; may be the same bot as a Telegram channel's."""
    api_base: str = Field(default="https://api.telegram.org", pattern=HTTP_URL_PATTERN)
    """Bot API server (a self-hosted telegram-bot-api server, or a test fake)."""
    admin_ids: tuple[Annotated[int, between(bounds.TELEGRAM_USER_ID)], ...] = ()
    """Telegram user ids allowed to use the bot."""
    admin_chat_id: int | None = within(bounds.TELEGRAM_CHAT_ID, None)
    """One group (negative id) where admins may also give commands; announcements go there too."""
    mode: Literal["polling", "webhook"] = "polling"
    webhook_url: str | None = None
    """Public HTTPS URL Telegram posts updates to (webhook mode); its path is the path served."""
    webhook_listen: str = "127.0.0.1"
    """Address the webhook listener binds (behind a TLS-terminating reverse proxy)."""
    webhook_port: int = within(bounds.PORT, 8443)
    """Port the webhook listener binds; 0 picks a free one."""
    secret_token_env: str = Field(default="TAGRELAY_ADMIN_WEBHOOK_SECRET", pattern=ENV_NAME_PATTERN)
    """Environment variable holding the webhook secret token (required in webhook mode)."""
    page_size: int = within(bounds.ADMIN_PAGE_SIZE, 10)
    """Tags per page in /tags and in the tag keyboards."""

    @field_validator("api_base")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("admin_chat_id")
    @classmethod
    def _a_group(cls, value: int | None) -> int | None:
        if value is not None and value >= 0:
            raise ValueError("must be a group's chat id, which is negative (e.g. -1001234567890)")
        return value

    @field_validator("webhook_url")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not re.match(r"^https://[^\s/?#]+(/[^\s?#]*)?$", value):
            raise ValueError("must be an https:// URL without query or fragment (Telegram only calls HTTPS)")
        return value

    @property
    def webhook_path(self) -> str:
        return (urlsplit(self.webhook_url).path if self.webhook_url else "") or "/"


_KEYS = ", ".join(AdminSettings.model_fields)


def parse_admin_ids(text: str) -> tuple[int, ...]:
    """``"123, 456"`` → ``(123, 456)``; raises ``ConfigError`` naming ``TAGRELAY_ADMIN_IDS``."""
    ids: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if not (part.isascii() and part.isdigit()) or len(part) > 19 or not (  # "²".isdigit() is True too
                bounds.TELEGRAM_USER_ID.lo <= int(part) <= bounds.TELEGRAM_USER_ID.hi):
            raise ConfigError(ADMIN_IDS_ENV,
                              f"{part[:24]!r} is not a Telegram user id (comma-separated positive numbers)")
        ids.append(int(part))
    return tuple(ids)


def admin_table(raw: object) -> AdminSettings:
    """The ``[admin]`` table (None: absent) as ``AdminSettings``, or ``ConfigError`` naming ``admin.<key>``."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError("admin", "must be a table ([admin])")
    try:
        return AdminSettings.model_validate(dict(raw))
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"][:1])
        reason = f"unknown key (known: {_KEYS})" if err["type"] == "extra_forbidden" else err["msg"]
        raise ConfigError(f"admin.{key}" if key else "admin", reason) from None


def load_admin_settings(raw: object, env: Callable[[str], str | None] = lambda _name: None) -> AdminSettings:
    """Validate the raw ``[admin]`` table (or take ``Config.admin``, validated) and merge ``TAGRELAY_ADMIN_IDS``.

    When ``enabled``, also checks what starting needs: the token variable is
    set, there is at least one admin, and webhook mode has its URL and secret.
    Raises ``ConfigError`` naming ``admin.<key>`` (or the variable).
    """
    settings = raw if isinstance(raw, AdminSettings) else admin_table(raw)
    extra_ids = parse_admin_ids(env(ADMIN_IDS_ENV) or "")
    if extra_ids:
        merged = tuple(dict.fromkeys((*settings.admin_ids, *extra_ids)))
        settings = settings.model_copy(update={"admin_ids": merged})
    if not settings.enabled:
        return settings
    if not env(settings.token_env):
        raise ConfigError("admin.token_env", f"environment variable {settings.token_env} is not set "
                                             "(put the bot token from @BotFather in the environment or .env)")
    if not settings.admin_ids:
        raise ConfigError("admin.admin_ids", f"no administrators: list Telegram user ids here or in {ADMIN_IDS_ENV}")
    if settings.mode == "webhook":
        if settings.webhook_url is None:
            raise ConfigError("admin.webhook_url", 'required when mode = "webhook"')
        secret = env(settings.secret_token_env)
        if not secret:
            raise ConfigError("admin.secret_token_env", f"webhook mode needs a secret token: set "
                                                        f"{settings.secret_token_env} in the environment or .env")
        if not _SECRET_TOKEN.match(secret):
            raise ConfigError("admin.secret_token_env", f"the value of {settings.secret_token_env} must be 1-256 "
                                                        "characters of A-Z, a-z, 0-9, _ and -")
    return settings
