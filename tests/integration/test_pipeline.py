"""Pipelined delivery on a real database (SQLite, and PostgreSQL when configured), with the shipped
RecordingPlugin scripted: a channel whose publisher declares ``deduplicates`` claims its deliveries in groups
and commits their outcomes a few at a time; one that does not keeps the commit before each send.

What is checked: order, each post once, attempt counts, the channel's hold, the hand-back of a group's unsent
deliveries (a 429 or a 5xx mid-group, a stop, a pause from elsewhere, an old group), the commits counted with
an engine ``commit`` listener, and a crash mid-group recovered by resending with the same keys.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event

from bot.clock import FakeClock
from bot.domain.models import DeliveryStatus, ParsedPost, Subscription
from bot.domain.pipeline import GroupPolicy
from bot.errors import RetryablePublishError, RetryAfter
from bot.observability import Metrics
from bot.publishers.api import PublishResult
from bot.render.message import RenderedMessage
from bot.services.delivery import ChannelRuntime, Deliverer
from bot.settings import DeliveryConfig
from bot.storage.store import Store
from bot.testing import RecordingOptions, RecordingPlugin, RecordingPublisher
from tests.integration.test_store import delivery_rows, poll

CONFIG = DeliveryConfig(pacing=False, max_attempts=3, retry_base=10, retry_cap=100)
GROUPS = GroupPolicy(size=8, commit_every=3, commit_after=60.0, max_age=600.0)
BASE = datetime(2026, 1, 1, tzinfo=UTC)


def item(n: int) -> ParsedPost:
    return ParsedPost(title=f"Post {n}", url=f"https://a.example/{n}/", guid=f"p{n}", tags=("MEK",),
                      published=BASE + timedelta(minutes=n))


class Crash(BaseException):
    """Ends the process's run where it is, like a SIGKILL: nothing after it is written."""


@dataclass
class Platform:
    """What the platform holds: one post per idempotency key (a resend with the same key returns the first)."""

    posts: dict[str, str] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    replays: int = 0


class Observed(RecordingPublisher):
    """A recording publisher that deduplicates by key like the platforms do, and at each send notes what the
    database holds as ``sending`` and how many commits were made so far; ``hooks`` run at the N-th send."""

    platform: Platform
    store: Store
    commits: list[int]
    seen: list[tuple[str, list[str], int]]
    hooks: dict[int, Any]

    async def publish(self, message: RenderedMessage, *, idempotency_key: str) -> PublishResult:
        self.attempts += 1
        title = message.text.splitlines()[0]
        sending = sorted((d.post_title for d in await self.store.deliveries(status="sending")),
                         key=lambda s: int(s.split()[-1]))
        self.seen.append((title, sending, self.commits[0]))
        hook = self.hooks.get(self.attempts)
        if hook is not None:
            outcome = await hook()
            if outcome is not None:
                raise outcome
        if idempotency_key in self.platform.posts:
            self.platform.replays += 1
        else:
            self.platform.posts[idempotency_key] = title
            self.platform.order.append(title)
        return PublishResult(remote_id=f"r-{title.split()[-1]}")


@contextmanager
def counting_commits(store: Store) -> Iterator[list[int]]:
    """``[n]``: transactions committed on the store's engines while inside."""
    count = [0]

    def on_commit(conn: Any) -> None:
        count[0] += 1

    engines = store.statement_engines()
    for engine in engines:
        event.listen(engine, "commit", on_commit)
    try:
        yield count
    finally:
        for engine in engines:
            event.remove(engine, "commit", on_commit)


@dataclass
class Rig:
    store: Store
    clock: FakeClock
    plugin: RecordingPlugin
    deliverer: Deliverer
    publisher: Observed
    platform: Platform
    commits: list[int]

    async def rows(self) -> dict[int, tuple[str, int, str | None, str | None]]:
        return {int(title.split()[-1]): row for (_, title), row in (await delivery_rows(self.store)).items()}

    def restarted(self, groups: GroupPolicy = GROUPS) -> Deliverer:
        """A new Deliverer on the same store and channel: what a restarted process builds."""
        return Deliverer(self.store, self.deliverer.channels, self.clock, CONFIG, Metrics(), owner="test-2",
                         groups=groups)


async def make_rig(store: Store, clock: FakeClock, commits: list[int], posts: int, *, deduplicates: bool = True,
                   groups: GroupPolicy = GROUPS) -> Rig:
    await store.sync_config([("archive", "https://a.example/feed/", "rss")], [("masto", "recording")],
                            [Subscription("mek", "MEK", "masto")], clock.now())
    await poll(store, clock, [])
    await poll(store, clock, [item(n) for n in range(posts, 0, -1)])  # a feed lists the newest first
    plugin = RecordingPlugin()
    opts = RecordingOptions(name="masto", platform="recording", deduplicates=deduplicates)
    publisher = Observed(opts)
    platform = Platform()
    publisher.platform, publisher.store, publisher.commits = platform, store, commits
    publisher.seen, publisher.hooks = [], {}
    chan = ChannelRuntime("masto", "recording", plugin, opts, publisher)
    deliverer = Deliverer(store, {"masto": chan}, clock, CONFIG, Metrics(), owner="test", groups=groups)
    return Rig(store, clock, plugin, deliverer, publisher, platform, commits)


