"""The delivery state machine on a real database, driven by the shipped RecordingPlugin.

Platform wire behaviour is tested against loopback fakes elsewhere; here the
publisher is scripted with the error classes the adapters raise, and the test
checks what the service decides: statuses, attempts, holds, pauses, order.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.clock import FakeClock
from bot.domain.models import DeliveryStatus, ParsedPost, Post, Subscription
from bot.errors import (
    AmbiguousPublishError,
    ChatMigratedError,
    ContentRejectedError,
    CredentialsError,
    DuplicateContentError,
    RetryablePublishError,
    RetryAfter,
)
from bot.observability import Metrics
from bot.publishers.api import PublishResult
from bot.render.message import RenderedMessage, RenderEnv
from bot.services.coordinator import ClusterCoordinator, SoloCoordinator
from bot.services.delivery import ChannelRuntime, Deliverer, DeliveryOutcome, Pacer
from bot.services.delivery_driver import DeliveryDriver
from bot.settings import DeliveryConfig
from bot.storage.store import Store
from bot.testing import RecordingOptions, RecordingPlugin, RecordingPublisher
from tests.delivery_support import deliver_due
from tests.integration.test_store import delivery_rows, poll


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def make(store: Store, clock: FakeClock, plugin: RecordingPlugin, *, idempotent: bool = True,
         config: DeliveryConfig | None = None, notify: list[str] | None = None) -> Deliverer:
    cfg = config or DeliveryConfig(pacing=False, max_attempts=3, retry_base=10, retry_cap=100)
    channels = {}
    for name in ("tg", "masto"):
        opts = RecordingOptions(name=name, platform="recording", idempotent=idempotent)

        def rebuild(o: object, plugin: RecordingPlugin = plugin) -> RecordingPublisher:
            return plugin.create(o, None)  # type: ignore[arg-type]

        channels[name] = ChannelRuntime(name, "recording", plugin, opts, plugin.create(opts, None),  # type: ignore[arg-type]
                                        rebuild=rebuild)

    return Deliverer(store, channels, clock, cfg, Metrics(), owner="test", notifier=Notes(notify))


class Notes:
    """The ``Notifier``: appends what the admins were told to ``texts`` (when given)."""

    def __init__(self, texts: list[str] | None) -> None:
        self.texts = texts

    async def notify(self, text: str) -> None:
        if self.texts is not None:
            self.texts.append(text)


def post(n: int, *tags: str) -> ParsedPost:
    return ParsedPost(title=f"Post {n}", url=f"https://a.example/{n}/", guid=f"p{n}", tags=tags,
                      published=datetime(2026, 1, n, tzinfo=UTC))


@pytest.fixture
async def queued(store: Store, clock: FakeClock) -> Store:
    """tg and masto subscribe to MEK; posts 3 and 2 (in that feed order) are queued for both."""
    await store.sync_config([("archive", "https://a.example/feed/", "rss")],
                            [("tg", "recording"), ("masto", "recording")],
                            [Subscription("mek", "MEK", "tg"), Subscription("mek", "MEK", "masto")], clock.now())
    await poll(store, clock, [])
    await poll(store, clock, [post(3, "MEK"), post(2, "MEK")])
    return store


async def statuses(store: Store, channel: str) -> list[tuple[str, str, int]]:
    rows = await store.deliveries(channel=channel)
    return sorted((d.post_title, d.status, d.attempts) for d in rows)


async def test_sends_oldest_post_first_and_records_remote_ids(queued: Store, clock: FakeClock) -> None:
    plugin = RecordingPlugin()
    outcomes = await deliver_due(make(queued, clock, plugin))
    assert {o.status for o in outcomes} == {DeliveryStatus.SENT}
    assert [s.text.splitlines()[0] for s in plugin.publishers["tg"].sent] == ["Post 2", "Post 3"]
    sent = await queued.deliveries(channel="tg", status="sent")
    assert {d.remote_id for d in sent} == {"r1", "r2"}
    assert len({s.key for s in plugin.publishers["tg"].sent}) == 2  # one idempotency key per delivery
    assert await deliver_due(make(queued, clock, plugin)) == []  # nothing twice


async def test_rate_limit_holds_the_whole_channel_exactly_as_told(queued: Store, clock: FakeClock) -> None:
    plugin = RecordingPlugin()
    deliverer = make(queued, clock, plugin)
    plugin.create(RecordingOptions(name="tg", platform="recording"), None).script(RetryAfter("tg", 42))  # type: ignore[arg-type]
    await deliverer.deliver_channel("tg")
    assert await statuses(queued, "tg") == [("Post 2", "queued", 0), ("Post 3", "queued", 0)]
    chan = await queued.channel("tg")
    assert chan.hold_until == clock.now() + timedelta(seconds=42)
    clock.advance(41.9)
    assert await deliverer.deliver_channel("tg") == []  # never sooner than told
    assert plugin.publishers["tg"].attempts == 1
    clock.advance(0.2)
    await deliverer.deliver_channel("tg")
    assert await statuses(queued, "tg") == [("Post 2", "sent", 1), ("Post 3", "sent", 1)]


async def test_transient_errors_back_off_then_die(queued: Store, clock: FakeClock) -> None:
    plugin = RecordingPlugin()
    deliverer = make(queued, clock, plugin)
    pub = plugin.create(RecordingOptions(name="tg", platform="recording"), None)  # type: ignore[arg-type]
    pub.script(*[RetryablePublishError("tg", "HTTP 502")] * 3)
    await deliverer.deliver_channel("tg")
    rows = await queued.deliveries(channel="tg", status="failed")
    assert len(rows) == 1 and rows[0].post_title == "Post 2" and rows[0].attempts == 1
    first_wait = rows[0].next_attempt_at - clock.now()  # type: ignore[operator]
    assert timedelta(seconds=5) <= first_wait <= timedelta(seconds=10)
    for _ in range(2):
        clock.advance(200)
        await deliverer.deliver_channel("tg")
    dead = await queued.deliveries(channel="tg", status="dead")
    assert len(dead) == 1 and "gave up after 3 attempts" in (dead[0].last_error or "")
    clock.advance(200)
    await deliverer.deliver_channel("tg")
    assert await statuses(queued, "tg") == [("Post 2", "dead", 3), ("Post 3", "sent", 1)]


async def test_rejected_credentials_pause_the_channel_and_keep_its_queue(queued: Store, clock: FakeClock) -> None:
    plugin = RecordingPlugin()
    notes: list[str] = []
    deliverer = make(queued, clock, plugin, notify=notes)
    plugin.create(RecordingOptions(name="tg", platform="recording"), None).script(  # type: ignore[arg-type]
        CredentialsError("tg", "the bot token was rejected (401)"))
    await deliver_due(deliverer)
    chan = await queued.channel("tg")
    assert chan.paused and "401" in (chan.paused_reason or "")
    assert await statuses(queued, "tg") == [("Post 2", "queued", 0), ("Post 3", "queued", 0)]
    assert await statuses(queued, "masto") == [("Post 2", "sent", 1), ("Post 3", "sent", 1)]
    assert len(notes) == 1 and "tg" in notes[0] and "/resume tg" in notes[0]
    await queued.set_paused("tg", False, None, clock.now())
    await deliver_due(deliverer)
    assert await statuses(queued, "tg") == [("Post 2", "sent", 1), ("Post 3", "sent", 1)]


async def test_ambiguous_outcome_is_unknown_without_idempotency(queued: Store, clock: FakeClock) -> None:
    plugin = RecordingPlugin()
    deliverer = make(queued, clock, plugin, idempotent=False)
    plugin.publishers["tg"].script(AmbiguousPublishError("tg"))
    await deliverer.deliver_channel("tg")
    assert await statuses(queued, "tg") == [("Post 2", "unknown", 1), ("Post 3", "sent", 1)]


async def test_ambiguous_outcome_is_retried_with_the_same_key_when_idempotent(queued: Store, clock: FakeClock) -> None:
    plugin = RecordingPlugin()
    deliverer = make(queued, clock, plugin, idempotent=True)
    plugin.publishers["masto"].script(AmbiguousPublishError("masto"))
    await deliverer.deliver_channel("masto")
    clock.advance(100)
    await deliverer.deliver_channel("masto")
    assert await statuses(queued, "masto") == [("Post 2", "sent", 2), ("Post 3", "sent", 1)]


async def test_rejected_content_is_retried_once_in_plain_form(queued: Store, clock: FakeClock) -> None:
    plugin = RecordingPlugin()
    deliverer = make(queued, clock, plugin)
    plugin.publishers["tg"].script(ContentRejectedError("tg", "can't parse entities"), None,
                                   ContentRejectedError("tg", "too long"), ContentRejectedError("tg", "too long"))
    await deliverer.deliver_channel("tg")
    sent = plugin.publishers["tg"].sent
    assert len(sent) == 1 and sent[0].plain
    dead = await queued.deliveries(channel="tg", status="dead")
    assert [d.post_title for d in dead] == ["Post 3"] and dead[0].last_error == "too long"


async def test_duplicate_content_counts_as_sent(queued: Store, clock: FakeClock) -> None:
    plugin = RecordingPlugin()
    deliverer = make(queued, clock, plugin)
    plugin.publishers["tg"].script(DuplicateContentError("tg"))
    await deliverer.deliver_channel("tg")
    assert await statuses(queued, "tg") == [("Post 2", "sent", 1), ("Post 3", "sent", 1)]
    assert len(plugin.publishers["tg"].sent) == 1


async def test_chat_migration_updates_the_target_and_retries_once(queued: Store, clock: FakeClock) -> None:
    plugin = RecordingPlugin()
    deliverer = make(queued, clock, plugin)
    plugin.publishers["tg"].script(ChatMigratedError("tg", -1001234567890123))
    await deliverer.deliver_channel("tg")
    assert (await queued.channel("tg")).target_override == "-1001234567890123"
    assert await statuses(queued, "tg") == [("Post 2", "sent", 1), ("Post 3", "sent", 1)]


async def test_pacing_waits_between_sends_per_channel(queued: Store, clock: FakeClock) -> None:
    plugin = RecordingPlugin()
    sleeps = Sleeps()
    cfg = DeliveryConfig(pacing=True, channel_limits={"recording": "1/s"}, account_limits={})
    deliverer = make(queued, clock, plugin, config=cfg)
    deliverer.pacer = Pacer(cfg, queued, clock, sleep=sleeps)
    await deliverer.deliver_channel("tg")
    assert sleeps.calls == [pytest.approx(1.0)]  # second message waits a second; the first goes at once


async def test_pacing_state_survives_a_restart(queued: Store, clock: FakeClock) -> None:
    """The buckets live in the database: a restarted (or second) instance cannot burst."""
    cfg = DeliveryConfig(pacing=True, channel_limits={"recording": "1/s"}, account_limits={})
    first, second = Sleeps(), Sleeps()
    plugin = RecordingPlugin()
    chan = make(queued, clock, plugin, config=cfg).channels["tg"]
    assert await Pacer(cfg, queued, clock, sleep=first).wait(chan) == 0
    assert await Pacer(cfg, queued, clock, sleep=second).wait(chan) == pytest.approx(1.0)
    clock.advance(5)
    assert await Pacer(cfg, queued, clock, sleep=second).wait(chan) == 0
    assert second.calls == [pytest.approx(1.0)]


@pytest.fixture
async def backlog(store: Store, clock: FakeClock) -> Store:
    """Only tg subscribes to MEK; six posts are queued for it, listed out of date order in the feed."""
    await store.sync_config([("archive", "https://a.example/feed/", "rss")],
                            [("tg", "recording"), ("masto", "recording")],
                            [Subscription("mek", "MEK", "tg")], clock.now())
    await poll(store, clock, [])
    await poll(store, clock, [post(n, "MEK") for n in (4, 1, 6, 2, 5, 3)])
    return store


async def test_unpaced_channel_sends_every_delivery_once_oldest_first(backlog: Store, clock: FakeClock) -> None:
    plugin = RecordingPlugin()
    deliverer = make(backlog, clock, plugin)
    assert not deliverer.pacer.active(deliverer.channels["tg"])  # the chained claim path
    outcomes = await deliverer.deliver_channel("tg")
    assert [o.status for o in outcomes] == [DeliveryStatus.SENT] * 6
    assert len({o.delivery_id for o in outcomes}) == 6
    pub = plugin.publishers["tg"]
    assert pub.attempts == 6
    assert [s.text.splitlines()[0] for s in pub.sent] == [f"Post {n}" for n in range(1, 7)]
    rows = await delivery_rows(backlog)
    assert rows == {("tg", f"Post {n}"): ("sent", 1, None, f"r{n}") for n in range(1, 7)}
    assert await deliverer.deliver_channel("tg") == []  # nothing left claimed, nothing twice
    assert pub.attempts == 6


class StopWhileRecording(RecordingPublisher):
    """Asks the deliverer to stop during its first publish; the flag is set at the next await, i.e. while
    that send's outcome is being recorded (after the deliverer decided to claim the next delivery with it)."""

    deliverer: Deliverer | None = None

    async def publish(self, message: RenderedMessage, *, idempotency_key: str) -> PublishResult:
        result = await super().publish(message, idempotency_key=idempotency_key)
        if self.attempts == 1 and self.deliverer is not None:
            asyncio.get_running_loop().call_soon(setattr, self.deliverer, "stopping", True)
        return result


