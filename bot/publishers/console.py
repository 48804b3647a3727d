"""The console publisher: prints rendered messages; optionally appends JSON lines to a file.

A post's text is someone else's: control and bidi characters are printed as visible escapes
(``\\x1b``, ``\\u202e``; newlines and tabs kept), never raw, so a feed cannot drive the terminal.
The JSON lines keep the exact text (those characters as ``\\uXXXX`` escapes).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Literal, TextIO

from bot.domain.models import Post
from bot.errors import RetryablePublishError
from bot.humanize import json_visible_controls, visible_controls
from bot.publishers.api import (
    API_VERSION,
    AccountInfo,
    ChannelOptions,
    PublisherContext,
    PublishResult,
    RenderedMessage,
    RenderEnv,
)
from bot.render.console import render_console


class ConsoleOptions(ChannelOptions):
    stream: Literal["stdout", "stderr"] = "stdout"
    jsonl: Path | None = None
    """Also append one JSON object per message to this file."""


class ConsolePublisher:
    """Writes to a terminal stream. Idempotent in the sense that matters: no remote side."""

    idempotent = True

    def __init__(self, options: ConsoleOptions, *, stream: TextIO | None = None) -> None:
        self._options = options
        self._stream = stream
        self._count = 0

    @property
    def render_env(self) -> RenderEnv:
        return RenderEnv()

    async def initialize(self) -> None:
        return None

    async def publish(self, message: RenderedMessage, *, idempotency_key: str) -> PublishResult:
        stream = self._stream or (sys.stdout if self._options.stream == "stdout" else sys.stderr)
        self._count += 1
        bar = f"── {self._options.name} ─ delivery {idempotency_key} "
        stream.write(visible_controls(f"{bar}{'─' * max(3, 72 - len(bar))}\n{message.text}\n\n", multiline=True))
        stream.flush()
        if self._options.jsonl is not None:
            record = {"channel": self._options.name, "delivery": idempotency_key,
                      "text": message.text, "link": message.link}
            try:
                with self._options.jsonl.open("a", encoding="utf-8") as fh:
                    fh.write(json_visible_controls(json.dumps(record, ensure_ascii=False)) + "\n")
            except OSError as exc:
                raise RetryablePublishError(self._options.name,
                                            f"cannot append to {self._options.jsonl}: {exc.strerror}") from exc
        return PublishResult(remote_id=idempotency_key, url=None)

    async def check(self) -> AccountInfo:
        return AccountInfo(display=f"console ({self._options.stream})")

    async def aclose(self) -> None:
        return None


class ConsolePlugin:
    name = "console"
    api_version = API_VERSION
    options_model = ConsoleOptions

    def render(self, post: Post, options: Any, env: RenderEnv, *, plain: bool = False) -> RenderedMessage:
        assert isinstance(options, ConsoleOptions)
        text = render_console(post, excerpt_length=options.excerpt_length, hashtags=options.hashtags)
        return RenderedMessage(text=text, link=post.url, format="plain", length=len(text))

    def create(self, options: Any, ctx: PublisherContext) -> ConsolePublisher:
        assert isinstance(options, ConsoleOptions)
        return ConsolePublisher(options)


plugin = ConsolePlugin()
