"""Issue 21's poll driver at scale: what one round reads, and how the start-up spread fills the seconds.

``python -m bench.herd [SOURCES]`` (not part of ``make bench``; 10,000 sources by default, at a 10-minute
interval, on a SQLite file under bench/work/):

1. One round's read and decision, median of 200 rounds, with one second's worth of sources due (their
   times evenly spread over the interval, as the start-up spread leaves them): before issue 21 (every
   source's ``next_poll_at``, then the plan over all of them) and now (``Store.due_sources``: the due rows
   and the earliest time to come, through ``ix_sources_next_poll``, then the plan over those).
2. The start-up spread of that many never-polled sources: the fullest second before (all of them in the
   first), with a time of ``phase × interval``, and with ``spread_overdue``.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, select

from bench.ours import sqlite_url
from bot.domain.runtime import ROUND_GAP, plan_polls
from bot.domain.schedule import phase, spread_overdue
from bot.storage import migrate
from bot.storage import tables as t
from bot.storage.base import utc
from bot.storage.store import Store

INTERVAL = 600.0
ROUNDS = 200


async def round_costs(sources: int) -> tuple[float, float, int]:
    """Milliseconds per round, before and now, and how many sources each round found due."""
    store = Store.open(sqlite_url("herd"))
    try:
        await migrate.upgrade(store.engine)
        now = datetime(2026, 12, 6, tzinfo=UTC)
        names = [f"news-{i:05d}" for i in range(sources)]
        await store.sync_config([(n, f"https://site{i % 50}.example/feed/", "rss") for i, n in enumerate(names)],
                                [], [], now)
        await store.spread_polls({n: now + timedelta(seconds=i * INTERVAL / sources) for i, n in enumerate(names)},
                                 now + timedelta(days=1))
        order = {n: i for i, n in enumerate(names)}
        at = now + timedelta(seconds=ROUND_GAP)  # a round a second: one second's worth due
        every = select(t.sources.c.name, t.sources.c.next_poll_at)

        def read_every(conn: Connection) -> dict[str, datetime | None]:
            return {r.name: utc(r.next_poll_at) for r in conn.execute(every).all()}

        async def before() -> int:
            schedule = await store.database.run(read_every, write=False)
            return len(plan_polls(schedule, order, busy=(), resting={}, now=at).due)

        async def after() -> int:
            read = await store.due_sources(at)
            rows = {s.name: s.next_poll_at for s in read.rows}
            return len(plan_polls(rows, order, busy=(), resting={}, now=at, later=read.next_at).due)

        figures: list[float] = []
        due = 0
        for fn in (before, after):
            samples = []
            for _ in range(ROUNDS):
                started = time.perf_counter()
                due = await fn()
                samples.append((time.perf_counter() - started) * 1000)
            figures.append(statistics.median(samples))
        return figures[0], figures[1], due
    finally:
        await store.aclose()


def fullest_seconds(sources: int) -> tuple[int, int, int]:
    """The most first polls in one second: all at once, ``phase × interval``, ``spread_overdue``."""
    names = [f"news-{i:05d}" for i in range(sources)]
    now = datetime(2026, 12, 6, tzinfo=UTC)
    by_phase = Counter(math.floor(phase(n) * INTERVAL) for n in names)
    spread = spread_overdue(dict.fromkeys(names, INTERVAL), now=now, ramp_after=100)
    by_slot = Counter(math.floor((at - now).total_seconds()) for at in spread.values())
    return sources, max(by_phase.values()), max(by_slot.values())


def main() -> None:
    sources = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    before, after, due = asyncio.run(round_costs(sources))
    print(f"one poll round, {sources} sources, {due} due (SQLite, median of {ROUNDS}): "
          f"before {before:.2f} ms (every row), now {after:.2f} ms (the due rows)")
    at_once, by_phase, by_slot = fullest_seconds(sources)
    print(f"start-up, {sources} never-polled sources at {INTERVAL:g}s: fullest second {at_once} polls before, "
          f"{by_phase} with phase × interval, {by_slot} spread (share: {sources / INTERVAL:.1f})")


if __name__ == "__main__":
    main()
