"""The public plugin contract for publishers (entry point group ``tagrelay.publishers``).

A third-party package adds a platform by declaring, in its ``pyproject.toml``::

    [project.entry-points."tagrelay.publishers"]
    discord = "tagrelay_discord:plugin"

where ``plugin`` satisfies ``PublisherPlugin``. Its ``options_model`` validates
the channel's TOML table when the configuration is loaded (a bad key exits 2
before anything is written); ``render`` is pure; ``create`` builds one
``Publisher`` per channel. Publishers raise only ``bot.errors.PublishError``
subclasses and never put a secret into an error message.

``ChannelOptions`` (defined in ``bot.channel_options``), ``RenderedMessage`` and
``RenderEnv`` (``bot.render.message``) and ``Clock`` (``bot.clock``) live below
render/ and publishers/ so that render/ never imports publishers/; they are
re-exported here, and plugins keep importing them from this module.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from bot.channel_options import ChannelOptions as ChannelOptions  # re-exported: plugins subclass it from here
from bot.clock import Clock as Clock  # re-exported: part of the plugin API, defined below render/ and publishers/
from bot.domain.budget import ChannelSpending, SpendingPlan, merge_spending
from bot.domain.models import Post
from bot.domain.pipeline import deduplicating_window
from bot.render.message import RenderedMessage as RenderedMessage
from bot.render.message import RenderEnv as RenderEnv

if TYPE_CHECKING:  # only an annotation: render/ must not load httpx through this module
    import httpx

API_VERSION = 1
"""Bumped when this contract changes incompatibly; plugins declare the one they implement."""


@dataclass(frozen=True, slots=True)
class PublishResult:
    """What the platform answered: its id for the post and a public URL if known."""

    remote_id: str | None = None
    url: str | None = None


@dataclass(frozen=True, slots=True)
class AccountInfo:
    """Who a channel posts as, for ``tagrelay channels test``."""

    display: str
    detail: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class AttemptLimiter(Protocol):
    """A persisted limit on attempts (a platform login): ``take(key, count, per)`` records one attempt
    under ``key`` if fewer than ``count`` were made in any window of ``per`` seconds and returns 0, else
    returns the seconds until one may be made (recording nothing). It holds across restarts and across
    instances sharing the database (``Store.take_token``); only numbers and times are kept."""

    async def take(self, key: str, count: float, per: float) -> float: ...


@dataclass(frozen=True, slots=True)
class PublisherContext:
    """What the composition root hands a plugin's ``create``."""

    http: httpx.AsyncClient
    secret: Callable[[str], str]
    """Look up a secret by environment variable name; raises ``CredentialsError``."""
    logger: logging.Logger
    clock: Clock
    attempts: AttemptLimiter | None = None
    """The persisted attempt limiter (None where there is no database, e.g. checking a configuration:
    a plugin then limits within its process)."""
    state_dir: Path | None = None
    """A local directory where a plugin may keep a small private file (Threads: its refreshed token):
    the SQLite database's directory; None on PostgreSQL or an in-memory database, where a plugin that
    needs one must be told where by its own option."""


