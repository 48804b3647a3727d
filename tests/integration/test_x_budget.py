"""X spending budgets end to end: the real X publisher over a loopback FakeX, the real Deliverer and store
(SQLite, and PostgreSQL when ``TAGRELAY_TEST_POSTGRES_URL`` is set), time on a ``FakeClock``.

With ``budget = "0.50 USD/day"`` and X's price of a post with a URL ($0.20), two posts go out and the third
waits, queued and in order, with the channel held until midnight UTC; ``status`` says "budget reached,
resumes at …", the admins are told once, ``/metrics`` shows what is spent and left, and the third post goes
out when the day turns. A 402 pauses the channel with "credits exhausted". Two instances reserving at once
on one database never spend past a budget.
"""

from __future__ import annotations

import asyncio
import io
import logging
import random
import socket
from collections.abc import AsyncIterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from bot.admin.replies import format_status
from bot.admin.views import status_view
from bot.cli import write_status
from bot.clock import FakeClock
from bot.domain.budget import Limit, Period, Refusal, Reservation
from bot.domain.models import Subscription
from bot.domain.state import DeliveryView
from bot.observability import Metrics
from bot.publishers.api import PublisherContext
from bot.publishers.x import XOptions
from bot.publishers.x import plugin as x_plugin
from bot.services.admin import AdminService
from bot.services.delivery import ChannelRuntime, Deliverer
from bot.settings import Config, DeliveryConfig
from bot.storage.store import Store
from tests.delivery_support import deliver_due
from tests.fakes.x_api import (
    ACCESS_TOKEN,
    ACCESS_TOKEN_SECRET,
    CONSUMER_KEY,
    CONSUMER_SECRET,
    TWEETS,
    FakeX,
    problem,
)
from tests.integration.test_store import parsed, poll

SECRETS = {"X_CONSUMER_KEY": CONSUMER_KEY, "X_CONSUMER_SECRET": CONSUMER_SECRET, "X_ACCESS_TOKEN": ACCESS_TOKEN,
           "X_ACCESS_TOKEN_SECRET": ACCESS_TOKEN_SECRET}
POLICY = DeliveryConfig(pacing=False, max_attempts=3, retry_base=10, retry_cap=100)
START = datetime(2026, 1, 1, 15, 0, tzinfo=UTC)
MIDNIGHT = datetime(2026, 1, 2, tzinfo=UTC)


class Notes:
    def __init__(self) -> None:
        self.texts: list[str] = []

    async def notify(self, text: str) -> None:
        self.texts.append(text)


@dataclass
class Rig:
    fake: FakeX
    store: Store
    clock: FakeClock
    chans: dict[str, ChannelRuntime]
    deliverer: Deliverer
    metrics: Metrics
    notes: Notes = field(default_factory=Notes)

    @property
    def config(self) -> Config:
        return Config(channels=tuple(c.options for c in self.chans.values()))

    def tweets(self) -> list[str]:
        with self.fake.lock:
            return [t.text for t in self.fake.tweets]

    async def deliver(self) -> None:
        await deliver_due(self.deliverer)

    async def rows(self, channel: str) -> dict[str, DeliveryView]:
        return {r.post_title: r for r in await self.store.deliveries(channel=channel)}

    async def states(self, channel: str) -> dict[str, str]:
        return {title: row.status for title, row in (await self.rows(channel)).items()}

    def admin(self) -> AdminService:
        return AdminService(self.store, self.config, self.clock)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def rig_factory(store: Store) -> AsyncIterator[Any]:
    stack = ExitStack()
    clients: list[httpx.AsyncClient] = []

    async def make(*channels: dict[str, Any], posts: tuple[int, ...] = (1, 2, 3), unreachable: bool = False) -> Rig:
        clock = FakeClock(START)
        fake = FakeX(epoch=clock.now().timestamp())
        stack.enter_context(fake)
        http = httpx.AsyncClient(timeout=httpx.Timeout(5.0))
        clients.append(http)
        ctx = PublisherContext(http=http, secret=lambda name: SECRETS[name], logger=logging.getLogger("test.budget"),
                               clock=clock)
        base = f"http://127.0.0.1:{_closed_port()}" if unreachable else fake.url
        chans: dict[str, ChannelRuntime] = {}
        for table in channels:
            options = XOptions.model_validate({"platform": "x", "api_base": base, **table})
            chans[options.name] = ChannelRuntime(options.name, "x", x_plugin, options, x_plugin.create(options, ctx))
        await store.sync_config([("archive", "https://a.example/feed/", "rss")], [(n, "x") for n in chans],
                                [Subscription("mek", "MEK", n) for n in chans], clock.now())
        await poll(store, clock, [])  # the baseline
        await poll(store, clock, [parsed(n, "MEK") for n in posts])
        metrics = Metrics()
        rig = Rig(fake, store, clock, chans, Deliverer(store, chans, clock, POLICY, metrics, owner="test",
                                                         rng=random.Random(3)), metrics)
        rig.deliverer.notifier = rig.notes
        return rig

    try:
        yield make
    finally:
        for client in clients:
            await client.aclose()
        stack.close()


