"""Helpers for tests that run ``tagrelay run`` as a real process against loopback fakes.

``Platforms`` starts the archive and the three platform fakes in this process
(threads); ``write_config`` writes a config with one channel per platform
pointing at them; ``Service`` is one ``python -m bot ... run`` subprocess whose
JSON log lines are collected by a thread (``wait_event`` waits on them without
sleeping); ``Db`` reads the SQLite file directly (short-lived read connections,
so the service stays the only writer and the last to close the file).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.storage.instance_lock import SUFFIX, Holder, probe
from tests.fakes.archive import ArchiveServer
from tests.fakes.http import LoopbackServer
from tests.fakes.mastodon_api import DEFAULT_TOKEN as MASTODON_TOKEN
from tests.fakes.mastodon_api import STATUSES, FakeMastodon
from tests.fakes.telegram_api import DEFAULT_CHANNEL_ID, FakeBotApi, ScriptedServer
from tests.fakes.telegram_api import DEFAULT_TOKEN as TELEGRAM_TOKEN
from tests.fakes.x_api import ACCESS_TOKEN, ACCESS_TOKEN_SECRET, CONSUMER_KEY, CONSUMER_SECRET, TWEETS, FakeX

ENV = {"TG_BOT_TOKEN": TELEGRAM_TOKEN, "MASTODON_TOKEN": MASTODON_TOKEN, "X_CONSUMER_KEY": CONSUMER_KEY,
       "X_CONSUMER_SECRET": CONSUMER_SECRET, "X_ACCESS_TOKEN": ACCESS_TOKEN,
       "X_ACCESS_TOKEN_SECRET": ACCESS_TOKEN_SECRET}
CHANNELS = {"tg": "telegram", "masto": "mastodon", "x": "x"}
SUBSCRIPTIONS = {"MEK": ("tg", "masto", "x"), "Iraq": ("masto", "x")}
"""Tag → subscribed channels. Posts tagged only "Other" go nowhere."""


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.02) -> None:
    """Poll ``predicate`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


@dataclass
class Platforms:
    """The archive and the three platform fakes, running in this process."""

    archive: ArchiveServer
    telegram: FakeBotApi
    mastodon: FakeMastodon
    x: FakeX

    @property
    def fakes(self) -> dict[str, ScriptedServer]:
        """Platform fakes by channel name."""
        return {"tg": self.telegram, "masto": self.mastodon, "x": self.x}

    @property
    def servers(self) -> list[LoopbackServer]:
        return [self.archive, self.telegram, self.mastodon, self.x]

    def route(self, channel: str) -> str:
        """The fault match key of a channel's posting call."""
        return {"tg": "sendMessage", "masto": STATUSES, "x": TWEETS}[channel]

    def posted(self, channel: str) -> list[str]:
        """Texts of what the platform holds for a channel, in creation order."""
        if channel == "tg":
            with self.telegram.lock:
                return [m.text or m.caption or "" for m in self.telegram.messages if m.chat_id == DEFAULT_CHANNEL_ID]
        if channel == "masto":
            with self.mastodon.lock:
                return [s.text for s in self.mastodon.statuses]
        with self.x.lock:
            return [t.text for t in self.x.tweets]

    def posting_requests(self, channel: str) -> int:
        fake = self.fakes[channel]
        if channel == "tg":
            return sum(1 for r in fake.seen("POST") if r.path.endswith("/sendMessage"))
        return len(fake.seen("POST", self.route(channel)))


@contextmanager
def platforms(feed_size: int = 1000) -> Iterator[Platforms]:
    with ExitStack() as stack:
        archive = stack.enter_context(ArchiveServer(feed_size=feed_size))
        yield Platforms(archive=archive, telegram=stack.enter_context(FakeBotApi()),
                        mastodon=stack.enter_context(FakeMastodon()), x=stack.enter_context(FakeX()))


def write_config(folder: Path, fakes: Platforms, *, lease_ttl: float = 2.0, shutdown_timeout: float = 2.0,
                 read_timeout: float = 5.0, interval: float = 1.0, retry_base: float = 0.2,
                 telegram_extra: str = "", burst_limit: int = 0, mastodon_extra: str = "",
                 x_extra: str = "", source_kind: str = "rss") -> Path:
    """A config with one channel per platform on the fakes, pacing off, no health server. ``*_extra``: more
    keys of a channel's table; ``source_kind`` "wordpress" reads the archive's REST API instead of its feed."""
    source_url = f"{fakes.archive.url}/feed/" if source_kind == "rss" else f"{fakes.archive.url}/wp-json/"
    db = folder / "tagrelay.db"
    subs = "\n".join(f'[[subscriptions]]\ntag = "{tag}"\nchannels = {json.dumps(list(chans))}\n'
                     for tag, chans in SUBSCRIPTIONS.items())
    text = f"""
[storage]
url = "sqlite+aiosqlite:///{db}"
lease_ttl = {lease_ttl}

[http]
timeout = {read_timeout}

[service]
jitter = 0
shutdown_timeout = {shutdown_timeout}
burst_limit = {burst_limit}

[delivery]
pacing = false
retry_base = {retry_base}
retry_cap = 1
max_attempts = 50

[health]
enabled = false

[[sources]]
name = "archive"
url = "{source_url}"
kind = "{source_kind}"
interval = {interval}

[[channels]]
name = "tg"
platform = "telegram"
chat_id = "@tagrelay_test"
api_base = "{fakes.telegram.url}"
{telegram_extra}

[[channels]]
name = "masto"
platform = "mastodon"
instance = "{fakes.mastodon.url}"
{mastodon_extra}

[[channels]]
name = "x"
platform = "x"
api_base = "{fakes.x.url}"
{x_extra}

{subs}
"""
    path = folder / "tagrelay.toml"
    path.write_text(text)
    return path


def service_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAGRELAY_")}
    env.update(ENV)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class Service:
    """One ``tagrelay ... run`` process; JSON log events are collected as they come."""

    config: Path
    args: tuple[str, ...] = ("run",)
    proc: subprocess.Popen[str] = field(init=False)
    events: list[dict[str, Any]] = field(default_factory=list)
    other: list[str] = field(default_factory=list)
    """stderr lines that are not JSON log events (e.g. the CLI's own error message)."""
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _reader: threading.Thread | None = None
    _killed: bool = False

    def start(self) -> Service:
        argv = [sys.executable, "-m", "bot", "--config", str(self.config), *self.args]
        if self.args[0] == "run":
            argv += ["--log-format", "json"]
        self.proc = subprocess.Popen(argv, cwd=self.config.parent, env=service_env(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True, name="service-stderr")
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            try:
                data = json.loads(line)
            except ValueError:
                data = None
            with self._cond:
                if isinstance(data, dict) and "event" in data:
                    self.events.append(data)
                else:
                    self.other.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def has_event(self, name: str, **fields: Any) -> bool:
        with self._cond:
            return any(e.get("event") == name and all(e.get(k) == v for k, v in fields.items())
                       for e in self.events)

    def wait_event(self, name: str, timeout: float = 30.0, **fields: Any) -> None:
        """Wait for a log event (woken by each new line); fail if the process ends first."""
        with self._cond:
            ok = self._cond.wait_for(lambda: self.has_event(name, **fields) or self.proc.poll() is not None,
                                     timeout)
        if not self.has_event(name, **fields):
            state = "timed out" if not ok else f"process exited with {self.proc.poll()}"
            raise AssertionError(f"no {name!r} event ({state}); log tail:\n{self.tail()}")

    def tail(self, n: int = 25) -> str:
        with self._cond:
            lines = [json.dumps(e) for e in self.events[-n:]] + self.other[-n:]
        return "\n".join(lines)

    def kill(self) -> None:
        """SIGKILL, then reap."""
        self.kill_now()
        self.proc.wait(timeout=30)

    def kill_now(self) -> None:
        """SIGKILL without waiting (safe from any thread, and more than once)."""
        with self._cond:
            if self._killed or self.proc.returncode is not None:
                return
            self._killed = True
        os.kill(self.proc.pid, signal.SIGKILL)

    def signal(self, sig: signal.Signals) -> None:
        os.kill(self.proc.pid, sig)

    def wait(self, timeout: float) -> int:
        """Wait for the exit code (the process wait is event-driven, no polling)."""
        code = self.proc.wait(timeout=timeout)
        self._join()
        return code

    def stop(self) -> None:
        """Make sure the process is gone (test cleanup)."""
        if self.proc.poll() is None:
            self.kill()
        self._join()

    def _join(self) -> None:
        if self._reader is not None:
            self._reader.join(timeout=5)
            if not self._reader.is_alive() and self.proc.stderr is not None:
                self.proc.stderr.close()


def run_cli(config: Path, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """One short CLI command in a subprocess (same environment as the service)."""
    return subprocess.run([sys.executable, "-m", "bot", "--config", str(config), *args], cwd=config.parent,
                          env=service_env(), capture_output=True, text=True, timeout=timeout, check=False)


class Db:
    """Reads the service's SQLite file (each call opens and closes its own connection)."""

    def __init__(self, config: Path) -> None:
        self.path = config.parent / "tagrelay.db"

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        if not self.path.exists():
            return []
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10)
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise
        finally:
            conn.close()

    def statuses(self) -> dict[str, int]:
        return dict(self.query("SELECT status, count(*) FROM deliveries GROUP BY status"))

    def deliveries(self) -> list[tuple[int, str, str, str, int]]:
        """(id, channel, post url, status, attempts) for every delivery."""
        return [(int(r[0]), str(r[1]), str(r[2]), str(r[3]), int(r[4])) for r in self.query(
            "SELECT d.id, c.name, p.url, d.status, d.attempts FROM deliveries d "
            "JOIN channels c ON c.id = d.channel_id JOIN posts p ON p.id = d.post_id ORDER BY d.id")]

    def post_count(self) -> int:
        rows = self.query("SELECT count(*) FROM posts")
        return int(rows[0][0]) if rows else 0

    def baseline_done(self) -> bool:
        rows = self.query("SELECT baseline_done FROM sources WHERE name = 'archive'")
        return bool(rows and rows[0][0])

    def holder(self) -> Holder | None:
        """Who holds the database's instance lock (``<db>.lock``) right now, or None."""
        return probe(self.path.with_name(self.path.name + SUFFIX))
