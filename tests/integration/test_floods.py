"""No floods: guid churn and bursts, on real wire (ArchiveServer over HTTP → the real App → real storage).

A feed whose guids change on every request must not re-publish its posts (identity falls
back to the canonical link, and ``status`` says so); a poll that finds far more new posts
than the source's limit holds their deliveries for an admin instead of sending them.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.admin.bot import AdminBot
from bot.app import App
from bot.bootstrap import build_app
from bot.cli import main
from bot.clock import FakeClock
from bot.services.admin import AdminService
from bot.services.delivery import Pacer
from bot.services.notifier import Notifier
from bot.settings import Secrets, build_config, load_config
from bot.sidecars import make_sidecars
from bot.testing import RecordingPlugin
from tests.fakes.archive import ArchiveServer
from tests.fakes.telegram_api import Chat, FakeChatBotApi
from tests.integration.test_admin_bot import (
    ADMIN_GROUP,
    ALICE,
    BOB,
    CHANNEL,
    TOKEN,
    Harness,
    eventually,
    secrets,
    seed,
    write_config,
)


@pytest.fixture
def churning() -> Iterator[ArchiveServer]:
    with ArchiveServer(guid_churn=True) as server:
        for n in range(1, 4):
            server.add_post(title=f"Post {n}", tags=["MEK"])
        yield server


def make_app(db_url: str, archive: ArchiveServer, plugin: RecordingPlugin, clock: FakeClock, *,
             path: str = "/feed/", kind: str = "rss", service: dict[str, object] | None = None,
             source: dict[str, object] | None = None, delivery: dict[str, object] | None = None,
             notifier: Notifier | None = None) -> App:
    raw = {
        "storage": {"url": db_url},
        "service": service or {},
        "delivery": delivery or {"pacing": False},
        "sources": [{"name": "archive", "url": archive.url + path, "kind": kind, "interval": 60, **(source or {})}],
        "channels": [{"name": "tg", "platform": "recording"}, {"name": "late", "platform": "recording"}],
        "subscriptions": [{"tag": "MEK", "channels": ["tg"]}],
    }
    config = build_config(raw, {"recording": plugin})
    return build_app(config, secrets=Secrets(environ={}), clock=clock, plugins={"recording": plugin},  # type: ignore[dict-item]
                     notifier=notifier)


def sent(plugin: RecordingPlugin, channel: str = "tg") -> list[str]:
    pub = plugin.publishers.get(channel)
    return [s.text.splitlines()[0] for s in pub.sent] if pub else []


@pytest.mark.parametrize(("path", "kind"), [("/feed/", "rss"), ("/feed/json", "jsonfeed")])
async def test_guid_churn_publishes_each_post_once_and_status_says_why(
        db_url: str, churning: ArchiveServer, clock: FakeClock, path: str, kind: str) -> None:
    plugin = RecordingPlugin()
    async with make_app(db_url, churning, plugin, clock, path=path, kind=kind) as app:
        assert [p.outcome for p in (await app.run_once()).polls] == ["baseline"]
        churning.add_post(title="Post 7", tags=["MEK"])
        for _ in range(6):  # every request renders new guids for the same posts
            clock.advance(120)
            report = await app.run_once()
            assert [p.outcome for p in report.polls] != ["error"]
        assert sent(plugin) == ["Post 7"]
        assert (await app.store.sources())[0].post_count == 4  # nothing stored twice either
        report = await AdminService(app.store, app.config, clock).status()
        (source,) = report.sources
        assert source.warning is not None and "guids change between polls" in source.warning
        assert "identity falls back to the link" in source.warning
        assert any("guids change between polls" in w for w in report.warnings)
        assert report.problems == []  # a warning, not a failure: nothing needs doing


# -- bursts -------------------------------------------------------------------------------------


class Sleeps:
    """The pacer's sleep: records each wait instead of sleeping (the fake clock does not move)."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