async def test_stopping_hands_back_the_delivery_claimed_with_the_last_outcome(backlog: Store,
                                                                              clock: FakeClock) -> None:
    plugin = RecordingPlugin()
    deliverer = make(backlog, clock, plugin)
    chan = deliverer.channels["tg"]
    pub = StopWhileRecording(RecordingOptions(name="tg", platform="recording"))
    pub.deliverer = deliverer
    chan.publisher = pub
    outcomes = await deliverer.deliver_channel("tg")
    assert deliverer.stopping
    assert [o.status for o in outcomes] == [DeliveryStatus.SENT]
    assert pub.attempts == 1 and [s.text.splitlines()[0] for s in pub.sent] == ["Post 1"]
    rows = await delivery_rows(backlog)
    assert rows.pop(("tg", "Post 1")) == ("sent", 1, None, "r1")
    # the delivery claimed together with Post 1's outcome went back untouched: queued, no attempt, unclaimed
    assert rows == {("tg", f"Post {n}"): ("queued", 0, None, None) for n in range(2, 7)}
    assert await backlog.deliveries(channel="tg", status="sending") == []

    deliverer.stopping = False  # the next run starts again from the oldest, each still sent once
    await deliverer.deliver_channel("tg")
    assert [s.text.splitlines()[0] for s in pub.sent] == [f"Post {n}" for n in range(1, 7)]
    assert await delivery_rows(backlog) == {("tg", f"Post {n}"): ("sent", 1, None, f"r{n}") for n in range(1, 7)}


