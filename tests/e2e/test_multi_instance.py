"""Three ``tagrelay run`` processes share one PostgreSQL database; one is SIGKILLed mid-send.

Every post must reach every subscribed channel, none twice on Mastodon or X;
each source's baseline is taken by exactly one instance; the dead instance's
in-flight Mastodon status is requeued and re-sent with the same idempotency key
(the platform answers with the status it already made); ``status`` lists the
survivors. PostgreSQL only: skipped without TAGRELAY_TEST_POSTGRES_URL.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.service import Service, run_cli, wait_until
from tests.fakes.archive import ArchiveServer
from tests.fakes.mastodon_api import STATUSES, FakeMastodon
from tests.fakes.telegram_api import DEFAULT_CHANNEL_ID, FakeBotApi
from tests.fakes.x_api import FakeX

PG_URL = os.environ.get("TAGRELAY_TEST_POSTGRES_URL")
pytestmark = [pytest.mark.postgres,
              pytest.mark.skipif(not PG_URL, reason="TAGRELAY_TEST_POSTGRES_URL is not set")]

INSTANCES = 3
SOURCES = 3
POSTS_PER_SOURCE = 10
LEASE_TTL = 2.0
INTERVAL = 1.0
CHANNELS = ("tg", "masto", "x")


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def pg(url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """One query on a short-lived connection (the test thread is synchronous)."""
    import asyncpg

    async def go() -> list[tuple[Any, ...]]:
        conn = await asyncpg.connect(_dsn(url))
        try:
            return [tuple(r) for r in await conn.fetch(sql, *args)]
        finally:
            await conn.close()

    return asyncio.run(go())


@pytest.fixture
def database() -> Iterator[str]:
    assert PG_URL
    name = f"tagrelay_mi_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    pg(PG_URL, f'CREATE DATABASE "{name}"')
    base, _, _ = PG_URL.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        pg(PG_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def write_config(folder: Path, url: str, archives: list[ArchiveServer], tg: FakeBotApi, masto: FakeMastodon,
                 x: FakeX, *, lease_ttl: float = LEASE_TTL) -> Path:
    sources = "\n".join(f'[[sources]]\nname = "site{i}"\nurl = "{a.url}/feed/"\nkind = "rss"\ninterval = {INTERVAL}\n'
                        for i, a in enumerate(archives))
    path = folder / "tagrelay.toml"
    path.write_text(f"""
[storage]
url = "{url}"
lease_ttl = {lease_ttl}

[http]
timeout = 5

[service]
jitter = 0
shutdown_timeout = 2

[delivery]
pacing = false
retry_base = 0.2
retry_cap = 1
max_attempts = 50

[health]
enabled = false

{sources}
[[channels]]
name = "tg"
platform = "telegram"
chat_id = "@tagrelay_test"
api_base = "{tg.url}"
at_least_once = true

[[channels]]
name = "masto"
platform = "mastodon"
instance = "{masto.url}"

[[channels]]
name = "x"
platform = "x"
api_base = "{x.url}"

