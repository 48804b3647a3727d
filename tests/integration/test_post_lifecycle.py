"""A post's whole life, end to end: the service (``build_app``, ``run --once`` cycles) against the loopback
archive and the Telegram, Mastodon and X fakes, on SQLite and PostgreSQL, with a fake clock.

Edits: an edited title is edited on Telegram and Mastodon within one poll, left alone on X (no edit API:
``status`` says so) and outside ``edit_window``; ten edits between polls make one update; an edit of a post
whose delivery has not gone out yet changes what is sent. Unpublishing: a trashed post is deleted where a
channel opts in (a feed: two 404s some minutes apart; the REST API: one ``include=`` request and one direct
404), a post that merely left the feed is not, and a 5xx while checking deletes nothing. Retraction, and the
48-hour limit of Telegram's deleteMessage. Every edit and deletion is in ``deliveries`` and the audit log.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.app import App
from bot.bootstrap import build_app, make_admin_service
from bot.cli import main
from bot.clock import FakeClock
from bot.domain.state import DeliveryView
from bot.settings import Secrets, build_config
from tests.fakes.archive import ArchivePost, ArchiveServer
from tests.fakes.mastodon_api import DEFAULT_TOKEN as MASTODON_TOKEN
from tests.fakes.mastodon_api import FakeMastodon
from tests.fakes.telegram_api import DEFAULT_CHANNEL_ID, FakeBotApi
from tests.fakes.telegram_api import DEFAULT_TOKEN as TELEGRAM_TOKEN
from tests.fakes.x_api import ACCESS_TOKEN, ACCESS_TOKEN_SECRET, CONSUMER_KEY, CONSUMER_SECRET, FakeX

SECRETS = {"TG_BOT_TOKEN": TELEGRAM_TOKEN, "MASTODON_TOKEN": MASTODON_TOKEN, "X_CONSUMER_KEY": CONSUMER_KEY,
           "X_CONSUMER_SECRET": CONSUMER_SECRET, "X_ACCESS_TOKEN": ACCESS_TOKEN,
           "X_ACCESS_TOKEN_SECRET": ACCESS_TOKEN_SECRET}
MINUTE = 60.0


class Notes:
    """The ``Notifier``: what the admins were told."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    async def notify(self, text: str) -> None:
        self.texts.append(text)


@dataclass
class Rig:
    archive: ArchiveServer
    telegram: FakeBotApi
    mastodon: FakeMastodon
    x: FakeX
    clock: FakeClock
    db_url: str
    notes: Notes = field(default_factory=Notes)

    def app(self, *, kind: str = "rss", channels: dict[str, dict[str, Any]] | None = None) -> App:
        path = "/feed/" if kind == "rss" else "/"
        tables = {"tg": {"platform": "telegram", "chat_id": "@tagrelay_test", "api_base": self.telegram.url},
                  "masto": {"platform": "mastodon", "instance": self.mastodon.url},
                  "x": {"platform": "x", "api_base": self.x.url}}
        for name, extra in (channels or {}).items():
            tables[name].update(extra)
        raw = {"storage": {"url": self.db_url}, "delivery": {"pacing": False, "retry_base": 10},
               "http": {"timeout": 5},
               "sources": [{"name": "archive", "url": self.archive.url + path, "kind": kind, "interval": 60}],
               "channels": [{"name": name, **table} for name, table in tables.items()],
               "subscriptions": [{"tag": "MEK", "channels": ["tg", "masto", "x"]}]}
        config = build_config(raw)
        return build_app(config, secrets=Secrets(environ=SECRETS), clock=self.clock, notifier=self.notes)

    async def cycle(self, app: App, minutes: float = 2) -> None:
        self.clock.advance(minutes * MINUTE)
        report = await app.run_once()
        assert [p.outcome for p in report.polls] != ["error"], report

    def tg_texts(self) -> list[str]:
        with self.telegram.lock:
            return [m.text or m.caption or "" for m in self.telegram.messages
                    if m.chat_id == DEFAULT_CHANNEL_ID and not m.deleted]


