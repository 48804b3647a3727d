"""Test helpers shipped with tagrelay, for our own tests and for plugin authors.

``RecordingPlugin`` is a complete in-memory publisher plugin whose publishers
record what they are given and can be scripted to fail; ``check_plugin`` runs
the contract checks every publisher plugin must pass.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bot.domain.models import Post, Tag
from bot.domain.tags import make_tags
from bot.errors import MessageGoneError, PublishError
from bot.publishers.api import (
    API_VERSION,
    AccountInfo,
    ChangeResult,
    ChannelOptions,
    PublisherContext,
    PublisherPlugin,
    PublishResult,
    RenderedMessage,
    RenderEnv,
)


class RecordingOptions(ChannelOptions):
    idempotent: bool = True
    deduplicates: bool = False
    """Its publisher declares ``Deduplicates`` (the delivery service may send in claimed groups)."""
    at_least_once: bool = False
    chat_id: str | None = None
    """Where it "sends" (set when a scripted ``ChatMigratedError`` moves the channel)."""
    changes: bool = True
    """Its publisher can edit and delete (``ChangingRecordingPublisher``); false: it can only post."""


@dataclass
class Sent:
    channel: str
    text: str
    key: str
    plain: bool


@dataclass
class RecordingPublisher:
    """Records every message; ``script`` queues errors (or None for success) for the next calls."""

    options: RecordingOptions
    sent: list[Sent] = field(default_factory=list)
    attempts: int = 0
    closed: bool = False
    _script: deque[PublishError | None] = field(default_factory=deque)

    @property
    def idempotent(self) -> bool:
        return self.options.idempotent

    @property
    def deduplicates(self) -> bool:
        return self.options.deduplicates

    @property
    def render_env(self) -> RenderEnv:
        return RenderEnv(max_chars=500)

    def script(self, *outcomes: PublishError | None) -> None:
        self._script.extend(outcomes)

    async def initialize(self) -> None:
        return None

    async def publish(self, message: RenderedMessage, *, idempotency_key: str) -> PublishResult:
        self.attempts += 1
        if self._script:
            outcome = self._script.popleft()
            if outcome is not None:
                raise outcome
        self.sent.append(Sent(self.options.name, message.text, idempotency_key, message.format == "plain-fallback"))
        return PublishResult(remote_id=f"r{len(self.sent)}", url=f"https://example.invalid/{len(self.sent)}")

    async def check(self) -> AccountInfo:
        return AccountInfo(display=f"recorder {self.options.name}")

    async def aclose(self) -> None:
        self.closed = True


@dataclass
class Edit:
    remote_id: str
    text: str


@dataclass
class ChangingRecordingPublisher(RecordingPublisher):
    """A ``RecordingPublisher`` that also edits (``Edits``) and deletes (``Deletes``) what it "sent":
    ``edits`` and ``deleted`` record them; ``script`` queues errors for these calls too. An edit to the
    text a message shows already answers ``already``; a deletion of a deleted one ``MessageGoneError``."""

    edits: list[Edit] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    shown: dict[str, str] = field(default_factory=dict)

    async def publish(self, message: RenderedMessage, *, idempotency_key: str) -> PublishResult:
        result = await super().publish(message, idempotency_key=idempotency_key)
        assert result.remote_id is not None
        self.shown[result.remote_id] = message.text
        return result

    async def edit(self, remote_id: str, message: RenderedMessage) -> ChangeResult:
        self._next_scripted()
        if remote_id not in self.shown:
            raise MessageGoneError(self.options.name, f"message {remote_id} is not there")
        if self.shown[remote_id] == message.text:
            return ChangeResult(already="the message already shows this text")
        self.shown[remote_id] = message.text
        self.edits.append(Edit(remote_id, message.text))
        return ChangeResult()

    async def delete(self, remote_id: str) -> ChangeResult:
        self._next_scripted()
        if self.shown.pop(remote_id, None) is None:
            raise MessageGoneError(self.options.name, f"message {remote_id} is not there")
        self.deleted.append(remote_id)
        return ChangeResult()

    def _next_scripted(self) -> None:
        self.attempts += 1
        if self._script:
            outcome = self._script.popleft()
            if outcome is not None:
                raise outcome


class RecordingPlugin:
    """A plugin whose publishers are kept in ``publishers`` by channel name."""

    name = "recording"
    api_version = API_VERSION
    options_model = RecordingOptions

    def __init__(self) -> None:
        self.publishers: dict[str, RecordingPublisher] = {}

    def render(self, post: Post, options: Any, env: RenderEnv, *, plain: bool = False) -> RenderedMessage:
        text = f"{post.title}\n{post.url or ''}"
        return RenderedMessage(text=text, link=post.url, format="plain-fallback" if plain else "plain",
                               length=len(text), limit=env.max_chars)

    def create(self, options: Any, ctx: PublisherContext) -> RecordingPublisher:
        pub = self.publishers.get(options.name)
        if pub is None:
            pub = ChangingRecordingPublisher(options) if options.changes else RecordingPublisher(options)
            self.publishers[options.name] = pub
        else:
            pub.options = options
        return pub


def sample_post(title: str = "A post", *, url: str = "https://archive.example.org/a-post/",
                tags: Iterable[str] = ("MEK",), source: str = "archive") -> Post:
    return Post(key=url, source=source, title=title, url=url, summary_html="<p>An excerpt.</p>",
                content_html="", tags=make_tags(list(tags)), published=datetime(2026, 1, 1, tzinfo=UTC))


def check_plugin(plugin: PublisherPlugin, options: dict[str, Any]) -> list[str]:
    """Contract checks for a publisher plugin. Returns the problems (empty: the plugin passes)."""
    problems: list[str] = []
    if plugin.api_version != API_VERSION:
        problems.append(f"api_version is {plugin.api_version}, expected {API_VERSION}")
    if not (isinstance(plugin.options_model, type) and issubclass(plugin.options_model, ChannelOptions)):
        problems.append("options_model must subclass bot.publishers.api.ChannelOptions")
        return problems
    opts = plugin.options_model.model_validate({"name": "contract", "platform": plugin.name, **options})
    post = sample_post(tags=("Editor’s picks", "MEK"))
    first = plugin.render(post, opts, RenderEnv())
    again = plugin.render(post, opts, RenderEnv())
    if first != again:
        problems.append("render is not pure: two calls with the same input differ")
    if not isinstance(first, RenderedMessage):
        problems.append("render must return a RenderedMessage")
    elif post.url and post.url not in first.text:
        problems.append("the rendered message lost the post link")
    plain = plugin.render(post, opts, RenderEnv(), plain=True)
    if post.url and post.url not in plain.text:
        problems.append("the plain fallback lost the post link")
    _ = Tag  # re-exported for plugin tests
    return problems
