"""What a spending budget costs per paid post: ``Store.reserve_spend`` against a channel and an account budget.

Run ``.venv/bin/python -m bench.budget [postgresql+asyncpg://…/scratch_db]``: the median and 90th percentile of
``N`` reservations in a row on a fresh SQLite file (and on the PostgreSQL database given, which must be empty),
next to a one-row read (``Store.has_due``) for scale. Not part of ``make bench``: one number, no peers.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime

from bot.domain.budget import Limit, Period
from bot.storage import migrate
from bot.storage.store import Store

N = 500


async def measure(url: str) -> str:
    store = Store.open(url)
    try:
        await migrate.upgrade(store.engine)
        limits = [("channel:x", Limit(Period.DAY, 10**15)), ("account:a", Limit(Period.MONTH, 10**15))]
        now = datetime(2026, 1, 1, 12, tzinfo=UTC)
        times = []
        for _ in range(N):
            started = time.perf_counter()
            await store.reserve_spend(limits, 200_000, now)
            times.append(time.perf_counter() - started)
        started = time.perf_counter()
        for _ in range(N):
            await store.has_due("x", now)
        read = (time.perf_counter() - started) / N
    finally:
        await store.aclose()
    times.sort()
    return (f"{store.dialect}: reserve_spend median {statistics.median(times) * 1000:.2f} ms, "
            f"p90 {times[int(N * 0.9)] * 1000:.2f} ms (a one-row read: {read * 1000:.2f} ms)")


async def main(argv: list[str]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        print(await measure(f"sqlite+aiosqlite:///{folder}/budget.db"))
    for url in argv:
        print(await measure(url))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