@pytest.fixture
def rig(db_url: str) -> Iterator[Rig]:
    clock = FakeClock()
    with ArchiveServer(feed_size=5) as archive, FakeBotApi() as telegram, \
            FakeMastodon(clock=clock.now) as mastodon, FakeX() as x:
        archive.add_post(title="Before", tags=["MEK"])
        yield Rig(archive, telegram, mastodon, x, clock, db_url)


@pytest.fixture
async def started(rig: Rig) -> AsyncIterator[tuple[Rig, App, ArchivePost]]:
    """The default channels (tg, masto, x; edits on, deletions off), the baseline taken and one post sent."""
    async with rig.app() as app:
        await rig.cycle(app)
        post = rig.archive.add_post(title="Hello", tags=["MEK"])
        await rig.cycle(app)
        yield rig, app, post


def kinds(rows: list[DeliveryView]) -> list[tuple[str, str, str]]:
    return sorted((d.channel, d.kind, d.status) for d in rows)


async def actions(app: App) -> list[str]:
    return [e.action for e in reversed(await app.store.audit_entries(100))]


# -- edits ---------------------------------------------------------------------------------------


async def test_an_edited_title_is_edited_on_telegram_and_mastodon_within_one_poll_and_left_on_x(
        started: tuple[Rig, App, ArchivePost]) -> None:
    rig, app, post = started
    assert any("Hello" in t for t in rig.tg_texts()) and len(rig.x.tweets) == 1
    rig.archive.edit_post(post, title="Hello, corrected")
    await rig.cycle(app)  # ONE poll: detected, queued, sent
    assert [c.method for c in rig.telegram.changes] == ["editMessageText"]
    assert "Hello, corrected" in rig.tg_texts()[0]
    (status,) = rig.mastodon.statuses
    assert "Hello, corrected" in status.text and len(status.edits) == 1
    assert "corrected" not in rig.x.tweets[0].text and rig.x.seen("DELETE") == []  # X: no edit API
    rows = await app.store.deliveries()
    assert kinds(rows) == [("masto", "edit", "sent"), ("masto", "post", "sent"), ("tg", "edit", "sent"),
                           ("tg", "post", "sent"), ("x", "post", "sent")]
    assert (await actions(app)).count("edit") == 3  # the poll's line, and one per message edited
    admin = make_admin_service(app.config, app.store, clock=rig.clock)
    report = await admin.status()
    assert any("channel x: x has no edit" in n for n in report.notes)
    found = {a.channel: a.later for a in (await admin.explain(post.link(rig.archive.site))).channels}
    assert found == {"tg": "edits update it for 48 h; left if unpublished (on_delete = ignore)",
                     "masto": "edits update it for 48 h; left if unpublished (on_delete = ignore)",
                     "x": "edits not sent (x has no edit); left if unpublished (on_delete = ignore)"}

    await rig.cycle(app)  # nothing changed since: nothing sent
    await rig.cycle(app)
    assert len(rig.telegram.changes) == 1 and len(rig.mastodon.seen("PUT")) == 1


async def test_a_change_the_messages_do_not_show_sends_nothing(started: tuple[Rig, App, ArchivePost]) -> None:
    rig, app, post = started
    rig.archive.edit_post(post, author="Another Writer")  # in the hash (a template may show it); not in these
    await rig.cycle(app)
    edits = await app.store.deliveries(kind="edit")
    assert sorted((d.channel, d.status, d.reason) for d in edits) == [("masto", "sent", "unchanged"),
                                                                       ("tg", "sent", "unchanged")]
    assert rig.telegram.changes == [] and rig.mastodon.seen("PUT") == []
    assert not any(r.path.endswith("/source") for r in rig.mastodon.requests)  # not even asked: same rendering
    assert (await actions(app)).count("edit") == 1  # the poll's line only: nothing was edited


async def test_an_edit_outside_the_window_changes_nothing(rig: Rig) -> None:
    async with rig.app(channels={"tg": {"edit_window": "1h"}, "masto": {"edit_window": "1h"}}) as app:
        await rig.cycle(app)
        post = rig.archive.add_post(title="Hello", tags=["MEK"])
        await rig.cycle(app)
        rig.clock.advance(2 * 3600)
        rig.archive.edit_post(post, title="Hello, much later")
        await rig.cycle(app)
        assert rig.telegram.changes == [] and rig.mastodon.seen("PUT") == []
        assert {d.kind for d in await app.store.deliveries()} == {"post"}
        stored = await app.store.latest_post(url=post.link(rig.archive.site))
        assert stored is not None and stored.title == "Hello, much later"  # stored: a later retry sends it


