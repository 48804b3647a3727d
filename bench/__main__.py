"""``make bench``: everything on 127.0.0.1, one table, then ``ratio <peer> <workload> <N.N>x`` lines.

Phases (a progress line each on stderr): 1 the peers side by side, 2 polling
throughput, 3 delivery throughput, 4 memory, 5 scaling and query plans, 6 one
vs two instances on PostgreSQL (skipped without a reachable PostgreSQL), 7
freshness: publication to delivery, with and without push, 8 the fleet: one ``tagrelay run`` with
10,000 sources for several intervals (``bench/fleet.py``).
Every figure is the median of ``BENCH_RUNS`` runs (default 3) with min–max, except phase 8's: one
run (~6 minutes; ``BENCH_FLEET_*`` size it).
The candidate HTTP client httpx2 (httpx-aiohttp is a dependency: the feed client) and the peers are installed
here, never by ``make run`` or ``make test``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

from bench.common import RUNS, FakeServer, Figure, ServerLoad, fake_server, progress

PEER_FEEDS, PEER_ITEMS = 100, 10
POLL_SOURCES = 1000
DELIVERY_FEEDS, DELIVERY_ITEMS = 100, 1
SCALING = [(1_000, 10), (10_000, 10), (100_000, 10), (10_000, 1_000), (10_000, 10_000), (100_000, 10_000)]
MULTI_FEEDS, MULTI_ITEMS = 100, 3
MULTI_CHANNELS = int(os.environ.get("BENCH_MULTI_CHANNELS", "4"))
"""Channels of phase 6 (Mastodon, Telegram, X in turn); each instance's delivery concurrency is the same."""
BENCH_ONLY = ("httpx2",)


def ensure_bench_only_packages() -> None:
    """The HTTP client candidates compared in phases 2–3 (bench only: not project dependencies)."""
    missing = [p for p in BENCH_ONLY if importlib.util.find_spec(p.replace("-", "_")) is None]
    if missing:
        progress(f"installing bench-only packages into .venv: {', '.join(missing)}")
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *missing],
                       check=True)


def machine() -> str:
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{os.cpu_count()} CPU ({cpu}), Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}")


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str]] = []
        self.figures: dict[str, Figure] = {}

    def figure(self, key: str, section: str, name: str, unit: str, *, digits: int = 1) -> Figure:
        if key not in self.figures:
            self.figures[key] = Figure(section, name, unit, digits=digits)
        return self.figures[key]

    def text_row(self, section: str, name: str, value: str, note: str = "") -> None:
        self.rows.append((section, name, value, note))

    def render(self) -> str:
        rows = [(f.section, f.name, f"{f.cell()} {f.unit}".strip(), f.note) for f in self.figures.values()]
        rows += self.rows
        order = {s: i for i, s in enumerate(dict.fromkeys(r[0] for r in rows))}
        rows.sort(key=lambda r: order[r[0]])
        headers = ("section", "figure", "median (min–max)", "note")
        widths = [min(60, max(len(h), *(len(r[i]) for r in rows))) for i, h in enumerate(headers[:3])]
        out = [" | ".join(h.ljust(w) for h, w in zip(headers[:3], widths, strict=True)) + " | " + headers[3]]
        out.append("-+-".join("-" * w for w in widths) + "-+-" + "-" * 20)
        for row in rows:
            out.append(" | ".join(c.ljust(w) for c, w in zip(row[:3], widths, strict=True)) + " | " + row[3])
        return "\n".join(out)


PHASES = {p.strip() for p in os.environ.get("BENCH_PHASES", "1,2,3,4,5,6,7,8").split(",")}
"""``BENCH_PHASES=2,3`` runs only those phases (for working on one; ``make bench`` runs all)."""


def timed(label: str, fn: Callable[[], None]) -> None:
    if label.split("/", 1)[0] not in PHASES:
        progress(f"{label}: skipped (BENCH_PHASES)")
        return
    started = time.monotonic()
    progress(f"{label} …")
    fn()
    progress(f"{label}: done in {time.monotonic() - started:.0f}s")


def feedparser_ms_per_feed(server: FakeServer) -> float:
    """What one of the bench feeds costs the peers' parser (median of 5), to show the feeds are realistic."""
    import statistics
    import urllib.request

    import feedparser

    with urllib.request.urlopen(f"{server.url}/feeds/f0.xml", timeout=10) as answer:  # noqa: S310 - loopback
        body = answer.read()
    times = []
    for _ in range(5):
        started = time.perf_counter()
        feedparser.parse(body)
        times.append(1000 * (time.perf_counter() - started))
    return statistics.median(times)


