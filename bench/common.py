"""Shared bench plumbing: the fake server process, measurements with median/min–max, progress lines."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
WORK = BENCH / "work"
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
"""Runs per figure (median, min–max). ``BENCH_RUNS=5 make bench`` for tighter figures."""


def progress(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


@dataclass
class Figure:
    """One row of the table: a metric measured ``len(values)`` times."""

    section: str
    name: str
    unit: str
    values: list[float] = field(default_factory=list)
    note: str = ""
    digits: int = 1

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    def cell(self) -> str:
        if not self.values:
            return "n/a"
        fmt = f"{{:,.{self.digits}f}}"
        med = fmt.format(self.median)
        if len(self.values) == 1:
            return med
        return f"{med} ({fmt.format(min(self.values))}–{fmt.format(max(self.values))})"


class FakeServer:
    """``bench.fakeserver`` in its own process (its own core); controlled over HTTP."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.fakeserver"], cwd=ROOT, stdout=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line.startswith("PORT "):
            self.proc.kill()
            raise RuntimeError(f"the fake server did not start: {line!r}")
        self.port = int(line.split()[1])
        self.url = f"http://127.0.0.1:{self.port}"

    def ctl(self, action: str, **params: Any) -> dict[str, Any]:
        query = "&".join(f"{k}={v}" for k, v in params.items())
        method = "GET" if action in ("stats", "arrivals", "seconds") else "POST"
        req = urllib.request.Request(f"{self.url}/_ctl/{action}?{query}", method=method,  # noqa: S310
                                     data=None)
        with urllib.request.urlopen(req, timeout=60) as resp:  # noqa: S310 - our own loopback server
            data: dict[str, Any] = json.loads(resp.read())
        return data

    def feeds(self, count: int, items: int) -> None:
        self.ctl("feeds", count=count, items=items)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextmanager
def fake_server() -> Iterator[FakeServer]:
    server = FakeServer()
    try:
        yield server
    finally:
        server.stop()


class ServerLoad:
    """The fake server's CPU share over a measured span: near 100 % means the fake is the limit."""

    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.shares: list[float] = []
        self._start: dict[str, Any] = {}

    def __enter__(self) -> ServerLoad:
        self._start = self.server.ctl("stats")
        return self

    def __exit__(self, *exc: object) -> None:
        end = self.server.ctl("stats")
        wall = end["wall"] - self._start["wall"]
        if wall > 0:
            self.shares.append(100.0 * (end["cpu"] - self._start["cpu"]) / wall)

    @property
    def worst(self) -> float:
        return max(self.shares) if self.shares else 0.0