class Notes:
    """The ``Notifier``: what the admins were told."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    async def notify(self, text: str) -> None:
        self.texts.append(text)


@pytest.fixture
def big() -> Iterator[ArchiveServer]:
    """An archive with a 10-post history whose feed lists everything (up to 20,000 items)."""
    with ArchiveServer(feed_size=20_000) as server:
        for n in range(1, 11):
            server.add_post(title=f"History {n}", tags=["MEK"])
        yield server


def add_burst(archive: ArchiveServer, count: int, prefix: str = "Burst") -> None:
    for n in range(1, count + 1):
        archive.add_post(title=f"{prefix} {n:05d}", tags=["MEK"])


async def test_a_burst_of_10000_is_held_survives_a_restart_and_a_drop_sends_none(
        db_url: str, big: ArchiveServer, clock: FakeClock) -> None:
    plugin, notes = RecordingPlugin(), Notes()
    async with make_app(db_url, big, plugin, clock, notifier=notes) as app:
        await app.run_once()  # the baseline: 10 known posts
        add_burst(big, 2, "Usual")
        clock.advance(120)
        await app.run_once()
        assert sent(plugin) == ["Usual 00001", "Usual 00002"]  # a usual poll goes out

        add_burst(big, 10_000)
        clock.advance(120)
        report = await app.run_once()
        (poll,) = report.polls
        assert (poll.outcome, poll.new_posts, poll.queued, poll.held) == ("held", 10_000, 0, 10_000)
        assert report.deliveries == [] and len(sent(plugin)) == 2  # nothing of the burst was sent
        assert (await app.store.source("archive")).last_outcome == "held"
        admin = AdminService(app.store, app.config, clock)
        status = await admin.status()
        expected = ("source archive: burst of 10000 new posts held (usual 2; limit 50); run "
                    "`tagrelay hold release archive` or `tagrelay hold drop archive`")
        assert status.problems == [expected]
        assert len(notes.texts) == 1 and "burst of 10000 new posts held" in notes.texts[0]
        ((via, actor, detail),) = [(e.via, e.actor, e.detail)
                                   for e in await app.store.audit_entries() if e.action == "hold"]
        assert (via, actor) == ("poll", "tagrelay") and detail.startswith("archive: burst of 10000")

        clock.advance(120)
        report = await app.run_once()  # the next poll: nothing new, still held, nobody told twice
        assert report.deliveries == [] and len(notes.texts) == 1
        (hold,) = await admin.holds()
        assert (hold.source, hold.posts, hold.deliveries, hold.channels) == ("archive", 10_000, 10_000, ("tg",))

    async with make_app(db_url, big, plugin, clock) as app:  # a restart keeps the hold
        clock.advance(120)
        assert (await app.run_once()).deliveries == []
        admin = AdminService(app.store, app.config, clock)
        assert [h.posts for h in await admin.holds()] == [10_000]
        change = await admin.drop_hold("archive", actor="alice@cli", via="cli")
        assert change.done and change.text.startswith("archive: 10000 held deliveries dropped")
        assert not (await admin.drop_hold("archive", actor="alice@cli", via="cli")).done
        assert await admin.holds() == []
        clock.advance(120)
        assert (await app.run_once()).deliveries == []
        assert len(sent(plugin)) == 2
        dropped = await app.store.deliveries(status="dropped", limit=20_000)
        assert len(dropped) == 10_000 and {d.channel for d in dropped} == {"tg"}
        assert (await admin.status()).problems == []
        audit = [(e.action, e.actor, e.detail) for e in await app.store.audit_entries()]
        assert audit[0] == ("hold.drop", "alice@cli", "archive: 10000 deliveries dropped")


async def test_a_released_burst_goes_out_in_post_order_with_pacing(db_url: str, big: ArchiveServer,
                                                                  clock: FakeClock) -> None:
    plugin = RecordingPlugin()
    delivery = {"pacing": True, "channel_limits": {"recording": "1/s"}, "account_limits": {}}
    async with make_app(db_url, big, plugin, clock, delivery=delivery, source={"burst_limit": 5},
                        service={"burst_limit": 1000}) as app:  # the source's own limit wins
        sleeps = Sleeps()
        app.deliverer.pacer = Pacer(app.deliverer.pacer.config, app.store, clock, sleep=sleeps)
        await app.run_once()
        add_burst(big, 5, "Five")  # at the limit: not a burst
        clock.advance(120)
        assert [p.outcome for p in (await app.run_once()).polls] == ["new"]
        assert len(sent(plugin)) == 5
        add_burst(big, 8)
        clock.advance(120)
        assert [(p.outcome, p.held) for p in (await app.run_once()).polls] == [("held", 8)]
        assert len(sent(plugin)) == 5
        sleeps.calls.clear()

        admin = AdminService(app.store, app.config, clock)
        change = await admin.release_hold("archive", actor="bob@cli", via="cli")
        assert change.done and change.text.startswith("archive: 8 held deliveries released")
        report = await app.run_once()
        assert sent(plugin)[5:] == [f"Burst {n:05d}" for n in range(1, 9)]  # oldest post first
        # paced like any delivery: the first goes at once (the bucket refilled meanwhile), then 1/s
        assert sleeps.calls == [pytest.approx(float(n)) for n in range(1, 8)]
        assert {d.status.value for d in report.deliveries} == {"sent"}
        assert await admin.holds() == []
        assert next((e.action, e.detail) for e in await app.store.audit_entries()) == (
            "hold.release", "archive: 8 deliveries queued")


async def test_a_backfill_and_a_zero_limit_are_never_held(db_url: str, big: ArchiveServer, clock: FakeClock
                                                          ) -> None:
    plugin = RecordingPlugin()
    async with make_app(db_url, big, plugin, clock, source={"burst_limit": 0}, service={"burst_limit": 3}) as app:
        await app.run_once()
        add_burst(big, 20)
        clock.advance(120)
        assert [(p.outcome, p.held) for p in (await app.run_once()).polls] == [("new", 0)]  # 0: never hold
        assert len(sent(plugin)) == 20
    async with make_app(db_url, big, plugin, clock, service={"burst_limit": 3}) as app:
        admin = AdminService(app.store, app.config, clock)
        await admin.subscribe("MEK", ["late"], actor="t", via="cli", backfill=10)  # more than the limit
        big.add_post(title="Elsewhere", tags=["Other"])  # a backfill is applied by a poll that reads the feed
        clock.advance(120)
        report = await app.run_once()
        assert [(p.outcome, p.queued, p.backfilled, p.held) for p in report.polls] == [("new", 0, 10, 0)]
        assert sent(plugin, "late") == [f"Burst {n:05d}" for n in range(11, 21)]


# -- migration 0005 ------------------------------------------------------------------------------


async def test_migration_0005_gives_existing_posts_their_link_so_a_churned_guid_is_known(db_url: str,
                                                                                          clock: FakeClock) -> None:
    from alembic import command
    from sqlalchemy import Connection, column, insert, table

    from bot.domain.detect import to_post
    from bot.domain.models import ParsedPost
    from bot.storage import migrate
    from bot.storage.store import Store

    # the tables as revision 0004 had them (the current ``tables`` would write the new columns)
    sources = table("sources", *(column(c) for c in ("id", "name", "url", "kind", "baseline_done",
                                                      "consecutive_failures", "created_at")))
    posts = table("posts", *(column(c) for c in ("source_id", "key", "title", "summary_html", "content_html",
                                                  "first_seen_at", "url")))

    def to_0004(conn: Connection) -> None:
        cfg = migrate.alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0004")

    store = Store.open(db_url)
    try:
        async with store.engine.begin() as conn:
            await conn.run_sync(to_0004)
            source_id = (await conn.execute(insert(sources).values(
                name="archive", url="https://a.example/feed/", kind="rss", baseline_done=True,
                consecutive_failures=0, created_at=clock.now()).returning(sources.c.id))).scalar_one()
            await conn.execute(insert(posts), [
                {"source_id": source_id, "key": f"guid-{n}", "title": f"Post {n}", "summary_html": "",
                 "content_html": "", "first_seen_at": clock.now(),
                 "url": None if n == 3 else f"https://A.example:443/{n}/?utm_source=rss#top"} for n in range(1, 4)])
        await migrate.upgrade(store.engine)
        assert [s.post_count for s in await store.sources()] == [3]  # adding columns lost nothing
        state = await store.source("archive")
        assert (state.guid_churn_last, state.guid_churn_total, state.usual_new) == (0, 0, None)
        churned = [to_post("archive", ParsedPost(title=f"Post {n}", url=f"https://a.example/{n}/", guid=f"new-{n}"))
                   for n in range(1, 4)]
        facts = await store.poll_facts(state, churned)
        assert facts.known_keys == set() and facts.known_links == {"https://a.example/1/", "https://a.example/2/"}
    finally:
        await store.aclose()


# -- the CLI and the admin bot ------------------------------------------------------------------


def cli(path: Path, *args: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    code = main(["--config", str(path), *args], out=out, err=err)
    assert code == 0, err.getvalue()
    return out.getvalue()


async def test_the_cli_shows_churn_and_a_held_burst_and_releases_it(tmp_path: Path, clock: FakeClock,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the CLI reads .env from the working directory
    for var in ("TAGRELAY_STORAGE_URL", "TAGRELAY_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    with ArchiveServer(guid_churn=True, feed_size=100) as archive:
        for n in range(1, 4):
            archive.add_post(title=f"Post {n}", tags=["MEK"])
        path = tmp_path / "tagrelay.toml"
        db_url = f"sqlite+aiosqlite:///{tmp_path / 't.db'}"
        path.write_text("\n".join([
            "[storage]", f"url = {json.dumps(db_url)}",
            "[service]", "burst_limit = 4",
            "[[sources]]", 'name = "archive"', f'url = "{archive.url}/feed/"', 'kind = "rss"',
            "[[channels]]", 'name = "console"', 'platform = "console"', 'stream = "stderr"', "paused = true",
            "[[subscriptions]]", 'tag = "MEK"', 'channels = ["console"]']) + "\n", encoding="utf-8")
        async with build_app(load_config(path), secrets=Secrets(environ={}), clock=clock) as app:
            await app.run_once()
            add_burst(archive, 6)
            clock.advance(120)
            await app.run_once()
        text = await asyncio.to_thread(cli, path, "status")
        assert "archive  BURST HELD" in text
        assert ("! source archive: burst of 6 new posts held (no usual volume yet; limit 4); run "
                "`tagrelay hold release archive` or `tagrelay hold drop archive`") in text
        assert "~ source archive: guids change between polls (3 known post(s) in the last poll, 3 in all); " \
               "identity falls back to the link" in text
        data = json.loads(await asyncio.to_thread(cli, path, "status", "--json"))
        (source,) = data["sources"]
        assert source["guid_churn"]["last_poll"] == 3 and source["guid_churn"]["total"] == 3
        assert source["held"]["posts"] == 6 and source["held"]["burst_limit"] == 4
        assert data["warnings"] == [f"source archive: {source['warning']}"]
        (hold,) = json.loads(await asyncio.to_thread(cli, path, "hold", "list", "--json"))
        assert (hold["source"], hold["posts"], hold["channels"]) == ("archive", 6, ["console"])
        assert "held deliveries released" in await asyncio.to_thread(cli, path, "hold", "release", "archive")
        assert "nothing is held" in await asyncio.to_thread(cli, path, "hold", "drop", "archive")
        queued = json.loads(await asyncio.to_thread(cli, path, "deliveries", "--status", "queued", "--json"))
        assert len(queued) == 6
        audit = json.loads(await asyncio.to_thread(cli, path, "audit", "--json"))
        assert [(e["action"], e["via"]) for e in audit] == [("hold.release", "cli"), ("hold", "poll")]
        err = io.StringIO()
        code = await asyncio.to_thread(main, ["--config", str(path), "hold", "release", "archiv"],
                                       out=io.StringIO(), err=err)
        assert code == 2 and "did you mean archive?" in err.getvalue()


async def test_the_admin_bot_announces_a_burst_once_lists_it_and_drops_it(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    fake = FakeChatBotApi(TOKEN, chats=[Chat(CHANNEL, username="tagrelay_test")])
    archive = ArchiveServer(feed_size=50)
    seed(archive)
    with fake, archive:
        fake.private_chat(ALICE)
        fake.private_chat(BOB)
        fake.group(ADMIN_GROUP, "tagrelay admins")
        path = write_config(tmp_path, fake, archive, {})
        path.write_text(path.read_text(encoding="utf-8") + "[service]\nburst_limit = 5\n", encoding="utf-8")
        config = load_config(path)
        sidecars = make_sidecars(config, secrets())
        (bot,) = sidecars
        assert isinstance(bot, AdminBot)
        async with build_app(config, secrets=secrets(), sidecars=sidecars, notifier=bot) as app:
            await app.run_once()
            await bot.start(app)
            try:
                h = Harness(fake, archive, app, bot, path)
                await eventually(lambda: bot.up, "the admin bot to connect")
                add_burst(archive, 7)
                await app.run_once()
                note = fake.sent_to(ALICE.id)[-1].text or ""
                assert note.startswith("⚠️ Source archive: burst of 7 new posts held")
                assert "/hold release archive" in note
                await app.run_once()
                assert len([m for m in fake.sent_to(ALICE.id) if "burst" in (m.text or "")]) == 1
                listed = await h.say(ALICE, "/hold")
                assert "<b>archive</b>: 7 new posts, 7 deliveries held" in listed and "console" in listed
                assert "BURST HELD" in await h.say(ALICE, "/status")
                assert "Usage: <code>/hold [release|drop &lt;source&gt;]</code>" in await h.say(ALICE, "/hold maybe")
                assert await h.say(BOB, "/hold drop archive") == (
                    "✅ archive: 7 held deliveries dropped; they will never be sent "
                    "(tagrelay deliveries --status dropped)")
                assert await h.say(ALICE, "/hold") == "<b>Held bursts</b>: none."
                (entry, *_) = await app.store.audit_entries()
                assert (entry.action, entry.via, entry.actor) == ("hold.drop", "telegram", "222 @bob")
            finally:
                await bot.stop()