def main() -> int:
    started = time.monotonic()
    ensure_bench_only_packages()
    from bench import fleet, memory, multi, ours, peers, scaling

    table = Table()
    ratios: list[str] = []
    with fake_server() as server:
        progress(f"fake server on {server.url}; {RUNS} runs per figure")

        # -- 1. peers -----------------------------------------------------------------------------
        def phase_peers() -> None:
            tools = {name: peers.Peer(name, server, PEER_FEEDS) for name in peers.PEERS}
            versions = {name: peers.installed_version(name) for name in tools}
            load = ServerLoad(server)
            sec = "1 peers (100 feeds)"
            for run in range(RUNS):
                for name, tool in tools.items():
                    server.ctl("reset")
                    server.feeds(PEER_FEEDS, PEER_ITEMS)
                    tool.reset()
                    with load:
                        first = tool.run()
                    second = tool.run()
                    if first.statuses != PEER_FEEDS * PEER_ITEMS or second.statuses != 0:
                        raise RuntimeError(f"{name} posted {first.statuses} then {second.statuses}")
                    label = f"{name} {versions[name]}"
                    table.figure(f"{name}-a", sec, f"{label}: 1,000 new entries posted", "s").values.append(
                        first.seconds)
                    table.figure(f"{name}-b", sec, f"{label}: 100 unchanged feeds", "s").values.append(
                        second.seconds)
                    progress(f"  run {run + 1}: {name} {first.seconds:.1f}s / {second.seconds:.1f}s")
                with load:
                    ours_run = asyncio.run(ours.peer_workloads(server, PEER_FEEDS, PEER_ITEMS, run))
                table.figure("ours-a", sec, "tagrelay: 1,000 new entries posted + recorded", "s",
                             digits=2).values.append(ours_run.new_entries)
                table.figure("ours-b", sec, "tagrelay: 100 unchanged feeds", "s", digits=2).values.append(
                    ours_run.unchanged)
                progress(f"  run {run + 1}: tagrelay {ours_run.new_entries:.2f}s / {ours_run.unchanged:.2f}s")
            table.figures["ours-a"].note = ("App.run_once in-process, fresh SQLite, baselined on empty feeds; "
                                            "Mastodon: claimed groups, outcomes committed every 16")
            table.figures["ours-b"].note = "conditional GETs: 100 × 304, nothing parsed"
            for name in tools:
                table.figures[f"{name}-a"].note = "subprocess wall time (cron-style run, incl. start-up)"
                for wl, key in (("new-entries", "a"), ("unchanged", "b")):
                    ratio = table.figures[f"{name}-{key}"].median / table.figures[f"ours-{key}"].median
                    table.text_row(sec, f"ratio vs {name}: {wl}", f"{ratio:.1f}x",
                                   f"target ≥ {20 if key == 'a' else 40}x")
                    ratios.append(f"ratio {name} {wl} {ratio:.1f}x")
            ms = feedparser_ms_per_feed(server)
            table.text_row(sec, "feedparser 6.0 on one of these feeds", f"{ms:.0f} ms",
                           "the peers' parser; perf-baselines' reference feed: 62 ms")
            table.text_row(sec, "fake server CPU (max over runs)", f"{load.worst:.0f} %",
                           "100 % would mean the fake is the limit")

        timed("1/8 peers side by side", phase_peers)
        clients = ours.available_clients()

        # -- 2. polling throughput ------------------------------------------------------------------
        def phase_polling() -> None:
            bench = ours.PollingBench(server, POLL_SOURCES)
            sec = "2 polling (1,000 sources, 90 % 304)"
            load = ServerLoad(server)

            async def go() -> None:
                await bench.setup(clients)
                try:
                    for run in range(RUNS):
                        server.ctl("change", fraction=0.1, seed=run + 1)
                        for name in clients:
                            with load:
                                result = await bench.round(name)
                            if result.changed != POLL_SOURCES // 10:
                                raise RuntimeError(f"{result.changed} changed feeds, expected {POLL_SOURCES // 10}")
                            table.figure(f"poll-{name}", sec, f"polls/s, {name}", "/s", digits=0).values.append(
                                result.polls_per_s)
                            table.figure(f"pollcpu-{name}", sec, f"CPU per poll, {name}", "ms",
                                         digits=2).values.append(result.cpu_ms_per_poll)
                finally:
                    await bench.close()

            asyncio.run(go())
            table.text_row(sec, "fake server CPU (max)", f"{load.worst:.0f} %", "")

        timed("2/8 polling throughput", phase_polling)

        # -- 3. delivery throughput -----------------------------------------------------------------
        def phase_delivery() -> None:
            sec = "3 delivery (Mastodon+Telegram+X, pacing off)"
            load = ServerLoad(server)
            for run in range(RUNS):
                for i, (name, factory) in enumerate(clients.items()):
                    if name == "httpx2":  # not a drop-in: it rejects the X publisher's httpx.Auth
                        if run == 0:
                                table.text_row(sec, "httpx2", "n/a", "not a drop-in replacement: the X publisher's "
                                           "httpx.Auth is refused (TypeError); polling figures above")
                        continue
                    with load:
                        result = asyncio.run(ours.delivery_throughput(server, factory, DELIVERY_FEEDS,
                                                                      DELIVERY_ITEMS, run, str(i)))
                    table.figure(f"del-{name}", sec, f"deliveries recorded/s, {name}", "/s",
                                 digits=0).values.append(result.per_s)
                    table.figure(f"delcpu-{name}", sec, f"CPU per delivery, {name}", "ms",
                                 digits=2).values.append(result.cpu_ms_per_delivery)
            first = next(iter(clients))
            table.figures[f"del-{first}"].note = "target ≥ 200/s; Telegram: each claim committed; Mastodon, X: groups"
            table.text_row(sec, "fake server CPU (max)", f"{load.worst:.0f} %", "")

        timed("3/8 delivery throughput", phase_delivery)

        # -- 4. memory -------------------------------------------------------------------------------
        def phase_memory() -> None:
            sec = "4 memory (tagrelay run, 100 sources, 3 channels)"
            for run in range(RUNS):
                rss, posts = memory.rss_of_run(server, 100, 10, f"idle-{run}")
                table.figure("rss-idle", sec, f"idle RSS ({posts:,} posts known)", "MiB").values.append(rss)
                rss, posts = memory.rss_of_run(server, 100, 100, f"big-{run}")
                table.figure("rss-10k", sec, f"RSS after {posts:,} posts known", "MiB").values.append(rss)
            table.figures["rss-idle"].note = "target ≤ 80 MiB"

        timed("4/8 memory", phase_memory)

        # -- 5. scaling ------------------------------------------------------------------------------
        def phase_scaling() -> None:
            sec = "5 scaling (one cycle: +10 posts → poll + 10 deliveries)"

            async def go(db: str | None) -> None:
                last = None
                for posts, subs in SCALING:
                    app = await scaling.build(server, None, f"{posts}-{subs}", posts, subs)
                    try:
                        for run in range(RUNS):
                            cyc = await scaling.cycle(server, app, run + 1)
                            table.figure(f"scale-{posts}-{subs}", sec,
                                         f"{posts:,} known posts, {subs:,} subscriptions", "ms",
                                         digits=1).values.append(cyc.poll_ms + cyc.deliver_ms)
                        if (posts, subs) == SCALING[-1]:
                            last = await scaling.explain(server, app)
                    finally:
                        await app.aclose()
                report_plans(table, "5 query plans, SQLite (100k posts, 10k subs)", "sqlite", last or [])
                if db is None:
                    table.text_row("5 query plans, PostgreSQL", "skipped", "n/a", "no PostgreSQL reachable")
                    return
                app = await scaling.build(server, db, "pg", *SCALING[-1])
                try:
                    report_plans(table, "5 query plans, PostgreSQL (100k posts, 10k subs)", "postgresql",
                                 await scaling.explain(server, app))
                finally:
                    await app.aclose()

            pg = multi.postgres_url()
            db = multi.scratch_database(pg) if pg else None
            try:
                asyncio.run(go(db))
            finally:
                if db:
                    multi.drop_database(db)

        timed("5/8 scaling and query plans", phase_scaling)

        # -- 6. several instances --------------------------------------------------------------------
        def phase_multi() -> None:
            sec = f"6 scale-out on PostgreSQL ({MULTI_FEEDS * MULTI_ITEMS} posts × {MULTI_CHANNELS} channels)"
            pg = multi.postgres_url()
            if pg is None:
                table.text_row(sec, "skipped", "n/a", "no PostgreSQL reachable (set BENCH_POSTGRES_URL)")
                return
            load = ServerLoad(server)
            for run in range(RUNS):
                for n in (1, 2):
                    with load:
                        got = multi.run_instances(server, pg, n, MULTI_FEEDS, MULTI_ITEMS, f"{n}-{run}",
                                                  channels=MULTI_CHANNELS, concurrency=MULTI_CHANNELS)
                    label = f"{n} instance{'s' if n > 1 else ''}"
                    table.figure(f"multi-{n}", sec, f"{label}: deliveries/s", "/s", digits=0).values.append(got.rate)
                    table.figure(f"multi-cpu-{n}", sec, f"{label}: tagrelay CPU, % of one core (sum)", "%",
                                 digits=0).values.append(got.instances_cpu)
                    table.figure(f"multi-busy-{n}", sec, f"{label}: machine busy (both cores, all processes)", "%",
                                 digits=0).values.append(got.machine_busy)
                    table.figure(f"multi-ms-{n}", sec, f"{label}: tagrelay CPU per delivery", "ms",
                                 digits=2).values.append(got.instance_ms)
                    table.figure(f"multi-pg-{n}", sec, f"{label}: PostgreSQL CPU per delivery", "ms",
                                 digits=2).values.append(got.postgres_ms)
            ratio = table.figures["multi-2"].median / table.figures["multi-1"].median
            table.text_row(sec, "2 instances ÷ 1", f"{ratio:.2f}x", "target ≥ 1.8x where the fakes are not the limit")
            # one instance keeps the machine `busy` % occupied (itself, PostgreSQL, the fake); twice the
            # work fits at most 100 ÷ busy times over, however it is split between processes
            ceiling = 100.0 / table.figures["multi-busy-1"].median
            table.text_row(sec, "ceiling on this machine: 100 % ÷ machine busy with 1 instance", f"{ceiling:.2f}x",
                           "what any number of instances could reach on these cores")
            table.text_row(sec, "fake server CPU (max)", f"{load.worst:.0f} %",
                           "PostgreSQL, the fake and the instances share 2 cores")

        timed("6/8 one vs two instances", phase_multi)

        # -- 7. freshness ----------------------------------------------------------------------------
        def phase_freshness() -> None:
            from bench import freshness

            sec = f"7 freshness ({freshness.POSTS} posts, polled every {freshness.INTERVAL:g} s)"
            for run in range(RUNS):
                for push in (True, False):
                    got = asyncio.run(freshness.freshness(server, push=push, run=run))
                    mode = "with push" if push else "without push"
                    table.figure(f"fresh-50-{push}", sec, f"{mode}: publication → delivery p50", "s",
                                 digits=2).values.append(got.p50)
                    table.figure(f"fresh-95-{push}", sec, f"{mode}: publication → delivery p95", "s",
                                 digits=2).values.append(got.p95)
                    table.figure(f"fresh-polls-{push}", sec, f"{mode}: polls that found posts", "",
                                 digits=0).values.append(got.polls)
                    progress(f"  run {run + 1}: {mode} p50 {got.p50:.2f}s p95 {got.p95:.2f}s ({got.polls} polls)")
            table.figures["fresh-95-True"].note = "target ≤ 5 s; [push] min_gap (1 s) bounds polls per second"
            table.figures["fresh-95-False"].note = "∝ the interval: ~0.95 × interval, whatever the interval"

        timed("7/8 freshness", phase_freshness)

        # -- 8. the fleet ----------------------------------------------------------------------------
        def phase_fleet() -> None:
            sec = (f"8 fleet ({fleet.SOURCES:,} sources, every {fleet.INTERVAL:g} s, {fleet.INTERVALS} intervals, "
                   f"one run)")
            for name, value, note in fleet.rows(fleet.run(server)):
                table.text_row(sec, name, value, note)

        timed(f"8/8 fleet: {fleet.SOURCES:,} sources", phase_fleet)

    print(f"tagrelay bench — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — {machine()}")
    print(f"command: make bench (BENCH_RUNS={RUNS}); every figure: median (min–max) of {RUNS} runs; "
          f"total {time.monotonic() - started:.0f}s")
    print(table.render())
    for line in ratios:
        print(line)
    return 0


def report_plans(table: Table, section: str, dialect: str, plans: list[tuple[str, str, list[str]]]) -> None:
    from bench.scaling import plan_verdict

    for label, statement, plan in plans:
        words = statement.split()
        head = " ".join(words[:4])
        main_line = next((p for p in plan if p.strip()), "")
        table.text_row(section, f"{label}: {head[:40]}", plan_verdict(dialect, plan), main_line[:110])


if __name__ == "__main__":
    sys.exit(main())
