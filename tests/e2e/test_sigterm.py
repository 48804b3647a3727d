"""``tagrelay run`` stops cleanly on SIGTERM, well inside a container's stop timeout.

Each test starts the real CLI as a subprocess, waits (polling with a deadline)
until ``/readyz`` answers 200 on a port picked here and passed in
``TAGRELAY_HEALTH_PORT``, sends SIGTERM and checks the exit code and the log.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.archive import ArchiveServer

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 30.0
STOP_BOUND = 10.0
"""Docker's default stop timeout; compose.yaml allows 30 s, a clean stop needs far less."""
POLL = 0.05
"""Interval of the deadline loops below (they poll for a state, they never wait for an outcome)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def readyz(port: int) -> tuple[int, dict[str, Any]] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except OSError:
        return None  # not listening (yet, or any more)


@dataclass
class Service:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]

    def events(self) -> list[str]:
        return [r["event"] for r in self.records()]

    def until(self, check: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + DEADLINE
        while not check():
            assert self.proc.poll() is None, f"tagrelay exited while waiting for {what}:\n{self.log.read_text()}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{self.log.read_text()}"
            time.sleep(POLL)

    def wait_ready(self) -> None:
        def ready() -> bool:
            answer = readyz(self.port)
            return answer is not None and answer[0] == 200 and answer[1]["status"] == "ready"

        self.until(ready, "/readyz to answer 200")

    def terminate(self) -> tuple[int, float]:
        """SIGTERM; returns (exit code, seconds it took)."""
        sent = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=STOP_BOUND)
        return code, time.monotonic() - sent


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[[str], Service]]:
    """Start ``tagrelay --config <config> run`` in ``tmp_path`` (JSON logs, SQLite under tmp_path)."""
    procs: list[subprocess.Popen[bytes]] = []

    def run(config: str) -> Service:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("TAGRELAY_")}
        env.update(TAGRELAY_STORAGE_URL=f"sqlite+aiosqlite:///{tmp_path / 'data' / 'tagrelay.db'}",
                   TAGRELAY_HEALTH_PORT=str(port), TAGRELAY_LOG_FORMAT="json")
        log = tmp_path / "stderr.log"
        with log.open("wb") as err, (tmp_path / "stdout.log").open("wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "bot", "--config", config, "run"],
                                    cwd=tmp_path, env=env, stdout=out, stderr=err)
        procs.append(proc)
        return Service(proc, port, log)

    yield run
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def assert_clean_stop(service: Service, code: int, took: float) -> list[dict[str, Any]]:
    assert code == 0, service.log.read_text()
    assert took < STOP_BOUND
    records = service.records()
    events = [r["event"] for r in records]
    assert events.index("started") < events.index("stopping") < events.index("stopped")
    assert events[-1] == "stopped", events[-3:]
    assert [r for r in records if r["level"] in ("error", "critical")] == []
    assert readyz(service.port) is None  # the health listener is gone
    return records


def test_sigterm_stops_the_example_service_with_exit_0(tmp_path: Path, start: Callable[[str], Service]) -> None:
    shutil.copytree(ROOT / "config", tmp_path / "config")
    service = start("config/tagrelay.example.toml")
    service.wait_ready()
    code, took = service.terminate()
    assert_clean_stop(service, code, took)


ARCHIVE_CONFIG = """
[storage]
url = "sqlite+aiosqlite:///unused.db"

[service]
shutdown_timeout = "{grace}"

[[sources]]
name = "archive"
url = "{url}/feed/"
kind = "rss"

[[channels]]
name = "console"
platform = "console"

[[subscriptions]]
tag = "MEK"
channels = ["console"]
"""


@pytest.mark.parametrize(("grace", "finishes"), [("20s", True), ("1s", False)])
def test_sigterm_during_a_poll_lets_it_finish_or_abandons_it_quietly(
        tmp_path: Path, start: Callable[[str], Service], grace: str, finishes: bool) -> None:
    with ArchiveServer() as archive:
        archive.add_post(title="Before the stop", tags=["MEK"])
        held = archive.hold("/feed/")
        (tmp_path / "tagrelay.toml").write_text(ARCHIVE_CONFIG.format(grace=grace, url=archive.url))
        service = start("tagrelay.toml")
        service.wait_ready()
        service.until(lambda: bool(archive.seen("GET", "/feed/")), "the first poll to reach the archive")

        service.proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        service.until(lambda: "stopping" in service.log.read_text(), "the service to start stopping")
        if finishes:
            held.set()  # the answer arrives during the grace period
        code = service.proc.wait(timeout=STOP_BOUND)
        took = time.monotonic() - sent
        held.set()

    records = assert_clean_stop(service, code, took)
    events = [r["event"] for r in records]
    if finishes:
        poll = next(r for r in records if r["event"] == "poll")
        assert poll["outcome"] == "baseline"
        assert events.index("stopping") < events.index("poll") < events.index("stopped")
    else:
        assert "poll" not in events
        assert any("abandoned at shutdown" in r["event"] and r["level"] == "warning" for r in records)