def titles(*numbers: int) -> list[str]:
    return [f"Post {n}" for n in numbers]


async def test_a_deduplicating_channel_claims_groups_and_commits_a_few_answers_at_a_time(
        store: Store, clock: FakeClock) -> None:
    with counting_commits(store) as commits:
        rig = await make_rig(store, clock, commits, 20)
        assert rig.deliverer.pipelined(rig.deliverer.channels["masto"])
        before = commits[0]
        outcomes = await rig.deliverer.deliver_channel("masto")
        used = commits[0] - before
    assert [o.status for o in outcomes] == [DeliveryStatus.SENT] * 20
    assert rig.platform.order == titles(*range(1, 21)) and rig.platform.replays == 0  # oldest first, once each
    assert await rig.rows() == {n: ("sent", 1, None, f"r-{n}") for n in range(1, 21)}
    first_title, sending, _ = rig.publisher.seen[0]
    assert first_title == "Post 1" and sending == titles(*range(1, 9))  # one transaction claimed 8
    # groups of 8, 8, 4 (+ the claim that finds none) and commits after answers 3, 6, 8 / 3, 6, 8 / 3, 4:
    # 12 transactions for 20 posts, where one at a time takes 22
    assert used == 4 + 8


async def test_a_channel_whose_platform_cannot_deduplicate_commits_each_claim_before_its_send(
        store: Store, clock: FakeClock) -> None:
    with counting_commits(store) as commits:
        rig = await make_rig(store, clock, commits, 6, deduplicates=False)
        assert not rig.deliverer.pipelined(rig.deliverer.channels["masto"])
        await rig.deliverer.deliver_channel("masto")
    assert rig.platform.order == titles(*range(1, 7))
    for title, sending, _ in rig.publisher.seen:
        assert sending == [title]  # when a request leaves, its delivery, and only it, is committed `sending`
    marks = [c for _, _, c in rig.publisher.seen]
    assert all(b > a for a, b in itertools.pairwise(marks))  # a commit between any two sends
    assert await rig.rows() == {n: ("sent", 1, None, f"r-{n}") for n in range(1, 7)}


async def test_a_rate_limit_mid_group_holds_the_channel_and_hands_the_rest_back_uncounted(
        store: Store, clock: FakeClock) -> None:
    with counting_commits(store) as commits:
        rig = await make_rig(store, clock, commits, 12)

        async def limited() -> Exception:
            return RetryAfter("masto", 90.0)

        rig.publisher.hooks[5] = limited
        outcomes = await rig.deliverer.deliver_channel("masto")
    assert [o.status for o in outcomes] == [DeliveryStatus.SENT] * 4 + [DeliveryStatus.QUEUED]
    rows = await rig.rows()
    assert {n: rows[n] for n in range(1, 5)} == {n: ("sent", 1, None, f"r-{n}") for n in range(1, 5)}
    # the 429'd one and the rest of its group (6-8) and the unclaimed (9-12): queued, attempt not counted
    assert {n: rows[n] for n in range(5, 13)} == {n: ("queued", 0, None, None) for n in range(5, 13)}
    [chan] = [c for c in await store.channel_counts(clock.now()) if c.channel == "masto"]
    assert chan.hold_until == clock.now() + timedelta(seconds=90)
    assert await rig.deliverer.deliver_channel("masto") == []  # held: nothing claimed
    clock.advance(90)
    await rig.deliverer.deliver_channel("masto")
    assert rig.platform.order == titles(*range(1, 13)) and rig.platform.replays == 0
    assert await rig.rows() == {n: ("sent", 1, None, f"r-{n}") for n in range(1, 13)}


async def test_a_transient_error_mid_group_counts_its_attempt_only(store: Store, clock: FakeClock) -> None:
    with counting_commits(store) as commits:
        rig = await make_rig(store, clock, commits, 10)

        async def failing() -> Exception:
            return RetryablePublishError("masto", "503 Service Unavailable")

        rig.publisher.hooks[5] = failing
        await rig.deliverer.deliver_channel("masto")
    rows = await rig.rows()
    assert rows[5] == ("failed", 1, None, None)  # its attempt counted, backing off with the channel held
    assert {n: rows[n] for n in range(6, 11)} == {n: ("queued", 0, None, None) for n in range(6, 11)}
    [chan] = [c for c in await store.channel_counts(clock.now()) if c.channel == "masto"]
    assert chan.hold_until is not None and chan.hold_until > clock.now()
    clock.advance(200)
    await rig.deliverer.deliver_channel("masto")
    assert rig.platform.order == titles(*range(1, 11))
    rows = await rig.rows()
    assert rows[5] == ("sent", 2, None, "r-5")
    assert all(rows[n] == ("sent", 1, None, f"r-{n}") for n in range(1, 11) if n != 5)


