"""Does a poll cycle cost the same whatever the history? And do the hot queries use indexes?

For each size, a fresh database gets one source with N known posts (each with a
tag and a ``sent`` delivery: the history) and S subscriptions; then each timed
cycle is: the feed gains 10 posts → ``poll_source`` (fetch, parse, known-key
lookup, routing, the atomic record) → every queued delivery sent and recorded.
The statements of one cycle are captured as they are executed and explained
on the largest database (``EXPLAIN QUERY PLAN`` on SQLite, ``EXPLAIN`` on
PostgreSQL, after ``ANALYZE``).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event, insert, select, text

from bench.common import FakeServer
from bench.ours import drain, make_config, open_app, raw_config
from bot.app import App
from bot.settings import build_config
from bot.storage import tables as t
from bot.storage.store import Store

LABELLED = ("source", "poll_facts", "apply_poll", "record_not_modified", "due_channels",
            "claim_next", "finish", "queue_depths", "next_due_at")
"""Store methods whose statements are explained (one poll cycle and its deliveries call these)."""
CHUNK = 5000


@dataclass
class Captured:
    label: str
    statement: str
    params: Any


@dataclass
class Capture:
    """Collects the statements executed while a labelled Store method runs (the bench is sequential)."""

    current: list[str] = field(default_factory=list)
    seen: dict[tuple[str, str], Captured] = field(default_factory=dict)
    active: bool = False

    def listener(self, _conn: Any, _cursor: Any, statement: str, params: Any, _context: Any,
                 executemany: bool) -> None:
        if not self.active or not self.current:
            return
        if executemany and isinstance(params, list | tuple) and params:
            params = params[0]
        key = (self.current[-1], statement)
        self.seen.setdefault(key, Captured(self.current[-1], statement, params))


@contextmanager
def labelled(store: Store, capture: Capture) -> Iterator[None]:
    """Wrap the Store methods so every executed statement knows which method issued it."""
    originals: dict[str, Callable[..., Awaitable[Any]]] = {}
    for name in LABELLED:
        method = getattr(store, name)
        originals[name] = method

        @functools.wraps(method)
        async def wrapped(*args: Any, _m: Callable[..., Awaitable[Any]] = method, _n: str = name,
                          **kwargs: Any) -> Any:
            capture.current.append(_n)
            try:
                return await _m(*args, **kwargs)
            finally:
                capture.current.pop()

        setattr(store, name, wrapped)
    engines = store.statement_engines()  # on SQLite the Store's statements run on its own pysqlite engine
    for engine in engines:
        event.listen(engine, "before_cursor_execute", capture.listener)
    try:
        yield
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", capture.listener)
        for name in originals:
            delattr(store, name)


async def fill(app: App, posts: int, subscriptions: int) -> None:
    """History: ``posts`` known posts of source f0, each tagged and sent to masto; extra subscriptions."""
    store = app.store
    now = datetime(2026, 1, 1, tzinfo=UTC)
    async with store.engine.begin() as conn:
        source_id = (await conn.execute(select(t.sources.c.id).where(t.sources.c.name == "f0"))).scalar_one()
        channel_id = (await conn.execute(select(t.channels.c.id).where(t.channels.c.name == "masto"))).scalar_one()
        await conn.execute(insert(t.tags), [{"slug": f"old-{i}", "name": f"Old {i}"} for i in range(2000)])
        tag_ids = [r.id for r in (await conn.execute(select(t.tags.c.id).where(t.tags.c.slug.like("old-%"))))]
        first = (await conn.execute(select(t.posts.c.id).order_by(t.posts.c.id.desc()).limit(1))).scalar() or 0
        for start in range(0, posts, CHUNK):
            rows = [{"source_id": source_id, "key": f"history-{i}", "url": f"https://old.example/{i}/",
                     "title": f"Old post {i}", "summary_html": "<p>Old.</p>", "content_html": "",
                     "published_at": now - timedelta(minutes=posts - i), "first_seen_at": now}
                    for i in range(start, min(posts, start + CHUNK))]
            await conn.execute(insert(t.posts), rows)
        ids = [r.id for r in await conn.execute(select(t.posts.c.id).where(t.posts.c.id > first))]
        for start in range(0, len(ids), CHUNK):
            part = ids[start:start + CHUNK]
            await conn.execute(insert(t.post_tags), [{"post_id": pid, "tag_id": tag_ids[pid % len(tag_ids)]}
                                                     for pid in part])
            await conn.execute(insert(t.deliveries), [
                {"post_id": pid, "channel_id": channel_id, "status": "sent", "attempts": 1, "remote_id": str(pid),
                 "created_at": now, "updated_at": now, "sent_at": now, "post_at": now} for pid in part])
        for start in range(0, subscriptions, CHUNK):
            await conn.execute(insert(t.subscriptions), [
                {"tag_slug": f"topic-{i}", "tag_name": f"Topic {i}", "channel_id": channel_id, "backfill": 0,
                 "origin": "cli", "created_at": now} for i in range(start, min(subscriptions, start + CHUNK))])
        await conn.execute(text("ANALYZE"))


@dataclass
class CycleFigures:
    poll_ms: float
    deliver_ms: float
    new: int


async def build(server: FakeServer, storage_url: str | None, label: str, posts: int, subscriptions: int) -> App:
    server.ctl("reset")
    server.feeds(1, 10)
    if storage_url is None:
        config = make_config(server, f"scale-{label}", sources=1)
    else:
        config = build_config(raw_config(server.url, storage_url, sources=1))
    app = await open_app(config)
    await app.polls.burst()  # baseline: the feed's 10 posts
    await fill(app, max(0, posts - 10), max(0, subscriptions - 1))
    await cycle(server, app, 0)  # warm-up, not counted
    return app


async def cycle(server: FakeServer, app: App, run: int) -> CycleFigures:
    server.ctl("change", feed=0, steps=10, seed=run)
    started = time.perf_counter()
    outcome = await app.poller.poll_source("f0", force=True)
    polled = time.perf_counter()
    sent = await drain(app)
    done = time.perf_counter()
    if outcome.new_posts != 10 or sent != 10:
        raise RuntimeError(f"cycle found {outcome.new_posts} new posts and sent {sent} (expected 10 and 10)")
    return CycleFigures(1000 * (polled - started), 1000 * (done - polled), outcome.new_posts)


async def explain(server: FakeServer, app: App) -> list[tuple[str, str, list[str]]]:
    """(method, statement, plan lines) for each distinct statement of one cycle."""
    capture = Capture()
    with labelled(app.store, capture):
        capture.active = True
        await cycle(server, app, 99)
        capture.active = False
    out = []
    async with app.store.engine.connect() as conn:
        raw = await conn.get_raw_connection()
        for item in capture.seen.values():
            head = item.statement.lstrip().split(None, 1)[0].upper()
            if head not in ("SELECT", "INSERT", "UPDATE", "DELETE", "WITH"):
                continue
            params = item.params
            if isinstance(params, list | tuple) and params and isinstance(params[0], list | tuple | dict):
                params = params[0]  # one row of an executemany
            params = tuple(params) if isinstance(params, list | tuple) else (params or ())
            try:
                if app.store.dialect == "sqlite":
                    cursor = await raw.driver_connection.execute(  # type: ignore[union-attr]
                        "EXPLAIN QUERY PLAN " + item.statement, params)
                    plan = [row[3] for row in await cursor.fetchall()]
                else:
                    rows = await raw.driver_connection.fetch(  # type: ignore[union-attr]
                        "EXPLAIN " + item.statement, *params)
                    plan = [row[0].strip() for row in rows]
            except Exception as exc:
                plan = [f"(not explained: {type(exc).__name__}: {exc})"[:200]]
            out.append((item.label, item.statement, plan))
    return out


def plan_verdict(dialect: str, plan: list[str]) -> str:
    """"index" when every table access is by index (or a tiny config table), else what scans."""
    small = ("channels", "sources", "instance_leases", "rate_buckets", "instances", "backfills_done")
    """Tables with a handful of rows (one per channel, source, …): a scan of them is the right plan."""
    if plan and plan[0].startswith("(not explained"):
        return "not explained"
    scans = []
    for line in plan:
        text_ = line.strip()
        if dialect == "sqlite":
            if text_.startswith("SCAN ") and " USING " not in text_:
                table = text_.split()[1]
                if table not in small and not table.startswith("("):
                    scans.append(text_)
        elif "Seq Scan on " in text_:
            table = text_.split("Seq Scan on ", 1)[1].split()[0]
            if table not in small:
                scans.append(text_)
    return "index" if not scans else "SCAN: " + "; ".join(scans)