async def test_ten_edits_between_polls_make_one_update_and_a_queued_edit_sends_the_newest(
        started: tuple[Rig, App, ArchivePost]) -> None:
    rig, app, post = started
    for n in range(10):
        post = rig.archive.edit_post(post, title=f"Hello, take {n}")
    await rig.cycle(app)
    assert [c.text for c in rig.telegram.changes if "take" in (c.text or "")] == [rig.tg_texts()[0]]
    assert "take 9" in rig.tg_texts()[0] and len(rig.mastodon.seen("PUT")) == 1

    # an edit queued and not sent yet: the next edit makes no second one, the newest content goes out
    rig.archive.edit_post(post, title="Hello, take 10")
    rig.clock.advance(2 * MINUTE)
    assert (await app.poller.poll_source("archive", force=True)).edits == 2
    rig.archive.edit_post(post, title="Hello, take 11")
    rig.clock.advance(2 * MINUTE)
    assert (await app.poller.poll_source("archive", force=True)).edits == 0  # queued already
    await app.deliveries.burst()
    assert len(rig.telegram.changes) == 2 and "take 11" in rig.tg_texts()[0]
    assert len(rig.mastodon.seen("PUT")) == 2 and "take 11" in rig.mastodon.statuses[0].text


async def test_an_edit_is_paced_by_the_platform_like_a_post(started: tuple[Rig, App, ArchivePost]) -> None:
    rig, app, post = started
    rig.telegram.flood(30, match="editMessageText")
    rig.archive.edit_post(post, title="Hello, flooded")
    await rig.cycle(app)
    assert rig.telegram.changes == []
    (edit,) = [d for d in await app.store.deliveries(kind="edit") if d.channel == "tg"]
    assert (edit.status, edit.reason) == ("queued", "rate_limited")
    assert (await app.store.channel("tg")).hold_until is not None
    rig.clock.advance(31)
    await app.deliveries.burst()
    assert [c.method for c in rig.telegram.changes] == ["editMessageText"]


async def test_an_edit_of_a_post_not_sent_yet_changes_what_is_sent(rig: Rig) -> None:
    async with rig.app(channels={"tg": {"paused": True}}) as app:
        await rig.cycle(app)
        post = rig.archive.add_post(title="Draft title", tags=["MEK"])
        await rig.cycle(app)  # tg is paused: its delivery waits
        rig.archive.edit_post(post, title="Final title")
        await rig.cycle(app)
        admin = make_admin_service(app.config, app.store, clock=rig.clock)
        await admin.resume("tg", actor="op", via="cli")
        await rig.cycle(app)
        assert "Final title" in rig.tg_texts()[0] and rig.telegram.changes == []
        assert [d.kind for d in await app.store.deliveries(channel="tg")] == ["post"]


async def test_an_edit_whose_answer_is_lost_is_not_applied_twice(started: tuple[Rig, App, ArchivePost]) -> None:
    rig, app, post = started
    rig.telegram.drop_next("editMessageText", process=True)  # made, the answer lost
    rig.mastodon.drop_next(f"/api/v1/statuses/{rig.mastodon.statuses[0].id}", process=True)
    rig.archive.edit_post(post, title="Hello, once")
    await rig.cycle(app)
    edits = {d.channel: d for d in await app.store.deliveries(kind="edit")}
    assert edits["tg"].status == edits["masto"].status == "failed"  # a repeat is safe: retried
    rig.clock.advance(3600)
    await app.deliveries.burst()
    edits = {d.channel: d for d in await app.store.deliveries(kind="edit")}
    assert (edits["tg"].status, edits["tg"].reason) == ("sent", "already")  # "message is not modified"
    assert (edits["masto"].status, edits["masto"].reason) == ("sent", "already")  # the source shows it
    assert len(rig.telegram.changes) == 1 and len(rig.mastodon.statuses[0].edits) == 1


