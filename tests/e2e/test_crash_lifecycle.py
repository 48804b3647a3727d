"""Edits and deletions survive a SIGKILL at any point without being applied twice (the pattern of
tests/e2e/test_crash.py, on a post's later life).

``tagrelay run`` is a real subprocess reading the archive's WordPress REST API (an edit is a post whose
``modified`` moved; a trashed post leaves the ``include=`` check and its page answers 404). Posts are
published and delivered, then edited in batches and finally trashed in batches; in each round the service
is SIGKILLed on an event (the K-th request to any fake, dropped unhandled; an edit or deletion made whose
answer is held; or the moment the test sees the K-th request) and restarted at once. Then: every message
shows its post's last title, each edit was applied once (Telegram: one ``editMessage*`` per edit round and
message, Mastodon: one entry in the status's edit history per round), each trashed post's message was
deleted exactly once on every platform, and every edit and delete delivery is ``sent``.

``TAGRELAY_CRASH_SEED`` replays a run.
"""

from __future__ import annotations

import os
import random
import re
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.e2e.service import Db, Platforms, Service, platforms, wait_until, write_config
from tests.e2e.test_crash import KillSwitch
from tests.fakes.archive import ArchivePost
from tests.fakes.telegram_api import DEFAULT_CHANNEL_ID, Fault

POSTS = 12
EDIT_ROUNDS = 4
DELETE_ROUNDS = 3
MODES = ("request", "answer", "async")
DELETING = 'on_delete = "delete"'


def number(text: str) -> int | None:
    m = re.search(r"/post-(\d{3})/", text)
    return int(m[1]) if m else None


def pending_changes(db: Db) -> int:
    rows = db.query("SELECT count(*) FROM deliveries WHERE kind <> 'post' AND status <> 'sent'")
    return int(rows[0][0]) if rows else -1


def changes_of(db: Db, kind: str) -> int:
    rows = db.query("SELECT count(*) FROM deliveries WHERE kind = ?", kind)
    return int(rows[0][0]) if rows else 0


def message_ids(fakes: Platforms) -> dict[int, int]:
    """Post number → its Telegram message id."""
    with fakes.telegram.lock:
        return {n: m.message_id for m in fakes.telegram.messages
                if m.chat_id == DEFAULT_CHANNEL_ID and (n := number(m.text or "")) is not None}


def tg_shown(fakes: Platforms) -> dict[int, str]:
    """Post number → the text its Telegram message shows now (deleted ones left out)."""
    with fakes.telegram.lock:
        return {n: m.text or "" for m in fakes.telegram.messages
                if m.chat_id == DEFAULT_CHANNEL_ID and not m.deleted and (n := number(m.text or "")) is not None}


def round_(fakes: Platforms, config: Path, rng: random.Random, change: list[tuple[str, str]],
           act: object, kills: Counter[str]) -> None:
    """Start the service, make the change (``act()``), SIGKILL it at an event chosen by ``rng``."""
    service = Service(config).start()
    try:
        mode = rng.choice(MODES)
        if mode == "answer":
            chan, route = rng.choice(change)
            fake = fakes.fakes[chan]
            fault = Fault(hold=threading.Event(), process=True, match=route)
            fake.add_fault(fault)
            act()  # type: ignore[operator]
            took = fake.wait_for(lambda: fault.times == 0, 60)
            assert took, f"{chan} never received {route}; log:\n{service.tail()}"
            service.kill_now()
            assert fault.hold is not None
            fault.hold.set()
        else:
            switch = KillSwitch(fakes, service, rng.randint(1, 12), at_arrival=mode == "request")
            try:
                act()  # type: ignore[operator]
                if mode == "async":
                    switch.wait_and_kill(60)
                service.wait(60)
            finally:
                switch.disarm()
        assert service.wait(60) == -signal.SIGKILL, f"the service exited by itself; log:\n{service.tail()}"
        kills[mode] += 1
    finally:
        service.stop()
        for fake in fakes.fakes.values():
            fake.clear_faults()


