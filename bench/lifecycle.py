"""What following a post's later life costs (issue 20): the content hash in every poll, and migration 0011.

Run ``.venv/bin/python -m bench.lifecycle [postgresql+asyncpg://…/scratch_db]``:

* ``normalise`` of 1,000 feed items, and the share of it that is ``content_hash`` (computed for every item
  of every poll, so an edit can be told from an unchanged post);
* migration 0011 on a database holding ``DELIVERIES`` deliveries of the revision before it: on SQLite the
  ``deliveries`` table is rebuilt (its unique constraint changes), on PostgreSQL (the database given, which
  must be empty) it is altered in place.

Not part of ``make bench``: a few numbers, no peers.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
import timeit
from datetime import UTC, datetime

from sqlalchemy import Connection, column, insert, table

from bot.domain.detect import normalise
from bot.domain.lifecycle import content_hash
from bot.domain.models import ParsedPost
from bot.storage import migrate
from bot.storage.store import Store

ITEMS = 1000
DELIVERIES = 100_000
BEFORE = "0012"
"""The revision 0011 follows."""


def hash_share() -> str:
    items = [ParsedPost(title=f"Post number {i} about something", url=f"https://a.example/2026/01/{i}/post-{i}/",
                        guid=f"https://a.example/?p={i}", summary_html="<p>" + "An excerpt of the post. " * 10 + "</p>",
                        content_html="<p>" + "Body text. " * 400 + "</p>", tags=("MEK", "Iraq"),
                        published=datetime(2026, 1, 1, tzinfo=UTC), image_url="https://a.example/i.jpg",
                        author="Staff") for i in range(ITEMS)]
    whole = min(timeit.repeat(lambda: normalise("s", items), number=10, repeat=5)) / 10
    hashes = min(timeit.repeat(lambda: [content_hash(
        title=p.title, url=p.url, summary_html=p.summary_html, content_html=p.content_html, image_url=p.image_url,
        image_alt=p.image_alt, author=p.author) for p in items], number=10, repeat=5)) / 10
    return (f"normalise {ITEMS} items: {whole * 1000:.1f} ms, of which content_hash {hashes * 1000:.1f} ms "
            f"({hashes / whole:.0%})")


async def migration(url: str) -> str:
    from alembic import command

    now = datetime(2026, 1, 1, tzinfo=UTC)
    sources = table("sources", *(column(c) for c in ("id", "name", "url", "kind", "baseline_done",
                                                      "consecutive_failures", "created_at")))
    posts = table("posts", *(column(c) for c in ("id", "source_id", "key", "title", "summary_html", "content_html",
                                                  "first_seen_at", "url")))
    channels = table("channels", *(column(c) for c in ("id", "name", "platform", "paused", "created_at")))
    deliveries = table("deliveries", *(column(c) for c in ("post_id", "channel_id", "status", "attempts",
                                                            "created_at", "updated_at", "sent_at", "remote_id",
                                                            "post_at")))

    def before(conn: Connection) -> None:
        cfg = migrate.alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, BEFORE)

    store = Store.open(url)
    try:
        half = DELIVERIES // 2
        async with store.engine.begin() as conn:
            await conn.run_sync(before)
            await conn.execute(insert(sources).values(id=1, name="a", url="u", kind="rss", baseline_done=True,
                                                      consecutive_failures=0, created_at=now))
            await conn.execute(insert(channels), [{"id": i, "name": f"c{i}", "platform": "telegram", "paused": False,
                                                   "created_at": now} for i in (1, 2)])
            for start in range(0, half, 5000):
                part = range(start, min(half, start + 5000))
                await conn.execute(insert(posts), [{"id": i + 1, "source_id": 1, "key": f"k{i}", "title": f"P {i}",
                                                    "summary_html": "", "content_html": "", "first_seen_at": now,
                                                    "url": f"https://a/{i}/"} for i in part])
                await conn.execute(insert(deliveries), [{"post_id": i + 1, "channel_id": c, "status": "sent",
                                                         "attempts": 1, "created_at": now, "updated_at": now,
                                                         "sent_at": now, "remote_id": str(i), "post_at": now}
                                                        for i in part for c in (1, 2)])
        started = time.perf_counter()
        await migrate.upgrade(store.engine)
        took = time.perf_counter() - started
    finally:
        await store.aclose()
    return f"{store.dialect}: migration {BEFORE} -> 0011 with {DELIVERIES:,} deliveries: {took:.2f} s"


def main() -> None:
    print(hash_share())
    with tempfile.TemporaryDirectory() as tmp:
        print(asyncio.run(migration(f"sqlite+aiosqlite:///{tmp}/bench.db")))
    if len(sys.argv) > 1:
        print(asyncio.run(migration(sys.argv[1])))


if __name__ == "__main__":
    main()