class WindowedPublisher(RecordingPublisher):
    """Idempotent for an hour only, like Mastodon; optionally able to look a post up."""

    idempotency_window = 3600.0


class WindowedFinder(WindowedPublisher):
    lookups: int = 0

    async def find_published(self, message: RenderedMessage, *, since: datetime) -> PublishResult | None:
        self.lookups += 1
        return PublishResult(remote_id="found-1", url="https://example.invalid/found-1")


@pytest.mark.parametrize("can_look_up", [False, True])
async def test_an_unconfirmed_attempt_older_than_the_key_window_is_never_blindly_resent(
        backlog: Store, clock: FakeClock, can_look_up: bool) -> None:
    plugin = RecordingPlugin()
    deliverer = make(backlog, clock, plugin)
    chan = deliverer.channels["tg"]
    pub = (WindowedFinder if can_look_up else WindowedPublisher)(RecordingOptions(name="tg", platform="recording"))
    chan.publisher = pub
    pub.script(AmbiguousPublishError("tg", "timed out waiting for the answer"))
    outcomes = await deliverer.deliver_channel("tg")
    assert [o.status for o in outcomes] == [DeliveryStatus.FAILED]
    clock.advance(2 * 3600)
    outcomes = await deliverer.deliver_channel("tg")
    first = {d.post_title: d for d in await backlog.deliveries(channel="tg")}["Post 1"]
    if can_look_up:
        assert isinstance(pub, WindowedFinder) and pub.lookups == 1
        assert (first.status, first.remote_id) == ("sent", "found-1")
        assert [s.text.splitlines()[0] for s in pub.sent] == [f"Post {n}" for n in range(2, 7)]
    else:
        assert first.status == "unknown"
        assert "idempotency key has expired" in (first.last_error or "")
        assert [s.text.splitlines()[0] for s in pub.sent] == [f"Post {n}" for n in range(2, 7)]


