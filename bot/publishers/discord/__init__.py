"""The Discord platform (``platform = "discord"``): posts through a channel's webhook.

Entry point ``discord = "bot.publishers.discord:plugin"``. A package, not one module, because
the adapter is four concerns of ~100-250 lines each: ``options`` (the channel table and the
webhook URL, a secret), ``limits`` (Discord's rate-limit buckets and the invalid-request cap),
``answers`` (every error answer → ``PublishError``) and ``publisher`` (the calls). Rendering is
``bot.render.discord`` (pure). Plain httpx over the shared client rather than an SDK: see
docs/architecture.md, "Why these libraries".
"""

from __future__ import annotations

import weakref
from typing import Any

from bot.domain.models import Post
from bot.errors import CredentialsError
from bot.publishers.api import API_VERSION, ChannelOptions, Clock, PublisherContext, RenderedMessage, RenderEnv
from bot.publishers.discord.limits import DiscordLimits
from bot.publishers.discord.options import DiscordOptions, WebhookURLError, parse_webhook_url
from bot.publishers.discord.publisher import DiscordPublisher
from bot.publishers.http import require_secret
from bot.render.discord import render_discord

__all__ = ["DiscordOptions", "DiscordPlugin", "DiscordPublisher", "plugin"]


class DiscordPlugin:
    """Validates Discord channel tables, renders (pure), creates one publisher per channel.

    The publishers of one process that talk to one API host share one ``DiscordLimits`` (a global
    rate limit and Cloudflare's invalid-request ban are per address, not per webhook); the
    registry is kept per clock, so the state of one test's fake clock never leaks into another's.
    """

    name = "discord"
    api_version = API_VERSION
    options_model: type[ChannelOptions] = DiscordOptions

    def __init__(self) -> None:
        self._limits: weakref.WeakKeyDictionary[Clock, dict[str, DiscordLimits]] = weakref.WeakKeyDictionary()
        self._pinned: dict[int, tuple[dict[str, DiscordLimits], Clock]] = {}

    def render(self, post: Post, options: Any, env: RenderEnv, *, plain: bool = False) -> RenderedMessage:
        assert isinstance(options, DiscordOptions)
        return render_discord(post, options, env, plain=plain)

    def limits_for(self, clock: Clock, api_base: str) -> DiscordLimits:
        """The rate-limit state shared by every channel on ``api_base`` under ``clock``."""
        try:
            hosts = self._limits.setdefault(clock, {})
        except TypeError:  # a clock that cannot be weakly referenced: kept for the process's life
            hosts = self._pinned.setdefault(id(clock), ({}, clock))[0]
        return hosts.setdefault(api_base.lower(), DiscordLimits())

    def create(self, options: Any, ctx: PublisherContext) -> DiscordPublisher:
        assert isinstance(options, DiscordOptions)
        url = require_secret(ctx, options.name, options.webhook_url_env)
        try:
            address = parse_webhook_url(url, api_base=options.api_base, env_name=options.webhook_url_env)
        except WebhookURLError as exc:
            raise CredentialsError(options.name, str(exc)) from None
        return DiscordPublisher(options, ctx, address, self.limits_for(ctx.clock, options.api_base),
                                secrets=[url, address.token])


plugin = DiscordPlugin()
