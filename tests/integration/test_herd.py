"""No thundering herd (issue 21), with the real service (``build_app``: the real ``PollDriver``, store and
feed client) over a loopback archive, on SQLite and PostgreSQL, with a fake clock:

- more overdue sources at start-up than ``[service] ramp_after`` are spread over their interval, and the
  spread is in the database (a restart spreads them the same way); fewer are polled at once, as before;
- ``[http] per_host`` bounds the polls against one host, counted at the server, while other hosts'
  sources start meanwhile;
- a round reads only what is due (``Store.due_sources``), and a timed wake comes no sooner than
  ``ROUND_GAP`` after a round, so polls due within it start together (never early).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from bot.app import App
from bot.bootstrap import build_app
from bot.clock import FakeClock
from bot.domain.runtime import ROUND_GAP
from bot.settings import Secrets, build_config
from bot.testing import RecordingPlugin
from tests.fakes.archive import ArchiveServer

DEADLINE = 20.0
FEED = "/feed/"
INTERVAL = 600.0


@pytest.fixture
def archive() -> Iterator[ArchiveServer]:
    with ArchiveServer() as server:
        server.add_post(title="Old MEK", tags=["MEK"])
        yield server


def make_app(db_url: str, clock: FakeClock, urls: list[str], *, ramp_after: int = 100, concurrency: int = 64,
             per_host: int | None = None) -> App:
    """One RSS source per URL (``s000``, ``s001`` …), every ``INTERVAL`` seconds, without jitter; ``per_host``:
    ``concurrency`` unless given (every URL is on one host)."""
    plugin = RecordingPlugin()
    raw: dict[str, Any] = {
        "storage": {"url": db_url, "lease_ttl": "10m"},  # no heartbeat round during the test
        "service": {"jitter": 0, "ramp_after": ramp_after},
        "http": {"concurrency": concurrency, "per_host": per_host or concurrency},
        "delivery": {"pacing": False},
        "sources": [{"name": f"s{i:03d}", "url": url, "kind": "rss", "interval": INTERVAL}
                    for i, url in enumerate(urls)],
        "channels": [{"name": "tg", "platform": "recording"}],
        "subscriptions": [{"tag": "MEK", "channels": ["tg"]}],
    }
    config = build_config(raw, {"recording": plugin})  # type: ignore[dict-item]
    return build_app(config, secrets=Secrets(environ={}), clock=clock, plugins={"recording": plugin})  # type: ignore[dict-item]


async def eventually(probe: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def serve(app: App, until: Callable[[], bool]) -> None:
    """``run_forever`` until ``until()`` holds with no poll running; then stop."""
    task = asyncio.create_task(app.run_forever())
    try:
        def settled() -> bool:
            if task.done():
                task.result()
            return app.polls.rounds >= 1 and not app.polls.in_flight and until()

        await eventually(settled, "the polls")
    finally:
        app.stop_event.set()
        await asyncio.wait_for(task, DEADLINE)


async def schedule(app: App) -> dict[str, datetime | None]:
    return {s.name: s.next_poll_at for s in await app.store.sources()}


async def test_more_overdue_sources_than_ramp_after_are_spread_over_their_interval_in_the_database(
        db_url: str, archive: ArchiveServer, clock: FakeClock) -> None:
    urls = [archive.url + FEED] * 300
    t0 = clock.now()
    async with make_app(db_url, clock, urls) as app:
        await serve(app, until=lambda: archive.count(FEED) >= 1)
        assert app.polls.spread == 300
        assert archive.count(FEED) == 1  # 300 over 600 s: one due in the first second, not 300 at once
        times = await schedule(app)
        polled = [s.name for s in await app.store.sources() if s.last_poll_at is not None]
        spread = {n: (at - t0).total_seconds() for n, at in times.items() if n not in polled and at is not None}
        assert len(polled) == 1 and len(spread) == 299
        assert all(0 < offset < INTERVAL for offset in spread.values())  # each within one interval of the start
        per_second = Counter(math.floor(offset) for offset in spread.values())
        assert max(per_second.values()) <= math.ceil(300 / INTERVAL) + 1

        clock.advance(100)  # the next round polls what became due, no more
        await app.polls.round()
        await eventually(lambda: not app.polls.in_flight, "the polls")
        due = {n for n, offset in spread.items() if offset <= 100}
        assert archive.count(FEED) == 1 + len(due)
        assert {s.name for s in await app.store.sources() if s.last_poll_at is not None} == {*polled, *due}

    clock.advance(2 * INTERVAL)  # down for two intervals: every source overdue at the restart
    t1 = clock.now()
    async with make_app(db_url, clock, urls) as app:
        await serve(app, until=lambda: app.polls.rounds >= 1)
        assert app.polls.spread == 300
        again = await schedule(app)
        # the same sources spread the same way: each keeps its place in the interval (its stable phase)
        moved = {n: ((at - t1).total_seconds() if at is not None else None) for n, at in again.items()}
        assert {n: o for n, o in moved.items() if n in spread} == spread


async def test_as_many_overdue_as_ramp_after_are_polled_at_once_as_before(
        db_url: str, archive: ArchiveServer, clock: FakeClock) -> None:
    async with make_app(db_url, clock, [archive.url + FEED] * 40, ramp_after=40) as app:
        await serve(app, until=lambda: archive.count(FEED) >= 40)
        assert app.polls.spread == 0
        assert set((await schedule(app)).values()) == {clock.now() + timedelta(seconds=INTERVAL)}


async def test_no_more_than_per_host_polls_reach_one_host_and_other_hosts_start_meanwhile(
        db_url: str, archive: ArchiveServer, clock: FakeClock) -> None:
    """40 sources on 127.0.0.1 and 3 on localhost (the same server: another host), ``per_host`` 4 of 16
    slots. Counted at the server: 4 and 3 requests at a time, never more, and every source polled."""
    other = archive.url.replace("127.0.0.1", "localhost")
    urls = [archive.url + FEED] * 40 + [other + FEED] * 3
    for mode in ("run", "run --once"):
        gate = archive.hold()
        async with make_app(db_url, clock, urls, concurrency=16, per_host=4) as app:
            if mode == "run":
                running: asyncio.Future[Any] = asyncio.ensure_future(
                    serve(app, until=lambda: archive.count(FEED) >= 43))
            else:
                running = asyncio.ensure_future(app.run_once())
            try:
                # the first answers are held: the driver has started all it may, and not one more
                assert await asyncio.to_thread(archive.wait_for, lambda: archive.in_flight["127.0.0.1"] == 4
                                               and archive.in_flight["localhost"] == 3, DEADLINE)
                assert len(app.polls.in_flight) == 7  # 9 slots free, and the 36 others wait for their host
                gate.set()
                await asyncio.wait_for(running, DEADLINE)
            finally:
                archive.release_all()
                if not running.done():
                    running.cancel()
        assert archive.count(FEED) == 43
        assert archive.most_in_flight == Counter({"127.0.0.1": 4, "localhost": 3})
        archive.reset_counters()
        archive.most_in_flight.clear()
        clock.advance(INTERVAL)  # all due again for the next mode


async def test_a_round_reads_only_the_sources_due_and_the_next_timed_round_comes_no_sooner_than_the_gap(
        db_url: str, archive: ArchiveServer, clock: FakeClock) -> None:
    async with make_app(db_url, clock, [archive.url + FEED] * 3) as app:
        await app.store.sync_config([(name, archive.url + FEED, "rss") for name in ("s000", "s001", "s002", "gone")],
                                    [], [], clock.now())
        now = clock.now()
        for name, offset in (("s000", -5.0), ("s001", ROUND_GAP / 2), ("s002", 30.0), ("gone", -60.0)):
            await app.store.spread_polls({name: now + timedelta(seconds=offset)}, now + timedelta(hours=1))
        read = await app.store.due_sources(now)
        assert sorted(s.name for s in read.rows) == ["gone", "s000"]  # a source no longer configured comes too
        assert read.next_at == now + timedelta(seconds=ROUND_GAP / 2)
        # s001 is due in half a second: not started early, and the next round comes after the gap
        assert await app.polls.round() == ["s000"]
        assert app.polls.next_wake == now + timedelta(seconds=ROUND_GAP)
        await eventually(lambda: not app.polls.in_flight, "the polls")
        clock.advance(ROUND_GAP)
        assert await app.polls.round() == ["s001"]
        recheck = app.coordinator.recheck  # several instances: never longer than this
        wait = 30 - ROUND_GAP if recheck is None else min(30 - ROUND_GAP, recheck)
        assert app.polls.next_wake == clock.now() + timedelta(seconds=wait)
        await eventually(lambda: not app.polls.in_flight, "the polls")
        assert archive.count(FEED) == 2


async def test_the_spread_leaves_a_source_another_instance_polled_meanwhile(db_url: str, clock: FakeClock,
                                                                          archive: ArchiveServer) -> None:
    async with make_app(db_url, clock, [archive.url + FEED] * 2) as app:
        now = clock.now()
        later = now + timedelta(seconds=INTERVAL)
        await app.store.spread_polls({"s001": later}, now)  # "polled meanwhile": its time is to come
        await app.store.spread_polls({"s000": now + timedelta(seconds=10), "s001": now + timedelta(seconds=20)}, now)
        times = await schedule(app)
        assert times == {"s000": now + timedelta(seconds=10), "s001": later}