async def test_inside_the_key_window_the_resend_needs_no_lookup(backlog: Store, clock: FakeClock) -> None:
    plugin = RecordingPlugin()
    deliverer = make(backlog, clock, plugin)
    pub = WindowedFinder(RecordingOptions(name="tg", platform="recording"))
    deliverer.channels["tg"].publisher = pub
    pub.script(AmbiguousPublishError("tg", "timed out waiting for the answer"))
    await deliverer.deliver_channel("tg")
    clock.advance(30 * 60)
    await deliverer.deliver_channel("tg")
    assert pub.lookups == 0
    assert [s.text.splitlines()[0] for s in pub.sent] == [f"Post {n}" for n in range(1, 7)]


class GatedPublisher(RecordingPublisher):
    """Holds every send until ``gate`` opens, counting how many channels are mid-send at once."""

    def __init__(self, options: RecordingOptions, gate: asyncio.Event, load: list[int]) -> None:
        super().__init__(options)
        self.gate, self.load = gate, load  # load: [now in flight, most ever in flight]

    async def publish(self, message: RenderedMessage, *, idempotency_key: str) -> PublishResult:
        self.load[0] += 1
        self.load[1] = max(self.load[1], self.load[0])
        try:
            await self.gate.wait()
            return await super().publish(message, idempotency_key=idempotency_key)
        finally:
            self.load[0] -= 1


