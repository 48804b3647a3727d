"""Scale-out: 1 vs 2 ``tagrelay run`` processes sharing one PostgreSQL database.

Each run gets a scratch database. The instances start on empty feeds and
baseline them; then the feeds fill (``feeds × items`` new posts, each for 4
channels) and the clock runs until every delivery is recorded as sent. The
figure is deliveries per second from the fill to the last ``sent`` row, so it
includes detection (polling) as well as sending.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any

import psutil  # type: ignore[import-untyped]

from bench.common import ROOT, WORK, FakeServer
from bench.memory import write_toml
from bench.ours import SECRETS, channel_tables, raw_config

PLATFORMS = ("masto", "tg", "x")


def channel_set(base: str, count: int) -> list[dict[str, Any]]:
    """``count`` channels, Mastodon, Telegram and X in turn, each its own account or chat."""
    tables = []
    for i in range(count):
        table = {**channel_tables(base, (PLATFORMS[i % 3],))[0], "name": f"c{i}"}
        if table["platform"] == "mastodon":
            table["token_env"] = f"BENCH_MASTODON_TOKEN_{i}"
        elif table["platform"] == "telegram":
            table["chat_id"] = f"@bench{i}"
        tables.append(table)
    return tables


def postgres_url() -> str | None:
    """``BENCH_POSTGRES_URL``, else ``TAGRELAY_TEST_POSTGRES_URL``, else the local dev database if it answers."""
    for name in ("BENCH_POSTGRES_URL", "TAGRELAY_TEST_POSTGRES_URL"):
        if os.environ.get(name):
            return os.environ[name]
    url = "postgresql+asyncpg://postgres@127.0.0.1:5432/tagrelay_dev"
    try:
        asyncio.run(_exec(url, "SELECT 1"))
    except Exception:
        return None
    return url


async def _exec(url: str, sql: str) -> list[Any]:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


def scratch_database(url: str) -> str:
    name = f"tagrelay_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    asyncio.run(_exec(url, f'CREATE DATABASE "{name}"'))
    return f"{url.rpartition('/')[0]}/{name}"


def drop_database(url: str) -> None:
    base, _, name = url.rpartition("/")
    asyncio.run(_exec(f"{base}/postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _count(url: str, sql: str) -> int:
    try:
        rows = asyncio.run(_exec(url, sql))
    except Exception:
        return 0
    return int(rows[0][0]) if rows else 0


def machine_cpu() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot, from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as fh:
        fields = [int(v) for v in fh.readline().split()[1:9]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields)
    return total - idle, total


@dataclass(frozen=True)
class MultiRun:
    rate: float
    """Deliveries recorded per second, from the first queued to the last recorded."""
    machine_busy: float
    """% of both cores busy meanwhile, every process counted (instances, PostgreSQL, the fake, the bench)."""
    instances_cpu: float
    """CPU time of the tagrelay processes meanwhile, in % of one core (summed over the instances)."""


def _cpu_seconds(procs: list[subprocess.Popen[bytes]]) -> float:
    total = 0.0
    for proc in procs:
        times = psutil.Process(proc.pid).cpu_times()
        total += times.user + times.system
    return total


def run_instances(server: FakeServer, pg_url: str, instances: int, feeds: int, items: int, label: str,
                  interval: str = "2s", channels: int = 4, concurrency: int = 4) -> MultiRun:
    """One run of ``instances`` processes on a fresh database (see ``MultiRun``)."""
    server.ctl("reset")
    server.feeds(feeds, 0)
    db = scratch_database(pg_url)
    raw = raw_config(server.url, db, sources=feeds, channels=("masto",), interval=interval, lease_ttl=10.0)
    raw["channels"] = channel_set(server.url, channels)
    raw["subscriptions"] = [{"tag": "News", "channels": [c["name"] for c in raw["channels"]]}]
    raw["delivery"]["concurrency"] = concurrency
    folder = WORK / "multi"
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / f"{label}.toml"
    write_toml(raw, config)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAGRELAY_")}
    env.update(SECRETS)
    env.update({f"BENCH_MASTODON_TOKEN_{i}": f"bench-mastodon-token-account-{i}" for i in range(channels)})
    logs = [(folder / f"{label}-{i}.log").open("w") for i in range(instances)]
    procs = [subprocess.Popen([sys.executable, "-m", "bot", "--config", str(config), "run"], cwd=ROOT, env=env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
             for log in logs]
    try:
        _wait(lambda: _count(db, "SELECT count(*) FROM sources WHERE baseline_done") == feeds, procs, 120,
              "the baseline")
        expected = feeds * items * channels
        busy0, total0 = machine_cpu()
        cpu0, wall0 = _cpu_seconds(procs), time.monotonic()
        server.feeds(feeds, items)
        _wait(lambda: _count(db, "SELECT count(*) FROM deliveries WHERE status = 'sent'") == expected, procs, 300,
              "every delivery")
        busy1, total1 = machine_cpu()
        cpu1, wall1 = _cpu_seconds(procs), time.monotonic()
        # from the first delivery queued to the last one recorded: the polling interval's detection
        # latency is left out, the polling, queueing and sending work is in
        span = _count(db, "SELECT EXTRACT(EPOCH FROM max(sent_at) - min(created_at)) * 1000 FROM deliveries")
        return MultiRun(rate=expected / (span / 1000), machine_busy=100.0 * (busy1 - busy0) / max(1, total1 - total0),
                        instances_cpu=100.0 * (cpu1 - cpu0) / max(1e-9, wall1 - wall0))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in logs:
            log.close()
        drop_database(db)


def _wait(done: Any, procs: list[subprocess.Popen[bytes]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if any(p.poll() is not None for p in procs):
            raise RuntimeError(f"an instance exited while waiting for {what} (its log is in {WORK / 'multi'})")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)