@runtime_checkable
class Publisher(Protocol):
    """Sends rendered messages to one channel.

    ``publish`` raises only ``PublishError`` subclasses. ``idempotent`` is True
    when a retry with the same ``idempotency_key`` cannot create a second
    post (Mastodon's Idempotency-Key); the delivery service uses it to decide
    what to do with a send whose outcome is unknown.

    Optional abilities, each declared by its own protocol below (a publisher
    has one when it has the member; one without them keeps working, with the
    default in brackets; ``abilities(publisher)`` reads them):

    * ``KeyWindow``: ``idempotency_window: float | None`` - seconds the
      platform honours a key (Mastodon: 3600) [None: for ever]. When a
      delivery's first unconfirmed attempt is older than that, a resend could
      post twice, so the delivery service asks first:
    * ``FindsPublished``: ``async find_published(message, *, since) ->
      PublishResult | None`` - the post if it is already on the account
      (created at or after ``since``), else None [none: such a delivery is
      held as ``unknown`` for an operator instead of being resent].
    * ``Edits``: ``async edit(remote_id, message) -> ChangeResult`` - make the
      message ``publish`` answered ``remote_id`` for show ``message`` [none:
      the post's edits are not sent to the channel; ``status`` says so].
    * ``Deletes``: ``async delete(remote_id) -> ChangeResult`` - remove that
      message [none: unpublishing and ``retract`` leave it].
    * ``DeleteLimit``: ``delete_max_age: float`` - seconds after sending
      within which the platform lets the message be deleted (Telegram: 48 h)
      [None: no limit]; an older one is not asked for (the admins are told).
    * ``PublishesStaged``: ``async publish_staged(message, *, idempotency_key,
      staged, stage)`` - a two-step post whose staged id the delivery service
      keeps across attempts and crashes [none: ``publish``].
    * ``Deduplicates``: ``deduplicates: bool`` - the platform itself makes a
      second send of the same delivery harmless (an idempotency key, a record
      key read back first, a duplicate refusal), so the delivery service may
      claim a channel's deliveries in groups and commit their outcomes a few
      at a time (``bot.domain.pipeline``) [False: each claim is committed
      before its request leaves]. Taken only with a key window of at least
      ``bot.domain.pipeline.MIN_KEY_WINDOW`` and without ``PublishesStaged``.

    ``edit`` and ``delete`` raise ``PublishError`` subclasses like ``publish``,
    plus ``MessageGoneError`` (the message is not there: deleted by hand, or
    by an earlier attempt) and ``ChangeRefusedError`` (the platform will not
    change it; the channel is fine). Both must be safe to repeat: a crash
    while one is under way sends it again, so an edit that is made already
    returns ``ChangeResult(already=...)`` (or is simply made again with the
    same content), and a deletion of a deleted message raises
    ``MessageGoneError``.
    """

    idempotent: bool

    @property
    def render_env(self) -> RenderEnv: ...

    async def initialize(self) -> None: ...

    async def publish(self, message: RenderedMessage, *, idempotency_key: str) -> PublishResult: ...

    async def check(self) -> AccountInfo: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class KeyWindow(Protocol):
    """Optional publisher ability: the platform honours an idempotency key this many seconds only
    (None: for ever). Without it, a key is taken to hold for ever."""

    idempotency_window: float | None


@runtime_checkable
class FindsPublished(Protocol):
    """Optional publisher ability: look a post up on the account (after an unconfirmed attempt whose
    idempotency key has expired). Raises only ``PublishError`` subclasses, like ``publish``."""

    async def find_published(self, message: RenderedMessage, *, since: datetime) -> PublishResult | None: ...


Stage = Callable[[str], Awaitable[None]]
"""Remember a staged post's id durably, before it is published (``PublishesStaged``). Raises only
``PublishError`` subclasses (a ``RetryablePublishError`` when it could not be recorded)."""


@runtime_checkable
class PublishesStaged(Protocol):
    """Optional publisher ability: a post made in two steps, first staged on the platform, then published
    (Threads: a media container, then ``threads_publish``). The delivery service then calls
    ``publish_staged`` instead of ``publish``: ``staged`` is what an earlier attempt of the same delivery
    handed to ``stage`` (None: nothing), kept in the delivery's record across crashes and restarts;
    ``stage(value)`` records a new value (committed before it returns) and must be awaited BEFORE the
    request that publishes the staged post leaves. So an attempt whose answer was lost, or a process
    killed mid-request, leaves the staged id behind, and the next attempt asks the platform what became
    of it instead of posting again. The value is opaque to tagrelay (at most ``STAGED_LIMIT``
    characters). Raises only ``PublishError`` subclasses, like ``publish``."""

    async def publish_staged(self, message: RenderedMessage, *, idempotency_key: str, staged: str | None,
                             stage: Stage) -> PublishResult: ...


STAGED_LIMIT = 500
"""The longest value a publisher may ``stage``."""


@runtime_checkable
class Deduplicates(Protocol):
    """Optional publisher ability: ``deduplicates`` True when the PLATFORM makes a second send of one delivery
    harmless (a resend after a crash, with the same ``idempotency_key``, posts nothing new: Mastodon's
    Idempotency-Key, Bluesky's record key read back first, X's refusal of duplicate content). The delivery
    service then sends a channel's posts in claimed groups, committing their outcomes a few at a time
    (``bot.domain.pipeline``); a crash mid-group resends what was not recorded. Without it (a platform that
    cannot deduplicate: Telegram, Discord), each claim is committed before its request leaves."""

    deduplicates: bool


@dataclass(frozen=True, slots=True)
class ChangeResult:
    """What an edit or a deletion did: made now, or ``already`` made (a note saying how the platform
    told: "message is not modified", "the status already shows this text")."""

    already: str | None = None


@runtime_checkable
class Edits(Protocol):
    """Optional publisher ability: update a message this publisher made (``remote_id``, as ``publish``
    answered it) to show ``message``. Safe to repeat (see ``Publisher``)."""

    async def edit(self, remote_id: str, message: RenderedMessage) -> ChangeResult: ...


