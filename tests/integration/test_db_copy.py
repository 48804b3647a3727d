"""``tagrelay db copy``: SQLite into an empty SQLite or PostgreSQL database, history intact."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

from bot.cli import main
from bot.clock import FakeClock
from bot.domain.models import DeliveryStatus
from bot.errors import StorageError
from bot.storage import migrate
from bot.storage.copy import copy_database
from bot.storage.engine import make_engine
from bot.storage.instance_lock import FileLock, Holder, lock_path
from bot.storage.store import Store
from tests.integration.test_store import parsed, poll, setup


async def _history(store: Store, clock: FakeClock) -> None:
    """Known posts, and deliveries in every final state plus one left in ``sending``."""
    await setup(store, clock)
    await poll(store, clock, [parsed(1, "MEK")])
    await poll(store, clock, [parsed(n, "MEK", "Iraq") for n in range(2, 6)])
    now = clock.now()
    first = await store.claim_next("tg", now, "old")
    assert first is not None
    await store.finish(first.id, DeliveryStatus.SENT, now, remote_id="m-1", remote_url="https://t.me/c/1")
    second = await store.claim_next("tg", now, "old")
    assert second is not None
    await store.finish(second.id, DeliveryStatus.DEAD, now, error="rejected: too long", reason="rejected")
    assert await store.claim_next("masto", now, "old") is not None  # left in `sending`
    await store.audit("alice@cli", "cli", "pause", "tg", now)
    await store.reserve_tokens([("channel:tg", 1, 1)], now.timestamp())
    assert await store.try_lease("channel:tg", "old", now - timedelta(hours=1), 60)  # a stopped instance's lease


@pytest.fixture
async def old(tmp_path: Path, clock: FakeClock) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    store = Store.open(url)
    await migrate.upgrade(store.engine)
    await _history(store, clock)
    await store.aclose()
    return url


async def test_copy_keeps_the_delivery_history_and_refuses_a_non_empty_target(old: str, db_url: str,
                                                                              clock: FakeClock) -> None:
    source, target = make_engine(old), make_engine(db_url)
    try:
        report = await copy_database(source, target, now=clock.now())
        assert report.counts["posts"] == 5 and report.counts["deliveries"] == 8
        assert report.counts["audit_log"] == 1 and report.counts["rate_buckets"] == 1
        assert "instance_leases" not in report.counts
        with pytest.raises(StorageError, match="not empty"):
            await copy_database(source, target, now=clock.now())
    finally:
        await source.dispose()
        await target.dispose()

    before, after = Store.open(old), Store.open(db_url)
    try:
        def key(rows: list) -> list:  # type: ignore[type-arg]
            return sorted((d.id, d.channel, d.status, d.attempts, d.remote_id, d.remote_url, d.last_error,
                           d.post_title, d.sent_at) for d in rows)

        assert key(await after.deliveries(limit=100)) == key(await before.deliveries(limit=100))
        assert [s.cache for s in await after.sources()] == [s.cache for s in await before.sources()]
        # the copy is a working database: known posts stay known, new ids continue after the old ones
        state = await after.source("archive")
        assert len(await after.known_keys(state.id, [f"p{n}" for n in range(1, 6)])) == 5
        assert await poll(after, clock, [parsed(n, "MEK") for n in range(1, 7)]) == 2  # only post 6, tg + masto
        new_ids = [d.id for d in await after.deliveries(limit=100) if d.post_title == "Post 6"]
        assert min(new_ids) > max(d.id for d in await before.deliveries(limit=100))
        # the delivery a stopped instance left in `sending` is recovered on the new database
        requeued, unknown = await after.recover_sending(clock.now(), resend_channels={"masto"})
        assert (requeued, unknown) == (1, 0)
    finally:
        await before.aclose()
        await after.aclose()


async def test_copy_refuses_while_tagrelay_runs_on_the_source(old: str, tmp_path: Path, clock: FakeClock) -> None:
    path = lock_path(old)
    assert path is not None
    running = FileLock(path)
    assert running.try_acquire(Holder.me("running-one", clock.now())) is None  # what `tagrelay run` holds
    source, target = make_engine(old), make_engine(f"sqlite+aiosqlite:///{tmp_path / 'new.db'}")
    try:
        with pytest.raises(StorageError, match="running-one"):
            await copy_database(source, target, now=clock.now())
    finally:
        running.release()
        await source.dispose()
        await target.dispose()


def test_cli_db_copy(old: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                     monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "tagrelay.toml"
    config.write_text(f'[storage]\nurl = "{old}"\n')
    monkeypatch.delenv("TAGRELAY_STORAGE_URL", raising=False)
    target = f"sqlite+aiosqlite:///{tmp_path / 'new.db'}"
    assert main(["--config", str(config), "db", "copy", "--to", target]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^deliveries +8$", out, re.MULTILINE) and "row count matches" in out
    assert main(["--config", str(config), "db", "copy", "--to", target]) == 1
    assert "not empty" in capsys.readouterr().err
    assert main(["--config", str(config), "db", "copy", "--to", "mysql://x/y"]) == 2
