"""The poll path: normalise once → ONE read of what the decision needs → the pure plan → ONE write.

The store is given a ``Database`` that records each transaction it runs (the real one underneath), and
a real archive is polled over HTTP: a poll that finds new posts makes exactly the source's read, the
facts' read and the plan's write; a 304 makes the source's read and its one write.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, TypeVar

import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import URL

from bot.app import App
from bot.bootstrap import build_app
from bot.clock import FakeClock
from bot.settings import Secrets, build_config
from bot.storage.database import Database, Work, open_database
from bot.storage.store import Store
from bot.testing import RecordingPlugin
from tests.fakes.archive import ArchiveServer

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

T = TypeVar("T")


class RecordingDatabase:
    """A ``Database`` that notes every transaction (``"read"``/``"write"``) before running it on ``real``."""

    def __init__(self, real: Database) -> None:
        self.real = real
        self.url: URL = real.url
        self.dialect: str = real.dialect
        self.runs: list[str] = []

    async def run(self, work: Work[T], *, write: bool) -> T:
        self.runs.append("write" if write else "read")
        return await self.real.run(work, write=write)

    def async_engine(self) -> AsyncEngine:
        return self.real.async_engine()

    def sync_engines(self) -> list[Engine]:
        return self.real.sync_engines()

    async def dispose(self) -> None:
        await self.real.dispose()


@pytest.fixture
async def rig(db_url: str, clock: FakeClock) -> AsyncIterator[tuple[App, ArchiveServer, RecordingDatabase]]:
    with ArchiveServer() as archive:
        archive.add_post(title="Old MEK", tags=["MEK"])
        raw = {
            "storage": {"url": db_url},
            "delivery": {"pacing": False},
            "sources": [{"name": "archive", "url": archive.url + "/feed/", "kind": "rss", "interval": 60}],
            "channels": [{"name": "tg", "platform": "recording"}, {"name": "masto", "platform": "recording"}],
            "subscriptions": [{"tag": "MEK", "channels": ["tg", "masto"], "backfill": 1}],
        }
        plugin = RecordingPlugin()
        config = build_config(raw, {"recording": plugin})
        database = RecordingDatabase(open_database(db_url))
        app = build_app(config, secrets=Secrets(environ={}), clock=clock, plugins={"recording": plugin},  # type: ignore[dict-item]
                        store=Store(database))
        async with app:
            yield app, archive, database


async def test_a_poll_with_new_posts_reads_once_plans_and_writes_once(
        rig: tuple[App, ArchiveServer, RecordingDatabase], clock: FakeClock) -> None:
    app, archive, database = rig
    database.runs.clear()
    first = await app.poller.poll_source("archive", force=True)
    assert (first.outcome, first.new_posts, first.backfilled) == ("baseline", 1, 2)  # the backfill, one per channel
    assert database.runs == ["read", "read", "write"]  # the source; the facts (backfills too); the plan

    archive.add_post(title="New MEK", tags=["MEK", "Iraq"])
    clock.advance(120)
    database.runs.clear()
    second = await app.poller.poll_source("archive", force=True)
    assert (second.outcome, second.new_posts, second.queued, second.backfilled) == ("new", 1, 2, 0)
    assert database.runs == ["read", "read", "write"]  # not a read per kind of fact

    clock.advance(120)
    database.runs.clear()
    unchanged = await app.poller.poll_source("archive", force=True)
    assert unchanged.outcome == "not_modified"
    assert database.runs == ["read"]  # its record waits in the poller's buffer (bot.services.poll_records)
    await app.poller.flush()
    assert database.runs == ["read", "write"]
    deliveries = await app.store.deliveries()
    assert sorted((d.channel, d.post_title) for d in deliveries) == [
        ("masto", "New MEK"), ("masto", "Old MEK"), ("tg", "New MEK"), ("tg", "Old MEK")]
