"""The 304 path alone: ``.venv/bin/python -m bench.not_modified`` (docs/performance.md, "Issue 21: the 304 path").

Against the bench's fake server (its own process), on a fresh SQLite file:

1. ``App.run_once`` over 100 baselined feeds that all answer 304, ``ROUNDS`` times: CPU per poll (this
   process, every thread) and the cycle's wall time (median and best: on a shared machine the best is the
   one least disturbed). Phase 1 of ``make bench`` times the same cycle once per run.
2. One conditional GET answered 304, through ``bot.sources.http.fetch`` (httpx's API on aiohttp's pool, the
   feed client) and through aiohttp alone, 16 at a time: what the HTTP layers cost of a poll.

3. Recording 100 polls answered 304: one transaction each (``Store.record_not_modified``) against one
   executemany (``Store.record_not_modified_many``, what the poller's buffer writes), on SQLite and, when
   one answers (``bench.multi.postgres_url``), on a scratch PostgreSQL database.

``PROFILE=1``: (1) under cProfile with a CPU clock; the functions the 304 path spends its time in, by
cumulative time (``PROFILE_OUT=file`` keeps the stats).
"""

from __future__ import annotations

import asyncio
import cProfile
import os
import pstats
import statistics
import time
from datetime import timedelta

import aiohttp
import httpx

from bench import multi, ours
from bench.common import FakeServer, fake_server, progress
from bot import __version__
from bot.clock import FakeClock
from bot.settings import HttpConfig
from bot.sources.http import fetch, make_feed_client
from bot.storage import migrate
from bot.storage.polls import NotModifiedRecord
from bot.storage.store import Store

FEEDS = 100
ROUNDS = int(os.environ.get("ROUNDS", "30"))
PROFILE = os.environ.get("PROFILE") == "1"


async def cycles(server: FakeServer, profile: cProfile.Profile | None) -> None:
    server.feeds(FEEDS, 10)
    app = await ours.open_app(ours.make_config(server, "not-modified", sources=FEEDS))
    try:
        await app.run_once()  # the baselines
        await app.run_once()  # warm: every connection open
        walls, cpus = [], []
        for _ in range(ROUNDS):
            cpu, wall = time.process_time(), time.perf_counter()
            if profile is not None:
                profile.enable()
            report = await app.run_once()
            if profile is not None:
                profile.disable()
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
            if any(p.outcome != "not_modified" for p in report.polls):
                raise RuntimeError("a feed changed")
        per_poll = 1000 * statistics.median(cpus) / FEEDS
        print(f"run_once, {FEEDS} feeds answering 304 ({ROUNDS} cycles): CPU {per_poll:.3f}"
              f" ms per poll; wall {1000 * statistics.median(walls):.1f} ms (best {1000 * min(walls):.1f} ms)")
    finally:
        await app.aclose()


async def http_layers(server: FakeServer) -> None:
    urls = [f"{server.url}/feeds/f{i}.xml" for i in range(FEEDS)]
    client = make_feed_client(HttpConfig(), version=__version__)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=16, keepalive_timeout=30))
    parsed = [httpx.URL(u) for u in urls]
    etags: dict[str, str | None] = {}
    gate = asyncio.Semaphore(16)
    try:
        for url in urls:
            etags[url] = (await fetch(client, url, source="f", etag=None, last_modified=None, max_bytes=2**24)).etag

        async def ours_fetch(i: int) -> None:
            async with gate:
                outcome = await fetch(client, urls[i], source="f", etag=etags[urls[i]], last_modified=None,
                                      max_bytes=2**24, extra_headers={"Accept": "*/*"}, parsed=parsed[i])
                assert outcome.not_modified

        async def aiohttp_alone(i: int) -> None:
            async with gate, session.get(urls[i], headers={"If-None-Match": etags[urls[i]] or "", "Accept": "*/*"},
                                         allow_redirects=False) as answer:
                assert answer.status == 304
                await answer.read()

        for label, one in (("fetch (httpx API, aiohttp pool)", ours_fetch), ("aiohttp alone", aiohttp_alone)):
            cpus = []
            for _ in range(ROUNDS):
                cpu = time.process_time()
                await asyncio.gather(*(one(i) for i in range(FEEDS)))
                cpus.append(time.process_time() - cpu)
            print(f"one conditional GET answered 304, {label}: CPU {1000 * statistics.median(cpus) / FEEDS:.3f} ms")
    finally:
        await client.aclose()
        await session.close()


async def writes(url: str, label: str) -> None:
    store = Store.open(url)
    await migrate.upgrade(store.engine)
    clock = FakeClock()
    try:
        await store.sync_config([(f"s{i}", f"https://s{i}.example/feed/", "rss") for i in range(FEEDS)], [], [],
                                clock.now())
        states = [await store.source(f"s{i}") for i in range(FEEDS)]
        for how in ("one transaction each", "one executemany"):
            cpus, walls = [], []
            for _ in range(ROUNDS):
                clock.advance(60)
                later = clock.now() + timedelta(minutes=10)
                cpu, wall = time.process_time(), time.perf_counter()
                if how == "one executemany":
                    await store.record_not_modified_many([NotModifiedRecord(s.id, s.name, s.cache, clock.now(), later)
                                                          for s in states])
                else:
                    for s in states:
                        await store.record_not_modified(s.id, s.cache, clock.now(), later)
                cpus.append(time.process_time() - cpu)
                walls.append(time.perf_counter() - wall)
            print(f"recording a 304 on {label}, {how}: CPU {1000 * statistics.median(cpus) / FEEDS:.3f} ms, "
                  f"wall {1000 * statistics.median(walls) / FEEDS:.3f} ms")
    finally:
        await store.aclose()


def main() -> None:
    ours.clean_work()
    with fake_server() as server:
        progress(f"fake server on {server.url}")
        profile = cProfile.Profile(time.process_time) if PROFILE else None
        asyncio.run(cycles(server, profile))
        asyncio.run(http_layers(server))
    asyncio.run(writes(ours.sqlite_url("not-modified-writes"), "SQLite"))
    pg = multi.postgres_url()
    if pg is not None:
        db = multi.scratch_database(pg)
        try:
            asyncio.run(writes(db, "PostgreSQL"))
        finally:
            multi.drop_database(db)
    if profile is not None:
        out = os.environ.get("PROFILE_OUT")
        if out:
            profile.dump_stats(out)
        pstats.Stats(profile).sort_stats("cumulative").print_stats(40)


if __name__ == "__main__":
    main()