@pytest.mark.parametrize(("live", "at_once"), [(1, 4), (2, 2), (3, 2), (4, 1)])
async def test_in_shared_mode_an_instance_takes_its_fair_share_of_the_due_channels(
        store: Store, clock: FakeClock, live: int, at_once: int) -> None:
    """A channel's lease is kept until its backlog is sent: an instance taking every due channel at once
    would leave the other instances idle. With ``live`` instances registered, one takes ceil(4 / live)
    channels at a time, and still sends to all four in the end (nothing waits on an absent instance)."""
    names = [f"c{i}" for i in range(4)]
    await store.sync_config([("archive", "https://a.example/feed/", "rss")], [(n, "recording") for n in names],
                            [Subscription("mek", "MEK", n) for n in names], clock.now())
    await poll(store, clock, [])
    await poll(store, clock, [post(1, "MEK")])
    for i in range(live):
        await store.register_instance(f"i{i}", "1.0", clock.now(), 60)
    gate, load = asyncio.Event(), [0, 0]
    plugin = RecordingPlugin()
    channels = {n: ChannelRuntime(n, "recording", plugin, RecordingOptions(name=n, platform="recording"),
                                  GatedPublisher(RecordingOptions(name=n, platform="recording"), gate, load))
                for n in names}
    deliverer = Deliverer(store, channels, clock, DeliveryConfig(pacing=False, concurrency=4), Metrics(),
                          owner="i0")
    coordinator = ClusterCoordinator(store, clock, "i0", version="1.0", lease_ttl=60.0, source_lease_ttl=60.0,
                                     session_lock=None)
    task = asyncio.create_task(deliver_due(deliverer, coordinator))
    deadline = asyncio.get_running_loop().time() + 10
    while load[0] < at_once:  # the sends start on the database thread's schedule: poll, with a deadline
        assert asyncio.get_running_loop().time() < deadline, f"only {load[0]} channels started"
        await asyncio.sleep(0.01)
    gate.set()
    outcomes = await task
    assert load[1] == at_once
    assert sorted(o.channel for o in outcomes) == names
    assert all(len(ch.publisher.sent) == 1 for ch in channels.values())  # type: ignore[attr-defined]


