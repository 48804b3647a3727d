"""`tagrelay channels test`, `preview` and a real run against the three platform fakes, through the CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.cli import main
from tests.fakes import mastodon_api, x_api
from tests.fakes.archive import ArchiveServer
from tests.fakes.mastodon_api import FakeMastodon
from tests.fakes.telegram_api import DEFAULT_TOKEN as TG_TOKEN
from tests.fakes.telegram_api import FakeBotApi
from tests.fakes.x_api import FakeX

SECRETS = [TG_TOKEN, mastodon_api.DEFAULT_TOKEN, x_api.CONSUMER_SECRET, x_api.ACCESS_TOKEN,
           x_api.ACCESS_TOKEN_SECRET]


@pytest.fixture
def fakes() -> Iterator[tuple[ArchiveServer, FakeBotApi, FakeMastodon, FakeX]]:
    with ArchiveServer() as archive, FakeBotApi() as tg, FakeMastodon() as masto, FakeX() as x:
        archive.add_post(title="Q&A: <script> in \"quotes\"", tags=["MEK", "Editor’s picks"],
                         excerpt_html="<p>Protesters &amp; students marched again. Continue reading</p>")
        yield archive, tg, masto, x


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
           fakes: tuple[ArchiveServer, FakeBotApi, FakeMastodon, FakeX]) -> Path:
    archive, tg, masto, x = fakes
    monkeypatch.chdir(tmp_path)
    for var in ("TAGRELAY_STORAGE_URL", "TAGRELAY_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TG_BOT_TOKEN", TG_TOKEN)
    monkeypatch.setenv("MASTODON_TOKEN", mastodon_api.DEFAULT_TOKEN)
    monkeypatch.setenv("X_CONSUMER_KEY", x_api.CONSUMER_KEY)
    monkeypatch.setenv("X_CONSUMER_SECRET", x_api.CONSUMER_SECRET)
    monkeypatch.setenv("X_ACCESS_TOKEN", x_api.ACCESS_TOKEN)
    monkeypatch.setenv("X_ACCESS_TOKEN_SECRET", x_api.ACCESS_TOKEN_SECRET)
    path = tmp_path / "tagrelay.toml"
    path.write_text(f"""
[storage]
url = "sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"
[delivery]
pacing = false
[health]
enabled = false
[[sources]]
name = "archive"
url = "{archive.url}/"
[[channels]]
name = "news-tg"
platform = "telegram"
chat_id = "@tagrelay_test"
api_base = "{tg.url}"
[[channels]]
name = "news-masto"
platform = "mastodon"
instance = "{masto.url}"
[[channels]]
name = "news-x"
platform = "x"
api_base = "{x.url}"
[[subscriptions]]
tag = "Editor's picks"
channels = ["news-tg", "news-masto", "news-x"]
backfill = 1
""")
    return path


def run(capsys: pytest.CaptureFixture[str], config: Path, *args: str) -> tuple[int, str, str]:
    code = main(["--config", str(config), *args])
    out, err = capsys.readouterr()
    for secret in SECRETS:
        assert secret not in out and secret not in err
    return code, out, err


def test_channels_test_says_who_each_channel_posts_as(config: Path, capsys: pytest.CaptureFixture[str],
                                                      fakes: tuple[ArchiveServer, FakeBotApi, FakeMastodon, FakeX]
                                                      ) -> None:
    for name, who in (("news-tg", "@"), ("news-masto", "@tagrelay"), ("news-x", "@tagrelay_test")):
        code, out, err = run(capsys, config, "channels", "test", name)
        assert code == 0, err
        assert out.startswith(f"{name} (") and "OK, posts as" in out and who in out
    _, tg, masto, x = fakes
    assert tg.messages == [] and masto.statuses == [] and x.tweets == []  # nothing was posted


def test_a_missing_credential_names_the_channel_and_variable(config: Path, capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MASTODON_TOKEN")
    code, _, err = run(capsys, config, "channels", "test", "news-masto")
    assert code == 2
    assert "news-masto" in err and "MASTODON_TOKEN" in err


def test_a_rejected_token_is_a_clear_failure(config: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TG_BOT_TOKEN", "999:wrong-token-value-that-is-long-enough")
    code, _, err = run(capsys, config, "channels", "test", "news-tg")
    assert code == 1
    assert "news-tg" in err and "wrong-token-value" not in err


def test_run_once_publishes_everywhere_and_preview_matches(config: Path, capsys: pytest.CaptureFixture[str],
                                                           fakes: tuple[ArchiveServer, FakeBotApi, FakeMastodon, FakeX]
                                                           ) -> None:
    _, tg, masto, x = fakes
    code, _, err = run(capsys, config, "run", "--once")
    assert code == 0, err
    assert len(tg.messages) == 1 and len(masto.statuses) == 1 and len(x.tweets) == 1
    assert "Q&amp;A: &lt;script&gt; in &quot;quotes&quot;" in tg.messages[0].text  # escaped in Telegram HTML
    assert 'Q&A: <script> in "quotes"' in masto.statuses[0].text
    assert "Continue reading" not in masto.statuses[0].text
    code, out, _ = run(capsys, config, "preview", "Editor’s picks", "--json")
    items = {i["channel"]: i for i in json.loads(out)}
    assert set(items) == {"news-tg", "news-masto", "news-x"}
    assert items["news-masto"]["text"] == masto.statuses[0].text
    assert items["news-x"]["text"] == x.tweets[0].text
    assert all(i["length"] <= i["limit"] for i in items.values())
    code, out, _ = run(capsys, config, "deliveries", "--json")
    rows = json.loads(out)
    assert {r["status"] for r in rows} == {"sent"} and all(r["remote_id"] for r in rows)
