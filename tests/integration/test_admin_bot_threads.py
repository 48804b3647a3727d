"""The admin bot with a Threads channel: /channels, /pause, /resume, /preview and /status (with the token's
remaining days) work for it like for the others. The real ``App`` and PTB ``Application`` against the fake Bot
API, a fake archive and ``FakeThreads``; the harness of test_admin_bot with a Threads channel added."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.admin.bot import AdminBot
from bot.bootstrap import build_app
from bot.publishers.threads.token import TokenFile, TokenState, fingerprint
from bot.settings import Secrets, load_config
from bot.sidecars import make_sidecars
from tests.fakes.archive import ArchiveServer
from tests.fakes.telegram_api import Chat, FakeChatBotApi
from tests.fakes.threads_api import DEFAULT_TOKEN as THREADS_TOKEN
from tests.fakes.threads_api import FakeThreads
from tests.integration.test_admin_bot import ADMIN_GROUP, ALICE, CHANNEL, TOKEN, Harness


@pytest.fixture
async def h(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Harness]:
    monkeypatch.chdir(tmp_path)
    for var in ("TAGRELAY_STORAGE_URL", "TAGRELAY_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    fake = FakeChatBotApi(TOKEN, chats=[Chat(CHANNEL, username="tagrelay_test")])
    archive = ArchiveServer(feed_size=20)
    archive.add_post(title="MEK statement", tags=["MEK"], excerpt_html="<p>A statement 😀 for the press.</p>")
    with fake, archive, FakeThreads() as threads:
        fake.private_chat(ALICE)
        fake.group(ADMIN_GROUP, "tagrelay admins")
        db = tmp_path / "tagrelay.db"
        # the token file a refresh 10 days ago left beside the database
        TokenFile(tmp_path / "threads-threads.token").save(
            TokenState(fingerprint(THREADS_TOKEN), "THAArefreshed-abc", datetime.now(UTC) + timedelta(days=50),
                       datetime.now(UTC) - timedelta(days=10)), "threads")
        path = tmp_path / "tagrelay.toml"
        path.write_text("\n".join([
            "[storage]", f"url = {json.dumps(f'sqlite+aiosqlite:///{db}')}",
            "[delivery]", "pacing = false", "[health]", "enabled = false",
            "[[sources]]", 'name = "archive"', f'url = "{archive.url}/feed/"', 'kind = "rss"', 'interval = "1h"',
            "[[channels]]", 'name = "threads"', 'platform = "threads"', f'api_base = "{threads.url}"',
            "[[subscriptions]]", 'tag = "MEK"', 'channels = ["threads"]',
            "[admin]", "enabled = true", f'api_base = "{fake.url}"', f"admin_ids = [{ALICE.id}]",
            f"admin_chat_id = {ADMIN_GROUP}",
        ]) + "\n")
        secrets = Secrets(environ={"TG_BOT_TOKEN": TOKEN, "THREADS_ACCESS_TOKEN": THREADS_TOKEN})
        config = load_config(path)
        sidecars = make_sidecars(config, secrets)
        bot = sidecars[0]
        assert isinstance(bot, AdminBot)
        app = build_app(config, secrets=secrets, sidecars=sidecars, notifier=bot)
        async with app:
            await app.run_once()  # the baseline
            await bot.start(app)
            try:
                yield Harness(fake, archive, app, bot, path)
            finally:
                await bot.stop()
        assert threads.posts == []  # the bot never posts to the channel


async def test_the_admin_bot_lists_pauses_previews_and_reports_a_threads_channel(h: Harness) -> None:
    assert "<b>threads</b> (threads) — active" in await h.say(ALICE, "/channels")
    assert await h.say(ALICE, "/pause threads token rotation") == "✅ threads: paused; its queue is kept"
    assert (await h.app.store.channel("threads")).paused
    status = await h.say(ALICE, "/status")
    assert "<b>threads</b> (threads): PAUSED" in status
    assert "<b>Notes</b>" in status and "channel threads: access token expires in 49 days" in status
    assert "refreshed 10 days ago" in status and "THAArefreshed" not in status and THREADS_TOKEN not in status
    assert (await h.say(ALICE, "/resume threads")).startswith("✅ threads: resumed")

    (preview,) = await h.ask(ALICE, "/preview MEK threads")
    [item] = await h.bot.service.preview("MEK", "threads")
    text = preview.text or ""
    assert "Preview for <b>threads</b> (threads, plain)" in text and "<pre>" in text
    assert "MEK statement" in text and f"{item.length}/500" in text
