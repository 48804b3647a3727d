"""Optional publisher abilities (``bot.publishers.api``) and the error → outcome mapping of the delivery
service: what the decision table is fed, without a database or a network."""

from __future__ import annotations

from datetime import datetime

import pytest

from bot.domain.delivery import (
    Ambiguous,
    ChatMigrated,
    Duplicate,
    Failed,
    Outcome,
    Permanent,
    PlatformTraits,
    RateLimited,
    Rejected,
    Retryable,
)
from bot.errors import (
    AmbiguousPublishError,
    ChatMigratedError,
    ContentRejectedError,
    CredentialsError,
    DuplicateContentError,
    PermanentPublishError,
    PublishError,
    RetryablePublishError,
    RetryAfter,
)
from bot.publishers.api import (
    AccountInfo,
    FindsPublished,
    KeyWindow,
    Publisher,
    PublisherAbilities,
    PublishResult,
    RenderedMessage,
    RenderEnv,
    abilities,
)
from bot.services.delivery import ChannelRuntime, outcome_of
from bot.testing import RecordingOptions, RecordingPlugin, RecordingPublisher


class TodaysPublisher:
    """A third-party publisher written against the API before the optional abilities: required members only."""

    idempotent = False

    @property
    def render_env(self) -> RenderEnv:
        return RenderEnv()

    async def initialize(self) -> None:
        return None

    async def publish(self, message: RenderedMessage, *, idempotency_key: str) -> PublishResult:
        return PublishResult("1")

    async def check(self) -> AccountInfo:
        return AccountInfo(display="today")

    async def aclose(self) -> None:
        return None


class Windowed(TodaysPublisher):
    idempotent = True
    idempotency_window = 3600


class WindowedFinder(Windowed):
    async def find_published(self, message: RenderedMessage, *, since: datetime) -> PublishResult | None:
        return None


class UnlimitedKey(TodaysPublisher):
    idempotent = True
    idempotency_window = None


def test_a_publisher_without_the_optional_members_keeps_working() -> None:
    pub = TodaysPublisher()
    assert isinstance(pub, Publisher)
    assert not isinstance(pub, KeyWindow) and not isinstance(pub, FindsPublished)
    assert abilities(pub) == PublisherAbilities(idempotency_window=None, finder=None)
    recording = RecordingPublisher(RecordingOptions(name="r", platform="recording"))
    assert abilities(recording) == PublisherAbilities()  # type: ignore[arg-type]  # idempotent: a property


def test_declared_abilities_are_read() -> None:
    assert abilities(Windowed()) == PublisherAbilities(idempotency_window=3600.0, finder=None)
    finder = WindowedFinder()
    assert abilities(finder) == PublisherAbilities(idempotency_window=3600.0, finder=finder)
    assert abilities(UnlimitedKey()) == PublisherAbilities()  # None: the key holds for ever


def channel(pub: Publisher, **options: object) -> ChannelRuntime:
    opts = RecordingOptions.model_validate({"name": "c", "platform": "recording", **options})
    return ChannelRuntime("c", "recording", RecordingPlugin(), opts, pub)  # type: ignore[arg-type]


def test_the_channel_reads_its_publishers_traits_and_follows_a_new_publisher() -> None:
    chan = channel(TodaysPublisher())
    assert chan.traits == PlatformTraits(idempotent=False)
    assert not chan.resend_when_unsure
    chan.publisher = WindowedFinder()  # a rebuilt publisher (a moved chat), or a test's replacement
    assert chan.traits == PlatformTraits(idempotent=True, idempotency_window=3600.0, can_look_up=True)
    assert chan.resend_when_unsure
    assert channel(TodaysPublisher(), at_least_once=True).resend_when_unsure


class PluginError(PublishError):
    """A plugin's own subclass of the tree's root."""


CLASSIFIED: list[tuple[PublishError, Outcome, Outcome]] = [
    # (error, as a publish outcome, as a look-up outcome)
    (RetryAfter("c", 42), RateLimited("rate limited; retry after 42s", 42.0),
     RateLimited("rate limited; retry after 42s", 42.0)),
    (RetryablePublishError("c", "HTTP 502"), Retryable("HTTP 502"), Retryable("HTTP 502")),
    (PublishError("c", "odd"), Retryable("odd"), Retryable("odd")),
    (AmbiguousPublishError("c", "read timeout"), Ambiguous("read timeout"), Ambiguous("read timeout")),
    (PermanentPublishError("c", "kicked"), Permanent("kicked"), Permanent("kicked")),
    (CredentialsError("c", "401"), Permanent("401", credentials=True), Permanent("401", credentials=True)),
    (ContentRejectedError("c", "too long"), Rejected("too long"), Failed("too long")),
    (DuplicateContentError("c", "dup"), Duplicate("dup"), Failed("dup")),
    (ChatMigratedError("c", -100), ChatMigrated("chat migrated to -100", -100), Failed("chat migrated to -100")),
    (PluginError("c", "mine"), Failed("mine"), Failed("mine")),
]


@pytest.mark.parametrize(("error", "published", "looked_up"), CLASSIFIED,
                         ids=[type(row[0]).__name__ for row in CLASSIFIED])
def test_every_class_of_the_error_tree_is_an_outcome(error: PublishError, published: Outcome,
                                                     looked_up: Outcome) -> None:
    assert outcome_of(error) == published
    assert outcome_of(error, publishing=False) == looked_up
