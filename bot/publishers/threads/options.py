"""A Threads channel's table: the render keys (``ThreadsRenderOptions``) plus where and as whom it posts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BeforeValidator

from bot import config_bounds as bounds
from bot.publishers.http import ENV_NAME_PATTERN, HTTP_URL_PATTERN
from bot.render.options import ThreadsRenderOptions
from bot.validation import Field, field_validator

DEFAULT_API_BASE = "https://graph.threads.net"
DEFAULT_API_VERSION = "v1.0"


class ThreadsOptions(ThreadsRenderOptions):
    """``platform = "threads"``::

        [[channels]]
        name = "threads-main"
        platform = "threads"
        token_env = "THREADS_ACCESS_TOKEN"   # a long-lived user token (60 days; refreshed by tagrelay)
    """

    token_env: str = Field(default="THREADS_ACCESS_TOKEN", pattern=ENV_NAME_PATTERN)
    """Environment variable holding the long-lived Threads user access token (permissions
    ``threads_basic`` and ``threads_content_publish``)."""
    api_base: str = Field(default=DEFAULT_API_BASE, pattern=HTTP_URL_PATTERN)
    """The Threads API host (``graph.threads.net``); a test server in the tests."""
    api_version: str = Field(default=DEFAULT_API_VERSION, pattern=r"^v[0-9]{1,3}\.[0-9]{1,3}$")
    """The version path of the Graph API calls (``/v1.0/...``); ``refresh_access_token`` has none."""
    user_id: str = Field(default="me", pattern=r"^(me|[0-9]{1,32})$")
    """The Threads user id to post as; ``me`` is the token's own profile."""
    token_file: Path | None = None
    """Where the refreshed token is kept (a 0600 file; never the database). Default: ``threads-<name>.token``
    next to the SQLite database; required on PostgreSQL."""
    image_wait: Annotated[float, BeforeValidator(bounds.THREADS_IMAGE_WAIT)] = 60.0
    """How long a publish waits for Meta to finish an IMAGE container before trying again later."""

    @field_validator("api_base")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")