@runtime_checkable
class Deletes(Protocol):
    """Optional publisher ability: remove a message this publisher made. A message that is not there
    raises ``MessageGoneError`` (the deletion is then done)."""

    async def delete(self, remote_id: str) -> ChangeResult: ...


@runtime_checkable
class DeleteLimit(Protocol):
    """Optional publisher ability: the platform deletes a message only this many seconds after it was sent."""

    delete_max_age: float


@dataclass(frozen=True, slots=True)
class PublisherAbilities:
    """A publisher's optional abilities (``Publisher``'s docstring), with the defaults filled in."""

    idempotency_window: float | None = None
    finder: FindsPublished | None = None
    editor: Edits | None = None
    deleter: Deletes | None = None
    delete_max_age: float | None = None
    stager: PublishesStaged | None = None
    deduplicates: bool = False
    """The publisher declares ``Deduplicates``, its key window is long enough
    (``bot.domain.pipeline.deduplicating_window``) and it does not publish in two steps (a staged post's
    id must be committed before its publishing request leaves)."""


def abilities(publisher: Publisher) -> PublisherAbilities:
    """The optional abilities ``publisher`` declares; absent ones take their defaults. Costs a few
    structural checks: the delivery service reads it once per publisher."""
    window = publisher.idempotency_window if isinstance(publisher, KeyWindow) else None
    max_age = publisher.delete_max_age if isinstance(publisher, DeleteLimit) else None
    key_window = None if window is None else float(window)
    stager = publisher if isinstance(publisher, PublishesStaged) else None
    declared = isinstance(publisher, Deduplicates) and publisher.deduplicates is True
    return PublisherAbilities(idempotency_window=key_window,
                              finder=publisher if isinstance(publisher, FindsPublished) else None,
                              editor=publisher if isinstance(publisher, Edits) else None,
                              deleter=publisher if isinstance(publisher, Deletes) else None,
                              delete_max_age=None if max_age is None else float(max_age),
                              stager=stager,
                              deduplicates=declared and stager is None and deduplicating_window(key_window))


@dataclass(frozen=True, slots=True)
class ChannelNote:
    """One line about a channel for ``tagrelay status`` and the bot's /status, e.g. how long its token has
    left. ``problem``: something an operator must act on (counted among the status's problems)."""

    text: str
    problem: bool = False


@runtime_checkable
class ReportsChannelNotes(Protocol):
    """Optional plugin ability: what ``status`` should say about a channel besides its queue, read from
    local state only (no network, no secret): ``state_dir`` as in ``PublisherContext``. Must not raise."""

    def channel_notes(self, options: Any, *, state_dir: Path | None, now: datetime) -> list[ChannelNote]: ...


@runtime_checkable
class PublisherPlugin(Protocol):
    """One platform: validates options, renders (pure), creates publishers."""

    name: str
    api_version: int
    options_model: type[ChannelOptions]

    def render(
        self, post: Post, options: Any, env: RenderEnv, *, plain: bool = False
    ) -> RenderedMessage:
        """Pure. ``plain=True`` asks for the safe fallback (no markup, shorter)."""
        ...

    def create(self, options: Any, ctx: PublisherContext) -> Publisher: ...


@runtime_checkable
class Budgeted(Protocol):
    """Optional ability of a channel's options model: the platform charges per request (X, pay-per-use),
    and the channel may set spending budgets. ``spending_terms`` gives its budgets, the account they are
    shared with and the prices (None: no budget); ``cost_of`` what sending ``message`` costs, in
    micro-dollars (every request it takes: the post, an image upload). The delivery service reserves that
    cost against the budgets before it sends (``bot.domain.budget``)."""

    def spending_terms(self) -> ChannelSpending | None: ...

    def cost_of(self, message: RenderedMessage) -> int: ...


@runtime_checkable
class BudgetedDeletes(Protocol):
    """Optional ability of a ``Budgeted`` channel's options: a deletion is billed too (X: "Interaction:
    Delete"); ``delete_cost`` is reserved against the budgets before each one."""

    def delete_cost(self) -> int: ...


def spending_plans(channels: Sequence[ChannelOptions]) -> dict[str, SpendingPlan]:
    """The spending plan of every channel with a budget of its own or of its account, by channel name
    (``merge_spending``; raises ``SpendingConflict`` for two different budgets of one account, which the
    configuration's check turns into a ``ConfigError``)."""
    return merge_spending([c.spending_terms() if isinstance(c, Budgeted) else None for c in channels])
