"""No thundering herd (issue 21): each source's stable phase, the start-up spread of overdue sources, the
steady state that follows it, and the per-host limit on polls (``bot.domain.schedule``,
``bot.domain.runtime``), all pure."""

from __future__ import annotations

import math
import os
import random
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.domain.runtime import host_of, take_by_host
from bot.domain.schedule import jittered, phase, spread_overdue

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]
NAMES = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=20)


def seconds(at: datetime) -> float:
    return (at - NOW).total_seconds()


def per_second(times: dict[str, datetime]) -> Counter[int]:
    return Counter(math.floor(seconds(at)) for at in times.values())


# -- the phase ---------------------------------------------------------------------------------------------


@given(NAMES)
def test_a_phase_is_in_the_unit_interval_and_the_same_every_time(name: str) -> None:
    assert 0.0 <= phase(name) < 1.0
    assert phase(name) == phase(str(name))


def test_a_phase_is_the_same_in_another_process_whatever_its_string_hash_seed() -> None:
    """Python's ``hash`` of a string changes per process; a phase must not (instances and restarts agree)."""
    names = ["archive", "news-0001", "وكالة", "f9999"]
    code = "import sys; from bot.domain.schedule import phase; print([phase(n) for n in sys.argv[1:]])"
    for seed in ("1", "4242"):
        out = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONHASHSEED": seed}, cwd=ROOT, timeout=60)
        assert out.stdout.strip() == str([phase(n) for n in names])


def test_phases_cover_the_interval_evenly() -> None:
    deciles = Counter(int(phase(f"source-{i}") * 10) for i in range(10_000))
    assert set(deciles) == set(range(10))
    assert all(850 <= n <= 1150 for n in deciles.values())  # 1,000 each, give or take ~5 standard deviations


# -- the start-up spread -----------------------------------------------------------------------------------


def test_a_small_install_keeps_polling_everything_due_at_once() -> None:
    overdue = {f"s{i}": 600.0 for i in range(100)}
    assert spread_overdue(overdue, now=NOW, ramp_after=100) == {}
    assert spread_overdue({}, now=NOW, ramp_after=0) == {}
    assert len(spread_overdue({**overdue, "one-more": 600.0}, now=NOW, ramp_after=100)) == 101


def test_ten_thousand_sources_at_ten_minutes_take_at_most_their_share_of_each_second() -> None:
    """The measured case: 10,000 sources on a 10-minute interval, all never polled."""
    overdue = {f"news-{i:05d}": 600.0 for i in range(10_000)}
    times = spread_overdue(overdue, now=NOW, ramp_after=100)
    counts = per_second(times)
    assert set(counts) == set(range(600))  # every second of the interval, none outside it
    assert max(counts.values()) <= math.ceil(10_000 / 600) + 1
    # a time of now + phase × interval alone would be as stable, but random-spaced: far fuller seconds
    by_phase = Counter(math.floor(phase(n) * 600) for n in overdue)
    assert max(by_phase.values()) > math.ceil(10_000 / 600) + 5


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 300), st.lists(st.sampled_from([1.0, 30.0, 60.0, 600.0, 3600.0]), min_size=1, max_size=2000),
       st.randoms(use_true_random=False))
def test_more_than_ramp_after_overdue_spread_within_one_interval_and_no_second_overfull(
        ramp_after: int, intervals: list[float], rnd: random.Random) -> None:
    overdue = {f"src-{i}": interval for i, interval in enumerate(intervals)}
    times = spread_overdue(overdue, now=NOW, ramp_after=ramp_after)
    if len(overdue) <= ramp_after:
        assert times == {}
        return
    assert times.keys() == overdue.keys()
    for name, at in times.items():  # each one polled within one interval of the start
        assert 0 <= seconds(at) < overdue[name]
    groups = Counter(overdue.values())
    bound = sum(math.ceil(n / interval) + 1 for interval, n in groups.items())
    assert max(per_second(times).values()) <= bound
    if len(groups) == 1:
        ((interval, n),) = groups.items()
        assert max(per_second(times).values()) <= math.ceil(n / interval) + 1
    # stable: the same sources spread the same way, whatever order they come in (a restart, another instance)
    shuffled = list(overdue.items())
    rnd.shuffle(shuffled)
    assert spread_overdue(dict(shuffled), now=NOW, ramp_after=ramp_after) == times


def test_a_restart_with_every_source_overdue_spreads_them_the_same_way() -> None:
    overdue = {f"f{i}": 600.0 for i in range(500)}
    first = spread_overdue(overdue, now=NOW, ramp_after=100)
    later = NOW + timedelta(hours=5)
    again = spread_overdue(overdue, now=later, ramp_after=100)
    assert {n: at - NOW for n, at in first.items()} == {n: at - later for n, at in again.items()}


