"""Rules on the real poll path: ArchiveServer over HTTP → App (real RSS source, real store) → deliveries.

A catastrophic pattern cannot stall a poll: ``(a+)+$`` on a post of 50,000 a's and a "!" would keep
Python's ``re`` busy for longer than the universe has existed; on RE2 the poll takes its usual time.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bot.bootstrap import build_app
from bot.clock import FakeClock
from bot.settings import Secrets, build_config
from bot.testing import RecordingPlugin
from tests.fakes.archive import ArchiveServer

POLL_DEADLINE = 30.0
"""Far more than a poll takes even on a loaded machine; a backtracking engine would never finish."""


def make_config(db_url: str, archive: ArchiveServer, subscriptions: list[dict[str, Any]],
                **channel_keys: Any) -> Any:
    return build_config({
        "storage": {"url": db_url},
        "delivery": {"pacing": False},
        "service": {"burst_limit": 0},
        "sources": [{"name": "archive", "url": archive.url + "/feed/", "kind": "rss", "interval": 60}],
        "channels": [{"name": "tg", "platform": "recording", **channel_keys},
                     {"name": "masto", "platform": "recording"}],
        "subscriptions": subscriptions,
    }, {"recording": RecordingPlugin()})


def titles(plugin: RecordingPlugin, channel: str) -> list[str]:
    pub = plugin.publishers.get(channel)
    return [s.text.splitlines()[0] for s in pub.sent] if pub else []


async def test_a_catastrophic_pattern_cannot_stall_a_poll(db_url: str, clock: FakeClock) -> None:
    with ArchiveServer() as archive:
        archive.add_post(title="Old", tags=["Iraq"])
        plugin = RecordingPlugin()
        config = make_config(db_url, archive, [
            {"tag": "Iraq", "channels": ["tg"], "patterns": ["content=(a+)+$"]},
            {"tag": "Iraq", "channels": ["masto"]},
        ])
        async with build_app(config, secrets=Secrets(environ={}), clock=clock, plugins={"recording": plugin}) as app:
            await app.run_once()  # baseline
            archive.add_post(title="Hostile", tags=["Iraq"], content_html="<p>" + "a" * 50_000 + "!</p>")
            archive.add_post(title="Fine", tags=["Iraq"], content_html="<p>" + "a" * 50_000 + "</p>")
            clock.advance(120)
            started = time.perf_counter()
            report = await asyncio.wait_for(app.run_once(), POLL_DEADLINE)
            elapsed = time.perf_counter() - started
            assert [p.outcome for p in report.polls] == ["new"]
            assert elapsed < POLL_DEADLINE
            assert titles(plugin, "tg") == ["Fine"]
            assert sorted(titles(plugin, "masto")) == ["Fine", "Hostile"]
            hostile = next(p for p in archive.posts if p.title == "Hostile").link(archive.site)
            found = await app.parts.admin.explain(hostile, "tg") if app.parts.admin else None
            assert found is not None
            (answer,) = found.channels
            assert (answer.outcome, answer.condition) == ("filtered", "patterns")
            assert answer.reason.startswith("kept out by subscription Iraq's patterns: its content does not match "
                                            "(a+)+$")


async def test_rules_and_channel_exclusions_on_the_poll_path(db_url: str, clock: FakeClock) -> None:
    with ArchiveServer() as archive:
        archive.add_post(title="Old", tags=["Iraq"])
        plugin = RecordingPlugin()
        config = make_config(db_url, archive, [
            {"tag": "Iraq", "channels": ["tg", "masto"], "none_tags": ["Opinion"],
             "include_keywords": ["Basra", "author:Jane Doe"], "max_age": "1d"},
        ], exclude_tags=["Sponsored"], exclude_keywords=["advertorial"])
        async with build_app(config, secrets=Secrets(environ={}), clock=clock, plugins={"recording": plugin}) as app:
            await app.run_once()
            now = archive.tick(0)  # the archive's clock: its posts are dated by it
            archive.add_post(title="Shelling near Basra", tags=["Iraq"])
            archive.add_post(title="Basra: a view", tags=["Iraq", "Opinion"])
            archive.add_post(title="Mosul reopens", tags=["Iraq"], author="Jane Doe")
            archive.add_post(title="Mosul market", tags=["Iraq"])
            archive.add_post(title="Basra hotels", tags=["Iraq", "Sponsored"])
            archive.add_post(title="An advertorial from Basra", tags=["Iraq"])
            archive.add_post(title="Basra, a year ago", tags=["Iraq"], published=now.replace(year=now.year - 1))
            clock.advance((archive.tick(0) - clock.now()).total_seconds() + 3600)  # detected an hour after the last
            await app.run_once()
            assert sorted(titles(plugin, "masto")) == ["An advertorial from Basra", "Basra hotels", "Mosul reopens",
                                                       "Shelling near Basra"]
            assert sorted(titles(plugin, "tg")) == ["Mosul reopens", "Shelling near Basra"]
