"""The admin bot with a Bluesky channel: /channels lists it, /preview shows its record text, /pause and
/resume work, and a revoked app password pauses it and tells the admin chat (nothing secret in it). The
generic commands need nothing of the platform; this checks they hold for it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.admin.bot import AdminBot
from bot.bootstrap import build_app
from bot.settings import Secrets, load_config
from bot.sidecars import make_sidecars
from tests.fakes.archive import ArchiveServer
from tests.fakes.bluesky_api import APP_PASSWORD, HANDLE, FakeBluesky
from tests.fakes.telegram_api import DEFAULT_CHANNEL_ID, Chat, FakeChatBotApi
from tests.integration.test_admin_bot import ADMIN_GROUP, ALICE, TOKEN, Harness, eventually


def write_config(tmp_path: Path, tg: FakeChatBotApi, archive: ArchiveServer, bsky: FakeBluesky) -> Path:
    path = tmp_path / "tagrelay.toml"
    path.write_text("\n".join([
        "[storage]", f"url = {json.dumps('sqlite+aiosqlite:///' + str(tmp_path / 'tagrelay.db'))}",
        "[delivery]", "pacing = false",
        "[health]", "enabled = false",
        "[[sources]]", 'name = "archive"', f'url = "{archive.url}/feed/"', 'kind = "rss"', 'interval = "1h"',
        "[[channels]]", 'name = "bsky"', 'platform = "bluesky"', f'handle = "{HANDLE}"', f'service = "{bsky.url}"',
        "[[subscriptions]]", 'tag = "MEK"', 'channels = ["bsky"]',
        "[admin]", "enabled = true", f'api_base = "{tg.url}"', f"admin_ids = [{ALICE.id}]",
        f"admin_chat_id = {ADMIN_GROUP}",
    ]) + "\n", encoding="utf-8")
    return path


@pytest.fixture
async def h(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Harness, FakeBluesky]]:
    monkeypatch.chdir(tmp_path)
    for var in ("TAGRELAY_STORAGE_URL", "TAGRELAY_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    tg = FakeChatBotApi(TOKEN, chats=[Chat(DEFAULT_CHANNEL_ID, username="tagrelay_test")])
    with tg, ArchiveServer() as archive, FakeBluesky() as bsky:
        tg.private_chat(ALICE)
        tg.group(ADMIN_GROUP, "tagrelay admins")
        archive.add_post(title="Before", tags=["MEK"])
        path = write_config(tmp_path, tg, archive, bsky)
        secrets = Secrets(environ={"TG_BOT_TOKEN": TOKEN, "BLUESKY_APP_PASSWORD": APP_PASSWORD})
        config = load_config(path)
        [bot] = make_sidecars(config, secrets)
        assert isinstance(bot, AdminBot)
        app = build_app(config, secrets=secrets, sidecars=[bot], notifier=bot)
        async with app:
            await app.run_once()  # the baseline
            await bot.start(app)
            try:
                yield Harness(tg, archive, app, bot, path), bsky
            finally:
                await bot.stop()


async def test_the_admin_bot_runs_a_bluesky_channel(h: tuple[Harness, FakeBluesky]) -> None:
    harness, bsky = h
    assert "bsky" in await harness.say(ALICE, "/channels")
    preview = await harness.say(ALICE, "/preview MEK bsky")
    assert "Before" in preview and "bluesky" in preview
    assert "link on the link card, not in the text" in preview  # the text has no link: the card does
    assert await harness.say(ALICE, "/pause bsky maintenance") == "✅ bsky: paused; its queue is kept"
    harness.archive.add_post(title="While paused", tags=["MEK"])
    await harness.app.run_once()
    assert bsky.created == [] and bsky.logins == 0
    assert await harness.say(ALICE, "/resume bsky") == "✅ bsky: resumed; 1 waiting deliveries go out now"
    await harness.app.run_once()
    assert [c.record["text"] for c in bsky.created] == ["While paused"]
    bsky.revoke_app_password()
    harness.archive.add_post(title="After the revocation", tags=["MEK"])
    await harness.app.run_once()
    await eventually(lambda: any("bsky paused" in (m.text or "") for m in harness.fake.sent_to(ADMIN_GROUP)),
                     "the notice in the admin chat")
    notice = next(m.text or "" for m in harness.fake.sent_to(ADMIN_GROUP) if "bsky paused" in (m.text or ""))
    assert "BLUESKY_APP_PASSWORD" in notice and "Invalid identifier or password" in notice
    for secret in bsky.live_secrets():
        assert secret not in notice
    assert "PAUSED" in await harness.say(ALICE, "/channels")
    assert len(bsky.created) == 1