# -- the steady state after it -----------------------------------------------------------------------------


def simulate(starts: dict[str, float], interval: float, jitter: float, rng: random.Random,
             until: float) -> list[float]:
    """Every poll time up to ``until``: each source first at its start, then ``now + jittered(interval)``
    after each poll, as ``Poller._next_poll`` does."""
    polls: list[float] = []
    for start in starts.values():
        t = start
        while t < until:
            polls.append(t)
            t += jittered(interval, jitter, rng)
    return polls


def fullest_window(polls: list[float], start: float, interval: float) -> int:
    """The most polls in one window of a tenth of the interval, over the interval from ``start``."""
    windows = Counter(int((t - start) // (interval / 10)) for t in polls if start <= t < start + interval)
    return max(windows.values())


@settings(max_examples=25, deadline=None)
@given(st.integers(300, 3000), st.sampled_from([60.0, 600.0, 3600.0]), st.sampled_from([0.0, 0.05, 0.1, 0.3, 0.5]),
       st.integers(0, 2**32))
def test_started_spread_the_polls_stay_spread_three_intervals_later(n: int, interval: float, jitter: float,
                                                                    seed: int) -> None:
    """Why the next poll stays ``now + jittered(interval)``, with no phase grid: from a spread start, no
    window of a tenth of the interval holds more than twice its share three intervals later."""
    spread = spread_overdue({f"s{i}": interval for i in range(n)}, now=NOW, ramp_after=100)
    polls = simulate({k: seconds(v) for k, v in spread.items()}, interval, jitter, random.Random(seed),
                     until=4 * interval)
    assert fullest_window(polls, 3 * interval, interval) <= 2 * n / 10


def test_what_clumps_is_a_start_with_every_source_at_once() -> None:
    """The measured problem: all at once, then ±10 % jitter, and the polls stay clumped for intervals."""
    n, interval = 3000, 600.0
    polls = simulate(dict.fromkeys(map(str, range(n)), 0.0), interval, 0.1, random.Random(7), until=4 * interval)
    assert fullest_window(polls, 3 * interval, interval) > 2 * n / 10


# -- per host ----------------------------------------------------------------------------------------------


def test_the_host_is_the_urls_lower_case_host_and_a_local_file_has_none() -> None:
    assert host_of("https://News.Example.ORG:8443/feed/") == "news.example.org"
    assert host_of("http://[::1]:8080/feed") == "::1"
    assert host_of("file:///srv/feed.xml") is None
    assert host_of("config/sample-archive.xml") is None
    assert host_of("http://[bad/") is None


def test_a_saturated_host_waits_and_other_hosts_start_meanwhile() -> None:
    due = ["a1", "a2", "a3", "b1", "c1", "a4", "b2"]
    hosts = {"a1": "a", "a2": "a", "a3": "a", "a4": "a", "b1": "b", "b2": "b", "c1": None}
    assert take_by_host(due, hosts, {"a": 1}, per_host=2, limit=10) == ["a1", "b1", "c1", "b2"]
    assert take_by_host(due, hosts, {}, per_host=2, limit=3) == ["a1", "a2", "b1"]
    assert take_by_host(due, hosts, {}, per_host=1, limit=0) == []


HOSTS = st.sampled_from(["a.example", "b.example", "c.example", None])


@given(st.lists(HOSTS, max_size=60), st.dictionaries(st.sampled_from(["a.example", "b.example", "c.example"]),
                                                     st.integers(0, 8), max_size=3),
       st.integers(1, 8), st.integers(1, 40))
def test_never_more_than_per_host_per_host_nor_concurrency_in_all_and_due_order_kept_within_a_host(
        host_list: list[str | None], running: dict[str, int], per_host: int, concurrency: int) -> None:
    due = [f"s{i}" for i in range(len(host_list))]
    hosts = dict(zip(due, host_list, strict=True))
    free = concurrency - sum(running.values())
    taken = take_by_host(due, hosts, running, per_host=per_host, limit=free)
    assert sum(running.values()) + len(taken) <= max(concurrency, sum(running.values()))
    started = Counter(hosts[n] for n in taken if hosts[n] is not None)
    for host, count in started.items():
        assert running.get(host, 0) + count <= max(per_host, running.get(host, 0))
    for host in set(host_list):  # within a host, the first due ones, in their order
        mine = [n for n in due if hosts[n] == host]
        assert [n for n in taken if hosts[n] == host] == mine[:len([n for n in taken if hosts[n] == host])]
    assert taken == [n for n in due if n in set(taken)]  # in due order overall
    if len(taken) < free:  # nothing passed over that could have started
        for name in due:
            if name not in taken:
                host = hosts[name]
                assert host is not None and running.get(host, 0) + started[host] >= per_host
