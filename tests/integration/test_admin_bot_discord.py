"""The Telegram admin bot with a Discord channel: it lists, pauses, resumes and previews it like any other, and
a Discord webhook that is gone pauses the channel and is announced to the admins (without its URL).

The same harness as test_admin_bot.py (python-telegram-bot's real ``Application`` inside the real ``App``,
``FakeChatBotApi`` for Telegram, an ``ArchiveServer``), plus ``FakeDiscord`` for the channel.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from bot.admin.bot import AdminBot
from bot.bootstrap import build_app
from bot.settings import Secrets, load_config
from bot.sidecars import make_sidecars
from tests.fakes.archive import ArchiveServer
from tests.fakes.discord_api import FakeDiscord
from tests.fakes.telegram_api import Chat, FakeChatBotApi
from tests.integration.test_admin_bot import (
    ADMIN_GROUP,
    ALICE,
    BOB,
    CHANNEL,
    GHOST,
    MALLORY,
    TOKEN,
    Harness,
    seed,
)


def write_config(tmp_path: Path, fake: FakeChatBotApi, archive: ArchiveServer, discord: FakeDiscord) -> Path:
    lines = [
        "[storage]", f"url = {json.dumps('sqlite+aiosqlite:///' + str(tmp_path / 'tagrelay.db'))}",
        "[delivery]", "pacing = false",
        "[health]", "enabled = false",
        "[[sources]]", 'name = "archive"', f'url = "{archive.url}/feed/"', 'kind = "rss"', 'interval = "1h"',
        "[[channels]]", 'name = "news-dc"', 'platform = "discord"', f'api_base = "{discord.api_base}"',
        "[admin]", "enabled = true", f'api_base = "{fake.url}"', f"admin_ids = [{ALICE.id}, {GHOST}]",
        f"admin_chat_id = {ADMIN_GROUP}",
    ]
    path = tmp_path / "tagrelay.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@asynccontextmanager
async def running(tmp_path: Path) -> AsyncIterator[tuple[Harness, FakeDiscord]]:
    fake = FakeChatBotApi(TOKEN, chats=[Chat(CHANNEL, username="tagrelay_test")])
    archive = ArchiveServer(feed_size=50)
    seed(archive)
    with fake, archive, FakeDiscord() as discord:
        for user in (ALICE, BOB, MALLORY):
            fake.private_chat(user)
        fake.group(ADMIN_GROUP, "tagrelay admins")
        path = write_config(tmp_path, fake, archive, discord)
        secrets = Secrets(environ={"TG_BOT_TOKEN": TOKEN, "TAGRELAY_ADMIN_IDS": str(BOB.id),
                                   "DISCORD_WEBHOOK_URL": discord.webhook_url})
        config = load_config(path)
        [bot] = make_sidecars(config, secrets)
        assert isinstance(bot, AdminBot)
        app = build_app(config, secrets=secrets, sidecars=[bot], notifier=bot)
        async with app:
            await app.run_once()  # the baseline: the tags are known, nothing sent
            await bot.start(app)
            try:
                yield Harness(fake, archive, app, bot, path), discord
            finally:
                await bot.stop()


@pytest.fixture
async def h(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Harness, FakeDiscord]]:
    monkeypatch.chdir(tmp_path)
    for var in ("TAGRELAY_STORAGE_URL", "TAGRELAY_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    async with running(tmp_path) as pair:
        yield pair


async def test_the_bot_lists_pauses_resumes_and_previews_a_discord_channel(
        h: tuple[Harness, FakeDiscord]) -> None:
    harness, discord = h
    assert "<b>news-dc</b> (discord) — active" in await harness.say(ALICE, "/channels")
    assert await harness.say(ALICE, "/pause news-dc moving servers") == "✅ news-dc: paused; its queue is kept"
    assert "<b>news-dc</b> (discord): PAUSED" in await harness.say(BOB, "/status")
    assert "resumed" in await harness.say(BOB, "/resume news-dc")

    (preview,) = await harness.ask(ALICE, "/preview MEK news-dc")
    text = preview.text or ""
    assert "Preview for <b>news-dc</b> (discord, markdown)" in text and "fits" in text
    assert "<pre>" in text and "MEK statement" in text
    assert discord.messages == []  # a preview sends nothing to Discord


async def test_a_deleted_webhook_pauses_the_channel_and_the_admins_are_told(h: tuple[Harness, FakeDiscord]) -> None:
    harness, discord = h
    assert "subscribed" in await harness.say(ALICE, "/subscribe MEK news-dc")
    discord.delete_webhook()
    harness.archive.add_post(title="MEK press conference", tags=["MEK"])
    await harness.app.run_once()
    chan = await harness.app.store.channel("news-dc")
    assert chan.paused and "no longer exists" in (chan.paused_reason or "")
    for chat_id in (ALICE.id, BOB.id, ADMIN_GROUP):
        note = harness.fake.sent_to(chat_id)[-1].text or ""
        assert note.startswith("⚠️ Channel news-dc paused (credentials): ")
        assert "DISCORD_WEBHOOK_URL" in note and "/resume news-dc" in note
        assert discord.token not in note and discord.webhook_url not in note
    assert "PAUSED" in await harness.say(ALICE, "/status")

    discord.restore_webhook()
    assert "1 waiting" in await harness.say(ALICE, "/resume news-dc")
    await harness.app.run_once()
    [message] = discord.messages
    assert message.embeds[0]["title"] == "MEK press conference"
