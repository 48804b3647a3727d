"""The ``PublishesStaged`` ability through the real Deliverer and store: what a two-step publisher stages is
committed to the delivery's record before the publishing request leaves, and every later attempt (after a
lost answer, after a crash and restart) is handed it back. Runs on SQLite and, when
``TAGRELAY_TEST_POSTGRES_URL`` is set, PostgreSQL.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import pytest

from bot.clock import FakeClock
from bot.domain.models import DeliveryStatus, Subscription
from bot.errors import AmbiguousPublishError
from bot.observability import Metrics
from bot.publishers.api import (
    STAGED_LIMIT,
    PublisherAbilities,
    PublisherContext,
    PublishesStaged,
    PublishResult,
    RenderedMessage,
    Stage,
    abilities,
)
from bot.services.delivery import ChannelRuntime, Deliverer
from bot.settings import DeliveryConfig
from bot.storage.store import Store
from bot.testing import RecordingOptions, RecordingPlugin, RecordingPublisher
from tests.delivery_support import deliver_due
from tests.integration.test_store import parsed, poll

POLICY = DeliveryConfig(pacing=False, max_attempts=5, retry_base=10, retry_cap=100)


@dataclass
class Call:
    staged: str | None
    """What the attempt was handed."""
    staged_before_publishing: str | None = None
    """What the delivery's record held when the (simulated) publishing request left."""


@dataclass
class StagingPublisher(RecordingPublisher):
    """Stages ``container-<n>`` unless handed one, then "publishes" it; ``script`` errors are raised AFTER
    the publishing request left (a lost answer); ``stage_value`` overrides what it stages."""

    store: Store | None = None
    calls: list[Call] = field(default_factory=list)
    stage_value: str | None = None
    published: list[str] = field(default_factory=list)

    async def publish_staged(self, message: RenderedMessage, *, idempotency_key: str, staged: str | None,
                             stage: Stage) -> PublishResult:
        call = Call(staged)
        self.calls.append(call)
        if staged is not None and staged in self.published:
            return PublishResult(remote_id=staged)  # the platform says: already published
        if staged is None:
            staged = self.stage_value or f"container-{len(self.calls)}"
            await stage(staged)
        assert self.store is not None
        call.staged_before_publishing = await staged_in_record(self.store)
        self.published.append(staged)
        if self._script:
            outcome = self._script.popleft()
            if outcome is not None:
                raise outcome
        return PublishResult(remote_id=staged)


class StagingPlugin(RecordingPlugin):
    def __init__(self, store: Store) -> None:
        super().__init__()
        self.store = store

    def create(self, options: Any, ctx: PublisherContext) -> StagingPublisher:
        pub = self.publishers.get(options.name)
        if not isinstance(pub, StagingPublisher):
            pub = StagingPublisher(options, store=self.store)
            self.publishers[options.name] = pub
        return pub


async def staged_in_record(store: Store) -> str | None:
    """The one delivery's ``staged`` as the store reports it (its own transaction)."""
    (row,) = await store.deliveries()
    return row.staged


async def rig(store: Store, clock: FakeClock) -> tuple[StagingPublisher, Deliverer]:
    plugin = StagingPlugin(store)
    opts = RecordingOptions.model_validate({"name": "two-step", "platform": "recording"})
    pub = plugin.create(opts, None)  # type: ignore[arg-type]  # the context is not used
    chan = ChannelRuntime(opts.name, "recording", plugin, opts, pub)
    await store.sync_config([("archive", "https://a.example/feed/", "rss")], [(chan.name, "recording")],
                            [Subscription("mek", "MEK", chan.name)], clock.now())
    await poll(store, clock, [])  # the baseline
    await poll(store, clock, [parsed(2, "MEK")])
    return pub, deliverer(store, chan, clock)


def deliverer(store: Store, chan: ChannelRuntime, clock: FakeClock) -> Deliverer:
    return Deliverer(store, {chan.name: chan}, clock, POLICY, Metrics(), owner="test", rng=random.Random(1))


def test_the_ability_is_read() -> None:
    pub = StagingPublisher(RecordingOptions(name="s", platform="recording"))
    assert isinstance(pub, PublishesStaged)
    assert abilities(pub) == PublisherAbilities(stager=pub)  # type: ignore[arg-type]


async def test_the_staged_id_is_committed_before_publishing_and_handed_back_after_a_lost_answer(
        store: Store, clock: FakeClock) -> None:
    pub, deliverer = await rig(store, clock)
    pub.script(AmbiguousPublishError("two-step"))  # the publish request left; its answer was lost

    outcomes = await deliver_due(deliverer)
    assert [o.status for o in outcomes] == [DeliveryStatus.FAILED]  # idempotent: retried after the backoff
    assert pub.calls == [Call(None, "container-1")]

    clock.advance(POLICY.retry_cap + 1)
    outcomes = await deliver_due(deliverer)
    assert [o.status for o in outcomes] == [DeliveryStatus.SENT]
    assert pub.calls[1].staged == "container-1"  # asked about, not posted again
    assert pub.published == ["container-1"]
    (row,) = await store.deliveries()
    assert (row.status, row.remote_id) == ("sent", "container-1")


async def test_the_staged_id_survives_a_crash_while_publishing(store: Store, clock: FakeClock) -> None:
    pub, first = await rig(store, clock)
    chan = first.channels["two-step"]
    claimed = await store.claim_next("two-step", clock.now(), "test")
    assert claimed is not None and claimed.staged is None
    stage_calls: list[str] = []

    async def stage(value: str) -> None:  # what the Deliverer's stage does, then the process dies
        assert await store.stage(claimed.id, value, owner="test")
        stage_calls.append(value)

    class Killed(Exception):
        pass

    async def die(value: str) -> None:
        await stage(value)
        raise Killed

    with pytest.raises(Killed):
        await pub.publish_staged(RenderedMessage("x", None), idempotency_key="k", staged=None, stage=die)
    assert await staged_in_record(store) == "container-1"

    # the restart: the in-flight delivery goes back to the queue (idempotent), its staged id kept
    assert await store.recover_sending(clock.now(), resend_channels={"two-step"}) == (1, 0)
    outcomes = await deliver_due(deliverer(store, chan, clock))
    assert [o.status for o in outcomes] == [DeliveryStatus.SENT]
    assert pub.calls[-1].staged == "container-1"


async def test_staging_refuses_what_cannot_be_kept(store: Store, clock: FakeClock) -> None:
    pub, deliverer = await rig(store, clock)
    pub.stage_value = "x" * (STAGED_LIMIT + 1)
    outcomes = await deliver_due(deliverer)
    assert [o.status for o in outcomes] == [DeliveryStatus.FAILED]
    assert outcomes[0].error and "nothing was published" in outcomes[0].error
    assert pub.published == []  # the publisher stopped at the refused stage
    assert await staged_in_record(store) is None


async def test_a_delivery_no_longer_claimed_is_not_staged(store: Store, clock: FakeClock) -> None:
    await rig(store, clock)
    claimed = await store.claim_next("two-step", clock.now(), "test")
    assert claimed is not None
    assert not await store.stage(claimed.id, "container-9", owner="another-instance")
    await store.finish(claimed.id, DeliveryStatus.QUEUED, clock.now(), attempts_delta=-1)
    assert not await store.stage(claimed.id, "container-9", owner="test")  # no longer `sending`
    assert await staged_in_record(store) is None