async def test_start_due_runs_each_due_channel_once_within_the_concurrency(queued: Store, clock: FakeClock) -> None:
    plugin = RecordingPlugin()
    deliverer = make(queued, clock, plugin, config=DeliveryConfig(pacing=False, concurrency=1))
    driver = DeliveryDriver(deliverer, SoloCoordinator(queued, deliverer.owner))
    running: dict[str, asyncio.Task[list[DeliveryOutcome]]] = {}
    first = await driver.start_due(running)
    assert len(first) == 1 and list(running) == first  # concurrency 1: one channel at a time
    assert await driver.start_due(running) == []  # not twice, and no second slot
    await asyncio.gather(*running.values())
    assert driver.reap(running) == first and running == {}
    second = await driver.start_due(running)
    assert second != first and len(second) == 1  # the other channel's turn
    await asyncio.gather(*running.values())
    driver.reap(running)
    assert await driver.start_due(running) == []  # nothing due any more
    for name in ("tg", "masto"):
        assert await statuses(queued, name) == [("Post 2", "sent", 1), ("Post 3", "sent", 1)]


class FallbackPlugin(RecordingPlugin):
    """Renders with the platform's default template, as when the channel's own template failed."""

    def render(self, post: Post, options: Any, env: RenderEnv, *, plain: bool = False) -> RenderedMessage:
        message = super().render(post, options, env, plain=plain)
        return dataclasses.replace(message, extra={"template_fallback": "undefined variable 'titel'"})


def events(caplog: pytest.LogCaptureFixture, name: str) -> list[dict[str, Any]]:
    return [getattr(r, "kv", {}) for r in caplog.records if r.getMessage() == name]


async def test_a_template_fallback_is_logged_for_each_delivery_that_used_it(
        queued: Store, clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tagrelay")
    plugin = FallbackPlugin()
    await make(queued, clock, plugin).deliver_channel("tg")
    assert await statuses(queued, "tg") == [("Post 2", "sent", 1), ("Post 3", "sent", 1)]
    fallbacks = events(caplog, "render.template_fallback")
    assert [(f["channel"], f["reason"]) for f in fallbacks] == [("tg", "undefined variable 'titel'")] * 2


async def test_each_outcome_is_logged_once_with_its_reason_and_wait(
        queued: Store, clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tagrelay")
    plugin = RecordingPlugin()
    deliverer = make(queued, clock, plugin)
    plugin.publishers["tg"].script(RetryAfter("tg", 42))
    await deliverer.deliver_channel("tg")
    clock.advance(42)
    await deliverer.deliver_channel("tg")
    logged = events(caplog, "deliver")
    assert [(e["status"], e.get("reason"), e.get("next_in")) for e in logged] == [
        ("queued", "rate_limited", 42), ("sent", None, None), ("sent", None, None)]
    assert logged[0]["error"] == "rate limited; retry after 42s" and "remote_id" not in logged[0]
    assert [e["remote_id"] for e in logged[1:]] == ["r1", "r2"]
    assert all(isinstance(e["ms"], float) for e in logged[1:])
    assert [e["post"] for e in logged] == ["https://a.example/2/", "https://a.example/2/", "https://a.example/3/"]
