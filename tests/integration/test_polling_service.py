"""The whole core on real wire: ArchiveServer over HTTP → App (real sources, real store) → deliveries.

Each scenario runs for every source kind (RSS feed, WordPress REST, JSON Feed,
auto-discovery from the home page) and on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.app import App
from bot.bootstrap import build_app
from bot.clock import FakeClock
from bot.settings import Secrets, build_config
from bot.testing import RecordingPlugin
from tests.fakes.archive import ArchiveServer

KINDS = {
    "rss": ("/feed/", "rss"),
    "wordpress": ("/wp-json/", "wordpress"),
    "jsonfeed": ("/feed/json", "jsonfeed"),
    "auto": ("/", "auto"),
}


@pytest.fixture(params=sorted(KINDS))
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def archive() -> AsyncIterator[ArchiveServer]:
    with ArchiveServer() as server:
        server.add_post(title="Old one", tags=["Iraq"], categories=["News"])
        server.add_post(title="Old MEK", tags=["MEK", "Iraq protest against Iran’s meddling"])
        yield server


def make_app(db_url: str, archive: ArchiveServer, kind: str, plugin: RecordingPlugin, clock: FakeClock,
             *, backfill: int = 0) -> App:
    path, k = KINDS[kind]
    raw = {
        "storage": {"url": db_url},
        "delivery": {"pacing": False},
        "sources": [{"name": "archive", "url": archive.url + path, "kind": k, "interval": 60}],
        "channels": [{"name": "tg", "platform": "recording"}, {"name": "masto", "platform": "recording"}],
        "subscriptions": [
            {"tag": "Iraq protest against Iran's meddling", "channels": ["tg"], "backfill": backfill},
            {"tag": "MEK", "channels": ["tg", "masto"]},
        ],
    }
    config = build_config(raw, {"recording": plugin})
    return build_app(config, secrets=Secrets(environ={}), clock=clock, plugins={"recording": plugin})  # type: ignore[dict-item]


def texts(plugin: RecordingPlugin, channel: str) -> list[str]:
    pub = plugin.publishers.get(channel)
    return [s.text.splitlines()[0] for s in pub.sent] if pub else []


async def test_baseline_then_new_post_once_per_channel_then_304(db_url: str, archive: ArchiveServer, kind: str,
                                                                clock: FakeClock) -> None:
    plugin = RecordingPlugin()
    async with make_app(db_url, archive, kind, plugin, clock) as app:
        report = await app.run_once()
        assert [p.outcome for p in report.polls] == ["baseline"]
        assert report.deliveries == []  # no flood on first start

        # a post whose tags overlap two subscriptions of the same channel: one delivery there
        archive.add_post(title="Crackdown deepens", tags=["MEK", "Iraq protest against Iran's meddling", "Iraq"])
        clock.advance(120)
        report = await app.run_once()
        assert [p.outcome for p in report.polls] == ["new"]
        assert texts(plugin, "tg") == ["Crackdown deepens"]
        assert texts(plugin, "masto") == ["Crackdown deepens"]

        # nothing changed: a conditional GET answered 304, nothing parsed, nothing sent
        before = archive.not_modified
        clock.advance(120)
        report = await app.run_once()
        if kind in ("rss", "jsonfeed"):
            assert [p.outcome for p in report.polls] == ["not_modified"]
            assert archive.not_modified == before + 1
        else:
            assert [p.outcome for p in report.polls] in (["not_modified"], ["unchanged"])
        assert report.deliveries == []


async def test_restart_does_not_deliver_again(db_url: str, archive: ArchiveServer, clock: FakeClock) -> None:
    plugin = RecordingPlugin()
    async with make_app(db_url, archive, "rss", plugin, clock, backfill=1) as app:
        await app.run_once()
    assert texts(plugin, "tg") == ["Old MEK"]  # the backfill
    archive.add_post(title="Fresh", tags=["MEK"])
    async with make_app(db_url, archive, "rss", plugin, clock, backfill=1) as app:
        await app.run_once()
        await app.run_once()
    async with make_app(db_url, archive, "rss", plugin, clock, backfill=1) as app:
        report = await app.run_once()
        assert report.deliveries == []
    assert texts(plugin, "tg") == ["Old MEK", "Fresh"]
    assert texts(plugin, "masto") == ["Fresh"]


@pytest.mark.parametrize("fault", ["html", "garbage", "status", "drop", "huge"])
async def test_a_broken_feed_is_an_error_on_the_source_and_loses_nothing(db_url: str, archive: ArchiveServer,
                                                                        clock: FakeClock, fault: str) -> None:
    plugin = RecordingPlugin()
    async with make_app(db_url, archive, "rss", plugin, clock) as app:
        await app.run_once()
        archive.add_post(title="Arrives during the outage", tags=["MEK"])
        # until cleared: the feed client (aiohttp) retries a GET once on a dropped keep-alive connection
        archive.inject(fault, path="/feed/", times=None)
        clock.advance(120)
        report = await app.run_once()
        archive.clear_faults()
        assert [p.outcome for p in report.polls] == ["error"]
        state = await app.store.source("archive")
        assert state.consecutive_failures == 1 and state.last_error
        assert state.baseline_done and state.cache.etag  # the earlier state is kept
        status = await app.store.sources()
        assert status[0].post_count == 2
        clock.advance(600)
        report = await app.run_once()
        assert [p.outcome for p in report.polls] == ["new"]
        assert texts(plugin, "masto") == ["Arrives during the outage"]
        assert (await app.store.source("archive")).consecutive_failures == 0


async def test_subscription_added_at_runtime_is_used_by_the_next_poll(db_url: str, archive: ArchiveServer,
                                                                     clock: FakeClock) -> None:
    from bot.services.admin import AdminService

    plugin = RecordingPlugin()
    async with make_app(db_url, archive, "rss", plugin, clock) as app:
        await app.run_once()
        admin = AdminService(app.store, app.config, clock, {"recording": plugin})  # type: ignore[dict-item]
        await admin.subscribe("iraq", ["masto"], actor="test", via="cli")
        archive.add_post(title="Iraq only", tags=["Iraq"])
        clock.advance(120)
        await app.run_once()
        assert texts(plugin, "masto") == ["Iraq only"]
        assert texts(plugin, "tg") == []


async def test_a_truncated_feed_is_refused_and_the_next_poll_delivers_once(db_url: str, archive: ArchiveServer,
                                                                          clock: FakeClock) -> None:
    plugin = RecordingPlugin()
    async with make_app(db_url, archive, "rss", plugin, clock) as app:
        await app.run_once()
        archive.add_post(title="Arrives in a cut-off feed", tags=["MEK"])
        archive.inject("truncated", path="/feed/")  # it carries the whole feed's ETag
        clock.advance(120)
        first = await app.run_once()
        assert [p.outcome for p in first.polls] == ["error"]
        clock.advance(600)
        await app.run_once()
        assert texts(plugin, "masto") == ["Arrives in a cut-off feed"]