# -- unpublishing --------------------------------------------------------------------------------

DELETING = {"tg": {"on_delete": "delete"}, "x": {"on_delete": "delete"}}


def page(post: ArchivePost) -> str:
    return post.link("")


async def test_a_trashed_post_is_deleted_where_a_channel_opts_in(rig: Rig) -> None:
    async with rig.app(channels=DELETING) as app:
        await rig.cycle(app)
        rig.archive.add_post(title="Older", tags=["MEK"])
        post = rig.archive.add_post(title="Taken down", tags=["MEK"])
        rig.archive.add_post(title="Newer", tags=["MEK"])
        await rig.cycle(app)
        assert len(rig.x.tweets) == 3
        rig.archive.trash_post(post)
        await rig.cycle(app)  # a hole in the feed, its page 404: a first strike, nothing deleted
        assert rig.telegram.changes == [] and rig.x.deleted == []
        assert rig.archive.count(path=page(post), status=404) == 1
        await rig.cycle(app, minutes=1)  # not due again yet
        assert rig.archive.count(path=page(post)) == 1
        await rig.cycle(app, minutes=5)  # the second 404, minutes later: confirmed and deleted
        assert [c.method for c in rig.telegram.changes] == ["deleteMessage"]
        assert len(rig.x.deleted) == 1 and "Taken down" in rig.x.deleted[0].text
        assert rig.mastodon.deletions == []  # masto: on_delete = "ignore"
        assert not any("Taken down" in t for t in rig.tg_texts()) and len(rig.tg_texts()) == 2
        rows = await app.store.deliveries(kind="delete")
        assert sorted((d.channel, d.status) for d in rows) == [("tg", "sent"), ("x", "sent")]
        assert (await actions(app)).count("unpublished") == 1 and (await actions(app)).count("delete") == 2
        audit = next(e for e in await app.store.audit_entries() if e.action == "unpublished")
        assert "404 twice" in audit.detail and "masto left as it is (on_delete is ignore)" in audit.detail
        for _ in range(3):
            await rig.cycle(app, minutes=10)
        assert len(rig.telegram.changes) == 1 and rig.archive.count(path=page(post)) == 2  # not watched any more


async def test_a_post_that_merely_left_the_feed_is_not_deleted(rig: Rig) -> None:
    async with rig.app(channels=DELETING) as app:
        await rig.cycle(app)
        post = rig.archive.add_post(title="Soon old", tags=["MEK"])
        await rig.cycle(app)
        for n in range(6):  # the feed lists 5: the post falls out of it
            rig.archive.add_post(title=f"Newer {n}", tags=["Other"])
        for _ in range(3):
            await rig.cycle(app, minutes=10)
        rig.archive.delete_post(post)  # even a 404 now is never asked for: it aged out, it is no hole
        for _ in range(3):
            await rig.cycle(app, minutes=10)
        assert rig.archive.count(path=page(post)) == 0
        assert rig.telegram.changes == [] and rig.x.deleted == []
        assert await app.store.deliveries(kind="delete") == []


async def test_a_5xx_while_checking_deletes_nothing(rig: Rig) -> None:
    async with rig.app(channels=DELETING) as app:
        await rig.cycle(app)
        rig.archive.add_post(title="Older", tags=["MEK"])
        post = rig.archive.add_post(title="Flaky", tags=["MEK"])
        await rig.cycle(app)
        rig.archive.trash_post(post)
        rig.archive.inject("status", path=page(post), status=503, times=None)
        for _ in range(4):
            await rig.cycle(app, minutes=10)
        assert rig.archive.count(path=page(post), status=503) == 4
        assert rig.telegram.changes == [] and rig.x.deleted == []
        rig.archive.clear_faults()
        rig.archive.inject("status", path=page(post), status=401, times=1)
        await rig.cycle(app, minutes=10)  # a 401 is no evidence either
        await rig.cycle(app, minutes=10)  # the first 404
        assert rig.telegram.changes == []
        await rig.cycle(app, minutes=10)  # the second
        assert [c.method for c in rig.telegram.changes] == ["deleteMessage"]


