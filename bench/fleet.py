"""Phase 8, the fleet: one real ``tagrelay run`` with 10,000 sources for several polling intervals.

The fake serves the sources in fleet mode (``POST /_ctl/fleet``: feeds built on demand, a 304 costs
it no work). One ``tagrelay run`` subprocess polls them on a SQLite file, every source at
``BENCH_FLEET_INTERVAL`` seconds (default 60) with the default jitter, and sends what is new to one
console channel (stdout to /dev/null: the cheapest channel that still renders and records every
delivery).

The first interval is the start-up: it lasts until the fake has answered one unconditional request
(a first poll) per source, and at least one interval (at most ``BENCH_FLEET_STARTUP_MAX`` seconds).
``BENCH_FLEET_INTERVALS`` - 1 steady intervals follow, each exactly one polling interval long; at
the start of each, 1 % of the feeds (``BENCH_FLEET_CHANGED``) get one new post, so the database keeps
receiving posts and deliveries while the others answer 304. Then the service stops, every source's
``next_poll_at`` is set in the past (a downtime longer than the interval, without waiting it out)
and a new ``tagrelay run`` is sampled for one interval: the restart herd (``BENCH_FLEET_RESTART=0``
skips it).

Every ``SAMPLE`` seconds the bench reads, without touching the service: its RSS and CPU time from
``/proc/<pid>``, the database's size (file + WAL), and the fake's request counts and CPU time. The
fake counts feed requests per wall-clock second: the busiest second is the herd measure.

Settings other branches add are written only when this tree knows them: ``[storage.retention]``
(short periods, so the database goes flat within the phase), ``[service] ramp_after`` and ``[http]
per_host``. Without them the rows say "not available".
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

from bench.common import ROOT, WORK, FakeServer, progress
from bench.memory import write_toml
from bench.ours import sqlite_url

SOURCES = int(os.environ.get("BENCH_FLEET_SOURCES", "10000"))
INTERVAL = float(os.environ.get("BENCH_FLEET_INTERVAL", "60"))
"""Seconds between two polls of a source (the service's ``interval``); the CPU figure is scaled to 600 s."""
INTERVALS = max(2, int(os.environ.get("BENCH_FLEET_INTERVALS", "4")))
"""The start-up and then ``INTERVALS - 1`` steady intervals."""
STARTUP_MAX = float(os.environ.get("BENCH_FLEET_STARTUP_MAX", "480"))
"""Seconds the start-up may last before the steady intervals begin anyway (the rows then say so)."""
ITEMS = int(os.environ.get("BENCH_FLEET_ITEMS", "10"))
"""Items per feed: the first poll records them all (the issue's baseline: 10)."""
CHANGED = float(os.environ.get("BENCH_FLEET_CHANGED", "0.01"))
"""Share of the feeds that get one new post at the start of each interval after the first."""
SAMPLE = 5.0
NORMAL = 600.0
"""The 10-minute interval of issue 21's CPU target."""
RESTART = os.environ.get("BENCH_FLEET_RESTART", "1") != "0"
"""Restart the service with every source overdue and measure one more interval (the restart herd)."""
HTTP_CONCURRENCY = 16
RETENTION = {"enabled": True, "content": "2m", "deliveries": "2m", "audit": "2m", "identity": "5m",
             "every": "1m", "batch": 50}
RAMP_AFTER = 100
MIB = 2**20
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def optional_settings() -> dict[str, bool]:
    """Which of the other branches' settings this tree's configuration knows."""
    from bot.settings import HttpConfig, ServiceConfig, StorageConfig

    return {"retention": "retention" in StorageConfig.model_fields,
            "ramp_after": "ramp_after" in ServiceConfig.model_fields,
            "per_host": "per_host" in HttpConfig.model_fields}


def fleet_config(base: str, storage_url: str, known: dict[str, bool]) -> dict[str, Any]:
    raw: dict[str, Any] = {"storage": {"url": storage_url}}
    if known["retention"]:
        raw["storage.retention"] = RETENTION
    raw["http"] = {"concurrency": HTTP_CONCURRENCY}
    if known["per_host"]:  # every source is on 127.0.0.1: one host must not cap the fleet below concurrency
        raw["http"]["per_host"] = HTTP_CONCURRENCY
    raw["service"] = {"ramp_after": RAMP_AFTER} if known["ramp_after"] else {}
    raw["sources"] = [{"name": f"f{i}", "url": f"{base}/feeds/f{i}.xml", "kind": "rss", "interval": f"{INTERVAL:g}s"}
                      for i in range(SOURCES)]
    raw["channels"] = [{"name": "console", "platform": "console"}]
    raw["subscriptions"] = [{"tag": "News", "channels": ["console"]}]
    return raw


@dataclass(frozen=True)
class Sample:
    wall: float
    """Unix time (the fake counts its seconds on the same clock)."""
    rss: float
    """MiB."""
    cpu: float
    """The service's user + system CPU seconds so far."""
    db: int
    """Bytes: the database file and its WAL."""
    polls: int
    """Feed requests the fake has answered since the phase began."""
    first: int
    """Of which unconditional (first polls)."""
    not_modified: int
    """Of which answered 304."""
    server_cpu: float
    """The fake's CPU seconds (its own counter)."""
    due: int
    """The most sources the schedule holds due in one second (overdue and never polled: now)."""


@dataclass(frozen=True)
class Interval:
    number: int
    """1-based; 1 is the start-up."""
    polls: int
    first: int
    not_modified: int
    seconds: float
    cpu: float
    db: int
    growth: int
    server_cpu: float
    busiest: int
    due: int
    """The most sources due in one second, at any of the interval's samples."""

    @property
    def polls_per_s(self) -> float:
        return self.polls / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class FleetRun:
    intervals: list[Interval]
    peak_rss: float
    """VmHWM: the highest RSS the kernel saw, between samples too."""
    steady_rss: float
    """Median RSS of the samples after the first interval."""
    published: int
    """New posts the fake published after the baseline."""
    posts: int
    sent: int
    known: dict[str, bool]
    started: bool
    """Every source was polled once within the start-up."""
    restarted: Interval | None
    """The interval after a restart with every source overdue (None: ``BENCH_FLEET_RESTART=0``)."""


def proc_status(pid: int) -> tuple[float, float]:
    """(RSS, peak RSS) in MiB from /proc/<pid>/status."""
    values: dict[str, float] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                values[line[:5]] = int(line.split()[1]) / 1024
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of the process (all its threads) from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def db_bytes(db: Path) -> int:
    total = 0
    for suffix in ("", "-wal"):
        with contextlib.suppress(FileNotFoundError):
            total += Path(f"{db}{suffix}").stat().st_size
    return total


def take(pid: int, db: Path, server: FakeServer) -> Sample:
    stats = server.ctl("stats")
    got = stats["counts"]
    return Sample(wall=time.time(), rss=proc_status(pid)[0], cpu=proc_cpu(pid), db=db_bytes(db),
                  polls=int(got.get("feed", 0)), first=int(got.get("feedfirst", 0)),
                  not_modified=int(got.get("feed304", 0)), server_cpu=float(stats["cpu"]), due=due_peak(db))


def due_peak(db: Path) -> int:
    """The schedule's herd: the most sources due in one second, from ``sources.next_poll_at`` (a read of
    one column of 10,000 rows: ~10 ms of the bench's CPU per sample; WAL readers never block the writer)."""
    if not db.exists():
        return 0
    now = int(time.time())
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
        try:
            rows = conn.execute("SELECT CAST(strftime('%s', next_poll_at) AS INTEGER) FROM sources").fetchall()
        finally:
            conn.close()
    except sqlite3.OperationalError:  # not migrated yet
        return 0
    return max(Counter(max(now, when or now) for (when,) in rows).values(), default=0)


def run(server: FakeServer) -> FleetRun:
    """Start the service on the fleet, sample it for ``INTERVALS`` intervals, restart it with every
    source overdue and sample one more interval, stop it (see the module)."""
    known = optional_settings()
    server.ctl("fleet", count=SOURCES, items=ITEMS)
    server.ctl("reset")
    url = sqlite_url("fleet")
    db = Path(url.split(":///", 1)[1])
    folder = WORK / "fleet"
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "fleet.toml"
    write_toml(fleet_config(server.url, url, known), config)
    log_path = folder / "fleet.log"
    log_path.unlink(missing_ok=True)
    proc = launch(config, log_path)
    try:
        sampler = Sampler(proc, db, server, log_path)
        started = sampler.start_up()
        published = 0
        for _ in range(INTERVALS - 1):
            published += int(server.ctl("change", fraction=CHANGED, seed=len(sampler.marks))["changed"])
            sampler.interval()
        peak = proc_status(proc.pid)[1]
    finally:
        stop(proc)
    restarted = None
    if RESTART:
        overdue(db)
        proc = launch(config, log_path)
        try:
            again = Sampler(proc, db, server, log_path, label="after the restart, interval")
            again.interval()
        finally:
            stop(proc)
    seconds = dict(server.ctl("seconds")["seconds"])
    samples, marks = sampler.samples, sampler.marks
    intervals = [interval(samples[a:b + 1], k + 1, seconds) for k, (a, b) in enumerate(pairwise(marks))]
    if RESTART:
        restarted = interval(again.samples, len(intervals) + 1, seconds)
    steady = [s.rss for s in samples[marks[1] + 1:]] or [samples[-1].rss]
    posts, sent = counts(db)
    for suffix in ("", "-wal", "-shm", ".lock"):  # ~700 MB with 10 full-content items a feed
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    return FleetRun(intervals, peak, statistics.median(steady), published, posts, sent, known, started, restarted)


def launch(config: Path, log: Path) -> subprocess.Popen[bytes]:
    """``tagrelay run`` on the fleet's config; its log appended to ``log``, its console output dropped."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAGRELAY_")}
    with log.open("a") as err:  # the child keeps its own descriptor
        return subprocess.Popen([sys.executable, "-m", "bot", "--config", str(config), "run"], cwd=ROOT, env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)


def overdue(db: Path) -> None:
    """Every source due long ago, as after a downtime longer than the interval (without waiting it out)."""
    conn = sqlite3.connect(db, timeout=30)
    try:
        conn.execute("UPDATE sources SET next_poll_at = '2000-01-01 00:00:00.000000'")
        conn.commit()
    finally:
        conn.close()


class Sampler:
    """Samples every ``SAMPLE`` seconds; ``marks`` are the indexes of the samples that end an interval."""

    def __init__(self, proc: subprocess.Popen[bytes], db: Path, server: FakeServer, log: Path,
                 label: str = "interval") -> None:
        self.proc, self.db, self.server, self.log, self.label = proc, db, server, log, label
        self.samples = [take(proc.pid, db, server)]
        self.marks = [0]

    def sample_at(self, when: float) -> Sample:
        time.sleep(max(0.0, when - time.time()))  # the bench waits; nothing in tagrelay does
        if self.proc.poll() is not None:
            raise RuntimeError(f"tagrelay run exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
        got = take(self.proc.pid, self.db, self.server)
        self.samples.append(got)
        return got

    def start_up(self) -> bool:
        """Sample until every source has been polled once and one interval has passed; True if it was."""
        begin = self.samples[0].wall
        while True:
            got = self.sample_at(begin + len(self.samples) * SAMPLE)
            done = got.first >= SOURCES
            if (done and got.wall - begin >= INTERVAL) or got.wall - begin >= STARTUP_MAX:
                self.end_interval()
                return done

    def interval(self) -> None:
        steps = max(1, round(INTERVAL / SAMPLE))
        begin = self.samples[-1].wall
        for step in range(1, steps + 1):
            self.sample_at(begin + step * INTERVAL / steps)
        self.end_interval()

    def end_interval(self) -> None:
        first, last = self.samples[self.marks[-1]], self.samples[-1]
        self.marks.append(len(self.samples) - 1)
        progress(f"  {self.label} {len(self.marks) - 1}: {last.polls - first.polls:,} polls "
                 f"({last.first - first.first:,} first, {last.not_modified - first.not_modified:,} × 304) "
                 f"in {last.wall - first.wall:.0f} s, {last.cpu - first.cpu:.1f} CPU-s, RSS {last.rss:.0f} MiB, "
                 f"DB {last.db / MIB:,.0f} MiB")


def interval(samples: list[Sample], number: int, seconds: dict[int, int]) -> Interval:
    """The interval from its first sample to its last."""
    first, last = samples[0], samples[-1]
    busiest = max((n for t, n in seconds.items() if first.wall <= t < last.wall), default=0)
    return Interval(number=number, polls=last.polls - first.polls, first=last.first - first.first,
                    not_modified=last.not_modified - first.not_modified, seconds=last.wall - first.wall,
                    cpu=last.cpu - first.cpu, db=last.db, growth=last.db - first.db,
                    server_cpu=last.server_cpu - first.server_cpu, busiest=busiest,
                    due=max(sample.due for sample in samples[1:]))


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def counts(db: Path) -> tuple[int, int]:
    """(posts known, deliveries sent) once the service has stopped."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        posts = int(conn.execute("SELECT count(*) FROM posts").fetchone()[0])
        sent = int(conn.execute("SELECT count(*) FROM deliveries WHERE status = 'sent'").fetchone()[0])
    finally:
        conn.close()
    return posts, sent


def rows(got: FleetRun) -> list[tuple[str, str, str]]:
    """The phase's table rows: (figure, value, note)."""
    out: list[tuple[str, str, str]] = []
    for iv in got.intervals:
        label = "start-up" if iv.number == 1 else "steady"
        out.append((f"interval {iv.number} ({label}, {iv.seconds:.0f} s)",
                    f"{iv.polls:,} polls, {iv.polls_per_s:,.0f}/s, {iv.cpu:.1f} CPU-s, DB {iv.db / MIB:,.0f} MiB",
                    f"{iv.first:,} first, {iv.not_modified:,} × 304, {iv.polls - iv.first - iv.not_modified:,} "
                    f"changed; busiest second {iv.busiest:,}, most due in one second {iv.due:,}; "
                    f"DB {iv.growth / MIB:+,.1f} MiB; "
                    f"fake {100 * iv.server_cpu / iv.seconds:.0f} % of a core"))
    first, steady = got.intervals[0], got.intervals[1:]
    if not got.started:
        out.append(("START-UP UNFINISHED", f"{first.first:,} of {SOURCES:,} sources polled once",
                    f"in {first.seconds:.0f} s (BENCH_FLEET_STARTUP_MAX): the steady rows include first polls"))
    behind = [iv.polls for iv in steady if iv.polls < 0.9 * SOURCES]
    if behind:
        out.append(("SATURATED", f"{min(behind):,}–{max(behind):,} of {SOURCES:,} sources polled per interval",
                    "a round takes longer than the interval here: steady rows carry a backlog (most due in one "
                    "second); a longer BENCH_FLEET_INTERVAL gives a steady state"))
    out.append(("peak RSS", f"{got.peak_rss:.0f} MiB", "target ≤ 150 MiB (VmHWM)"))
    out.append(("steady RSS", f"{got.steady_rss:.0f} MiB", "median of the samples after the start-up"))
    even = f"an even spread: {SOURCES / INTERVAL:,.0f}/s"
    out.append(("herd at start-up: busiest second / most due in one second",
                f"{first.busiest:,} polls / {first.due:,} sources", f"{even}; polls are capped by throughput"))
    out.append(("herd, steady: busiest second / most due in one second",
                f"{max(iv.busiest for iv in steady):,} polls / {max(iv.due for iv in steady):,} sources", even))
    if got.restarted is not None:
        iv = got.restarted
        out.append(("herd at a restart with every source overdue", f"{iv.busiest:,} polls / {iv.due:,} sources",
                    f"in the {iv.seconds:.0f} s after it: {iv.polls:,} polls ({iv.not_modified:,} × 304), "
                    f"{iv.cpu:.1f} CPU-s"))
    # one round of every source's polls, as the steady intervals cost it, spread over 10 minutes
    cpu, polls = sum(iv.cpu for iv in steady), sum(iv.polls for iv in steady)
    per_round = cpu * SOURCES / polls if polls else float("nan")
    out.append(("CPU, % of one core at a 10-min interval", f"{100 * per_round / NORMAL:.1f} %",
                f"target ≤ 5 %; steady: {per_round:.1f} CPU-s per {SOURCES:,} polls ÷ 600 s"))
    out.append(("CPU of the start-up", f"{first.cpu:.1f} CPU-s",
                f"{1000 * first.cpu / max(1, first.polls):.1f} ms per poll; {100 * first.cpu / NORMAL:.1f} % of "
                f"a core over 10 min; the first polls record {ITEMS} items each"))
    growth = [iv.growth / MIB for iv in steady]
    out.append(("DB growth per steady interval", ", ".join(f"{g:+,.1f}" for g in growth) + " MiB",
                "target: flat under steady load"))
    fake = sum(iv.server_cpu for iv in got.intervals) / sum(iv.seconds for iv in got.intervals)
    out.append(("fake server CPU, whole phase", f"{100 * fake:.0f} % of a core",
                "not in the service's figures; the fake, the bench and the service share 2 cores"))
    out.append(("new posts published / deliveries sent", f"{got.published:,} / {got.sent:,}",
                f"{got.posts:,} posts known at the end; sent > published would be a re-send"))
    for key, what in (("retention", "[storage.retention]: 2m content/deliveries/audit, 5m identity, every 1m"),
                      ("ramp_after", f"[service] ramp_after = {RAMP_AFTER}"),
                      ("per_host", f"[http] per_host = {HTTP_CONCURRENCY}")):
        out.append((key, "on" if got.known[key] else "not available", what if got.known[key] else "not in this tree"))
    return out
