"""Resident memory of a real ``tagrelay run`` process (subprocess), read with psutil.

The process runs 100 sources and 3 channels (Mastodon, Telegram, X) on the bench
fake; RSS is read once its first poll cycle is recorded and it has been idle
for a moment. The second figure repeats it with 100-item feeds, so the process
knows 10,000 posts.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]

from bench.common import ROOT, WORK, FakeServer
from bench.ours import ALL_CHANNELS, SECRETS, raw_config, sqlite_url

IDLE_SECONDS = 2.0


def toml_value(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str | list) else str(value).lower() if isinstance(value, bool) \
        else str(value)


def write_toml(raw: dict[str, Any], path: Path) -> None:
    """Enough TOML for ``raw_config``'s shape: tables of scalars and arrays of tables."""
    lines: list[str] = []
    for key, value in raw.items():
        if isinstance(value, dict):
            lines.append(f"[{key}]")
            lines += [f"{k} = {toml_value(v)}" for k, v in value.items()]
        else:
            for item in value:
                lines.append(f"[[{key}]]")
                lines += [f"{k} = {toml_value(v)}" for k, v in item.items()]
        lines.append("")
    lines += ["[health]", "enabled = false", ""]
    path.write_text("\n".join(lines))


def rss_of_run(server: FakeServer, sources: int, items: int, label: str) -> tuple[float, int]:
    """RSS in MiB of an idle ``tagrelay run`` after its first cycle, and how many posts it knows."""
    server.ctl("reset")
    server.feeds(sources, items)
    url = sqlite_url(f"mem-{label}")
    db = Path(url.split(":///", 1)[1])
    raw = raw_config(server.url, url, sources=sources, channels=ALL_CHANNELS, interval="1h")
    folder = WORK / "mem"
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / f"{label}.toml"
    write_toml(raw, config)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAGRELAY_")}
    env.update(SECRETS)
    proc = subprocess.Popen([sys.executable, "-m", "bot", "--config", str(config), "run"], cwd=ROOT, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while _polled(db) < sources:
            if proc.poll() is not None:
                raise RuntimeError(f"tagrelay run exited with {proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError("tagrelay run did not finish its first cycle in 120 s")
            time.sleep(0.1)
        time.sleep(IDLE_SECONDS)  # idle: the bench waits, nothing in tagrelay does
        rss = psutil.Process(proc.pid).memory_info().rss / 2**20
        return rss, _posts(db)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _query(db: Path, sql: str) -> int:
    if not db.exists():
        return 0
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return int(conn.execute(sql).fetchone()[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


def _polled(db: Path) -> int:
    return _query(db, "SELECT count(*) FROM sources WHERE last_poll_at IS NOT NULL")


def _posts(db: Path) -> int:
    return _query(db, "SELECT count(*) FROM posts")