def settle(config: Path, db: Db, what: str, done: object) -> None:
    """A run without kills until ``done()`` holds and no edit or deletion waits; then SIGTERM."""
    service = Service(config).start()
    try:
        wait_until(lambda: done() and pending_changes(db) == 0, 90, what)  # type: ignore[operator]
        service.signal(signal.SIGTERM)
        assert service.wait(20) == 0, service.tail()
    finally:
        service.stop()


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_edits_and_deletions_survive_sigkill_without_being_applied_twice(tmp_path: Path) -> None:
    seed = int(os.environ.get("TAGRELAY_CRASH_SEED") or random.SystemRandom().randrange(2**32))
    print(f"\nlifecycle crash test seed {seed}")
    rng = random.Random(seed)
    started = time.monotonic()
    kills: Counter[str] = Counter()
    with platforms() as fakes:
        fakes.archive.add_post(title="Before", tags=["MEK"], slug="before")
        config = write_config(tmp_path, fakes, telegram_extra=DELETING, mastodon_extra=DELETING, x_extra=DELETING,
                              source_kind="wordpress")
        db = Db(config)
        posts: dict[int, ArchivePost] = {}
        settle(config, db, "the baseline", db.baseline_done)
        for n in range(1, POSTS + 1):
            posts[n] = fakes.archive.add_post(title=f"Post {n:03d}", tags=["MEK"], slug=f"post-{n:03d}")
        settle(config, db, "every post sent", lambda: db.statuses() == {"sent": 3 * POSTS})
        ids = message_ids(fakes)
        assert sorted(ids) == list(range(1, POSTS + 1))

        # -- edits: a batch per round, the service killed while it updates the messages ----------------
        titles = {n: f"Post {n:03d}" for n in posts}
        edited: Counter[int] = Counter()
        for rnd in range(EDIT_ROUNDS):
            batch = rng.sample(sorted(posts), 4)

            def edit(batch: list[int] = batch, rnd: int = rnd) -> None:
                for n in batch:
                    titles[n] = f"Post {n:03d}, edit {rnd + 1}"
                    posts[n] = fakes.archive.edit_post(posts[n], title=titles[n])
                    edited[n] += 1

            status_ids = {n: s.id for s in fakes.mastodon.statuses if (n := number(s.text)) is not None}
            routes = [("tg", "editMessageText"), *(("masto", f"/api/v1/statuses/{status_ids[n]}") for n in batch)]
            round_(fakes, config, rng, routes, edit, kills)
            settle(config, db, f"edit round {rnd + 1}",
                   lambda: all(titles[n] in text for n, text in tg_shown(fakes).items()))

        # each edit applied exactly once: one change per edit round and message, never a second
        tg_edits = Counter(c.message_id for c in fakes.telegram.changes if c.method.startswith("editMessage"))
        assert {n: tg_edits[ids[n]] for n in posts} == {n: edited[n] for n in posts}
        assert {n: titles[n] in text for n, text in tg_shown(fakes).items()} == {n: True for n in posts}
        masto_edits = {number(s.text): len(s.edits) for s in fakes.mastodon.statuses}
        assert masto_edits == {n: edited[n] for n in posts}
        assert all(titles[number(s.text) or 0] in s.text for s in fakes.mastodon.statuses)
        assert all("edit" not in t.text for t in fakes.x.tweets)  # X has no edit: the first text stays

        # -- deletions: trashed in batches, the service killed while it deletes ---------------------------
        trashed: list[int] = []
        for rnd in range(DELETE_ROUNDS):
            batch = rng.sample([n for n in posts if n not in trashed], 3)
            status_ids = {n: s.id for s in fakes.mastodon.statuses if (n := number(s.text)) is not None}
            tweet_ids = {n: t.id for t in fakes.x.tweets if (n := number(t.text)) is not None}

            def trash(batch: list[int] = batch) -> None:
                for n in batch:
                    fakes.archive.trash_post(posts[n])
                trashed.extend(batch)

            routes = [("tg", "deleteMessage"), *(("masto", f"/api/v1/statuses/{status_ids[n]}") for n in batch),
                      *(("x", f"/2/tweets/{tweet_ids[n]}") for n in batch)]
            round_(fakes, config, rng, routes, trash, kills)
            settle(config, db, f"delete round {rnd + 1}",
                   lambda: changes_of(db, "delete") == 3 * len(trashed))

        deleted_tg = Counter(c.message_id for c in fakes.telegram.changes if c.method == "deleteMessage")
        assert sorted(deleted_tg) == sorted(ids[n] for n in trashed) and set(deleted_tg.values()) == {1}
        assert sorted(Counter(fakes.mastodon.deletions).values()) == [1] * len(trashed)
        assert sorted(number(t.text) for t in fakes.x.deleted) == sorted(trashed)
        kept = sorted(n for n in posts if n not in trashed)
        assert sorted(number(t.text) or 0 for t in fakes.x.tweets) == kept
        edit_rows = 2 * sum(1 for n in posts if edited[n])  # one row per message edited (tg, masto), re-armed
        assert db.query("SELECT kind, status, count(*) FROM deliveries WHERE kind <> 'post' "
                        "GROUP BY kind, status ORDER BY kind") == [("delete", "sent", 3 * len(trashed)),
                                                                   ("edit", "sent", edit_rows)]
        print(f"lifecycle-crash-test: seed={seed} kills={sum(kills.values())} {dict(kills)} "
              f"edits={sum(edited.values())} telegram_edits={sum(tg_edits.values())} "
              f"mastodon_edits={sum(len(s.edits) for s in fakes.mastodon.statuses)} deleted={len(trashed)} "
              f"applied_twice=0 seconds={time.monotonic() - started:.0f}")
