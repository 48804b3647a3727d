"""The Threads (Meta) platform: entry point ``threads = "bot.publishers.threads:plugin"``.

A package (publisher, API client, token file, options): about 1,000 lines in all, split by concern. Plain HTTP over the
shared httpx client, not an SDK: the publisher needs six Graph API calls with form parameters and a
documented error body, and the Python SDKs on PyPI (``pythreads``, ``threads-py``…) are young,
thinly maintained and built on their own HTTP stacks (docs/architecture.md, "Why these libraries").

* ``options``: the channel table (``ThreadsOptions``);
* ``client``: requests and the classification of every Graph API error into the ``PublishError`` tree;
* ``token``: the refreshed token's 0600 file, when to refresh, what ``status`` says;
* ``publisher``: container → staged → published, resumed after a lost answer or a crash.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from bot.domain.models import Post
from bot.errors import CredentialsError
from bot.publishers.api import (
    API_VERSION,
    ChannelNote,
    ChannelOptions,
    PublisherContext,
    RenderedMessage,
    RenderEnv,
)
from bot.publishers.http import require_secret
from bot.publishers.threads.options import ThreadsOptions
from bot.publishers.threads.publisher import ThreadsPublisher, token_path
from bot.publishers.threads.token import TokenFile, TokenFileError, token_notes
from bot.render.threads import render_threads


class ThreadsPlugin:
    """Entry point ``threads = "bot.publishers.threads:plugin"``."""

    name = "threads"
    api_version = API_VERSION
    options_model: type[ChannelOptions] = ThreadsOptions

    def render(self, post: Post, options: Any, env: RenderEnv, *, plain: bool = False) -> RenderedMessage:
        assert isinstance(options, ThreadsOptions)
        return render_threads(post, options, env, plain=plain)

    def create(self, options: Any, ctx: PublisherContext) -> ThreadsPublisher:
        """No I/O: the token file is read by ``initialize``. A channel without a place for its refreshed
        token (PostgreSQL and no ``token_file``) is a configuration error (``CredentialsError`` → exit 2)."""
        assert isinstance(options, ThreadsOptions)
        token = require_secret(ctx, options.name, options.token_env)
        path = token_path(options, ctx.state_dir)
        if path is None:
            raise CredentialsError(options.name, "set token_file: the refreshed access token is kept in a file "
                                                 "(never in the database), and without a SQLite database there "
                                                 "is no data directory to put it in")
        return ThreadsPublisher(options, ctx, token, TokenFile(path))

    def channel_notes(self, options: Any, *, state_dir: Path | None, now: datetime) -> list[ChannelNote]:
        """How long the channel's token has left, from its token file (no secret, no network)."""
        assert isinstance(options, ThreadsOptions)
        path = token_path(options, state_dir)
        if path is None:
            return [ChannelNote("no token_file configured (required without a SQLite database)", problem=True)]
        try:
            state, _ = TokenFile(path).load()
        except TokenFileError as exc:
            return [ChannelNote(f"token file unusable ({exc}); the token in {options.token_env} is used")]
        return token_notes(state, now, env_name=options.token_env, channel=options.name)


plugin = ThreadsPlugin()

__all__ = ["ThreadsOptions", "ThreadsPlugin", "ThreadsPublisher", "plugin"]
