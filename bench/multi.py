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
from typing import Any

from bench.common import ROOT, WORK, FakeServer
from bench.memory import write_toml
from bench.ours import SECRETS, channel_tables, raw_config

CHANNELS = ("masto", "tg", "x", "masto2")


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


def run_instances(server: FakeServer, pg_url: str, instances: int, feeds: int, items: int, label: str,
                  interval: str = "2s") -> float:
    """Deliveries per second with ``instances`` processes on a fresh database."""
    server.ctl("reset")
    server.feeds(feeds, 0)
    db = scratch_database(pg_url)
    raw = raw_config(server.url, db, sources=feeds, channels=("masto",), interval=interval, lease_ttl=10.0)
    second = {**channel_tables(server.url, ("masto",))[0], "name": "masto2", "token_env": "BENCH_MASTODON_TOKEN2"}
    raw["channels"] = [*channel_tables(server.url, ("masto", "tg", "x")), second]
    raw["subscriptions"] = [{"tag": "News", "channels": list(CHANNELS)}]
    folder = WORK / "multi"
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / f"{label}.toml"
    write_toml(raw, config)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAGRELAY_")}
    env.update(SECRETS)
    env["BENCH_MASTODON_TOKEN2"] = "bench-mastodon-token-second-account"
    logs = [(folder / f"{label}-{i}.log").open("w") for i in range(instances)]
    procs = [subprocess.Popen([sys.executable, "-m", "bot", "--config", str(config), "run"], cwd=ROOT, env=env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
             for log in logs]
    try:
        _wait(lambda: _count(db, "SELECT count(*) FROM sources WHERE baseline_done") == feeds, procs, 120,
              "the baseline")
        expected = feeds * items * len(CHANNELS)
        server.feeds(feeds, items)
        _wait(lambda: _count(db, "SELECT count(*) FROM deliveries WHERE status = 'sent'") == expected, procs, 300,
              "every delivery")
        # from the first delivery queued to the last one recorded: the polling interval's detection
        # latency is left out, the polling, queueing and sending work is in
        span = _count(db, "SELECT EXTRACT(EPOCH FROM max(sent_at) - min(created_at)) * 1000 FROM deliveries")
        return expected / (span / 1000)
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
