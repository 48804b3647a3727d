"""Scale-out: 1 vs 2 ``tagrelay run`` processes sharing one PostgreSQL database.

Each run gets a scratch database. One ``tagrelay run --once`` baselines the
empty feeds; then the feeds fill (``feeds × items`` new posts, each for every
channel) and the instances start with every source due. The figure is
deliveries per second from the first delivery queued to the last ``sent`` row,
so it includes detection (polling) as well as sending, and leaves out start-up.
The CPU figures cover the same span.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
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


def machine_cpu() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot, from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as fh:
        fields = [int(v) for v in fh.readline().split()[1:9]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields)
    return total - idle, total


@dataclass(frozen=True)
class MultiRun:
    """One run, measured from the first delivery queued to the last one recorded as sent."""

    rate: float
    """Deliveries recorded per second."""
    machine_busy: float
    """% of both cores busy meanwhile, every process counted (instances, PostgreSQL, the fake, the bench)."""
    instances_cpu: float
    """CPU time of the tagrelay processes meanwhile, in % of one core (summed over the instances)."""
    instance_ms: float
    """CPU milliseconds of the tagrelay processes per delivery."""
    postgres_ms: float
    """CPU milliseconds of PostgreSQL's processes per delivery."""


def _cpu_seconds(pids: list[int]) -> float:
    return sum(_cpu_by_pid(pids).values())


def _cpu_by_pid(pids: list[int]) -> dict[int, float]:
    seconds = {}
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.NoSuchProcess:  # ended meanwhile
            continue
        seconds[pid] = times.user + times.system
    return seconds


def _postgres_cpu() -> dict[int, float]:
    """CPU seconds of each PostgreSQL process (postmaster, backends, background workers) now."""
    return _cpu_by_pid([p.pid for p in psutil.process_iter(["name"]) if p.info["name"] in ("postgres", "postmaster")])


@dataclass
class _Sample:
    wall: float
    busy: int
    total: int
    instances: float
    postgres: dict[int, float]

    @classmethod
    def take(cls, procs: list[subprocess.Popen[bytes]]) -> _Sample:
        busy, total = machine_cpu()
        return cls(time.monotonic(), busy, total, _cpu_seconds([p.pid for p in procs]), _postgres_cpu())

    def postgres_since(self, first: _Sample) -> float:
        """PostgreSQL's CPU seconds between two samples; a backend started meanwhile counts whole."""
        return sum(cpu - first.postgres.get(pid, 0.0) for pid, cpu in self.postgres.items())


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
    command = [sys.executable, "-m", "bot", "--config", str(config), "run"]
    # the baseline (every source's existing posts recorded, none sent) by one cycle, not timed
    baseline = subprocess.run([*command, "--once"], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, check=False)
    if baseline.returncode != 0:
        drop_database(db)
        raise RuntimeError(f"the baseline run failed ({baseline.returncode}): {baseline.stderr[-2000:]}")
    # then the posts appear and the instances start with every source due, as after a restart: the
    # detection is one burst that the instances split, instead of landing at a random point of the
    # sources' polling cycle (spread over 1-6 s, which swamped the comparison)
    server.feeds(feeds, items)
    asyncio.run(_exec(db, "UPDATE sources SET next_poll_at = now() - interval '1 second'"))
    logs = [(folder / f"{label}-{i}.log").open("w") for i in range(instances)]
    procs = [subprocess.Popen(command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=log)
             for log in logs]
    try:
        return asyncio.run(_measure(db, procs, feeds * items * channels))
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


async def _measure(db: str, procs: list[subprocess.Popen[bytes]], expected: int) -> MultiRun:
    """Sample the CPU counters when the first delivery is queued and when the last is sent. One
    connection polls the database throughout: a connection per check would make PostgreSQL fork a
    backend 50 times a second on the cores being measured."""
    import asyncpg

    conn = await asyncpg.connect(db.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        async def count(sql: str) -> int:
            return int(await conn.fetchval(sql) or 0)

        await _wait(lambda: count("SELECT count(*) FROM (SELECT 1 FROM deliveries LIMIT 1) AS d"), 1, procs, 60,
                    "the first delivery")
        first = _Sample.take(procs)
        await _wait(lambda: count("SELECT count(*) FROM deliveries WHERE status = 'sent'"), expected, procs, 300,
                    "every delivery")
        last = _Sample.take(procs)
        # the rate from the database's own timestamps: first delivery queued to the last one recorded
        span = float(await conn.fetchval(
            "SELECT EXTRACT(EPOCH FROM max(sent_at) - min(created_at)) FROM deliveries") or 0)
    finally:
        await conn.close()
    wall = max(1e-9, last.wall - first.wall)
    return MultiRun(rate=expected / max(1e-9, span),
                    machine_busy=100.0 * (last.busy - first.busy) / max(1, last.total - first.total),
                    instances_cpu=100.0 * (last.instances - first.instances) / wall,
                    instance_ms=1000.0 * (last.instances - first.instances) / expected,
                    postgres_ms=1000.0 * last.postgres_since(first) / expected)


async def _wait(current: Callable[[], Awaitable[int]], target: int, procs: list[subprocess.Popen[bytes]],
                timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while await current() < target:
        if any(p.poll() is not None for p in procs):
            raise RuntimeError(f"an instance exited while waiting for {what} (its log is in {WORK / 'multi'})")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
