"""Discord faults end to end: the REAL adapter over real sockets, through the real Deliverer and store.

The same rig as test_delivery_faults.py (posts 2 and 3 queued for one channel; post 2 goes first; a
``FakeClock``; SQLite, and PostgreSQL with ``TAGRELAY_TEST_POSTGRES_URL``), for a Discord channel
against ``FakeDiscord`` failing the way Discord fails: 429 with a fractional ``retry_after``, a spent
bucket, Cloudflare's ban, 5xx, a deleted webhook or a regenerated URL, missing permissions, a forum
that needs a thread, an invalid form body, and answers lost after the message was made.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import pytest

from bot.clock import FakeClock
from bot.domain.models import DeliveryStatus, Subscription
from bot.domain.state import DeliveryView
from bot.publishers.api import PublisherContext
from bot.publishers.discord import DiscordOptions, DiscordPlugin
from bot.services.admin import AdminService
from bot.services.delivery import ChannelRuntime, Deliverer, DeliveryOutcome
from bot.settings import Config
from bot.storage.store import Store
from tests.delivery_support import deliver_due
from tests.fakes.discord_api import WEBHOOK_ID, WEBHOOK_TOKEN, FakeDiscord
from tests.fakes.http import Request
from tests.integration.test_delivery_faults import READ_TIMEOUT, make_deliverer
from tests.integration.test_store import parsed, poll

NAME = "news-dc"
LINK = re.compile(r"https://a\.example/(\d+)/")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Rig:
    fake: FakeDiscord
    chan: ChannelRuntime
    deliverer: Deliverer
    store: Store
    clock: FakeClock
    notes: list[str] = field(default_factory=list)

    def requests(self) -> list[Request]:
        """Execute Webhook calls Discord received, answered or not."""
        return self.fake.seen("POST")

    def posted_numbers(self) -> list[int]:
        """Which posts (by number) Discord holds, in creation order; a duplicate shows twice."""
        found = []
        for message in self.fake.live():
            text = message.content or " ".join(str(e.get("url", "")) for e in message.embeds)
            m = LINK.search(text)
            if m:
                found.append(int(m[1]))
        return found

    async def deliver(self) -> list[DeliveryOutcome]:
        return await deliver_due(self.deliverer)

    def restarted(self) -> Deliverer:
        return make_deliverer(self.store, self.chan, self.clock, self.notes)

    async def rows(self) -> dict[int, DeliveryView]:
        out = {}
        for row in await self.store.deliveries(channel=NAME):
            m = LINK.search(row.post_url or "")
            assert m is not None
            out[int(m[1])] = row
        return out

    async def states(self) -> dict[int, tuple[str, int]]:
        return {n: (r.status, r.attempts) for n, r in (await self.rows()).items()}

    async def hold(self) -> timedelta:
        until = (await self.store.channel(NAME)).hold_until
        assert until is not None
        return until - self.clock.now()


RigFactory = Callable[..., Awaitable[Rig]]


@pytest.fixture
async def make_rig(store: Store, clock: FakeClock) -> AsyncIterator[RigFactory]:
    """``await make_rig(unreachable=False, read_timeout=None, fake={...}, **channel_options)``."""
    stack = ExitStack()
    clients: list[httpx.AsyncClient] = []
    rigs: list[Rig] = []

    async def factory(*, unreachable: bool = False, read_timeout: float | None = None,
                      fake: dict[str, Any] | None = None, **overrides: Any) -> Rig:
        client = httpx.AsyncClient(timeout=httpx.Timeout(5.0, read=read_timeout or READ_TIMEOUT))
        clients.append(client)
        server = stack.enter_context(FakeDiscord(clock=clock.now, **(fake or {})))
        base = f"http://127.0.0.1:{_closed_port()}/api" if unreachable else server.api_base
        url = f"{base}/webhooks/{WEBHOOK_ID}/{WEBHOOK_TOKEN}"
        options = DiscordOptions.model_validate({"name": NAME, "platform": "discord", "api_base": base,
                                                 **overrides})
        plugin = DiscordPlugin()  # its own rate-limit state: nothing leaks between tests
        ctx = PublisherContext(http=client, secret=lambda _name: url, logger=logging.getLogger("test.faults.dc"),
                               clock=clock)
        chan = ChannelRuntime(NAME, "discord", plugin, options, plugin.create(options, ctx))
        await chan.publisher.initialize()
        await store.sync_config([("archive", "https://a.example/feed/", "rss")], [(NAME, "discord")],
                                [Subscription("mek", "MEK", NAME)], clock.now())
        await poll(store, clock, [])
        await poll(store, clock, [parsed(3, "MEK"), parsed(2, "MEK")])
        notes: list[str] = []
        rig = Rig(server, chan, make_deliverer(store, chan, clock, notes), store, clock, notes)
        rigs.append(rig)
        return rig

    try:
        yield factory
    finally:
        for rig in rigs:
            await rig.chan.publisher.aclose()
        for client in clients:
            await client.aclose()
        stack.close()


# -- the claim is committed first; a slow answer is only late -------------------------------------------


async def test_sending_is_committed_before_the_request_and_a_slow_answer_is_recorded(make_rig: RigFactory) -> None:
    rig = await make_rig(read_timeout=30)
    release = rig.fake.hold_next("execute")
    delivering = asyncio.create_task(rig.deliver())
    try:
        assert await asyncio.to_thread(rig.fake.wait_for, lambda: rig.fake.pending_faults == 0
                                       and rig.fake.handled == len(rig.fake.requests), 10)
        assert await rig.states() == {2: ("sending", 1), 3: ("queued", 0)}
        assert rig.posted_numbers() == [2]
    finally:
        release.set()
    await delivering
    rows = await rig.rows()
    assert await rig.states() == {2: ("sent", 1), 3: ("sent", 1)}
    first = rig.fake.messages[0]
    assert rows[2].remote_id == first.id
    assert rows[2].remote_url == f"https://discord.com/channels/{'1100000000000000001'}/{first.channel_id}/{first.id}"
    assert rig.posted_numbers() == [2, 3] and len(rig.requests()) == 2


# -- rate limits: to the millisecond, the whole channel, nothing dropped ------------------------------------


async def test_a_429_holds_the_whole_channel_exactly_retry_after(make_rig: RigFactory) -> None:
    rig = await make_rig()
    rig.fake.rate_limit(37.25)
    await rig.deliver()
    assert await rig.states() == {2: ("queued", 0), 3: ("queued", 0)}  # a 429 is not a failed attempt
    assert await rig.hold() == timedelta(seconds=37.25)
    assert len(rig.requests()) == 1

    rig.clock.advance(37.249)
    assert await rig.deliver() == []
    assert await deliver_due(rig.restarted()) == []  # the hold is in the database: a restart waits too
    assert len(rig.requests()) == 1

    rig.clock.advance(0.001)
    await rig.deliver()
    assert await rig.states() == {2: ("sent", 1), 3: ("sent", 1)}
    assert rig.posted_numbers() == [2, 3] and len(rig.requests()) == 3
    assert rig.fake.invalid_requests == 1


async def test_a_spent_bucket_holds_the_channel_until_its_reset_without_a_429(make_rig: RigFactory) -> None:
    rig = await make_rig(fake={"bucket_limit": 1, "bucket_window": 3.5})
    await rig.deliver()
    assert await rig.states() == {2: ("sent", 1), 3: ("queued", 0)}  # post 3 waits for the bucket
    assert await rig.hold() == timedelta(seconds=3.5)
    assert len(rig.requests()) == 1 and rig.fake.rate_limited == 0
    rig.clock.advance(3.5)
    await rig.deliver()
    assert await rig.states() == {2: ("sent", 1), 3: ("sent", 1)}
    assert rig.posted_numbers() == [2, 3] and (rig.fake.rate_limited, rig.fake.invalid_requests) == (0, 0)


@pytest.mark.parametrize("told", [{"retry_after": 1e300}, {"header": "inf"}])
async def test_an_endless_wait_holds_the_channel_a_week_at_most(make_rig: RigFactory, told: dict[str, Any]) -> None:
    rig = await make_rig()
    if "retry_after" in told:
        rig.fake.fail_next(429, {"message": "You are being rate limited.", "retry_after": told["retry_after"],
                                 "global": False}, match="execute")
    else:
        rig.fake.fail_next(503, {"message": "Service Unavailable", "code": 0}, {"Retry-After": told["header"]},
                           match="execute")
    await rig.deliver()
    assert await rig.states() == {2: ("queued", 0), 3: ("queued", 0)}
    assert await rig.hold() == timedelta(days=7)
    rig.clock.advance(7 * 86400)
    await rig.deliver()
    assert rig.posted_numbers() == [2, 3]


async def test_a_cloudflare_ban_holds_the_channel_an_hour(make_rig: RigFactory) -> None:
    rig = await make_rig()
    rig.fake.cloudflare_ban()
    await rig.deliver()
    assert await rig.states() == {2: ("queued", 0), 3: ("queued", 0)}
    assert await rig.hold() == timedelta(hours=1)
    assert "Cloudflare" in ((await rig.rows())[2].last_error or "")


# -- transient errors -------------------------------------------------------------------------------------


async def test_server_errors_back_off_then_give_up(make_rig: RigFactory) -> None:
    rig = await make_rig()
    rig.fake.fail_next(502, {"message": "502: Bad Gateway", "code": 0}, match="execute", times=3)
    for attempt, ceiling in enumerate([10.0, 20.0], start=1):
        await rig.deliver()
        assert await rig.states() == {2: ("failed", attempt), 3: ("queued", 0)}
        wait = (await rig.hold()).total_seconds()
        assert ceiling / 2 <= wait <= ceiling
        rig.clock.advance(wait)
    outcomes = await rig.deliver()
    assert [o.status for o in outcomes] == [DeliveryStatus.DEAD, DeliveryStatus.SENT]
    assert "gave up after 3 attempts" in ((await rig.rows())[2].last_error or "")
    assert rig.posted_numbers() == [3]


async def test_connection_refused_is_retried_not_left_in_doubt(make_rig: RigFactory) -> None:
    rig = await make_rig(unreachable=True)
    await rig.deliver()
    assert await rig.states() == {2: ("failed", 1), 3: ("queued", 0)}
    assert "nothing was sent" in ((await rig.rows())[2].last_error or "")


# -- what pauses the channel: the reason recorded, the admins told, the queue kept ------------------------


def _deleted(fake: FakeDiscord) -> None:
    fake.delete_webhook()


def _regenerated(fake: FakeDiscord) -> None:
    fake.regenerate_token()


PAUSES: list[tuple[str, Callable[[FakeDiscord], None], Callable[[FakeDiscord], None], dict[str, Any], str]] = [
    ("deleted-webhook", _deleted, lambda f: f.restore_webhook(), {}, "no longer exists"),
    ("regenerated-url", _regenerated, lambda f: f.regenerate_token(WEBHOOK_TOKEN), {}, "rejected the webhook token"),
    ("missing-permissions", lambda f: f.error(403, 50013, "Missing Permissions"), lambda f: None, {},
     "Missing Permissions"),
    ("forum-needs-a-thread", lambda f: f.error(400, 220001, "Webhooks posted to forum channels must have a "
                                                            "thread_name or thread_id"), lambda f: None, {},
     "set forum = true"),
    ("archived-thread", lambda f: f.error(400, 50083, "Thread is archived"), lambda f: None,
     {"thread_id": "1100000000000000003"}, "archived or locked"),
]


@pytest.mark.parametrize(("case", "break_it", "fix_it", "opts", "reason"), PAUSES, ids=[p[0] for p in PAUSES])
async def test_what_the_operator_must_fix_pauses_the_channel_and_tells_the_admins(
        make_rig: RigFactory, case: str, break_it: Callable[[FakeDiscord], None], fix_it: Callable[[FakeDiscord], None],
        opts: dict[str, Any], reason: str) -> None:
    rig = await make_rig(**opts)
    break_it(rig.fake)
    await rig.deliver()
    state = await rig.store.channel(NAME)
    assert state.paused and reason in (state.paused_reason or "")
    assert await rig.states() == {2: ("queued", 0), 3: ("queued", 0)}
    [note] = rig.notes
    assert note.startswith(f"Channel {NAME} paused (") and reason in note and f"/resume {NAME}" in note
    if case in ("deleted-webhook", "regenerated-url"):
        assert "(credentials)" in note
    for text in (state.paused_reason or "", note):
        assert WEBHOOK_TOKEN not in text and WEBHOOK_TOKEN[:16] not in text

    rig.clock.advance(86400)
    assert await rig.deliver() == []
    assert len(rig.requests()) == 1

    fix_it(rig.fake)
    change = await AdminService(rig.store, Config(channels=(rig.chan.options,)), rig.clock).resume(
        NAME, actor="op@cli", via="cli")
    assert change.done and "2 waiting" in change.text
    await rig.deliver()
    assert await rig.states() == {2: ("sent", 1), 3: ("sent", 1)}
    assert rig.posted_numbers() == [2, 3]


# -- refused content: one plain retry, then dead ----------------------------------------------------------

INVALID = {"embeds": {"0": {"image": {"url": {"_errors": [{"code": "URL_TYPE_INVALID_URL",
                                                             "message": "Not a well formed URL."}]}}}}}


async def test_an_invalid_form_body_is_retried_once_as_plain_content(make_rig: RigFactory) -> None:
    rig = await make_rig()
    rig.fake.error(400, 50035, "Invalid Form Body", INVALID)
    await rig.deliver()
    assert await rig.states() == {2: ("sent", 1), 3: ("sent", 1)}
    first, second = rig.fake.messages
    assert first.embeds == [] and "https://a.example/2/" in first.content  # the plain form: content only
    assert second.embeds and not second.content
    assert len(rig.requests()) == 3


async def test_refused_twice_is_dead_with_discords_words_and_retry_requeues(make_rig: RigFactory) -> None:
    rig = await make_rig()
    rig.fake.error(400, 50035, "Invalid Form Body", INVALID, times=2)
    await rig.deliver()
    rows = await rig.rows()
    assert (rows[2].status, rows[2].attempts, rows[3].status) == ("dead", 1, "sent")
    assert "embeds.0.image.url: Not a well formed URL." in (rows[2].last_error or "")
    admin = AdminService(rig.store, Config(channels=(rig.chan.options,)), rig.clock)
    assert (await admin.retry(NAME, actor="op@cli", via="cli")).done
    await rig.deliver()
    assert sorted(rig.posted_numbers()) == [2, 3]


# -- no idempotency: a lost answer is `unknown`, unless at-least-once ----------------------------------------


@pytest.mark.parametrize("how", ["drop", "timeout"])
async def test_a_lost_answer_is_unknown_and_never_resent(make_rig: RigFactory, how: str) -> None:
    rig = await make_rig()
    if how == "drop":
        rig.fake.drop_next("execute", process=True)
    else:
        rig.fake.hold_next("execute")
    await rig.deliver()
    rows = await rig.rows()
    assert (rows[2].status, rows[3].status) == ("unknown", "sent")
    assert "may or may not" in (rows[2].last_error or "")
    rig.clock.advance(7 * 86400)
    assert await rig.deliver() == []
    assert await deliver_due(rig.restarted()) == []
    assert rig.posted_numbers() == [2, 3] and len(rig.requests()) == 2  # at most once


async def test_an_unknown_delivery_is_resent_by_an_admin_retry(make_rig: RigFactory) -> None:
    rig = await make_rig()
    rig.fake.drop_next("execute")  # dropped before Discord made the message: the client cannot know
    await rig.deliver()
    rows = await rig.rows()
    assert (rows[2].status, rows[3].status) == ("unknown", "sent") and rig.posted_numbers() == [3]
    admin = AdminService(rig.store, Config(channels=(rig.chan.options,)), rig.clock)
    assert (await admin.retry(str(rows[2].id), actor="op@cli", via="cli")).done
    await rig.deliver()
    assert await rig.states() == {2: ("sent", 1), 3: ("sent", 1)}
    assert rig.posted_numbers() == [3, 2]


async def test_at_least_once_resends_a_lost_answer(make_rig: RigFactory) -> None:
    rig = await make_rig(at_least_once=True)
    rig.fake.drop_next("execute", process=True)
    await rig.deliver()
    assert await rig.states() == {2: ("failed", 1), 3: ("queued", 0)}
    rig.clock.advance((await rig.hold()).total_seconds())
    await rig.deliver()
    assert await rig.states() == {2: ("sent", 2), 3: ("sent", 1)}
    assert rig.posted_numbers() == [2, 2, 3]  # at least once: the price is this duplicate
