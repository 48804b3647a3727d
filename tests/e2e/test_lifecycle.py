"""The service as a real process: one instance per SQLite file, an immediate restart after a kill, graceful signals.

Everything waits on events (log lines, requests reaching a fake, the process exiting) or polls the database
with a deadline; nothing sleeps.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.service import Db, Platforms, Service, platforms, run_cli, wait_until, write_config
from tests.fakes.telegram_api import Fault

SHUTDOWN_TIMEOUT = 1.5
MARGIN = 6.0
"""Exit must come within shutdown_timeout + this (process teardown on a loaded 2-core machine)."""


@pytest.fixture
def fakes() -> Iterator[Platforms]:
    with platforms() as running:
        running.archive.add_post(title="Before", tags=["MEK"], slug="before")
        yield running


def start(config: Path, db: Db) -> Service:
    service = Service(config).start()
    service.wait_event("started")
    wait_until(db.baseline_done, 30, "the baseline poll")
    return service


# -- one instance per database -------------------------------------------------------------------


def test_a_second_instance_on_the_same_file_refuses_while_the_first_runs(fakes: Platforms, tmp_path: Path) -> None:
    config = write_config(tmp_path, fakes, lease_ttl=5)
    db = Db(config)
    first = start(config, db)
    try:
        holder = db.holder()
        assert holder is not None and holder.pid == first.pid
        second = Service(config).start()
        code = second.wait(60)
        assert code == 1
        message = "\n".join(second.other)
        assert "another tagrelay instance" in message and "is running on this database" in message
        assert holder.owner in message and f"pid {first.pid}" in message
        assert first.proc.poll() is None  # the first one is untouched and still holds the lock
        assert db.holder() == holder
        status = run_cli(config, "status")  # commands that do not run the service still work beside it
        assert status.returncode == 0 and f"instance: {holder.owner} — running" in status.stdout, status.stdout
        assert run_cli(config, "channels", "pause", "x").returncode == 0
        assert run_cli(config, "channels", "resume", "x").returncode == 0
        once = run_cli(config, "run", "--once")  # the one-shot mode is an instance too
        assert once.returncode == 1 and "another tagrelay instance" in once.stderr
        first.signal(signal.SIGTERM)
        assert first.wait(SHUTDOWN_TIMEOUT + MARGIN) == 0
    finally:
        first.stop()
    assert db.holder() is None  # released on a clean stop
    assert "instance: none running" in run_cli(config, "status").stdout


def test_a_restart_right_after_a_sigkill_starts_at_once_and_a_live_one_still_refuses(
        fakes: Platforms, tmp_path: Path) -> None:
    """A supervisor (Docker ``restart:``, systemd, Kubernetes) restarts a SIGKILLed/OOM-killed instance at once: the
    restart must start, not be refused until the dead one's lease_ttl (60 s here) runs out. A second instance
    beside the live restarted one is still refused, naming it and saying what to do."""
    config = write_config(tmp_path, fakes, lease_ttl=60)
    db = Db(config)
    first = start(config, db)
    first.kill()
    restarted = Service(config).start()  # at once: no waiting for anything of the dead one's
    try:
        restarted.wait_event("started", timeout=30)  # within the deadline, far below lease_ttl
        owner = next(e["instance"] for e in restarted.events if e.get("event") == "started")
        second = Service(config).start()
        assert second.wait(60) == 1
        message = "\n".join(second.other)
        assert "another tagrelay instance" in message and "is running on this database" in message, message
        assert owner in message and f"pid {restarted.pid}" in message and "stop it first" in message, message
        assert restarted.proc.poll() is None  # untouched by the refused start
        restarted.signal(signal.SIGTERM)
        assert restarted.wait(SHUTDOWN_TIMEOUT + MARGIN) == 0
    finally:
        restarted.stop()


def test_a_long_run_once_keeps_the_guard(fakes: Platforms, tmp_path: Path) -> None:
    """``run --once`` working longer than lease_ttl (a big backlog, a slow platform) still holds the guard: a
    second instance (the next cron run) is refused beside it, however long it takes."""
    ttl = 1.0
    config = write_config(tmp_path, fakes, lease_ttl=ttl, read_timeout=60)
    db = Db(config)
    assert run_cli(config, "run", "--once").returncode == 0  # the baseline
    fakes.archive.add_post(title="Post 0001", tags=["MEK"], slug="post-0001")
    fault = hold_posting(fakes, "masto")  # the status is made, its answer held: the run stays busy
    once = Service(config, args=("run", "--once")).start()
    try:
        wait_in_flight(fakes, "masto", fault)
        holder = db.holder()
        assert holder is not None and holder.pid == once.pid
        second = run_cli(config, "run", "--once")  # no lease to expire: refused for as long as it runs
        assert second.returncode == 1 and "another tagrelay instance" in second.stderr
        assert f"pid {once.pid}" in second.stderr
    finally:
        assert fault.hold is not None
        fault.hold.set()
        code = once.wait(60)
        once.stop()
    assert code == 0, once.tail()
    assert db.holder() is None


# -- SIGTERM / SIGINT ----------------------------------------------------------------------------


def hold_posting(fakes: Platforms, chan: str) -> Fault:
    """The next post to ``chan`` is made, but its answer is held until the returned fault's event is set."""
    fault = Fault(hold=threading.Event(), process=True, match=fakes.route(chan))
    fakes.fakes[chan].add_fault(fault)
    return fault