async def test_wordpress_checks_the_recent_ids_in_one_request_and_confirms_once(rig: Rig) -> None:
    async with rig.app(kind="wordpress", channels=DELETING) as app:
        await rig.cycle(app)
        kept = rig.archive.add_post(title="Kept", tags=["MEK"])
        post = rig.archive.add_post(title="Trashed", tags=["MEK"])
        await rig.cycle(app)
        assert len(rig.x.tweets) == 2
        rig.archive.reset_counters()
        include = re.compile(r"^\d+(,\d+)*$")
        await rig.cycle(app)
        checks = [r for r in rig.archive.requests if include.match(r.arg("include") or "") and r.arg("_fields") == "id"]
        assert len(checks) == 1 and set(checks[0].arg("include").split(",")) == {str(kept.id), str(post.id)}
        rig.archive.trash_post(post)
        await rig.cycle(app)  # left out of include=, its page 404: confirmed at once
        assert [c.method for c in rig.telegram.changes] == ["deleteMessage"] and len(rig.x.deleted) == 1
        assert "Trashed" in rig.x.deleted[0].text and rig.archive.count(path=page(kept)) == 0

        rig.archive.trash_post(kept)
        rig.archive.inject("status", path=page(kept), status=503, times=None)
        for _ in range(3):
            await rig.cycle(app, minutes=10)  # left out of include=, but its page answers 503: nothing
        assert rig.archive.count(path=page(kept), status=503) == 3 and len(rig.telegram.changes) == 1
        rig.archive.rest_status = 500  # the include= request failing: nothing concluded either
        unpublisher = app.poller.unpublisher
        assert unpublisher is not None
        state = await app.store.source("archive")
        assert await unpublisher.check(state, state.cache, None) == []
        rig.archive.rest_status = None
        rig.archive.clear_faults()
        await rig.cycle(app, minutes=10)
        assert [c.method for c in rig.telegram.changes] == ["deleteMessage"] * 2


async def test_telegram_deletes_only_within_48_hours_and_the_admins_are_told(rig: Rig) -> None:
    async with rig.app(channels={"tg": {"on_delete": "delete", "delete_window": "5d"}}) as app:
        await rig.cycle(app)
        rig.archive.add_post(title="Older", tags=["MEK"])
        post = rig.archive.add_post(title="Two days old", tags=["MEK"])
        await rig.cycle(app)
        rig.clock.advance(49 * 3600)
        rig.archive.trash_post(post)
        await rig.cycle(app)
        await rig.cycle(app, minutes=6)
        (row,) = await app.store.deliveries(kind="delete")
        assert (row.status, row.reason) == ("dead", "too_old") and "delete it by hand" in (row.last_error or "")
        assert rig.telegram.seen("POST") and not any(r.path.endswith("/deleteMessage") for r in rig.telegram.requests)
        assert any("a deletion could not be made" in n for n in rig.notes.texts)


# -- retraction ----------------------------------------------------------------------------------


async def test_a_retraction_removes_the_post_everywhere_and_cancels_what_waits(rig: Rig) -> None:
    async with rig.app(channels={"x": {"paused": True}}) as app:
        await rig.cycle(app)
        post = rig.archive.add_post(title="Regrettable", tags=["MEK"])
        await rig.cycle(app)  # tg and masto sent; x paused: queued
        admin = make_admin_service(app.config, app.store, clock=rig.clock)
        url = post.link(rig.archive.site)
        preview = await admin.retract(url + "?utm_source=share", actor="op@cli", via="cli", confirmed=False)
        assert [c.text for c in preview] == [
            "Regrettable: would be: deleting the message on masto, tg; cancelling what has not gone out on x"]
        assert await app.store.deliveries(kind="delete") == []  # a preview writes nothing
        changes = await admin.retract(url, actor="op@cli", via="cli")
        assert [c.done for c in changes] == [True]
        await rig.cycle(app)
        assert [c.method for c in rig.telegram.changes] == ["deleteMessage"]
        assert rig.mastodon.deletions == [rig.mastodon.statuses[0].id]
        rows = await app.store.deliveries()
        assert kinds(rows) == [("masto", "delete", "sent"), ("masto", "post", "sent"), ("tg", "delete", "sent"),
                               ("tg", "post", "sent"), ("x", "post", "dropped")]
        (line,) = [e for e in await app.store.audit_entries() if e.action == "retract"]
        assert (line.actor, line.via) == ("op@cli", "cli") and "cancelling what has not gone out on x" in line.detail
        await admin.resume("x", actor="op", via="cli")
        await rig.cycle(app)
        assert rig.x.tweets == []  # never sent