def gauge(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


# -- the day's budget: the third post waits for midnight ------------------------------------------------


async def test_the_third_post_of_the_day_is_held_until_the_day_turns_then_sent(rig_factory: Any) -> None:
    rig: Rig = await rig_factory({"name": "x-main", "budget": "0.50 USD/day"})
    await rig.deliver()

    # $0.20 a post with a URL: 0.20 + 0.20 fit in 0.50, a third would make 0.60
    assert [t.splitlines()[0] for t in rig.tweets()] == ["Post 1", "Post 2"]
    rows = await rig.rows("x-main")
    assert {t: (r.status, r.attempts) for t, r in rows.items()} == {
        "Post 1": ("sent", 1), "Post 2": ("sent", 1), "Post 3": ("queued", 0)}  # kept, the attempt not counted
    assert rows["Post 3"].next_attempt_at == MIDNIGHT
    assert rows["Post 3"].last_error == ("budget reached: channel x-main 0.50 USD/day (0.40 USD spent, 0.10 left); "
                                         "the next post costs 0.20 USD")
    assert (await rig.store.channel("x-main")).hold_until == MIDNIGHT

    # the admins are told once, with when it resumes
    assert rig.notes.texts == ["Channel x-main: budget reached: channel x-main 0.50 USD/day (0.40 USD spent, 0.10 "
                               "left); the next post costs 0.20 USD. Its posts wait in order; sending resumes at "
                               "2026-01-02 00:00 UTC."]

    # status (CLI table, JSON-able report, admin bot) says so
    report = await rig.admin().status()
    view = status_view(report)
    (chan,) = view.channels
    assert chan.state == "budget reached" and chan.queued == 1
    assert chan.state_text == "budget reached, resumes at 2026-01-02 00:00 UTC"
    out = io.StringIO()
    write_status(report, out)
    text = out.getvalue()
    assert "budget reached, resumes at 2026-01-02 00:00 UTC" in text
    assert "BUDGETS (USD)" in text
    budget_row = next(line for line in text.splitlines() if line.startswith("x-main") and "channel x-main" in line)
    assert budget_row.split()[3:9] == ["day", "0.40", "0.50", "0.10", "2026-01-02", "00:00"]
    assert any("channel x-main: budget reached" in w and "resumes at 2026-01-02 00:00 UTC" in w
               for w in report.warnings)
    bot_text = format_status(view)
    assert "budget reached, resumes at 2026-01-02 00:00 UTC" in bot_text
    assert "channel x-main: 0.40 of 0.50 USD spent today, 0.10 left (reached)" in bot_text

    # /metrics: spent, budget and what is left, from the database
    await rig.deliverer.refresh_queue_metrics()
    labels = {"budget": "channel:x-main", "period": "day"}
    assert gauge(rig.metrics, "tagrelay_budget_spent_usd", **labels) == pytest.approx(0.40)
    assert gauge(rig.metrics, "tagrelay_budget_limit_usd", **labels) == pytest.approx(0.50)
    assert gauge(rig.metrics, "tagrelay_budget_remaining_usd", **labels) == pytest.approx(0.10)
    assert gauge(rig.metrics, "tagrelay_budget_held_total", platform="x", channel="x-main") == 1

    # nothing more today: no request, no second notice
    rig.clock.set(datetime(2026, 1, 1, 23, 59, 59, tzinfo=UTC))
    await rig.deliver()
    assert len(rig.fake.seen("POST", TWEETS)) == 2 and len(rig.notes.texts) == 1

    # the day turns: the third post goes out, counted in the new day
    rig.clock.set(MIDNIGHT)
    await rig.deliver()
    assert [t.splitlines()[0] for t in rig.tweets()] == ["Post 1", "Post 2", "Post 3"]
    assert await rig.states("x-main") == {"Post 1": "sent", "Post 2": "sent", "Post 3": "sent"}
    assert await rig.store.spending([("channel:x-main", Period.DAY)], MIDNIGHT) == {
        ("channel:x-main", Period.DAY): (200_000, None)}
    assert len(rig.notes.texts) == 1
    view = status_view(await rig.admin().status())
    assert view.channels[0].state == "active"


async def test_a_month_budget_holds_until_the_first_of_next_month(rig_factory: Any) -> None:
    rig: Rig = await rig_factory({"name": "x-main", "budget": ["2 USD/day", "0.50 USD/month"]})
    await rig.deliver()
    assert len(rig.tweets()) == 2
    first_of_february = datetime(2026, 2, 1, tzinfo=UTC)
    assert (await rig.store.channel("x-main")).hold_until == first_of_february
    assert "0.50 USD/month" in (await rig.rows("x-main"))["Post 3"].last_error  # type: ignore[operator]
    rig.clock.set(MIDNIGHT)  # a new day is not enough: the month is full
    await rig.deliver()
    assert len(rig.tweets()) == 2
    rig.clock.set(first_of_february)
    await rig.deliver()
    assert len(rig.tweets()) == 3


async def test_an_account_budget_binds_every_channel_of_the_account_and_is_announced_once(
        rig_factory: Any) -> None:
    # x-b sets no budget of its own, but posts with the same credentials as x-a, whose account_budget binds both
    rig: Rig = await rig_factory({"name": "x-a", "account_budget": "0.50 USD/day"},
                                 {"name": "x-b", "hashtags": True}, posts=(1, 2))
    await rig.deliver()
    assert len(rig.tweets()) == 2  # 4 posts wanted, $0.20 each, 0.50 for the account
    states = {**{f"a {t}": s for t, s in (await rig.states("x-a")).items()},
              **{f"b {t}": s for t, s in (await rig.states("x-b")).items()}}
    assert sorted(states.values()) == ["queued", "queued", "sent", "sent"]
    assert len(rig.notes.texts) == 1 and "account of x-a, x-b" in rig.notes.texts[0]
    lines = (await rig.admin().budgets())["x-b"]
    assert [(b.label, b.spent, b.left, b.reached) for b in lines] == [("account of x-a, x-b", 400_000, 100_000, True)]
    rig.clock.set(MIDNIGHT)
    await rig.deliver()
    assert len(rig.tweets()) == 4


# -- what is charged: a request that never left, or that X turned away unbilled, is given back ------------


async def test_a_402_pauses_the_channel_with_credits_exhausted_and_gives_the_reservation_back(
        rig_factory: Any) -> None:
    rig: Rig = await rig_factory({"name": "x-main", "budget": "1 USD/day"}, posts=(1, 2))
    rig.fake.payment_required()
    await rig.deliver()
    state = await rig.store.channel("x-main")
    assert state.paused and (state.paused_reason or "").startswith("credits exhausted: X is out of credits")
    assert await rig.states("x-main") == {"Post 1": "queued", "Post 2": "queued"}
    assert len(rig.notes.texts) == 1 and "credits exhausted" in rig.notes.texts[0]
    assert await rig.store.spending([("channel:x-main", Period.DAY)], rig.clock.now()) == {
        ("channel:x-main", Period.DAY): (0, None)}  # X could not bill it: released
    view = status_view(await rig.admin().status())
    assert view.channels[0].state == "PAUSED"

    await rig.admin().resume("x-main", actor="op@cli", via="cli")
    await rig.deliver()
    assert await rig.states("x-main") == {"Post 1": "sent", "Post 2": "sent"}
    assert (await rig.store.spending([("channel:x-main", Period.DAY)], rig.clock.now()))[
        ("channel:x-main", Period.DAY)][0] == 400_000


async def test_a_request_that_never_left_is_not_counted(rig_factory: Any) -> None:
    rig: Rig = await rig_factory({"name": "x-main", "budget": "0.50 USD/day"}, posts=(1,), unreachable=True)
    await rig.deliver()  # connection refused: nothing was sent
    assert await rig.states("x-main") == {"Post 1": "failed"}
    assert await rig.store.spending([("channel:x-main", Period.DAY)], rig.clock.now()) == {
        ("channel:x-main", Period.DAY): (0, None)}


async def test_a_request_that_reached_x_stays_counted_even_when_it_failed(rig_factory: Any) -> None:
    rig: Rig = await rig_factory({"name": "x-main", "budget": "0.50 USD/day"}, posts=(1,))
    rig.fake.fail_next(503, problem(503, "Service Unavailable", "Service Unavailable"), match=TWEETS)
    await rig.deliver()
    assert await rig.states("x-main") == {"Post 1": "failed"}
    assert (await rig.store.spending([("channel:x-main", Period.DAY)], rig.clock.now()))[
        ("channel:x-main", Period.DAY)][0] == 200_000  # it reached X: may have been billed
    rig.clock.advance(3600)
    await rig.deliver()  # the retry is another request: 0.40 in all, and it fits
    assert await rig.states("x-main") == {"Post 1": "sent"}
    assert (await rig.store.spending([("channel:x-main", Period.DAY)], rig.clock.now()))[
        ("channel:x-main", Period.DAY)][0] == 400_000


async def test_a_channel_without_a_budget_reserves_nothing(rig_factory: Any) -> None:
    rig: Rig = await rig_factory({"name": "x-main"}, posts=(1, 2, 3))
    await rig.deliver()
    assert len(rig.tweets()) == 3
    assert await rig.admin().budgets() == {}
    assert await rig.store.spending([("channel:x-main", Period.DAY)], rig.clock.now()) == {}


# -- two instances on one database never overspend ----------------------------------------------------------


async def test_concurrent_reservations_from_two_instances_never_overspend(db_url: str, store: Store) -> None:
    """Two Stores on one database (two instances): 24 reservations of $0.20 at once against $1.00 a day and
    $1.40 a month. Exactly five fit; the budget's row holds exactly $1.00; one refusal is the first."""
    other = Store.open(db_url)
    try:
        limits = [("account:x", Limit(Period.DAY, 1_000_000)), ("account:x", Limit(Period.MONTH, 1_400_000)),
                  ("channel:x-main", Limit(Period.DAY, 5_000_000))]
        now = START
        results = await asyncio.gather(*(s.reserve_spend(limits, 200_000, now)
                                         for _ in range(12) for s in (store, other)))
        made = [r for r in results if isinstance(r, Reservation)]
        refused = [r for r in results if isinstance(r, Refusal)]
        assert len(made) == 5 and len(refused) == 19
        assert sum(1 for r in refused if r.first) == 1
        assert all(not r.never and r.resumes_at == MIDNIGHT for r in refused)
        spent = await other.spending([("account:x", Period.DAY), ("account:x", Period.MONTH),
                                      ("channel:x-main", Period.DAY)], now)
        assert spent[("account:x", Period.DAY)][0] == 1_000_000
        assert spent[("account:x", Period.MONTH)][0] == 1_000_000
        assert spent[("channel:x-main", Period.DAY)][0] == 1_000_000

        # giving back two at once from both instances: exactly two more fit
        await asyncio.gather(store.release_spend(made[0]), other.release_spend(made[1]))
        again = await asyncio.gather(*(s.reserve_spend(limits, 200_000, now) for _ in range(4) for s in (store, other)))
        assert sum(isinstance(r, Reservation) for r in again) == 2
        # the next day: the day budget is new, the month's has 0.40 left (two posts)
        later = await asyncio.gather(*(s.reserve_spend(limits, 200_000, MIDNIGHT) for _ in range(3)
                                       for s in (store, other)))
        fits = [r for r in later if isinstance(r, Reservation)]
        assert len(fits) == 2
        over = [r for r in later if isinstance(r, Refusal)]
        assert all(r.resumes_at == datetime(2026, 2, 1, tzinfo=UTC) for r in over)
        assert sum(1 for r in over if r.first) == 1  # the month's window: told once
    finally:
        await other.aclose()


async def test_a_release_never_goes_below_zero_and_touches_only_its_window(store: Store) -> None:
    limits = [("channel:x-main", Limit(Period.DAY, 1_000_000))]
    first = await store.reserve_spend(limits, 300_000, START)
    assert isinstance(first, Reservation)
    second = await store.reserve_spend(limits, 300_000, MIDNIGHT)  # the next day's window
    assert isinstance(second, Reservation)
    await store.release_spend(first)
    await store.release_spend(first)  # twice: still not negative
    assert (await store.spending(limits and [("channel:x-main", Period.DAY)], START)) == {
        ("channel:x-main", Period.DAY): (0, None)}
    assert (await store.spending([("channel:x-main", Period.DAY)], MIDNIGHT)) == {
        ("channel:x-main", Period.DAY): (300_000, None)}
