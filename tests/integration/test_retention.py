"""Retention on SQLite and PostgreSQL: prune passes through the real poll path, a real archive over HTTP and
the real delivery driver; the clock is a ``FakeClock`` moved past every period.

- after pruning, a feed that still lists old posts re-sends nothing;
- pending and held deliveries, and their posts' content, survive any prune;
- a source that fails for longer than ``identity`` keeps its identities; one that lists without them loses them;
- a pass is many short transactions (never more than ``batch`` posts each), and a poll and a delivery run
  while it is half-way;
- ``db prune --dry-run`` changes nothing and prints the counts, ``--json`` has its shape, ``status`` shows
  the size; SQLite's file stops growing under a steady add-and-prune load.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, column, event, func, insert, inspect, select, table

from bot.app import App
from bot.bootstrap import build_app
from bot.cli import main
from bot.clock import FakeClock
from bot.domain.retention import PruneCounts
from bot.services.pruner import Pruner
from bot.settings import Secrets, build_config
from bot.storage import migrate
from bot.storage import tables as t
from bot.storage.store import Store
from bot.testing import RecordingPlugin
from tests.fakes.archive import ArchiveServer

DAY = 86400.0
RETENTION = {"content": "1h", "deliveries": "1h", "audit": "1h", "identity": "2d", "every": "1h", "batch": 5}


@dataclass
class Rig:
    app: App
    archive: ArchiveServer
    plugin: RecordingPlugin
    clock: FakeClock

    @property
    def store(self) -> Store:
        return self.app.store

    def sent(self) -> list[str]:
        return [s.text.split("\n")[0] for s in self.plugin.publishers["tg"].sent]

    def pruner(self, **changes: Any) -> Pruner:
        settings = self.app.config.storage.retention.model_copy(update=changes)
        return Pruner(self.store, self.clock, settings)

    async def poll(self) -> str:
        return (await self.app.poller.poll_source("archive", force=True)).outcome

    async def count(self, table: Any, *where: Any) -> int:
        return int(await self.store._read(lambda conn: conn.execute(
            select(func.count()).select_from(table).where(*where)).scalar_one()))


@pytest.fixture
def archive() -> Iterator[ArchiveServer]:
    with ArchiveServer(feed_size=4) as server:
        yield server


def _config(db_url: str, archive: ArchiveServer, **retention: Any) -> dict[str, Any]:
    return {
        "storage": {"url": db_url, "retention": {**RETENTION, **retention}},
        "delivery": {"pacing": False},
        "service": {"burst_limit": 3},
        "sources": [{"name": "archive", "url": archive.url + "/feed/", "kind": "rss", "interval": 60}],
        "channels": [{"name": "tg", "platform": "recording", "edit_window": "1m", "delete_window": "1m"}],
        "subscriptions": [{"tag": "MEK", "channels": ["tg"]}],
    }


@pytest.fixture
async def rig(db_url: str, clock: FakeClock, archive: ArchiveServer) -> AsyncIterator[Rig]:
    plugin = RecordingPlugin()
    config = build_config(_config(db_url, archive), {"recording": plugin})
    app = build_app(config, secrets=Secrets(environ={}), clock=clock, plugins={"recording": plugin})  # type: ignore[dict-item]
    async with app:
        yield Rig(app, archive, plugin, clock)


async def test_after_pruning_a_feed_that_still_lists_old_posts_resends_nothing(rig: Rig) -> None:
    rig.archive.feed_size = 10
    for title in ("A", "B"):
        rig.archive.add_post(title=title, tags=["MEK"])
    assert await rig.poll() == "baseline"
    rig.archive.add_post(title="C", tags=["MEK"])
    rig.clock.advance(120)
    await rig.app.run_once()
    assert rig.sent() == ["C"]

    rig.clock.advance(3 * DAY)  # past content, deliveries and identity
    rig.archive.add_post(title="D", tags=["Iraq"])  # a 200: the listing still shows A, B, C
    assert await rig.poll() == "new"
    report = await rig.pruner().prune()
    assert report.counts.content == 3 and report.counts.deliveries == 1  # A, B, C (D is new); C's record
    assert report.counts.identities == 0  # all still listed
    assert await rig.count(t.posts, t.posts.c.pruned_at.is_not(None)) == 3
    kept = await rig.store._read(lambda conn: conn.execute(select(t.posts.c.content_html, t.posts.c.content_hash)
                                                            .where(t.posts.c.pruned_at.is_not(None))).all())
    assert all(r.content_html == "" and r.content_hash for r in kept)  # the hash stays: edits compare with it

    for _ in range(3):  # the same feed again and again (304s, then 200s with one new post)
        rig.clock.advance(3 * DAY)
        await rig.app.run_once()
        await rig.pruner().prune()
        rig.archive.add_post(title="filler", tags=["Iraq"])
    rig.archive.add_post(title="E", tags=["MEK"])
    await rig.app.run_once()
    assert rig.sent() == ["C", "E"]  # nothing re-sent


async def test_pending_and_held_deliveries_keep_their_posts_and_content(rig: Rig) -> None:
    rig.archive.add_post(title="A", tags=["MEK"])
    await rig.poll()
    await rig.store.set_paused("tg", True, "test", rig.clock.now())
    rig.archive.add_post(title="queued", tags=["MEK"])
    rig.clock.advance(120)
    await rig.app.run_once()  # the channel is paused: it stays queued
    for i in range(4):
        rig.archive.add_post(title=f"burst {i}", tags=["MEK"])
    rig.clock.advance(120)
    assert await rig.poll() == "held"

    rig.clock.advance(400 * DAY)
    rig.archive.add_post(title="later", tags=["Iraq"])
    await rig.poll()  # a 200 long after: every identity would be old enough
    dry = await rig.pruner().prune(dry_run=True)
    report = await rig.pruner().prune()
    assert report.counts == dry.counts
    statuses = sorted(d.status for d in await rig.store.deliveries(limit=100))
    assert statuses == ["held"] * 4 + ["queued"]
    pending = await rig.store._read(lambda conn: conn.execute(
        select(t.posts.c.title, t.posts.c.content_html, t.posts.c.pruned_at)
        .where(t.posts.c.id.in_(select(t.deliveries.c.post_id)))).all())
    assert len(pending) == 5 and all(r.content_html and r.pruned_at is None for r in pending)
    assert report.counts.identities == 1 and report.counts.content == 1  # A only: no delivery, off the feed


async def test_a_failing_source_keeps_its_identities_and_a_listing_source_loses_those_it_dropped(rig: Rig) -> None:
    for title in ("A", "B"):
        rig.archive.add_post(title=title, tags=["MEK"])
    await rig.poll()
    rig.archive.fail_next(500, times=1000)
    for _ in range(5):
        rig.clock.advance(100 * DAY)
        assert await rig.poll() == "error"
    assert (await rig.pruner().prune()).counts.identities == 0
    assert await rig.count(t.posts) == 2

    rig.archive.clear_faults()
    for title in ("C", "D", "E", "F"):  # the feed shows 4: A and B drop out of it
        rig.archive.add_post(title=title, tags=["Iraq"])
    assert await rig.poll() == "new"  # listed, without A and B, more than `identity` after they were last seen
    report = await rig.pruner().prune()
    assert report.counts.identities == 2
    titles = await rig.store._read(lambda conn: conn.execute(select(t.posts.c.title).order_by(t.posts.c.id))
                                   .scalars().all())
    assert sorted(titles) == ["C", "D", "E", "F"]
    assert await rig.count(t.post_tags, t.post_tags.c.post_id.not_in(select(t.posts.c.id))) == 0


class TransactionRows:
    """Rows each transaction wrote to ``posts`` by a prune statement (a ``before/after_cursor_execute``
    listener on the Store's engines)."""

    def __init__(self, store: Store) -> None:
        self.current: dict[int, int] = {}
        self.done: list[int] = []
        for engine in store.statement_engines():
            event.listen(engine, "after_cursor_execute", self._executed)
            event.listen(engine, "commit", self._committed)

    def _executed(self, conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        text = " ".join(statement.split()).upper()
        if text.startswith("DELETE FROM POSTS") or (text.startswith("UPDATE POSTS SET") and "PRUNED_AT=" in
                                                    text.replace(" ", "")):
            self.current[id(conn)] = self.current.get(id(conn), 0) + max(0, cursor.rowcount)

    def _committed(self, conn: Any) -> None:
        rows = self.current.pop(id(conn), None)
        if rows is not None:
            self.done.append(rows)


async def test_a_pass_is_short_transactions_and_a_poll_and_a_delivery_run_half_way(rig: Rig) -> None:
    rig.archive.add_post(title="A", tags=["MEK"])
    await rig.poll()
    source_id = (await rig.store.source("archive")).id
    old = rig.clock.now() - timedelta(days=30)
    await rig.store._write(lambda conn: conn.execute(insert(t.posts), [
        {"source_id": source_id, "key": f"old-{i}", "title": f"old {i}", "content_html": "<p>x</p>" * 100,
         "summary_html": "", "first_seen_at": old, "last_seen_at": old,
         # dated before the archive's posts (its clock is its own): the newest removed date stays below C's
         "published_at": rig.archive.clock - timedelta(days=1)} for i in range(600)]))
    rig.clock.advance(3 * DAY)
    rig.archive.add_post(title="B", tags=["Iraq"])
    await rig.poll()  # listed without the 600
    rows = TransactionRows(rig.store)
    halfway, go_on = asyncio.Event(), asyncio.Event()

    async def wait_for_the_test() -> None:
        halfway.set()
        await go_on.wait()

    def progress(counts: PruneCounts, batches: int) -> Any:
        return wait_for_the_test() if batches == 40 else None

    task = asyncio.create_task(rig.pruner(batch=25).prune(progress=progress))
    await asyncio.wait_for(halfway.wait(), 30)
    rig.archive.add_post(title="C", tags=["MEK"])
    rig.clock.advance(120)
    assert await asyncio.wait_for(rig.poll(), 30) == "new"
    delivered = await asyncio.wait_for(rig.app.deliveries.burst(), 30)
    assert [d.status.value for d in delivered] == ["sent"] and rig.sent() == ["C"]
    assert not task.done()
    go_on.set()
    report = await asyncio.wait_for(task, 60)
    assert report.counts.identities == 600 and report.counts.content >= 600
    assert rows.done and max(rows.done) <= 25
    assert sum(rows.done) == report.counts.content + report.counts.identities
    assert report.batches >= 600 * 2 // 25


def _cli_config(tmp_path: Path, db_url: str) -> str:
    path = tmp_path / "tagrelay.toml"
    retention = "\n".join(f'{k} = {json.dumps(v)}' for k, v in RETENTION.items())
    path.write_text(f'[storage]\nurl = "{db_url}"\n\n[storage.retention]\n{retention}\n')
    return str(path)


def _cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(args), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


async def test_db_prune_dry_run_changes_nothing_json_has_its_shape_and_status_shows_the_size(
        rig: Rig, db_url: str, tmp_path: Path) -> None:
    rig.archive.add_post(title="A", tags=["MEK"])
    await rig.poll()
    rig.archive.add_post(title="B", tags=["MEK"])
    rig.clock.advance(60)
    await rig.app.run_once()
    await rig.store.audit("me", "cli", "test", "an old entry", rig.clock.now())
    # the CLI opens the database on its own, with the real clock: the FakeClock's January 2026 is long past
    config = _cli_config(tmp_path, db_url)

    before = await _table_counts(db_url)
    code, out, _ = await asyncio.to_thread(_cli, "--config", config, "db", "prune", "--dry-run")
    assert code == 0 and "WOULD REMOVE" in out and "dry run: nothing was changed" in out
    assert "post content      2" in out
    assert await _table_counts(db_url) == before
    code, out, _ = await asyncio.to_thread(_cli, "--config", config, "db", "prune", "--dry-run", "--json")
    dry = json.loads(out)
    assert set(dry) == {"dry_run", "counts", "total", "size_before", "size_after", "pages_released", "vacuumed",
                        "batches"}
    assert dry["dry_run"] is True and set(dry["counts"]) == {"content", "deliveries", "rule_drops", "audit",
                                                             "identities"}
    assert dry["counts"]["content"] == 2 and dry["counts"]["deliveries"] == 1 and dry["counts"]["audit"] >= 1

    code, out, _ = await asyncio.to_thread(_cli, "--config", config, "db", "prune", "--json", "--vacuum")
    done = json.loads(out)
    assert code == 0 and done["dry_run"] is False and done["vacuumed"] is True
    assert done["counts"] == dry["counts"]  # what the dry run said
    code, out, _ = await asyncio.to_thread(_cli, "--config", config, "status", "--json")
    status = json.loads(out)
    assert code == 0 and status["database"]["bytes"] > 0
    assert status["database"]["last_prune"]["removed"] == dry["counts"]
    code, out, _ = await asyncio.to_thread(_cli, "--config", config, "status")
    assert "database: " in out and "last prune" in out


async def _table_counts(db_url: str) -> dict[str, int]:
    store = Store.open(db_url)
    try:
        def work(conn: Any) -> dict[str, int]:
            return {table.name: int(conn.execute(select(func.count()).select_from(table)).scalar_one())
                    for table in (t.posts, t.deliveries, t.audit_log, t.rule_drops)} | {
                "pruned": int(conn.execute(select(func.count()).select_from(t.posts)
                                           .where(t.posts.c.pruned_at.is_not(None))).scalar_one())}
        return await store._read(work)
    finally:
        await store.aclose()


async def test_migration_0013_starts_last_seen_at_first_seen_and_lists_nothing_yet(db_url: str,
                                                                                   clock: FakeClock) -> None:
    from alembic import command

    sources = table("sources", *(column(c) for c in ("id", "name", "url", "kind", "baseline_done",
                                                      "consecutive_failures", "created_at", "last_success_at")))
    posts = table("posts", *(column(c) for c in ("id", "source_id", "key", "title", "summary_html", "content_html",
                                                  "first_seen_at")))

    def to_previous(conn: Connection) -> None:
        cfg = migrate.alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0014")

    now = clock.now()
    store = Store.open(db_url)
    try:
        async with store.engine.begin() as conn:
            await conn.run_sync(to_previous)
            source_id = (await conn.execute(insert(sources).values(
                name="archive", url="https://a.example/feed/", kind="rss", baseline_done=True,
                consecutive_failures=0, created_at=now, last_success_at=now).returning(sources.c.id))).scalar_one()
            await conn.execute(insert(posts).values(source_id=source_id, key="k", title="T", summary_html="",
                                                    content_html="<p>body</p>", first_seen_at=now))
        assert await migrate.upgrade(store.engine) == ("0014", migrate.HEAD)
        rows = await store._read(lambda c: c.execute(select(t.posts.c.first_seen_at, t.posts.c.last_seen_at,
                                                            t.posts.c.pruned_at)).all())
        assert [(r.last_seen_at == r.first_seen_at, r.pruned_at) for r in rows] == [(True, None)]
        listed = await store._read(lambda c: c.execute(select(t.sources.c.listed_at)).scalar_one())
        assert listed is None  # a 304 since the last 200 would not say what the listing holds: wait for a 200
        async with store.engine.connect() as conn:
            indexes = await conn.run_sync(lambda c: {i["name"] for i in inspect(c).get_indexes("posts")})
            assert {"ix_posts_source_seen", "ix_posts_unpruned"} <= indexes
    finally:
        await store.aclose()


async def test_a_new_sqlite_file_has_incremental_auto_vacuum_and_stops_growing(rig: Rig, db_url: str) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("SQLite's file")
    assert (await rig.store.sqlite_pages() or (0, 0, 0))[2] == 2  # incremental
    rig.archive.feed_size = 40
    body = "<p>" + "An archive's long article, paragraph after paragraph. " * 150 + "</p>"  # ~8 KB
    pages: list[int] = []
    for cycle in range(16):
        for i in range(40):
            rig.archive.add_post(title=f"post {cycle}-{i}", tags=["Iraq"], content_html=body)
        assert await rig.poll() in ("baseline", "new")
        rig.clock.advance(3 * DAY)  # past content; the previous cycle's posts left the feed more than `identity` ago
        await rig.pruner(batch=50).prune()
        pages.append((await rig.store.sqlite_pages() or (0, 0, 0))[0])
    assert await rig.count(t.posts) <= 80
    assert max(pages[4:]) <= pages[3] * 1.1 + 20, pages  # flat after the first cycles
    free = (await rig.store.sqlite_pages() or (0, 0, 0))[1]
    assert free <= 10  # the freed pages went back to the file system


async def test_the_service_prunes_on_its_own_logs_a_failure_and_stops_at_once(
        rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    assert rig.app.pruner is not None  # enabled: the service runs it beside the drivers
    rig.archive.add_post(title="A", tags=["MEK"])
    await rig.poll()
    rig.clock.advance(3 * DAY)
    caplog.set_level(logging.INFO, logger="tagrelay.retention")
    pruner = Pruner(rig.store, rig.clock, rig.app.config.storage.retention, first_after=0)
    stop = asyncio.Event()
    task = asyncio.create_task(pruner.run(stop))
    await asyncio.wait_for(pruner.passed.wait(), 30)
    assert pruner.last is not None and pruner.last.counts.content == 1
    logged = [r for r in caplog.records if r.getMessage() == "prune"]
    assert len(logged) == 1 and logged[0].kv["content"] == 1  # type: ignore[attr-defined]

    await rig.store._write(lambda conn: conn.exec_driver_sql("DROP TABLE rule_drops"))  # the next pass fails
    failing = Pruner(rig.store, rig.clock, rig.app.config.storage.retention, first_after=0)
    other = asyncio.create_task(failing.run(stop))
    await asyncio.wait_for(failing.passed.wait(), 30)
    assert failing.last is None and not other.done()  # logged, not fatal: the next pass comes as planned
    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("prune.")] == ["prune.failed"]
    stop.set()
    await asyncio.wait_for(asyncio.gather(task, other), 5)  # promptly, though `every` is an hour


async def test_a_disabled_retention_runs_no_pass_in_the_service(db_url: str, clock: FakeClock,
                                                                archive: ArchiveServer) -> None:
    plugin = RecordingPlugin()
    config = build_config(_config(db_url, archive, enabled=False), {"recording": plugin})
    app = build_app(config, secrets=Secrets(environ={}), clock=clock, plugins={"recording": plugin})  # type: ignore[dict-item]
    assert app.pruner is None


async def test_a_poll_moves_listed_at_and_refreshes_last_seen_at_at_most_daily_and_a_304_neither(rig: Rig) -> None:
    rig.archive.feed_size = 10
    rig.archive.add_post(title="A", tags=["MEK"])
    await rig.poll()
    t0 = rig.clock.now()

    async def seen() -> tuple[Any, Any]:
        state = await rig.store._read(lambda conn: conn.execute(select(t.sources.c.listed_at)).scalar_one())
        post = await rig.store._read(lambda conn: conn.execute(
            select(t.posts.c.last_seen_at).where(t.posts.c.title == "A")).scalar_one())
        return state, post

    def same(a: Any, b: Any) -> bool:
        return a.replace(tzinfo=None) == b.replace(tzinfo=None)

    listed, last = await seen()
    assert same(listed, t0) and same(last, t0)
    rig.clock.advance(3600)
    assert await rig.poll() == "not_modified"
    listed, last = await seen()
    assert same(listed, t0) and same(last, t0)  # a 304 repeats the listing of the last 200: nothing moves
    rig.archive.add_post(title="B", tags=["Iraq"])
    assert await rig.poll() == "new"
    listed, last = await seen()
    assert same(listed, rig.clock.now()) and same(last, t0)  # A seen an hour ago: fresh enough
    rig.clock.advance(DAY + 60)
    rig.archive.add_post(title="C", tags=["Iraq"])
    assert await rig.poll() == "new"
    listed, last = await seen()
    assert same(listed, rig.clock.now()) and same(last, rig.clock.now())


async def test_a_pruned_post_is_not_backfilled_and_an_edit_brings_its_content_back(rig: Rig) -> None:
    rig.archive.feed_size = 10
    old = rig.archive.add_post(title="Old", tags=["Iraq"], content_html="<p>old body</p>")
    await rig.poll()
    rig.clock.advance(3 * DAY)
    rig.archive.add_post(title="Fresh", tags=["Iraq"])
    await rig.poll()
    assert (await rig.pruner().prune()).counts.content == 1  # Old (Fresh is new)
    admin = rig.app.parts.admin
    assert admin is not None
    await admin.subscribe("Iraq", ["tg"], actor="me", via="cli", backfill=5, allow_new=True)
    rig.archive.add_post(title="Other", tags=["MEK"])
    rig.clock.advance(60)
    await rig.app.run_once()
    assert sorted(rig.sent()) == ["Fresh", "Other"]  # the backfill took Fresh, never the pruned Old

    rig.archive.edit_post(old, content_html="<p>new body</p>", title="Old, edited")
    rig.clock.advance(60)
    await rig.poll()
    row = await rig.store._read(lambda conn: conn.execute(
        select(t.posts.c.content_html, t.posts.c.pruned_at).where(t.posts.c.title == "Old, edited")).one())
    assert "new body" in row.content_html and row.pruned_at is None  # it may be pruned again later


async def test_db_prune_vacuum_turns_incremental_auto_vacuum_on_for_an_older_sqlite_file(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as raw:  # a file made before auto-vacuum was set: a table exists already
        raw.execute("CREATE TABLE scratch (x)")
    store = Store.open(f"sqlite+aiosqlite:///{path}")
    try:
        await migrate.upgrade(store.engine)
        assert (await store.sqlite_pages() or (0, 0, 0))[2] == 0
        await store.vacuum()
        assert (await store.sqlite_pages() or (0, 0, 0))[2] == 2
    finally:
        await store.aclose()


async def test_a_pending_edit_keeps_the_record_of_the_message_it_updates(rig: Rig) -> None:
    rig.archive.feed_size = 10
    await rig.poll()
    post = rig.archive.add_post(title="A", tags=["MEK"])
    rig.clock.advance(10)
    await rig.app.run_once()
    assert rig.sent() == ["A"]
    await rig.store.set_paused("tg", True, "test", rig.clock.now())
    rig.archive.edit_post(post, title="A, corrected")
    rig.clock.advance(10)  # within the channel's edit_window (1m)
    await rig.poll()
    assert sorted((d.kind, d.status) for d in await rig.store.deliveries()) == [("edit", "queued"), ("post", "sent")]
    rig.clock.advance(3 * DAY)
    rig.archive.add_post(title="B", tags=["Iraq"])
    await rig.poll()
    dry = await rig.pruner().prune(dry_run=True)
    report = await rig.pruner().prune()
    assert report.counts == dry.counts and report.counts.deliveries == 0 and report.counts.content == 0
    assert sorted((d.kind, d.status) for d in await rig.store.deliveries()) == [("edit", "queued"), ("post", "sent")]


async def test_two_instances_pruning_at_once_remove_each_row_once(rig: Rig, db_url: str) -> None:
    rig.archive.add_post(title="A", tags=["MEK"])
    await rig.poll()
    source_id = (await rig.store.source("archive")).id
    old = rig.clock.now() - timedelta(days=30)
    await rig.store._write(lambda conn: conn.execute(insert(t.posts), [
        {"source_id": source_id, "key": f"old-{i}", "title": f"old {i}", "content_html": "<p>x</p>",
         "summary_html": "", "first_seen_at": old, "last_seen_at": old} for i in range(300)]))
    rig.clock.advance(3 * DAY)
    rig.archive.add_post(title="B", tags=["Iraq"])
    await rig.poll()
    other = Store.open(db_url)  # a second instance: its own connections
    try:
        settings = rig.app.config.storage.retention.model_copy(update={"batch": 10})
        first, second = await asyncio.wait_for(asyncio.gather(
            Pruner(rig.store, rig.clock, settings).prune(), Pruner(other, rig.clock, settings).prune()), 120)
    finally:
        await other.aclose()
    assert first.counts.identities + second.counts.identities == 300
    assert first.counts.content + second.counts.content == 301  # the 300 and A
    assert await rig.count(t.posts) == 2  # A and B


async def test_a_post_whose_identity_went_comes_back_and_is_recorded_not_sent_again(rig: Rig) -> None:
    for title in ("A", "B"):
        rig.archive.add_post(title=title, tags=["MEK"])
    assert await rig.poll() == "baseline"
    c = rig.archive.add_post(title="C", tags=["MEK"])
    rig.clock.advance(120)
    await rig.app.run_once()
    assert rig.sent() == ["C"]

    for title in ("D", "E", "F", "G"):  # the feed shows 4: A, B and C drop out of it
        rig.archive.add_post(title=title, tags=["Iraq"])
    rig.clock.advance(3 * DAY)
    assert await rig.poll() == "new"
    removed = 0
    for _ in range(3):  # C's delivery record goes first, then its identity
        removed += (await rig.pruner().prune()).counts.identities
    assert removed == 3
    retired = await rig.store._read(lambda conn: conn.execute(select(t.sources.c.retired_before)).scalar_one())
    assert retired is not None and retired.replace(tzinfo=None) == c.published.replace(tzinfo=None)

    rig.archive.feed_size = 6  # a feed that lists an old post again (a longer feed, a re-sort by modified date)
    rig.archive.add_post(title="H", tags=["MEK"])
    rig.clock.advance(120)
    await rig.app.run_once()
    assert rig.sent() == ["C", "H"]  # C is not sent twice
    titles = await rig.store._read(lambda conn: conn.execute(select(t.posts.c.title)).scalars().all())
    assert {"C", "H"} <= set(titles) and "A" not in titles  # C is known again: the next poll finds it known
    rig.clock.advance(120)
    await rig.app.run_once()
    assert rig.sent() == ["C", "H"]