async def test_stopping_mid_group_hands_back_the_unsent_deliveries_as_queued(store: Store, clock: FakeClock) -> None:
    with counting_commits(store) as commits:
        rig = await make_rig(store, clock, commits, 10)

        async def stop() -> None:  # SIGTERM while post 4 is sent: the service sets `stopping`; the send finishes
            rig.deliverer.stopping = True

        rig.publisher.hooks[4] = stop
        outcomes = await rig.deliverer.deliver_channel("masto")
    assert [o.status for o in outcomes] == [DeliveryStatus.SENT] * 4
    rows = await rig.rows()
    assert {n: rows[n] for n in range(1, 5)} == {n: ("sent", 1, None, f"r-{n}") for n in range(1, 5)}
    assert {n: rows[n] for n in range(5, 11)} == {n: ("queued", 0, None, None) for n in range(5, 11)}
    assert await store.deliveries(status="sending") == []
    rig.deliverer.stopping = False
    await rig.deliverer.deliver_channel("masto")
    assert rig.platform.order == titles(*range(1, 11)) and rig.platform.replays == 0


async def test_a_pause_from_elsewhere_ends_the_group_at_its_next_commit(store: Store, clock: FakeClock) -> None:
    with counting_commits(store) as commits:
        rig = await make_rig(store, clock, commits, 10)

        async def pause() -> None:  # `tagrelay channels pause masto` from another process
            await store.set_paused("masto", True, "paused by an operator", clock.now())

        rig.publisher.hooks[2] = pause
        await rig.deliverer.deliver_channel("masto")
    assert rig.platform.order == titles(1, 2, 3)  # answer 3 is the first commit after the pause
    rows = await rig.rows()
    assert {n: rows[n][0] for n in range(1, 4)} == dict.fromkeys(range(1, 4), "sent")
    assert {n: rows[n] for n in range(4, 11)} == {n: ("queued", 0, None, None) for n in range(4, 11)}
    await store.set_paused("masto", False, None, clock.now())
    await rig.deliverer.deliver_channel("masto")
    assert rig.platform.order == titles(*range(1, 11))


async def test_a_group_older_than_its_max_age_is_handed_back_and_claimed_again(store: Store,
                                                                              clock: FakeClock) -> None:
    groups = GroupPolicy(size=8, commit_every=3, commit_after=60.0, max_age=30.0)
    with counting_commits(store) as commits:
        rig = await make_rig(store, clock, commits, 10, groups=groups)

        async def slow() -> None:
            clock.advance(31)

        rig.publisher.hooks[2] = slow
        await rig.deliverer.deliver_channel("masto")
    assert rig.platform.order == titles(*range(1, 11)) and rig.platform.replays == 0
    assert await rig.rows() == {n: ("sent", 1, None, f"r-{n}") for n in range(1, 11)}
    _, sending, _ = rig.publisher.seen[2]
    assert sending == titles(*range(3, 11))  # 3-8 went back after post 2 and were claimed again with 9, 10


async def test_a_crash_mid_group_is_recovered_by_resending_with_the_same_keys(store: Store,
                                                                             clock: FakeClock) -> None:
    with counting_commits(store) as commits:
        rig = await make_rig(store, clock, commits, 10)

        async def crash() -> None:
            raise Crash  # posts 1-3 committed, 4 and 5 made on the platform, their answers never recorded

        rig.publisher.hooks[6] = crash
        with pytest.raises(Crash):
            await rig.deliverer.deliver_channel("masto")
    assert rig.platform.order == titles(1, 2, 3, 4, 5)
    rows = await rig.rows()
    assert {n: rows[n][0] for n in range(1, 11)} == {**dict.fromkeys(range(1, 4), "sent"),
                                                      **dict.fromkeys(range(4, 9), "sending"),
                                                      **dict.fromkeys(range(9, 11), "queued")}
    keys = list(rig.platform.posts)
    # the next start: the channel resends interrupted sends, so its `sending` rows go back to the queue
    assert await store.recover_sending(clock.now(), resend_channels={"masto"}) == (5, 0)
    rig.publisher.hooks.clear()
    await rig.restarted().deliver_channel("masto")
    assert rig.platform.order == titles(*range(1, 11))  # nothing twice: 4 and 5 came back under their keys
    assert rig.platform.replays == 2 and list(rig.platform.posts)[:5] == keys
    assert await rig.rows() == {n: ("sent", 1, None, f"r-{n}") for n in range(1, 11)}
    assert Counter(t for t, _, _ in rig.publisher.seen)["Post 4"] == 2