def wait_in_flight(fakes: Platforms, chan: str, fault: Fault) -> None:
    fake = fakes.fakes[chan]
    assert fake.wait_for(lambda: fault.times == 0 and fake.handled == len(fake.requests), 30), \
        f"{chan} never received the held post"


def statuses_by_channel(db: Db) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for _, chan, _, status, _ in db.deliveries():
        out.setdefault(chan, []).append(status)
    return out


@pytest.mark.parametrize(("chan", "sig", "abandoned_as"), [
    ("masto", signal.SIGTERM, "queued"),   # idempotent: resent with the same Idempotency-Key
    ("x", signal.SIGTERM, "queued"),       # at_least_once: the resend meets "duplicate content"
    ("tg", signal.SIGINT, "unknown"),      # no idempotency: never resent automatically
])
def test_a_stop_signal_abandons_a_stuck_send_resumably_and_exits_0(
        fakes: Platforms, tmp_path: Path, chan: str, sig: signal.Signals, abandoned_as: str) -> None:
    config = write_config(tmp_path, fakes, shutdown_timeout=SHUTDOWN_TIMEOUT, read_timeout=60)
    db = Db(config)
    service = start(config, db)
    try:
        fault = hold_posting(fakes, chan)
        fakes.archive.add_post(title="Post 0001", tags=["MEK"], slug="post-0001")
        fakes.archive.add_post(title="Post 0002", tags=["MEK"], slug="post-0002")
        wait_in_flight(fakes, chan, fault)
        others = [c for c in ("tg", "masto", "x") if c != chan]
        wait_until(lambda: all(statuses_by_channel(db).get(c) == ["sent", "sent"] for c in others), 30,
                   "the other channels to deliver both posts")
        # Mastodon and X deduplicate: both posts were claimed in one group (docs/delivery.md, "Claimed groups")
        assert statuses_by_channel(db)[chan] == ["sending", "queued" if chan == "tg" else "sending"]
        signalled = time.monotonic()
        service.signal(sig)
        code = service.wait(SHUTDOWN_TIMEOUT + MARGIN)
        elapsed = time.monotonic() - signalled
    finally:
        service.stop()
        assert fault.hold is not None
        fault.hold.set()
    assert code == 0, service.tail()
    # every connection was closed, so the last one checkpointed the WAL away (check before this test opens one)
    assert not (tmp_path / "tagrelay.db-wal").exists()
    assert SHUTDOWN_TIMEOUT * 0.9 <= elapsed <= SHUTDOWN_TIMEOUT + MARGIN  # it waited for the send, then gave up
    assert service.has_event("abandoned")
    assert statuses_by_channel(db)[chan] == [abandoned_as, "queued"]  # post 2 was never started
    assert fakes.posting_requests(chan) == 1
    assert db.holder() is None

    # resumable: the next run finishes the job without a duplicate
    assert run_cli(config, "run", "--once").returncode == 0
    posted = fakes.posted(chan)
    assert sum("/post-0001/" in t for t in posted) == 1 and sum("/post-0002/" in t for t in posted) == 1
    assert statuses_by_channel(db)[chan] == [abandoned_as if chan == "tg" else "sent", "sent"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_send_that_answers_during_the_grace_period_is_finished(fakes: Platforms, tmp_path: Path,
                                                                 sig: signal.Signals) -> None:
    config = write_config(tmp_path, fakes, shutdown_timeout=30, read_timeout=60)
    db = Db(config)
    service = start(config, db)
    try:
        fault = hold_posting(fakes, "tg")
        fakes.archive.add_post(title="Post 0001", tags=["MEK"], slug="post-0001")
        fakes.archive.add_post(title="Post 0002", tags=["MEK"], slug="post-0002")
        wait_in_flight(fakes, "tg", fault)
        service.signal(sig)
        service.wait_event("stopping")
        assert fault.hold is not None
        fault.hold.set()  # the answer arrives after the signal, well within the grace period
        code = service.wait(MARGIN + 10)
    finally:
        service.stop()
    assert code == 0, service.tail()
    assert not service.has_event("abandoned")
    assert statuses_by_channel(db)["tg"] == ["sent", "queued"]  # finished; no new work taken after the signal
    assert fakes.posting_requests("tg") == 1
    assert db.holder() is None


def test_a_stop_signal_during_start_up_exits_0_and_releases_the_lock(fakes: Platforms, tmp_path: Path) -> None:
    """SIGTERM while start-up waits for Telegram's getMe: the start-up ends, then the service stops cleanly
    (exit 0, nothing sent, the instance lock released)."""
    config = write_config(tmp_path, fakes, lease_ttl=60, shutdown_timeout=SHUTDOWN_TIMEOUT)
    db = Db(config)
    getme = Fault(hold=threading.Event(), process=True, match="getMe")
    fakes.telegram.add_fault(getme)
    service = Service(config).start()
    try:
        assert fakes.telegram.wait_for(lambda: getme.times == 0, 30), service.tail()
        assert db.holder() is not None
        service.signal(signal.SIGTERM)
        service.wait_event("stopping")
        assert getme.hold is not None
        getme.hold.set()
        code = service.wait(MARGIN + 10)
    finally:
        service.stop()
        assert getme.hold is not None
        getme.hold.set()
    assert code == 0, service.tail()
    assert db.holder() is None
    assert fakes.posting_requests("tg") == 0
