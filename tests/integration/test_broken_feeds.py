"""Broken documents on the real wire (issue 15, defects 3-4): nothing is recorded from a cut-off feed,
and bad bytes in one item never cost another item its tags.

The loopback ArchiveServer serves the feed; the App polls it with its real sources and store. A cut
body carries the whole document's ETag (an origin that died mid-response), so keeping a refused
document's validators would turn the next poll into a 304 and lose the post for good.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.app import App
from bot.bootstrap import build_app
from bot.clock import FakeClock
from bot.settings import Secrets, build_config
from bot.testing import RecordingPlugin
from tests.fakes.archive import ArchivePost, ArchiveServer
from tests.fakes.http import Request, Response

ARABIC = "إيران"


def make_app(db_url: str, url: str, plugin: RecordingPlugin, clock: FakeClock, kind: str = "rss") -> App:
    raw = {
        "storage": {"url": db_url},
        "delivery": {"pacing": False},
        "sources": [{"name": "archive", "url": url, "kind": kind, "interval": 60}],
        "channels": [{"name": "tg", "platform": "recording"}, {"name": "masto", "platform": "recording"}],
        "subscriptions": [{"tag": ARABIC, "channels": ["tg"]}, {"tag": "MEK", "channels": ["masto"]}],
    }
    config = build_config(raw, {"recording": plugin})
    return build_app(config, secrets=Secrets(environ={}), clock=clock, plugins={"recording": plugin})  # type: ignore[dict-item]


def sent(plugin: RecordingPlugin, channel: str) -> list[str]:
    pub = plugin.publishers.get(channel)
    return [s.text.splitlines()[0] for s in pub.sent] if pub else []


def _item_of(body: bytes, post: ArchivePost, site: str) -> tuple[int, int]:
    guid = f"<guid isPermaLink=\"false\">{post.guid(site)}</guid>".encode()
    at = body.index(guid)
    return body.rindex(b"<item>", 0, at), body.index(b"</item>", at) + len(b"</item>")


CUTS: dict[str, Callable[[bytes, int, int], int]] = {
    "right after the new item's <guid>": lambda b, s, e: b.index(b">", b.index(b"<guid", s)) + 1,
    "after the new item's </guid>": lambda b, s, e: b.index(b"</guid>", s) + len(b"</guid>"),
    "mid-title": lambda b, s, e: b.index(b"<title>", s) + len(b"<title>") + 4,
    "mid-category": lambda b, s, e: b.index(b"<category>", s) + len(b"<category><![CDATA[") + 3,
    "between items": lambda b, s, e: e,
    "before </channel>": lambda b, s, e: b.rindex(b"</channel>"),
    "inside </rss>": lambda b, s, e: b.rindex(b"</rss>") + 3,
}


async def _cut_then_whole(app: App, archive: ArchiveServer, plugin: RecordingPlugin, clock: FakeClock,
                          cut_at: Callable[[bytes, int, int], int], title: str) -> None:
    """Publish a post, serve a cut feed (refused), then the whole one: the post goes out once."""
    before_tg, before_masto = sent(plugin, "tg"), sent(plugin, "masto")
    post = archive.add_post(title=title, tags=[ARABIC, "MEK"], categories=["News"])
    body = archive.rss().encode()
    start, end = _item_of(body, post, archive.url)
    state = await app.store.source("archive")
    archive.inject("truncated", path="/feed/", cut=cut_at(body, start, end))
    clock.advance(120)
    refused = await app.run_once()
    assert [p.outcome for p in refused.polls] == ["error"], refused.polls
    assert "ends early" in (refused.polls[0].error or "")
    assert refused.deliveries == []
    after = await app.store.source("archive")
    assert after.cache == state.cache  # validators and cursor of the refused document are not kept
    assert (await app.store.latest_post(url=post.link(archive.url))) is None

    clock.advance(3600)
    whole = await app.run_once()
    assert [p.outcome for p in whole.polls] == ["new"]
    assert sent(plugin, "tg") == [*before_tg, title]
    assert sent(plugin, "masto") == [*before_masto, title]
    stored = await app.store.latest_post(url=post.link(archive.url))
    assert stored is not None
    assert {t.name for t in stored.tags} == {ARABIC, "MEK", "News"}

    clock.advance(120)
    again = await app.run_once()
    assert again.deliveries == []


@pytest.mark.parametrize("where", sorted(CUTS))
async def test_a_feed_cut_anywhere_is_refused_and_the_whole_feed_delivers_once(
        db_url: str, clock: FakeClock, where: str) -> None:
    plugin = RecordingPlugin()
    with ArchiveServer() as archive:
        archive.add_post(title="Old one", tags=["Iraq"])
        async with make_app(db_url, archive.url + "/feed/", plugin, clock) as app:
            assert [p.outcome for p in (await app.run_once()).polls] == ["baseline"]
            await _cut_then_whole(app, archive, plugin, clock, CUTS[where], f"Cut {where}")


def test_any_cut_position_loses_nothing(tmp_path: Path) -> None:
    """Hypothesis over the cut position, on one App: each example publishes a post, cuts, then heals."""
    plugin = RecordingPlugin()
    clock = FakeClock()
    loop = asyncio.new_event_loop()
    with ArchiveServer() as archive:
        archive.add_post(title="Old one", tags=["Iraq"])
        app = make_app(f"sqlite+aiosqlite:///{tmp_path / 't.db'}", archive.url + "/feed/", plugin, clock)
        loop.run_until_complete(app.__aenter__())
        try:
            loop.run_until_complete(app.run_once())
            titles = iter(range(10_000))

            @settings(max_examples=25, deadline=None, database=None,
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
            @given(st.floats(min_value=0.0, max_value=1.0))
            def check(fraction: float) -> None:
                def cut_at(body: bytes, start: int, end: int) -> int:
                    lo, hi = body.index(b"<channel>"), body.rindex(b"</rss>") + len(b"</rss")
                    return lo + round((hi - lo) * fraction)

                loop.run_until_complete(_cut_then_whole(app, archive, plugin, clock, cut_at,
                                                        f"Post {next(titles)}"))

            check()
        finally:
            loop.run_until_complete(app.__aexit__(None, None, None))
            loop.close()


async def test_one_bad_byte_in_one_item_keeps_the_arabic_post_routable(db_url: str, clock: FakeClock) -> None:
    plugin = RecordingPlugin()

    class Mangled(ArchiveServer):
        """The archive, with one invalid UTF-8 byte in the excerpt of posts titled "Broken"."""

        def handle(self, request: Request) -> Response | object:
            response = super().handle(request)
            if isinstance(response, Response) and request.path == "/feed/":
                response.body = response.body.replace(b"BROKEN-EXCERPT", b"caf\xe9")
            return response

    with Mangled() as archive:
        archive.add_post(title="Old one", tags=["Iraq"])
        async with make_app(db_url, archive.url + "/feed/", plugin, clock) as app:
            await app.run_once()
            archive.add_post(title="تظاهرات في بغداد", tags=[ARABIC])
            archive.add_post(title="Broken", tags=["MEK"], excerpt_html="BROKEN-EXCERPT")
            clock.advance(120)
            report = await app.run_once()
            assert [p.outcome for p in report.polls] == ["new"]
            assert sent(plugin, "tg") == ["تظاهرات في بغداد"]
            assert sent(plugin, "masto") == ["Broken"]
            stored = await app.store.latest_post(tag_slug=ARABIC)
            assert stored is not None and [t.name for t in stored.tags] == [ARABIC]


@pytest.mark.parametrize(("kind", "path", "route"), [("jsonfeed", "/feed/json", "/feed/json"),
                                                     ("wordpress", "/wp-json/", "/wp-json/wp/v2/posts")])
async def test_a_cut_json_answer_is_refused_and_the_state_kept(db_url: str, clock: FakeClock, kind: str, path: str,
                                                               route: str) -> None:
    plugin = RecordingPlugin()
    with ArchiveServer() as archive:
        archive.add_post(title="Old one", tags=["Iraq"])
        app = make_app(db_url, archive.url + path, plugin, clock, kind)
        async with app:
            await app.run_once()
            state = await app.store.source("archive")
            archive.add_post(title="Cut JSON", tags=[ARABIC])
            archive.inject("truncated", path=route, times=None)
            clock.advance(120)
            refused = await app.run_once()
            assert [p.outcome for p in refused.polls] == ["error"]
            assert (await app.store.source("archive")).cache == state.cache
            archive.clear_faults()
            clock.advance(3600)
            await app.run_once()
            assert sent(plugin, "tg") == ["Cut JSON"]
