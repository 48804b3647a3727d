"""Polls answered 304 go through the poller's buffer (``bot.services.poll_records``) in the real service, on
SQLite and PostgreSQL: the poll driver writes what waits before it reads what is due (no source is polled
twice, and the next wake knows the new time), ``run --once`` returns with every 304 written in one
transaction, and a source a push can reach is written at once, as before.

The buffer's timer is set to an hour: only a round, a burst or a stop writes a record here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

from bot.app import App
from bot.bootstrap import build_app
from bot.clock import FakeClock
from bot.services.push import PushSecrets
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


def make_app(db_url: str, archive: ArchiveServer, clock: FakeClock, *, batch: int = 1000, hook: bool = False) -> App:
    """``soon`` (RSS, every minute; with ``hook``, a push hook) and ``later`` (JSON Feed, hourly); 304s wait up
    to an hour to be written."""
    plugin = RecordingPlugin()
    soon: dict[str, Any] = {"name": "soon", "url": archive.url + SOON, "kind": "rss", "interval": 60}
    raw: dict[str, Any] = {
        "storage": {"url": db_url, "lease_ttl": "10m"},
        "service": {"jitter": 0, "not_modified_batch": batch, "not_modified_delay": "1h"},
        "delivery": {"pacing": False},
        "sources": [soon, {"name": "later", "url": archive.url + LATER, "kind": "jsonfeed", "interval": 3600}],
        "channels": [{"name": "tg", "platform": "recording"}],
        "subscriptions": [{"tag": "MEK", "channels": ["tg"]}],
    }
    config = build_config(raw, {"recording": plugin})  # type: ignore[dict-item]
    push = PushSecrets({"soon": b"a-hook-secret-0123456789"}) if hook else None
    return build_app(config, secrets=Secrets(environ={}), clock=clock, plugins={"recording": plugin},  # type: ignore[dict-item]
                     push_secrets=push)


async def eventually(probe: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not await probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def test_run_once_returns_with_every_304_written_in_one_transaction(db_url: str, archive: ArchiveServer,
                                                                          clock: FakeClock) -> None:
    async with make_app(db_url, archive, clock) as app:
        await app.run_once()  # the baselines
        clock.advance(120)
        writes = app.poller.records.writes
        report = await app.run_once()
        assert [(p.source, p.outcome) for p in report.polls] == [("soon", "not_modified"), ("later", "not_modified")]
        assert app.poller.records.writes == writes + 1 and app.poller.unwritten == frozenset()
        for name in ("soon", "later"):  # written before run_once returned (not by the close)
            state = await app.store.source(name)
            assert (state.last_outcome, state.last_poll_at) == ("not_modified", clock.now())


async def test_a_304_waiting_in_the_buffer_is_neither_polled_again_nor_left_out_of_the_next_wake(
        db_url: str, archive: ArchiveServer, clock: FakeClock) -> None:
    async with make_app(db_url, archive, clock) as app:
        await app.run_once()
        clock.advance(120)  # soon is due; later is not
        start = app.polls.rounds
        task = asyncio.create_task(app.run_forever())
        try:
            async def settled(rounds: int) -> bool:
                if task.done():
                    task.result()
                return app.polls.rounds >= rounds and not app.polls.in_flight and archive.count(SOON) >= 2

            await eventually(lambda: settled(start + 2), "soon's poll and the round after it")
            assert archive.count(SOON, status=304) == 1
            for _ in range(3):  # more rounds: each reads the schedule again, none finds soon due
                rounds = app.polls.rounds
                app.polls.wake.set()
                await eventually(lambda r=rounds: settled(r + 1), "one more round")  # type: ignore[misc]
            assert archive.count(SOON) == 2 and archive.count(LATER) == 1  # the burst's, and soon's one 304
            # the round after the poll read soon's new time: the driver wakes for it, not for later's hour (with
            # several instances possible, PostgreSQL, a recheck caps every wait)
            recheck = app.coordinator.recheck
            wait = 60.0 if recheck is None else min(60.0, recheck)
            assert app.polls.next_wake == clock.now() + timedelta(seconds=wait)
            soon = await app.store.source("soon")
            assert (soon.last_outcome, soon.next_poll_at) == ("not_modified", clock.now() + timedelta(seconds=60))
        finally:
            app.stop_event.set()
            await asyncio.wait_for(task, DEADLINE)


async def test_the_stop_writes_what_waits(db_url: str, archive: ArchiveServer, clock: FakeClock) -> None:
    async with make_app(db_url, archive, clock) as app:
        await app.run_once()
        task = asyncio.create_task(app.run_forever())
        try:
            async def running() -> bool:
                return app.polls.rounds >= 1 and not app.polls.in_flight

            await eventually(running, "the first round")
            clock.advance(120)
            # a poll outside any round (as a test or a tool may make): its record waits in the buffer
            assert (await app.poller.poll_source("soon")).outcome == "not_modified"
            assert app.poller.unwritten == {"soon"}
            assert (await app.store.source("soon")).last_outcome == "baseline"
        finally:
            app.stop_event.set()  # what SIGTERM does
            await asyncio.wait_for(task, DEADLINE)
        assert app.poller.unwritten == frozenset()  # the drain wrote it, before the store closes
        soon = await app.store.source("soon")
        assert (soon.last_outcome, soon.last_poll_at) == ("not_modified", clock.now())


async def test_a_source_a_push_can_reach_is_written_at_once(db_url: str, archive: ArchiveServer,
                                                            clock: FakeClock) -> None:
    async with make_app(db_url, archive, clock, hook=True) as app:
        await app.run_once()
        assert app.push is not None
        app.push.active = True  # as while ``run`` serves pushes
        clock.advance(120)
        assert (await app.poller.poll_source("soon")).outcome == "not_modified"
        assert app.poller.unwritten == frozenset()  # the observer compares push counts after the write
        assert (await app.store.source("soon")).last_outcome == "not_modified"
        assert (await app.poller.poll_source("later", force=True)).outcome == "not_modified"
        assert app.poller.unwritten == {"later"}  # no push can come for it: buffered