[[subscriptions]]
tag = "News"
channels = ["tg", "masto", "x"]
""")
    return path


def test_three_instances_split_the_work_and_survive_a_sigkill(tmp_path: Path, database: str) -> None:
    with ExitStack() as stack:
        archives = [stack.enter_context(ArchiveServer(feed_size=100)) for _ in range(SOURCES)]
        tg, masto, x = (stack.enter_context(FakeBotApi()), stack.enter_context(FakeMastodon()),
                        stack.enter_context(FakeX()))
        for i, archive in enumerate(archives):  # known before the first poll: baseline, never sent
            archive.add_post(title=f"Old {i}", tags=["News"])
        config = write_config(tmp_path, database, archives, tg, masto, x)
        services = [Service(config).start() for _ in range(INSTANCES)]
        for service in services:
            stack.callback(service.stop)

        def baselined() -> bool:
            import asyncpg

            try:
                rows = pg(database, "SELECT count(*) FROM sources WHERE baseline_done")
            except asyncpg.UndefinedTableError:  # not migrated yet
                return False
            return bool(rows) and rows[0][0] == SOURCES

        wait_until(baselined, 30, "every source's baseline")
        for service in services:
            service.wait_event("started", timeout=30)

        # the first Mastodon status is created but its answer held: its sender dies mid-send
        held = masto.hold_next(STATUSES)
        titles = {f"Post {i}-{n}" for i in range(SOURCES) for n in range(POSTS_PER_SOURCE)}
        for i, archive in enumerate(archives):
            for n in range(POSTS_PER_SOURCE):
                archive.add_post(title=f"Post {i}-{n}", tags=["News"])
        wait_until(lambda: len(masto.seen("POST", STATUSES)) >= 1, 30, "the first Mastodon status")
        rows = pg(database, "SELECT owner FROM instance_leases WHERE name = 'channel:masto'")
        assert rows, "the sender of the held status holds the masto channel lease"
        victim = next(s for s in services if rows[0][0].split(":")[1] == str(s.pid))
        victim.kill()
        held.set()
        survivors = [s for s in services if s is not victim]

        def all_sent() -> bool:
            counts = dict(pg(database, "SELECT status, count(*) FROM deliveries GROUP BY status"))
            return counts.get("sent", 0) == len(titles) * len(CHANNELS) and len(counts) == 1

        wait_until(all_sent, 45, "every delivery sent after the take-over", interval=0.1)

        def first_line(text: str) -> str:
            return text.split("\n", 1)[0]

        with masto.lock:
            masto_posts = [first_line(s.text) for s in masto.statuses]
            replays = masto.idempotent_replays
        with x.lock:
            x_posts = [first_line(t.text) for t in x.tweets]
        with tg.lock:
            tg_posts = {first_line(m.text or "") for m in tg.messages if m.chat_id == DEFAULT_CHANNEL_ID}
        for posted in (masto_posts, x_posts):
            assert sorted(posted) == sorted(titles)  # every post, none twice
        assert {t for t in titles if any(t in p for p in tg_posts)} == titles  # at least once on Telegram
        assert replays >= 1, "the interrupted status was re-sent with its idempotency key and not made twice"

        # each baseline was taken by exactly one instance, and three instances together polled each
        # source about once per interval (1 s), not three times: the claims coordinate them
        polls = [e for s in services for e in s.events if e.get("event") == "poll"]
        baselines = [e for e in polls if e.get("outcome") == "baseline"]
        assert sorted(e["source"] for e in baselines) == [f"site{i}" for i in range(SOURCES)]
        for i in range(SOURCES):
            stamps = sorted(datetime.fromisoformat(e["ts"]) for e in polls if e["source"] == f"site{i}")
            span = (stamps[-1] - stamps[0]).total_seconds()
            assert len(stamps) <= 1.5 * span / INTERVAL + 2, (f"site{i} polled {len(stamps)} times in {span:.1f}s "
                                                             f"by {INSTANCES} instances")
        assert any(s.has_event("instance.taken_over") for s in survivors)

        # status shows the two survivors (the dead one was taken over and removed)
        result = run_cli(config, "status")
        assert result.returncode == 0, result.stderr
        lines = [line for line in result.stdout.splitlines() if line.startswith("instance: ")]
        assert len(lines) == 2 and all("— running" in line for line in lines)
        assert {line.split(" ")[1] for line in lines} == {o for (o,) in pg(database, "SELECT owner FROM instances")}

        for service in survivors:
            service.signal(signal.SIGTERM)
        for service in survivors:
            assert service.wait(30) == 0
        assert pg(database, "SELECT owner FROM instances") == []
        assert pg(database, "SELECT name FROM sources WHERE lease_owner IS NOT NULL") == []


def test_a_sigkilled_instance_is_taken_over_at_once_not_after_lease_ttl(tmp_path: Path, database: str) -> None:
    """Its session (and so its advisory lock) ends with the process: the survivor takes over its channel and
    its in-flight status within a second or two, not after lease_ttl (60 s here)."""
    ttl = 60.0
    with ExitStack() as stack:
        archive = stack.enter_context(ArchiveServer(feed_size=100))
        tg, masto, x = (stack.enter_context(FakeBotApi()), stack.enter_context(FakeMastodon()),
                        stack.enter_context(FakeX()))
        archive.add_post(title="Old", tags=["News"])
        config = write_config(tmp_path, database, [archive], tg, masto, x, lease_ttl=ttl)
        services = [Service(config).start() for _ in range(2)]
        for service in services:
            stack.callback(service.stop)
        for service in services:
            service.wait_event("started", timeout=30)
        wait_until(lambda: bool(pg(database, "SELECT 1 FROM sources WHERE baseline_done")), 30, "the baseline")

        held = masto.hold_next(STATUSES)  # the status is made, its answer held: its sender dies mid-send
        archive.add_post(title="Post 1", tags=["News"])
        wait_until(lambda: len(masto.seen("POST", STATUSES)) >= 1, 30, "the Mastodon status")
        [(owner,)] = pg(database, "SELECT owner FROM instance_leases WHERE name = 'channel:masto'")
        victim = next(s for s in services if owner.split(":")[1] == str(s.pid))
        survivor = next(s for s in services if s is not victim)
        victim.kill()
        killed = time.monotonic()
        held.set()

        survivor.wait_event("instance.taken_over", timeout=ttl / 4, dead=owner)
        taken_over = time.monotonic() - killed

        def all_sent() -> bool:
            counts = dict(pg(database, "SELECT status, count(*) FROM deliveries GROUP BY status"))
            return counts == {"sent": len(CHANNELS)}

        wait_until(all_sent, ttl / 4, "the dead instance's status re-sent by the survivor", interval=0.1)
        resent = time.monotonic() - killed
        print(f"\ntake-over after SIGKILL: {taken_over:.2f}s, in-flight status re-sent after {resent:.2f}s "
              f"(lease_ttl {ttl:.0f}s)")
        assert taken_over < ttl / 4 and resent < ttl / 4
        with masto.lock:
            assert len(masto.statuses) == 1 and masto.idempotent_replays == 1  # re-sent, not posted twice
        assert [o for (o,) in pg(database, "SELECT owner FROM instances")] == [
            next(e["instance"] for e in survivor.events if e.get("event") == "started")]
        survivor.signal(signal.SIGTERM)
        assert survivor.wait(30) == 0
