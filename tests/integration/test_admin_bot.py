"""The Telegram admin bot end to end: python-telegram-bot's real ``Application`` inside the real ``App``.

Everything is real but Telegram: the service is built with ``build_app`` from a
TOML file, polls an ``ArchiveServer`` and stores in SQLite; the admin bot long-polls
``FakeChatBotApi`` (a loopback Bot API server) for scripted updates and the
tests read its replies off the fake. Nothing is monkeypatched.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import pytest

from bot.admin.bot import AdminBot
from bot.admin.replies import COMMANDS, format_tags, split_tag_channel
from bot.admin.settings import AdminSettings, load_admin_settings
from bot.app import App
from bot.bootstrap import build_app, build_service
from bot.cli import main
from bot.domain.state import TagCount
from bot.errors import ConfigError
from bot.services.reports import TagPage
from bot.settings import Secrets, build_config, load_config
from bot.sidecars import make_admin_bot, make_sidecars
from tests.fakes.archive import ArchiveServer
from tests.fakes.telegram_api import (
    DEFAULT_CHANNEL_ID,
    DEFAULT_TOKEN,
    MAX_TEXT_LENGTH,
    Chat,
    FakeChatBotApi,
    FakeUser,
    SentMessage,
    utf16_length,
    visible_length,
)

TOKEN = DEFAULT_TOKEN
SECRET = "hook-Secret_0123456789"
ALICE = FakeUser(111, "alice", "Alice")  # admin, from [admin] admin_ids
BOB = FakeUser(222, "bob", "Bob")  # admin, from TAGRELAY_ADMIN_IDS
MALLORY = FakeUser(999, "mallory", "Mallory")  # not an admin
GHOST = 333  # an admin in the config who never opened a chat with the bot
ADMIN_GROUP = -1005550001
OTHER_GROUP = -1005550002
CHANNEL = DEFAULT_CHANNEL_ID
MEDDLING = "Iraq protest against Iran’s meddling"
DEADLINE = 15.0


# -- harness ------------------------------------------------------------------------------------


def seed(archive: ArchiveServer) -> None:
    """12 tags: mek (3 posts), iraq-protest-against-irans-meddling (2), then 10 with one post each."""
    archive.add_post(title="Protest in Baghdad", tags=[MEDDLING, "MEK"])
    archive.add_post(title="Second protest", tags=["Iraq protest against Iran's meddling"])  # same tag
    archive.add_post(title="MEK rally", tags=["MEK"])
    archive.add_post(title="MEK statement", tags=["MEK", "Editor’s picks"])
    archive.add_post(title="Questions & answers", tags=["Q&A"])
    for i in range(1, 9):
        archive.add_post(title=f"Topic post {i}", tags=[f"Topic {i:02d}"])


def write_config(tmp_path: Path, fake: FakeChatBotApi, archive: ArchiveServer, admin: dict[str, Any]) -> Path:
    table = {"enabled": True, "api_base": fake.url, "admin_ids": [ALICE.id, GHOST], "admin_chat_id": ADMIN_GROUP,
             "page_size": 5, **admin}
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'tagrelay.db'}"
    lines = [
        "[storage]", f"url = {json.dumps(db_url)}",
        "[delivery]", "pacing = false",
        "[health]", "enabled = false",
        "[[sources]]", 'name = "archive"', f'url = "{archive.url}/feed/"', 'kind = "rss"', 'interval = "1h"',
        "[[channels]]", 'name = "news-tg"', 'platform = "telegram"', 'chat_id = "@tagrelay_test"',
        f'api_base = "{fake.url}"',
        "[[channels]]", 'name = "console"', 'platform = "console"', 'stream = "stderr"',
        "[[subscriptions]]", 'tag = "MEK"', 'channels = ["console"]',
        "[admin]", *(f"{key} = {json.dumps(value)}" for key, value in table.items() if value is not None),
    ]
    path = tmp_path / "tagrelay.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def secrets(token: str = TOKEN) -> Secrets:
    return Secrets(environ={"TG_BOT_TOKEN": token, "TAGRELAY_ADMIN_IDS": str(BOB.id), "HOOK_SECRET": SECRET})


async def eventually(probe: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


@dataclass
class Harness:
    fake: FakeChatBotApi
    archive: ArchiveServer
    app: App
    bot: AdminBot
    config_path: Path

    async def ask(self, user: FakeUser, text: str, *, chat: Chat | None = None, replies: int = 1
                  ) -> list[SentMessage]:
        """Send ``text`` as ``user`` and return the bot's next ``replies`` messages in that chat."""
        chat_id = chat.id if chat is not None else user.id
        before = len(self.fake.sent_to(chat_id))
        self.fake.send(user, text, chat)
        await eventually(lambda: len(self.fake.sent_to(chat_id)) >= before + replies, f"a reply to {text!r}")
        return self.fake.sent_to(chat_id)[before:]

    async def say(self, user: FakeUser, text: str, *, chat: Chat | None = None) -> str:
        (reply,) = await self.ask(user, text, chat=chat)
        assert reply.parse_mode == "HTML"
        return reply.text or ""

    async def press(self, user: FakeUser, message: SentMessage, label: str, *, edits: bool = True
                    ) -> dict[str, Any]:
        """Press a button; wait for the callback answer (and the message edit). Returns the answer."""
        edits_before = len(self.fake.edits)
        query_id = self.fake.press(user, message, label)["callback_query"]["id"]

        def answered() -> dict[str, Any] | None:
            return next((a for a in self.fake.answers if a["callback_query_id"] == query_id), None)

        await eventually(lambda: answered() is not None, f"an answer to the {label!r} button")
        if edits:
            await eventually(lambda: len(self.fake.edits) > edits_before, f"the edit after {label!r}")
        answer = answered()
        assert answer is not None
        return answer

    async def cli(self, *args: str) -> str:
        out, err = io.StringIO(), io.StringIO()
        # every command checks that the channels' secrets are set, as `run` does: give it the bot token
        with mock.patch.dict(os.environ, {"TG_BOT_TOKEN": TOKEN}):
            code = await asyncio.to_thread(main, ["--config", str(self.config_path), *args], out=out, err=err)
        assert code == 0, err.getvalue()
        return out.getvalue()

    async def subscriptions(self) -> set[tuple[str, str, str]]:
        return {(s.tag_slug, s.channel, origin) for s, origin in await self.app.store.subscriptions()}


