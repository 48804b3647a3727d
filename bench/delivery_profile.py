"""Where the time of "1,000 new entries posted + recorded" goes: phase 1's tagrelay workload under cProfile.

``.venv/bin/python -m bench.delivery_profile [runs]`` (default 3) starts the bench's fake server, runs
``bench.ours.peer_workloads`` (100 feeds × 10 new items into one Mastodon channel, pacing off), and prints,
for the timed cycle (poll + detect + record + deliver), the wall time, this process's CPU time and the
profiled CPU time per post by part: rendering, the HTTP client, the store (SQLAlchemy + sqlite3), the
feeds (fetch, parse, detect, plan), asyncio and the rest. The fake runs in its own process: wall minus
CPU is mostly waiting for it (and for the machine's other work).
"""

from __future__ import annotations

import asyncio
import cProfile
import pstats
import sys
import time
from collections import defaultdict

from bench import ours
from bench.common import fake_server

PARTS = (
    ("render (bot/render, twitter-text, grapheme)", ("bot/render/", "twitter_text", "grapheme", "jinja2")),
    ("HTTP client (httpx, httpcore, h11, anyio, ssl)", ("httpx", "httpcore", "h11", "anyio", "/ssl.py")),
    ("feeds: fetch, parse, detect, plan", ("bot/sources/", "bot/domain/", "aiohttp", "lxml", "feedparser",
                                          "multidict", "yarl")),
    ("store: SQLAlchemy, sqlite3, bot/storage", ("sqlalchemy", "sqlite3", "bot/storage/", "<method 'execute'",
                                                 "<method 'commit'", "<method 'fetch")),
    ("delivery service (bot/services, publishers)", ("bot/services/", "bot/publishers/")),
    ("waiting: epoll (the fake, the database thread, worker threads)", ("<method 'poll' of 'select.epoll",)),
    ("sockets: send, recv, connect", ("of '_socket.socket' objects>",)),
    ("regular expressions compiled (re._parser, re._compiler)", ("re/_parser.py", "re/_compiler.py")),
    ("asyncio, threads", ("asyncio", "selectors", "threading", "concurrent/futures", "queue.py",
                          "<method 'acquire'")),
)


CUMULATIVE = {
    "the whole cycle (App.run_once)": ("bot/app.py", "run_once"),
    "polls: fetch, parse, detect, record (Poller.poll_source)": ("bot/services/polling.py", "poll_source"),
    "deliveries (Deliverer.deliver_channel)": ("bot/services/delivery.py", "deliver_channel"),
    "  one attempt each (Deliverer.attempt)": ("bot/services/delivery.py", "attempt"),
    "    render (the Mastodon plugin's render)": ("bot/publishers/mastodon.py", "render"),
    "    publish (MastodonPublisher.publish)": ("bot/publishers/mastodon.py", "publish"),
    "      the featured image tried (attachments.image_for)": ("bot/publishers/attachments.py", "image_for"),
    "  group claims and commits, this thread's side (Store.claim_group, settle_group)":
        ("bot/storage/pipeline.py", "claim_group"),
    "  ": ("bot/storage/pipeline.py", "settle_group"),
    "  logs, metrics (Deliverer.report)": ("bot/services/delivery.py", "report"),
}


def part_of(filename: str, name: str) -> str:
    where = f"{filename}:{name}"
    for part, marks in PARTS:
        if any(m in where for m in marks):
            return part
    return "other"


async def profiled_cycle(server: ours.FakeServer, run: int) -> tuple[float, float, pstats.Stats]:
    server.ctl("reset")
    server.feeds(100, 0)
    app = await ours.open_app(ours.make_config(server, f"profile-{run}", sources=100))
    try:
        await app.run_once()
        server.feeds(100, 10)
        profile = cProfile.Profile()
        cpu, wall = time.process_time(), time.perf_counter()
        profile.enable()
        report = await app.run_once()
        profile.disable()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        sent = sum(1 for d in report.deliveries if d.status.value == "sent")
        if sent != 1000:
            raise RuntimeError(f"sent {sent} of 1000")
    finally:
        await app.aclose()
    return wall, cpu, pstats.Stats(profile)


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    with fake_server() as server:
        for run in range(runs):
            wall, cpu, stats = asyncio.run(profiled_cycle(server, run))
            by_part: dict[str, float] = defaultdict(float)
            total = 0.0
            for (filename, _line, name), row in stats.stats.items():  # type: ignore[attr-defined]
                tottime = row[2]
                by_part[part_of(filename, name)] += tottime
                total += tottime
            print(f"run {run + 1}: wall {wall:.2f} s, CPU {cpu:.2f} s (profiled {total:.2f} s, "
                  f"with the profiler's own overhead), per post: wall {wall:.2f} ms, CPU {cpu:.2f} ms")
            for part, seconds in sorted(by_part.items(), key=lambda kv: -kv[1]):
                print(f"  {part:<50} {seconds:6.2f} s  {100 * seconds / total:5.1f} %  "
                      f"{seconds:.2f} ms/post")
            print("  on the event loop, cumulative (a coroutine's time while it runs, not while it waits):")
            for label, (suffix, name) in CUMULATIVE.items():
                cum = sum(row[3] for (filename, _l, fn), row in stats.stats.items()  # type: ignore[attr-defined]
                          if filename.endswith(suffix) and fn == name)
                print(f"    {label:<60} {cum:6.2f} s  {cum:.2f} ms/post")
            if run == runs - 1:
                stats.sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
