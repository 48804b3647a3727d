"""``run`` and ``run --once`` go through ONE poll driver (issue 16): the database says what is due, the
coordinator what this instance may take, in both modes; ``--once`` is the same driver in burst mode.

The real service (``build_app``: its coordinator chosen from the storage URL) over a loopback archive,
on SQLite and PostgreSQL, with a fake clock: "due" is decided by the stored ``next_poll_at`` alone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

from bot import __version__
from bot.app import App
from bot.bootstrap import build_app
from bot.clock import FakeClock
from bot.services.coordinator import ClusterCoordinator, SoloCoordinator
from bot.settings import Secrets, build_config
from bot.testing import RecordingPlugin
from tests.fakes.archive import ArchiveServer

DEADLINE = 15.0
SOON, LATER = "/feed/", "/feed/json"


@pytest.fixture
def archive() -> Iterator[ArchiveServer]:
    with ArchiveServer() as server:
        server.add_post(title="Old MEK", tags=["MEK"])
        yield server


def make_app(db_url: str, archive: ArchiveServer, clock: FakeClock, *, intervals: tuple[int, int] = (60, 3600),
             concurrency: int = 16) -> App:
    """``soon`` (RSS) and ``later`` (JSON Feed), polled every ``intervals`` seconds."""
    plugin = RecordingPlugin()
    raw: dict[str, Any] = {
        "storage": {"url": db_url, "lease_ttl": "10m"},  # no heartbeat round during the test
        "service": {"jitter": 0},
        "http": {"concurrency": concurrency},
        "delivery": {"pacing": False},
        "sources": [{"name": "soon", "url": archive.url + SOON, "kind": "rss", "interval": intervals[0]},
                    {"name": "later", "url": archive.url + LATER, "kind": "jsonfeed", "interval": intervals[1]}],
        "channels": [{"name": "tg", "platform": "recording"}],
        "subscriptions": [{"tag": "MEK", "channels": ["tg"]}],
    }
    config = build_config(raw, {"recording": plugin})  # type: ignore[dict-item]
    return build_app(config, secrets=Secrets(environ={}), clock=clock, plugins={"recording": plugin})  # type: ignore[dict-item]


async def eventually(probe: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not await probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def serve(app: App, archive: ArchiveServer, *, rounds: int, path: str = SOON, count: int = 0,
                until: Callable[[], Awaitable[bool]] | None = None) -> None:
    """``run_forever`` until the poll driver has had ``rounds`` rounds, no poll is running and ``path`` was
    fetched ``count`` times in all (so whatever those rounds found due has been polled), and ``until``
    holds; then stop."""
    task = asyncio.create_task(app.run_forever())
    try:
        async def settled() -> bool:
            if task.done():
                task.result()
            return (app.polls.rounds >= rounds and not app.polls.in_flight and archive.count(path) >= count
                    and (until is None or await until()))

        await eventually(settled, f"{rounds} rounds of the poll driver")
    finally:
        app.stop_event.set()
        await asyncio.wait_for(task, DEADLINE)


async def test_run_polls_only_what_is_due_and_run_once_every_source_through_the_same_driver(
        db_url: str, archive: ArchiveServer, clock: FakeClock) -> None:
    async with make_app(db_url, archive, clock) as app:
        report = await app.run_once()  # burst: every enabled source once, due or not
        assert [(p.source, p.outcome) for p in report.polls] == [("soon", "baseline"), ("later", "baseline")]
        assert (archive.count(SOON), archive.count(LATER)) == (1, 1)

        clock.advance(120)  # soon (every 60 s) is due again; later (every hour) is not

        async def woken_for_soon() -> bool:
            # the round that follows soon's poll plans the next wake from what the database says (a round
            # that ran while soon was still being polled could only see later's hour)
            soon = await app.store.source("soon")
            wake = app.polls.next_wake
            return soon.next_poll_at is not None and wake is not None and clock.now() < wake <= soon.next_poll_at

        await serve(app, archive, rounds=2, count=2, until=woken_for_soon)
        assert archive.count(LATER) == 1  # not due: the service left it alone
        soon = await app.store.source("soon")
        assert soon.next_poll_at == clock.now() + timedelta(seconds=60)

    async with make_app(db_url, archive, clock) as app:  # a restart: nothing is due, nothing is polled at once
        await serve(app, archive, rounds=1)
        assert (archive.count(SOON), archive.count(LATER)) == (2, 1)

    async with make_app(db_url, archive, clock) as app:
        report = await app.run_once()  # and --once still polls every source
        assert sorted(p.source for p in report.polls) == ["later", "soon"]
        assert (archive.count(SOON), archive.count(LATER)) == (3, 2)


async def polls_ended(app: App) -> None:
    """Until no poll runs; then the polls answered 304 are written (they wait in the poller's buffer until a
    round, and these tests read the database between rounds)."""
    async def idle() -> bool:
        return not app.polls.in_flight

    await eventually(idle, "the polls to end")
    await app.poller.flush()


async def test_a_finished_poll_costs_a_round_only_when_a_round_could_decide_something(
        db_url: str, archive: ArchiveServer, clock: FakeClock) -> None:
    """A round reads the schedule and claims (two statements); it used to follow every finished poll.
    Now a poll that ends wakes the driver only if its next time comes before the planned wake, or due
    sources were waiting for its slot."""
    async with make_app(db_url, archive, clock, intervals=(3600, 1000)) as app:
        await app.polls.round(force=True, only=["soon"])  # soon: due again in an hour
        await polls_ended(app)
        clock.advance(3000)
        await app.polls.round(force=True, only=["later"])  # later: due again at 3000 + 1000
        await polls_ended(app)
        clock.advance(600)  # soon is due; later is 400 s away

        app.polls.wake.clear()
        assert await app.polls.round() == ["soon"]
        wake = app.polls.next_wake
        assert wake is not None and wake <= clock.now() + timedelta(seconds=400)
        await polls_ended(app)
        soon = await app.store.source("soon")
        assert soon.next_poll_at == clock.now() + timedelta(seconds=3600)
        # soon's next poll comes after the planned wake: that wake's round reads it, none is needed now
        assert not app.polls.wake.is_set()
        assert app.polls.next_wake == wake

        clock.advance(3600)  # both due again
        assert await app.polls.round() == ["later", "soon"]
        await polls_ended(app)
        if app.coordinator.recheck is None:  # alone: no timed wake was planned (both were being polled)
            assert app.polls.wake.is_set()  # so a round now
        else:  # several instances: the planned wake is the recheck, before either source's next time
            assert app.polls.next_wake == clock.now() + timedelta(seconds=app.coordinator.recheck)

    async with make_app(db_url, archive, clock, concurrency=1) as app:
        clock.advance(7200)  # both due, one slot
        app.polls.wake.clear()
        assert len(await app.polls.round()) == 1
        assert app.polls.next_wake is None or app.polls.next_wake > clock.now()  # no timer for a full house
        await polls_ended(app)
        assert app.polls.wake.is_set()  # the other one waits for this slot: a round now
        await serve(app, archive, rounds=2, path=SOON, count=4)
        assert (archive.count(SOON), archive.count(LATER)) == (4, 3)


async def test_a_source_another_live_instance_polls_is_left_alone_in_both_modes(
        db_url: str, archive: ArchiveServer, clock: FakeClock) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("several instances share PostgreSQL only (SQLite is one instance: its file lock)")
    async with make_app(db_url, archive, clock) as app:
        # another instance (alive for the next hour) is polling "later" right now
        await app.store.register_instance("other:1:abcd", f"{__version__}-other", clock.now(), 3600)
        assert await app.store.claim_sources("other:1:abcd", clock.now(), 3600, ["later"], limit=1) == ["later"]

        report = await app.run_once()
        assert [p.source for p in report.polls] == ["soon"]

        clock.advance(120)
        await serve(app, archive, rounds=2, count=2)
        assert archive.count(LATER) == 0  # due (never polled), but another instance's: in neither mode


async def test_the_coordinator_is_chosen_once_from_the_storage_url_and_shared_by_both_drivers(
        db_url: str, archive: ArchiveServer, clock: FakeClock) -> None:
    app = make_app(db_url, archive, clock)
    memory = make_app("sqlite+aiosqlite:///:memory:", archive, clock)
    try:
        assert app.polls.coordinator is app.coordinator and app.deliveries.coordinator is app.coordinator
        if db_url.startswith("sqlite"):
            assert isinstance(app.coordinator, SoloCoordinator) and app.coordinator.file_lock is not None
            assert app.coordinator.file_lock.path.name == "tagrelay.db.lock"  # beside the database
        else:
            assert isinstance(app.coordinator, ClusterCoordinator) and app.coordinator.session_lock is not None
        assert isinstance(memory.coordinator, SoloCoordinator)
        assert memory.coordinator.file_lock is None  # no other process can open an in-memory database
    finally:
        await app.aclose()
        await memory.aclose()