async def test_the_cli_retracts_and_lists_edit_and_delete_deliveries(rig: Rig, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the CLI reads .env from the working directory
    for var in ("TAGRELAY_STORAGE_URL", "TAGRELAY_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    rig.clock.set(datetime.now(UTC))  # the CLI writes by the real clock; the service's is a little ahead of it
    async with rig.app() as app:
        await rig.cycle(app)
        post = rig.archive.add_post(title="Said too much", tags=["MEK"])
        await rig.cycle(app)
        rig.archive.edit_post(post, title="Said too much, edited")
        await rig.cycle(app)
        path = tmp_path / "tagrelay.toml"
        path.write_text("\n".join([
            "[storage]", f"url = {json.dumps(rig.db_url)}",
            "[[sources]]", 'name = "archive"', f'url = "{rig.archive.url}/feed/"', 'kind = "rss"',
            "[[channels]]", 'name = "tg"', 'platform = "telegram"', 'chat_id = "@tagrelay_test"',
            f'api_base = "{rig.telegram.url}"',
            "[[channels]]", 'name = "masto"', 'platform = "mastodon"', f'instance = "{rig.mastodon.url}"',
            "[[channels]]", 'name = "x"', 'platform = "x"', f'api_base = "{rig.x.url}"',
            "[[subscriptions]]", 'tag = "MEK"', 'channels = ["tg", "masto", "x"]']) + "\n", encoding="utf-8")

        def cli(*args: str) -> str:
            out, err = io.StringIO(), io.StringIO()
            code = main(["--config", str(path), *args], out=out, err=err)
            assert code == 0, err.getvalue()
            return out.getvalue()

        listing = await asyncio.to_thread(cli, "deliveries", "--kind", "edit")
        assert listing.count(" edit ") == 2 and "x" not in {line.split()[1] for line in listing.splitlines()[1:]}
        url = post.link(rig.archive.site)
        dry = await asyncio.to_thread(cli, "retract", url, "--channel", "x", "--dry-run")
        assert dry == "Said too much, edited: would be: deleting the message on x\n"
        done = await asyncio.to_thread(cli, "retract", url, "--channel", "x", "--channel", "tg")
        assert done.splitlines()[0] == "Said too much, edited: deleting the message on tg, x"
        status = await asyncio.to_thread(cli, "status")
        assert "channel x: x has no edit" in status
        await rig.cycle(app)
        assert [c.method for c in rig.telegram.changes][-1] == "deleteMessage" and len(rig.x.deleted) == 1
        assert rig.mastodon.deletions == []
        audit = await asyncio.to_thread(cli, "audit")
        assert "retract" in audit and "@cli" in audit


async def test_an_x_deletion_is_paid_from_the_channel_budget(rig: Rig) -> None:
    async with rig.app(channels={"x": {"budget": "0.205 USD/day"}}) as app:  # a post with a URL is $0.20
        await rig.cycle(app)
        post = rig.archive.add_post(title="Costly", tags=["MEK"])
        await rig.cycle(app)
        assert len(rig.x.tweets) == 1
        admin = make_admin_service(app.config, app.store, clock=rig.clock)
        await admin.retract(post.link(rig.archive.site), ["x"], actor="op@cli", via="cli")
        await rig.cycle(app)  # $0.01 more does not fit today: the deletion waits for the day to turn
        (row,) = await app.store.deliveries(kind="delete")
        assert (row.status, row.reason) == ("queued", "budget") and rig.x.seen("DELETE") == []
        rig.clock.set(datetime(2026, 1, 2, 0, 1, tzinfo=UTC))
        await rig.cycle(app)
        assert len(rig.x.deleted) == 1
        (row,) = await app.store.deliveries(kind="delete")
        assert row.status == "sent"
        (line,) = (await admin.budgets())["x"]
        assert line.spent == 10_000  # the new day's spending: the deletion, $0.01