@asynccontextmanager
async def running(tmp_path: Path, *, start: bool = True, **admin: Any) -> AsyncIterator[Harness]:
    """Fake Bot API + archive + the real App (first poll done) + the admin bot from make_sidecars, started."""
    fake = FakeChatBotApi(TOKEN, chats=[Chat(CHANNEL, username="tagrelay_test")])
    archive = ArchiveServer(feed_size=50)
    seed(archive)
    with fake, archive:
        for user in (ALICE, BOB, MALLORY):
            fake.private_chat(user)
        fake.group(ADMIN_GROUP, "tagrelay admins")
        fake.group(OTHER_GROUP, "Somewhere else")
        path = write_config(tmp_path, fake, archive, admin)
        config = load_config(path)
        sidecars = make_sidecars(config, secrets())
        assert [s.name for s in sidecars] == ["admin-bot"]
        bot = sidecars[0]
        assert isinstance(bot, AdminBot)
        app = build_app(config, secrets=secrets(), sidecars=sidecars, notifier=bot)
        async with app:
            await app.run_once()  # the first poll: a baseline, so the tags are known
            if start:
                await bot.start(app)
            try:
                yield Harness(fake, archive, app, bot, path)
            finally:
                await bot.stop()


@pytest.fixture
async def h(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Harness]:
    monkeypatch.chdir(tmp_path)  # the CLI reads .env from the working directory
    for var in ("TAGRELAY_STORAGE_URL", "TAGRELAY_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    async with running(tmp_path) as harness:
        yield harness


# -- authorisation ------------------------------------------------------------------------------


async def test_commands_are_registered_per_admin_chat_and_strangers_are_refused(h: Harness) -> None:
    names = [c["command"] for c in h.fake.commands[f"chat:{ALICE.id}"]]
    assert names == [c.name for c in COMMANDS]
    assert {"chat:111", "chat:222", f"chat:{ADMIN_GROUP}"} <= set(h.fake.commands)
    assert f"chat:{GHOST}" not in h.fake.commands  # no chat with the bot yet: logged, not fatal
    assert h.fake.webhook is None and h.fake.seen("POST", f"/bot{TOKEN}/deleteWebhook")  # polling mode
    await eventually(lambda: h.fake.get_updates_calls >= 1, "long polling to begin")

    subs_before = await h.subscriptions()
    refusal = await h.say(MALLORY, "/subscribe MEK news-tg")
    assert "only the administrators" in refusal and "nothing was changed" in refusal
    assert f"<code>{MALLORY.id}</code>" in refusal
    group = h.fake.chats[ADMIN_GROUP]
    refusal = await h.say(MALLORY, "/pause news-tg", chat=group)
    assert "only the administrators" in refusal
    # an admin in some other group, a stranger chatting in the admin group: ignored without a word
    h.fake.send(ALICE, "/pause news-tg", h.fake.chats[OTHER_GROUP])
    h.fake.send(MALLORY, "hello everyone", group)
    h.fake.send(MALLORY, "/status@some_other_bot", group)
    assert "news-tg" in await h.say(BOB, "/channels")  # BOB (admin from the env) answered: the above were handled
    assert h.fake.sent_to(OTHER_GROUP) == []
    assert len(h.fake.sent_to(ADMIN_GROUP)) == 1
    assert await h.subscriptions() == subs_before
    assert not (await h.app.store.channel("news-tg")).paused
    assert await h.app.store.audit_entries() == []

    # a stranger pressing an admin's button in the admin group: an alert, no change, no edit
    (menu,) = await h.ask(ALICE, "/subscribe news-tg", chat=group)
    answer = await h.press(MALLORY, menu, "MEK", edits=False)
    assert answer["show_alert"] and "only administrators" in answer["text"]
    assert h.fake.edits == []
    assert await h.subscriptions() == subs_before
    assert await h.app.store.audit_entries() == []
    # ... while the admin may use it there
    await h.press(ALICE, menu, "MEK")
    assert ("mek", "news-tg", "telegram") in await h.subscriptions()


# -- subscriptions ------------------------------------------------------------------------------


async def test_tags_with_apostrophes_and_spaces_subscribe_and_show_in_the_cli(h: Harness) -> None:
    text = await h.say(ALICE, f"/subscribe {MEDDLING} console")
    assert text == f"✅ {MEDDLING} → console: subscribed"
    text = await h.say(ALICE, "/subscribe Editor's picks news-tg")  # straight apostrophe, archive has ’
    assert text == "✅ Editor’s picks → news-tg: subscribed"
    assert "already subscribed" in await h.say(BOB, "/subscribe editor’s PICKS news-tg")
    subs = await h.subscriptions()
    assert {("iraq-protest-against-irans-meddling", "console", "telegram"),
            ("editors-picks", "news-tg", "telegram")} <= subs

    listed = {(s["slug"], s["channel"], s["origin"]) for s in json.loads(await h.cli("subscriptions", "--json"))}
    assert ("iraq-protest-against-irans-meddling", "console", "telegram") in listed
    audit = json.loads(await h.cli("audit", "--json"))
    assert [(e["action"], e["via"], e["actor"]) for e in audit] == [
        ("subscribe", "telegram", "111 @alice"), ("subscribe", "telegram", "111 @alice")]
    assert audit[1]["detail"] == f"{MEDDLING} → console"
    assert "Iraq protest against Iran’s meddling" in await h.cli("tags", "--page", "1", "--limit", "2")

    text = await h.say(ALICE, "/unsubscribe Editor’s picks news-tg")
    assert text == "✅ Editor’s picks → news-tg: unsubscribed"
    text = await h.say(ALICE, "/subscribe No such tag anywhere news-tg")
    assert "unknown tag" in text and "/subscribe!" in text and "Usage: <code>/subscribe &lt;tag&gt;" in text
    assert "subscribed" in await h.say(ALICE, "/subscribe! Brand new tag news-tg")
    assert ("brand-new-tag", "news-tg", "telegram") in await h.subscriptions()
    assert ("editors-picks", "news-tg", "telegram") not in await h.subscriptions()


async def test_inline_keyboards_choose_tags_pages_and_channels(h: Harness) -> None:
    (menu,) = await h.ask(ALICE, "/subscribe")
    assert h.fake.labels(menu) == ["MEK · 3", f"{MEDDLING} · 2", "Editor’s picks · 1", "Q&A · 1", "Topic 01 · 1",
                                   "Next »", "Cancel"]
    await h.press(ALICE, menu, "Next »")
    assert "page 2" in (menu.text or "")
    assert h.fake.labels(menu)[:5] == [f"Topic {i:02d} · 1" for i in range(2, 7)]
    assert h.fake.labels(menu)[5:] == ["« Prev", "Next »", "Cancel"]
    await h.press(ALICE, menu, "Topic 05")
    assert menu.text == "Subscribe <b>Topic 05</b> to which channel?"
    assert h.fake.labels(menu) == ["news-tg (telegram)", "console (console)", "Cancel"]
    answer = await h.press(ALICE, menu, "news-tg")
    assert answer["text"] is None and not answer["show_alert"]
    assert menu.text == "✅ Topic 05 → news-tg: subscribed"
    assert h.fake.labels(menu) == ["➖ Exclude a tag…"]  # the only button left: narrow the new subscription
    assert ("topic-05", "news-tg", "telegram") in await h.subscriptions()

    # only a channel: the tag keyboard subscribes at once
    (menu,) = await h.ask(ALICE, "/subscribe console")
    assert menu.text is not None and menu.text.startswith("Subscribe <b>console</b>: choose a tag")
    await h.press(ALICE, menu, "Editor’s picks")
    assert menu.text == "✅ Editor’s picks → console: subscribed"

    # only a tag: the channel keyboard; Cancel changes nothing
    (menu,) = await h.ask(ALICE, "/subscribe Topic 07")
    await h.press(ALICE, menu, "Cancel")
    assert menu.text == "Cancelled; nothing changed."
    assert not any(slug == "topic-07" for slug, _, _ in await h.subscriptions())

    # unsubscribe from the list of subscriptions
    (menu,) = await h.ask(ALICE, "/unsubscribe news-tg")
    assert h.fake.labels(menu) == ["Topic 05 → news-tg", "Cancel"]
    await h.press(ALICE, menu, "Topic 05 → news-tg")
    assert menu.text == "✅ Topic 05 → news-tg: unsubscribed"
    assert ("topic-05", "news-tg", "telegram") not in await h.subscriptions()

    # a button nobody issued (or from before a restart)
    before = len(h.fake.answers)
    h.fake.callback(ALICE, menu, "stale:1")
    await eventually(lambda: len(h.fake.answers) > before, "the answer to a stale button")
    assert "expired" in (h.fake.answers[-1]["text"] or "")
    actions = [(e.action, e.detail) for e in reversed(await h.app.store.audit_entries())]
    assert actions == [("subscribe", "Topic 05 → news-tg"), ("subscribe", "Editor’s picks → console"),
                       ("unsubscribe", "Topic 05 → news-tg")]


async def test_tags_are_listed_with_counts_and_paged(h: Harness) -> None:
    (page,) = await h.ask(ALICE, "/tags")
    assert page.text == ("<b>Known tags</b> · page 1\n1. MEK — 3 posts\n"
                         f"2. {MEDDLING} — 2 posts\n3. Editor’s picks — 1 post\n4. Q&amp;A — 1 post\n"
                         "5. Topic 01 — 1 post")
    assert h.fake.labels(page) == ["Next »"]
    await h.press(ALICE, page, "Next »")
    assert (page.text or "").startswith("<b>Known tags</b> · page 2\n6. Topic 02 — 1 post")
    assert h.fake.labels(page) == ["« Prev", "Next »"]
    await h.press(ALICE, page, "Next »")
    assert (page.text or "").endswith("11. Topic 07 — 1 post\n12. Topic 08 — 1 post")
    assert h.fake.labels(page) == ["« Prev"]
    await h.press(ALICE, page, "« Prev")
    assert "page 2" in (page.text or "")

    text = await h.say(ALICE, "/tags iran’s")
    assert text == f"<b>Known tags</b> matching “iran’s” · page 1\n1. {MEDDLING} — 2 posts"
    text = await h.say(ALICE, "/tags <script>")  # echoed escaped: the fake refuses unknown tags in HTML
    assert "matching “&lt;script&gt;”" in text and "no tags match" in text


# -- channels, status, everything else ----------------------------------------------------------


async def test_pause_and_resume_change_the_channel_and_are_audited(h: Harness) -> None:
    assert await h.say(ALICE, "/pause news-tg maintenance window") == "✅ news-tg: paused; its queue is kept"
    chan = await h.app.store.channel("news-tg")
    assert chan.paused and chan.paused_reason == "maintenance window"
    status = await h.say(BOB, "/status")
    assert "<b>news-tg</b> (telegram): PAUSED" in status and "paused: maintenance window" in status
    assert "1 problem" in status
    assert await h.say(BOB, "/pause news-tg maintenance window") == "• news-tg: already paused"
    assert "⏸ PAUSED: maintenance window" in await h.say(BOB, "/channels")
    text = await h.say(BOB, "/resume news-tg")
    assert text == "✅ news-tg: resumed; 0 waiting deliveries go out now"
    assert not (await h.app.store.channel("news-tg")).paused

    entries = list(reversed(await h.app.store.audit_entries()))
    assert [(e.action, e.via, e.actor) for e in entries] == [("pause", "telegram", "111 @alice"),
                                                             ("resume", "telegram", "222 @bob")]
    assert entries[1].detail == "news-tg (was: maintenance window)"
    audit = await h.cli("audit")
    assert "222 @bob" in audit and "resume" in audit

    text = await h.say(ALICE, "/pause")
    assert "name the channel to pause" in text and "Usage: <code>/pause &lt;channel&gt; [reason]</code>" in text
    text = await h.say(ALICE, "/pause news-tgg")
    assert "unknown channel &#x27;news-tgg&#x27;" in text and "news-tg" in text
    assert len(await h.app.store.audit_entries()) == 2


async def test_status_sources_channels_subscriptions_help_and_unknown_commands(h: Harness) -> None:
    status = await h.say(ALICE, "/status")
    assert status.startswith("<b>tagrelay ") and "— OK</b>" in status
    assert "<b>archive</b>: ok · last poll" in status and "13 posts" in status
    assert "<b>news-tg</b> (telegram): active · queue 0 · retrying 0 · sent today 0 · failures 0" in status
    assert "<b>console</b> (console): active" in status

    sources = await h.say(ALICE, "/sources")
    assert "<b>archive</b> — rss, every 1h · 13 posts" in sources and "baseline" in sources
    assert f"{h.archive.url}/feed/" in sources
    channels = await h.say(ALICE, "/channels")
    assert "<b>news-tg</b> (telegram) — active · waiting 0 · sent 0" in channels
    subs = await h.say(ALICE, "/subscriptions")
    assert "MEK → <b>console</b> <i>(config)</i>" in subs
    assert await h.say(ALICE, "/subscriptions news-tg") == "<b>Subscriptions</b> of <b>news-tg</b>: none."

    help_text = await h.say(ALICE, "/help")
    assert "/subscribe &lt;tag&gt; &lt;channel&gt; — send posts with a tag to a channel" in help_text
    assert "<code>news-tg</code>" in help_text
    assert await h.say(ALICE, "/start") == help_text
    text = await h.say(ALICE, "/frobnicate now")
    assert text == "Unknown command <code>/frobnicate</code>. Send /help for the list of commands."
    assert "only understand commands" in await h.say(ALICE, "what's up?")
    assert "Usage: <code>/resume &lt;channel&gt;</code>" in await h.say(ALICE, "/resume a b")
    assert "Usage: <code>/retry &lt;channel|delivery id&gt;</code>" in await h.say(ALICE, "/retry")
    assert "name at most one channel" in await h.say(ALICE, "/subscriptions a b")
    group = h.fake.chats[ADMIN_GROUP]
    assert "<b>Channels</b>" in await h.say(ALICE, f"/channels@{h.fake.bot_username}", chat=group)


async def test_preview_sends_the_exact_telegram_message_and_a_pre_block_for_others(h: Harness) -> None:
    head, exact = await h.ask(ALICE, "/preview MEK news-tg", replies=2)
    [item] = await h.bot.service.preview("MEK", "news-tg")
    assert "Preview for <b>news-tg</b> (telegram, html)" in (head.text or "") and "fits" in (head.text or "")
    assert exact.text == item.text and exact.parse_mode == "HTML"
    assert "MEK statement" in (exact.text or "")

    post = next(p for p in h.archive.posts if p.title == "MEK rally")
    _, by_url = await h.ask(ALICE, f"/preview {post.link(h.archive.site)} news-tg", replies=2)
    assert "MEK rally" in (by_url.text or "") and by_url.parse_mode == "HTML"

    (other,) = await h.ask(ALICE, "/preview MEK console")
    assert "Preview for <b>console</b> (console, plain)" in (other.text or "")
    assert "<pre>" in (other.text or "") and "MEK statement" in (other.text or "")
    text = await h.say(ALICE, "/preview Nothing tagged so")
    assert "unknown tag" in text and "Usage: <code>/preview &lt;tag|post url&gt; [channel]</code>" in text

    assert await h.say(ALICE, "/retry news-tg") == "• news-tg: nothing failed, dead or unknown to retry"
    text = await h.say(ALICE, "/retry 4242")
    assert text.startswith("⚠️ unknown delivery &#x27;4242&#x27;") and "Usage: <code>/retry" in text
    assert await h.app.store.audit_entries() == []


# -- the service sees what the bot changed ------------------------------------------------------


async def test_a_subscription_by_command_is_delivered_on_the_next_poll_cycle(h: Harness) -> None:
    assert "subscribed" in await h.say(ALICE, "/subscribe Topic 03 news-tg")
    h.archive.add_post(title="Topic 03, part two", tags=["Topic 03"])
    report = await h.app.run_once()
    assert [d.channel for d in report.deliveries] == ["news-tg"]
    posted = [m for m in h.fake.sent_to(CHANNEL) if "Topic 03, part two" in (m.text or "")]
    assert len(posted) == 1 and posted[0].parse_mode == "HTML"
    status = await h.say(ALICE, "/status")
    assert "<b>news-tg</b> (telegram): active · queue 0 · retrying 0 · sent today 1" in status


async def test_a_channel_paused_by_an_error_is_announced_to_the_admins(
        h: Harness, caplog: pytest.LogCaptureFixture) -> None:
    assert "subscribed" in await h.say(ALICE, "/subscribe MEK news-tg")
    h.fake.error(403, "Forbidden: bot was kicked from the channel chat", match="sendMessage")
    h.archive.add_post(title="MEK press conference", tags=["MEK"])
    alice_before = len(h.fake.sent_to(ALICE.id))
    with caplog.at_level(logging.WARNING, logger="tagrelay.admin"):
        await h.app.run_once()  # the announcement is sent (or fails) before delivery goes on
    chan = await h.app.store.channel("news-tg")
    assert chan.paused and "kicked" in (chan.paused_reason or "")
    for chat_id in (ALICE.id, BOB.id, ADMIN_GROUP):
        note = h.fake.sent_to(chat_id)[-1]
        assert (note.text or "").startswith("⚠️ Channel news-tg paused (channel error): ")
        assert "/resume news-tg" in (note.text or "") and note.parse_mode == "HTML"
    assert len(h.fake.sent_to(ALICE.id)) == alice_before + 1
    # the admin who never opened a chat cannot be told: logged once, nothing retried, nothing raised
    failed = [r for r in caplog.records if r.getMessage() == "admin.announce_failed"]
    assert [r.kv["chat_id"] for r in failed] == [GHOST]  # type: ignore[attr-defined]
    assert "PAUSED" in await h.say(ALICE, "/status")


# -- replies Telegram accepts --------------------------------------------------------------------

HUGE = "Ab😀" * 3400  # one 10,200-character word: 13,600 UTF-16 code units
BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def assert_fits(message: SentMessage) -> str:
    """The reply's text, after checking Telegram took it as it is: valid HTML within 4,096 UTF-16 units."""
    text = message.text or ""
    length, problem = visible_length(text, message.parse_mode, utf16=True)
    assert problem is None and 0 < length <= MAX_TEXT_LENGTH, (length, problem)
    assert "Something went wrong" not in text
    assert not BIDI & set(text), "a bidi control reached the admin's chat"
    return text


@pytest.mark.parametrize("command", [
    f"/subscribe {HUGE}",                # asks for the channel, quoting the tag
    f"/subscribe {HUGE} news-tg",        # unknown tag
    f"/subscribe! {HUGE} news-tg",       # a new tag: subscribed, and the change quotes it
    f"/unsubscribe {HUGE} news-tg",      # was not subscribed
    f"/pause {HUGE}",                    # unknown channel
    f"/pause news-tg {HUGE}",            # paused with a huge reason, which /channels and /status quote
    f"/tags {HUGE}",                     # the search is quoted
    f"/preview {HUGE}",                  # unknown tag
    f"/retry {HUGE}",                    # unknown channel
])
async def test_replies_to_a_10000_character_argument_fit_telegram_and_say_what_was_cut(
        h: Harness, command: str) -> None:
    assert utf16_length(command) > 2 * MAX_TEXT_LENGTH
    replies = [assert_fits((await h.ask(ALICE, command))[0])]
    for view in ("/channels", "/status", "/subscriptions", "/tags Ab"):
        replies.append(assert_fits((await h.ask(ALICE, view))[0]))
    quoting = [r for r in replies if HUGE[:50] in r]
    assert quoting, "the argument was quoted somewhere"
    for text in quoting:  # quoted, but only its beginning, and saying so
        assert "… (cut)" in text and HUGE[:300] not in text


async def test_bidi_controls_in_arguments_and_stored_text_are_shown_neutralised(h: Harness) -> None:
    evil = "Evil\u202eGat\u2066x"
    text = assert_fits((await h.ask(ALICE, f"/subscribe! {evil} news-tg"))[0])
    assert "subscribed" in text and "Evil\\u202eGat\\u2066x" in text
    text = assert_fits((await h.ask(ALICE, "/pause news-tg because \u202dmaintenance\u202c"))[0])
    assert "paused" in text
    for view in ("/channels", "/status", "/subscriptions", f"/unsubscribe {evil}"):
        shown = assert_fits((await h.ask(ALICE, view))[0])
        assert "\\u202" in shown or "\\u2066" in shown, (view, shown)
    text = assert_fits((await h.ask(ALICE, f"/pause {evil}"))[0])
    assert "unknown channel" in text


# -- lifecycle, webhook, config -----------------------------------------------------------------


async def test_a_rejected_token_stops_the_start_with_a_config_error(h: Harness) -> None:
    other = AdminBot(h.bot.settings, token="999:AAWrongTokenWrongTokenWrongToken")
    with pytest.raises(ConfigError) as info:
        await other.start(h.app)
    assert info.value.key == "admin.token_env" and "rejected" in info.value.reason
    assert not other.up
    assert h.app.parts.notifier is h.bot  # the running bot still announces
    before = len(h.fake.sent_to(ALICE.id))
    await h.app.parts.notifier.notify("Channel x paused")
    assert [m.text for m in h.fake.sent_to(ALICE.id)[before:]] == ["⚠️ Channel x paused"]


async def test_an_unreachable_telegram_does_not_stop_the_service_and_the_bot_keeps_trying(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with running(tmp_path, start=False) as h:
        h.fake.error(502, "Bad Gateway", match="getMe", times=2)
        h.bot.retry_delays = (0.05,)
        with caplog.at_level(logging.WARNING, logger="tagrelay.admin"):
            await h.bot.start(h.app)  # no exception: polling and delivery must go on without the admin bot
            assert not h.bot.up
            assert h.app.parts.notifier is h.bot
            await h.app.parts.notifier.notify("Channel x paused")  # dropped (logged), not raised
            await eventually(lambda: h.bot.up, "the admin bot to connect on a later attempt")
        events = [r.getMessage() for r in caplog.records]
        assert events.count("admin.unreachable") == 2 and "admin.announcement_dropped" in events
        assert "<b>Channels</b>" in await h.say(ALICE, "/channels")


async def test_run_forever_starts_the_admin_bot_and_stops_it(tmp_path: Path) -> None:
    fake = FakeChatBotApi(TOKEN, chats=[Chat(CHANNEL, username="tagrelay_test")])
    archive = ArchiveServer()
    seed(archive)
    with fake, archive:
        fake.private_chat(ALICE)
        # only ALICE (and BOB from the env), no admin group
        config = load_config(write_config(tmp_path, fake, archive, {"admin_ids": [ALICE.id], "admin_chat_id": None}))
        app = build_service(config, secrets())  # what `tagrelay run` builds
        [bot] = app.parts.sidecars
        assert isinstance(bot, AdminBot)
        async with app:
            task = asyncio.create_task(app.run_forever())
            try:
                await eventually(lambda: bot.up and app.running, "the service and the admin bot to start")
                assert app.parts.notifier is bot
                fake.send(ALICE, "/status")
                await eventually(lambda: len(fake.sent_to(ALICE.id)) == 1, "the /status reply")
                assert "<b>archive</b>" in (fake.sent_to(ALICE.id)[0].text or "")
            finally:
                app.stop_event.set()
                await asyncio.wait_for(task, DEADLINE)
        assert not bot.up
        await bot.notify("Channel x paused")  # after the stop: dropped (logged), nothing sent, nothing raised
        assert len(fake.sent_to(ALICE.id)) == 1


async def test_webhook_mode_accepts_only_updates_with_the_secret_token(tmp_path: Path) -> None:
    async with running(tmp_path, mode="webhook", webhook_url="https://bot.example.org/tg/hook",
                       webhook_port=0, secret_token_env="HOOK_SECRET") as h:
        assert h.fake.webhook == {"url": "https://bot.example.org/tg/hook", "secret_token": SECRET,
                                  "allowed_updates": ["message", "callback_query"]}
        assert h.fake.get_updates_calls == 0
        port = h.bot.webhook_port
        assert port
        update = h.fake.message_update(ALICE, "/channels")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            assert (await client.post("/tg/hook", json=update)).status_code == 403
            wrong = {"X-Telegram-Bot-Api-Secret-Token": SECRET + "x"}
            assert (await client.post("/tg/hook", json=update, headers=wrong)).status_code == 403
            right = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
            assert (await client.post("/elsewhere", json=update, headers=right)).status_code == 404
            assert (await client.get("/tg/hook", headers=right)).status_code == 405
            assert (await client.post("/tg/hook", content=b"{not json", headers=right)).status_code == 400
            assert h.fake.sent_to(ALICE.id) == []  # nothing got through
            resp = await client.post("/tg/hook", json=update, headers=right)
            assert resp.status_code == 200
        await eventually(lambda: len(h.fake.sent_to(ALICE.id)) == 1, "the reply to a webhook update")
        assert "<b>news-tg</b>" in (h.fake.sent_to(ALICE.id)[0].text or "")


async def test_webhook_mode_buttons_work_and_hostile_bodies_are_refused(tmp_path: Path,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    async with running(tmp_path, mode="webhook", webhook_url="https://bot.example.org/tg/hook",
                       webhook_port=0, secret_token_env="HOOK_SECRET") as h:
        right = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{h.bot.webhook_port}", timeout=DEADLINE) as client:
            async def post(update: dict[str, Any]) -> None:
                assert (await client.post("/tg/hook", json=update, headers=right)).status_code == 200

            # a button pressed in webhook mode means what it meant when it was sent
            await post(h.fake.message_update(ALICE, "/subscribe Topic 05"))
            await eventually(lambda: len(h.fake.sent_to(ALICE.id)) == 1, "the channel keyboard")
            (menu,) = h.fake.sent_to(ALICE.id)
            button = next(b for row in h.fake.keyboard(menu) for b in row if b["text"].startswith("console"))
            await post(h.fake.callback(ALICE, menu, button["callback_data"]))  # (queued too: never polled here)
            await eventually(lambda: len(h.fake.edits) == 1, "the edit after the button")
            assert menu.text == "✅ Topic 05 → console: subscribed"
            assert ("topic-05", "console", "telegram") in await h.subscriptions()

            # nested deeper than the JSON parser goes, larger than an update can be: refused, nothing logged as a bug
            with caplog.at_level(logging.WARNING):
                deep = await client.post("/tg/hook", content=b"[" * 200_000 + b"]" * 200_000, headers=right)
                huge = await client.post("/tg/hook", content=b'{"update_id": 1, "x": "' + b"a" * (2 << 20) + b'"}',
                                         headers=right)
            assert (deep.status_code, huge.status_code) == (400, 413)
            assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
            assert "ok" in (await client.post("/tg/hook", json=h.fake.message_update(ALICE, "/help"),
                                              headers=right)).text  # still serving


def test_the_admin_table_defaults_and_env_admins() -> None:
    settings = load_admin_settings(None)
    assert settings == AdminSettings()
    assert (settings.enabled, settings.mode, settings.page_size, settings.token_env, settings.api_base) == (
        False, "polling", 10, "TG_BOT_TOKEN", "https://api.telegram.org")
    env = {"TAGRELAY_ADMIN_IDS": " 2, 1 ,3,", "TG_BOT_TOKEN": TOKEN}
    settings = load_admin_settings({"enabled": True, "admin_ids": [1], "api_base": "http://127.0.0.1:9/"}, env.get)
    assert settings.admin_ids == (1, 2, 3) and settings.api_base == "http://127.0.0.1:9"
    assert make_admin_bot({"admin_ids": [1]}, env.get) is None  # not enabled
    bot = make_admin_bot({"enabled": True}, env.get)
    assert isinstance(bot, AdminBot) and bot.admins == {1, 2, 3} and TOKEN not in repr(bot)
    ok = load_admin_settings({"enabled": True, "admin_ids": [1], "mode": "webhook",
                              "webhook_url": "https://example.org/tg/hook", "secret_token_env": "HOOK"},
                             {**env, "HOOK": SECRET}.get)
    assert ok.webhook_path == "/tg/hook"
    with pytest.raises(ConfigError) as info:
        AdminBot(ok, token=TOKEN)  # webhook mode without a secret
    assert info.value.key == "admin.secret_token_env"


def test_without_an_admin_table_the_admin_variables_are_not_read(tmp_path: Path) -> None:
    env = {"TAGRELAY_ADMIN_IDS": "alice", "TAGRELAY_HEALTH_PORT": "0"}
    assert make_admin_bot(None, env.get) is None
    raw: dict[str, object] = {"storage": {"url": f"sqlite+aiosqlite:///{tmp_path / 't.db'}"}}
    config = build_config(raw)
    assert config.admin is None
    assert [s.name for s in make_sidecars(config, Secrets(environ=env))] == ["health"]
    with pytest.raises(ConfigError) as info:  # ... and with one, a bad value is a config error
        make_sidecars(build_config({**raw, "admin": {}}), Secrets(environ=env))
    assert info.value.key == "TAGRELAY_ADMIN_IDS"


@pytest.mark.parametrize(("raw", "env", "key"), [
    ({"page_size": 0}, {}, "admin.page_size"),
    ({"page_size": 51}, {}, "admin.page_size"),
    ({"mode": "push"}, {}, "admin.mode"),
    ({"admin_ids": ["alice"]}, {}, "admin.admin_ids"),
    ({"admin_ids": [-5]}, {}, "admin.admin_ids"),
    ({"admin_chat_id": 42}, {}, "admin.admin_chat_id"),
    ({"webhook_url": "http://example.org/hook"}, {}, "admin.webhook_url"),
    ({"webhook_port": 70000}, {}, "admin.webhook_port"),
    ({"token_env": "not a name"}, {}, "admin.token_env"),
    ({"api_base": "ftp://x"}, {}, "admin.api_base"),
    ({"tokn_env": "X"}, {}, "admin.tokn_env"),
    ([1], {}, "admin"),
    ({}, {"TAGRELAY_ADMIN_IDS": "alice"}, "TAGRELAY_ADMIN_IDS"),
    ({"enabled": True, "admin_ids": [1]}, {}, "admin.token_env"),
    ({"enabled": True}, {"TG_BOT_TOKEN": TOKEN}, "admin.admin_ids"),
    ({"enabled": True, "admin_ids": [1], "mode": "webhook"}, {"TG_BOT_TOKEN": TOKEN}, "admin.webhook_url"),
    ({"enabled": True, "admin_ids": [1], "mode": "webhook", "webhook_url": "https://e.org/h"},
     {"TG_BOT_TOKEN": TOKEN}, "admin.secret_token_env"),
    ({"enabled": True, "admin_ids": [1], "mode": "webhook", "webhook_url": "https://e.org/h"},
     {"TG_BOT_TOKEN": TOKEN, "TAGRELAY_ADMIN_WEBHOOK_SECRET": "has spaces"}, "admin.secret_token_env"),
])
def test_bad_admin_values_name_their_key(raw: Any, env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_admin_settings(raw, env.get)
    assert info.value.key == key


def test_the_last_word_is_the_channel_only_when_it_names_one() -> None:
    channels = ["news-tg", "console"]
    assert split_tag_channel("Editor’s picks news-tg", channels) == ("Editor’s picks", "news-tg")
    assert split_tag_channel("Editor’s  picks", channels) == ("Editor’s picks", None)
    assert split_tag_channel("news-tg", channels) == ("", "news-tg")
    assert split_tag_channel("", channels) == ("", None)
    page = TagPage(items=[TagCount("a-b", "A <b>", 1)], page=1, size=10, search="x&y", has_next=False)
    assert format_tags(page) == "<b>Known tags</b> matching “x&amp;y” · page 1\n1. A &lt;b&gt; — 1 post"


async def test_retract_asks_first_and_removes_the_post_from_its_channels(h: Harness) -> None:
    assert "subscribed" in await h.say(ALICE, "/subscribe Topic 03 news-tg")
    post = h.archive.add_post(title="Topic 03, retracted", tags=["Topic 03"])
    await h.app.run_once()
    url = post.link(h.archive.site)
    assert any("Topic 03, retracted" in (m.text or "") for m in h.fake.sent_to(CHANNEL))

    (ask,) = await h.ask(ALICE, f"/retract {url}")
    assert "Retract this post?" in (ask.text or "") and "deleting the message on news-tg" in (ask.text or "")
    assert h.fake.labels(ask) == ["Retract", "Cancel"]
    await h.press(ALICE, ask, "Cancel")
    assert "Cancelled; nothing changed." in (h.fake.edits[-1]["text"] or "")
    assert await h.app.store.deliveries(kind="delete") == []  # asking changes nothing

    (ask,) = await h.ask(BOB, f"/retract {url} news-tg")
    await h.press(BOB, ask, "Retract")
    assert "✅ Topic 03, retracted: deleting the message on news-tg" in (h.fake.edits[-1]["text"] or "")
    await h.app.run_once()
    assert [(c.method, c.chat_id) for c in h.fake.changes] == [("deleteMessage", CHANNEL)]
    (line,) = [e for e in await h.app.store.audit_entries() if e.action == "retract"]
    assert (line.actor, line.via) == ("222 @bob", "telegram")
    assert "delete" in await h.cli("deliveries", "--kind", "delete")

    text = await h.say(ALICE, f"/retract {url}x")
    assert "unknown post" in text and "Usage: <code>/retract" in text
    assert "name the post by its link" in await h.say(ALICE, "/retract")
