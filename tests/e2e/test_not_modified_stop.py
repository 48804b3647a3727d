"""A poll answered 304 waits in the poller's buffer (``bot.services.poll_records``) before it is written: a
graceful stop (SIGTERM) writes it; a crash (SIGKILL) loses it, and that is harmless: the source is polled
again, with the validators the database still holds, and a post published meanwhile is found and sent.

Real ``tagrelay run`` / ``run --once`` subprocesses against the loopback archive; the buffer's timer is set
to an hour, so only a round, the end of a burst or a stop writes a record. Waits are on log events, on the
archive's counters (polled with a deadline) and on a held response, never on time.
"""

from __future__ import annotations

import signal
from pathlib import Path

from tests.e2e.service import Db, Service, run_cli, wait_until
from tests.fakes.archive import ArchiveServer

CONFIG = """
[storage]
url = "sqlite+aiosqlite:///{db}"

[service]
jitter = 0
shutdown_timeout = 20
not_modified_delay = "1h"

[health]
enabled = false

[[sources]]
name = "quick"
url = "{url}/feed/"
kind = "rss"
interval = 1

[[sources]]
name = "slow"
url = "{url}/feed/json"
kind = "jsonfeed"
interval = 3600

[[channels]]
name = "console"
platform = "console"

[[subscriptions]]
tag = "MEK"
channels = ["console"]
"""


def write(folder: Path, archive: ArchiveServer) -> Path:
    path = folder / "tagrelay.toml"
    path.write_text(CONFIG.format(db=folder / "tagrelay.db", url=archive.url))
    return path


def outcome(db: Db, source: str) -> str | None:
    rows = db.query("SELECT last_outcome FROM sources WHERE name = ?", source)
    return str(rows[0][0]) if rows and rows[0][0] is not None else None


def test_sigterm_writes_a_304_that_ends_during_the_stop(tmp_path: Path) -> None:
    with ArchiveServer() as archive:
        archive.add_post(title="Before", tags=["MEK"])
        config = write(tmp_path, archive)
        db = Db(config)
        service = Service(config).start()
        try:
            service.wait_event("poll", source="quick", outcome="baseline")
            held = archive.hold("/feed/")  # quick's next poll (a 304) is answered only once the stop began
            before = archive.count("/feed/", status=304)
            wait_until(lambda: archive.count("/feed/", status=304) > before, 30, "quick's conditional GET")
            service.signal(signal.SIGTERM)
            service.wait_event("stopping")
            held.set()
            assert service.wait(30) == 0, service.tail()
        finally:
            service.stop()
    events = [e["event"] for e in service.events]
    assert events.index("stopping") < events.index("stopped")
    assert service.has_event("poll", source="quick", outcome="not_modified")
    assert outcome(db, "quick") == "not_modified"  # written by the stop (the timer would have waited an hour)
    assert not [e for e in service.events if e.get("level") in ("error", "critical")], service.tail()


def test_sigkill_loses_a_waiting_304_and_the_source_is_simply_polled_again(tmp_path: Path) -> None:
    with ArchiveServer() as archive:
        archive.add_post(title="Before", tags=["MEK"])
        config = write(tmp_path, archive)
        db = Db(config)
        first = run_cli(config, "run", "--once")  # the baselines
        assert first.returncode == 0, first.stderr[-3000:]
        assert (outcome(db, "quick"), outcome(db, "slow")) == ("baseline", "baseline")

        held = archive.hold("/feed/json")  # slow's poll holds the burst open; quick's 304 waits in the buffer
        service = Service(config, args=("run", "--once")).start()
        try:
            service.wait_event("poll", source="quick", outcome="not_modified")
            wait_until(lambda: archive.count("/feed/json", status=304) >= 1, 30, "slow's conditional GET")
            service.kill()
        finally:
            held.set()
            service.stop()
        assert outcome(db, "quick") == "baseline"  # the 304 was never written: lost with the process

        archive.add_post(title="Meanwhile", tags=["MEK"])
        again = run_cli(config, "run", "--once")
        assert again.returncode == 0, again.stderr[-3000:]
    # quick was polled again with the baseline's validators: the changed feed came whole, its new post was found
    assert outcome(db, "quick") == "new"
    sent = db.query("SELECT p.title, d.status FROM deliveries d JOIN posts p ON p.id = d.post_id "
                    "JOIN sources s ON s.id = p.source_id WHERE s.name = 'quick'")
    assert sent == [("Meanwhile", "sent")]
