"""How big the database gets: ``.venv/bin/python -m bench.storage_size [POSTS]`` (docs/operations.md, "Retention").

On a fresh SQLite file, through the real poll write (``plan_poll`` → ``Store.apply_poll``): POSTS posts
(default 2,000) of ~8 KB of content HTML, a 300-character excerpt and three tags each, routed to two
channels. Each figure is the database's pages after a ``VACUUM`` (the data alone, no free pages): bytes per
post with its content, per post once retention dropped the content, and per delivery record; then the
size of one source's year at a few volumes, with the default periods (content 30 days, deliveries 180), and
how long one prune batch of 50 posts holds the database (wall time: the machine's load moves it).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import update

from bot.clock import FakeClock
from bot.domain.detect import normalise
from bot.domain.models import ParsedPost, Subscription
from bot.domain.plan import plan_poll
from bot.domain.retention import Retention, cutoffs
from bot.storage import migrate
from bot.storage import tables as t
from bot.storage.store import Store

BODY = "<p>" + "An archive's long article about the region, paragraph after paragraph. " * 112 + "</p>"  # ~8 KB
EXCERPT = "<p>" + "A summary of the article. " * 11 + "</p>"


async def _bytes(store: Store) -> int:
    await store.vacuum()
    pages = await store.sqlite_pages()
    assert pages is not None
    page_size = await store._read(lambda conn: int(conn.exec_driver_sql("PRAGMA page_size").scalar_one()))
    return (pages[0] - pages[1]) * page_size


async def measure(count: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        store = Store.open(f"sqlite+aiosqlite:///{Path(folder) / 'size.db'}")
        try:
            await migrate.upgrade(store.engine)
            clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
            subs = [Subscription("iraq", "Iraq", "tg"), Subscription("iraq", "Iraq", "masto")]
            await store.sync_config([("archive", "https://a.example/feed/", "rss")],
                                    [("tg", "telegram"), ("masto", "mastodon")], subs, clock.now())
            empty = await _bytes(store)
            for start in range(0, count, 100):  # polls of 100 new posts each
                state = await store.source("archive")
                items = [ParsedPost(title=f"Post {n}: the archive's news of the day", url=f"https://a.example/{n}/",
                                    guid=f"https://a.example/?p={n}", summary_html=EXCERPT, content_html=BODY,
                                    tags=("Iraq", "MEK", f"topic {n % 50}"), published=clock.now(),
                                    author="Staff Writer", image_url=f"https://a.example/img/{n}.jpg")
                         for n in range(start, min(count, start + 100))]
                posts = normalise("archive", items)
                plan = plan_poll("archive", posts, await store.poll_facts(state, posts), first_poll=False,
                                 now=clock.now())
                await store.apply_poll(state, plan, state.cache, clock.now(), clock.now())
                clock.advance(600)
            full = await _bytes(store)
            await store._write(lambda conn: conn.execute(update(t.deliveries).values(status="sent")))
            cut = cutoffs(Retention(content=60.0), clock.now() + timedelta(days=1))
            cursor = None
            timings: list[float] = []
            while True:
                started = time.perf_counter()
                _, cursor = await store.prune_content(cut, 50, cursor)
                timings.append((time.perf_counter() - started) * 1000)
                if cursor is None:
                    break
            pruned = await _bytes(store)
            deliveries = 2 * count
            await store._write(lambda conn: conn.execute(t.deliveries.delete()))
            bare = await _bytes(store)
        finally:
            await store.aclose()
    return {"batch_median_ms": statistics.median(timings), "batch_max_ms": max(timings),
            "empty": empty, "post_with_content": (full - empty - (pruned - bare)) / count,
            "post_pruned": (bare - empty) / count, "delivery": (pruned - bare) / deliveries}


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    figures = asyncio.run(measure(count))
    print(f"{count} posts, {len(BODY) / 1024:.1f} KiB of content each, 2 channels (SQLite, after VACUUM)")
    print(f"  a post with its content:    {figures['post_with_content']:8.0f} bytes")
    print(f"  a post, content pruned:     {figures['post_pruned']:8.0f} bytes")
    print(f"  a delivery record:          {figures['delivery']:8.0f} bytes")
    print(f"  a content batch of 50 posts (one transaction): median {figures['batch_median_ms']:.1f} ms, "
          f"max {figures['batch_max_ms']:.1f} ms")
    print("one source's year with the default periods (content 30 days, deliveries 180 days), 2 channels:")
    for per_day in (5, 20, 100):
        year = 365 * per_day
        size = (30 * per_day * figures["post_with_content"] + (year - 30 * per_day) * figures["post_pruned"]
                + 180 * per_day * 2 * figures["delivery"])
        never = year * (figures["post_with_content"] + 2 * figures["delivery"])
        print(f"  {per_day:4d} posts a day: {size / 2**20:7.1f} MiB after a year (without retention: "
              f"{never / 2**20:7.1f} MiB, growing)")


if __name__ == "__main__":
    main()
