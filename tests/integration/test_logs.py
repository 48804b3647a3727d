"""Logs of a full ``tagrelay run --once`` (a subprocess, against loopback fakes): structured, and no secret in them.

The run talks to a fake archive, Bot API, Mastodon and X with known fake
credentials in its environment, hits error paths on purpose (a rejected
Telegram message, a dropped Mastodon answer, a source behind a password that
answers 404) and must print none of the secrets, in either log format.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fakes.archive import ArchiveServer
from tests.fakes.mastodon_api import DEFAULT_TOKEN as MASTODON_TOKEN
from tests.fakes.mastodon_api import FakeMastodon
from tests.fakes.telegram_api import DEFAULT_TOKEN as TG_TOKEN
from tests.fakes.telegram_api import FakeBotApi
from tests.fakes.x_api import ACCESS_TOKEN, ACCESS_TOKEN_SECRET, BEARER_TOKEN, CONSUMER_KEY, CONSUMER_SECRET, FakeX

ROOT = Path(__file__).resolve().parents[2]
TAG = "Iraq protest against Iran’s meddling"
SOURCE_PASSWORD = "archive-basic-auth-pw-5150"
DB_PASSWORD = "Pg-Secret-Pass-8675309"
UNRELATED_SECRET = "unrelated-api-key-value-31337"

SECRETS = {
    "TG_BOT_TOKEN": TG_TOKEN,
    # a variable name that does not look secret: only the channel's token_env marks it as one
    "MASTO_ACCESS": MASTODON_TOKEN,
    "X_CONSUMER_KEY": CONSUMER_KEY,
    "X_CONSUMER_SECRET": CONSUMER_SECRET,
    "X_ACCESS_TOKEN": ACCESS_TOKEN,
    "X_ACCESS_TOKEN_SECRET": ACCESS_TOKEN_SECRET,
    "X_USER_TOKEN": BEARER_TOKEN,
    "SOME_SERVICE_API_KEY": UNRELATED_SECRET,
}
FORBIDDEN = [*SECRETS.values(), TG_TOKEN.split(":", 1)[1], SOURCE_PASSWORD, DB_PASSWORD]


@dataclass
class World:
    archive: ArchiveServer
    telegram: FakeBotApi
    mastodon: FakeMastodon
    x1: FakeX
    x2: FakeX
    config: Path
    db: Path


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with (ArchiveServer() as archive, FakeBotApi() as telegram, FakeMastodon() as mastodon, FakeX() as x1,
          FakeX() as x2):
        for i in range(3):
            archive.add_post(title=f"Protest report {i}", tags=[TAG, "Iraq"])
        archive.add_post(title="Unrelated", tags=["Weather"])
        db = tmp_path / "data" / "tagrelay.db"
        config = tmp_path / "tagrelay.toml"
        config.write_text(f"""
[storage]
url = "sqlite+aiosqlite:///{db}"

[delivery]
pacing = false

[[sources]]
name = "archive"
url = "{archive.url}/feed/"
kind = "rss"

[[sources]]
name = "locked"
url = "http://reader:{SOURCE_PASSWORD}@127.0.0.1:{archive.port}/members-only/feed/"
kind = "rss"

[[channels]]
name = "tg"
platform = "telegram"
chat_id = "@tagrelay_test"
api_base = "{telegram.url}"

[[channels]]
name = "masto"
platform = "mastodon"
instance = "{mastodon.url}"
token_env = "MASTO_ACCESS"

[[channels]]
name = "x-oauth1"
platform = "x"
api_base = "{x1.url}"

[[channels]]
name = "x-oauth2"
platform = "x"
api_base = "{x2.url}"
bearer_token_env = "X_USER_TOKEN"

[[subscriptions]]
tag = "{TAG}"
channels = ["tg", "masto", "x-oauth1", "x-oauth2"]
backfill = 2
""", encoding="utf-8")
        yield World(archive, telegram, mastodon, x1, x2, config, db)


def run_cli(tmp: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("TAGRELAY_") and k not in SECRETS}
    return subprocess.run([sys.executable, "-m", "bot", *args], cwd=tmp, env={**base, **env},
                          capture_output=True, text=True, timeout=90, check=False)


def assert_no_secret(text: str) -> None:
    leaked = [s for s in FORBIDDEN if s in text]
    assert not leaked, f"secrets in the output: {leaked}"


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_run_once_logs_one_line_per_poll_and_delivery_and_no_secret(world: World, tmp_path: Path,
                                                                    fmt: str) -> None:
    # error paths whose messages are the usual places for a token to slip out
    world.telegram.fail_next(400, {"ok": False, "error_code": 400,
                                   "description": f"Bad Request: can't parse entities (token {TG_TOKEN})"},
                             match="sendMessage")
    world.mastodon.drop_next("/api/v1/statuses", process=True)
    env = {**SECRETS, "TAGRELAY_LOG_LEVEL": "DEBUG", "TAGRELAY_HEALTH_PORT": "0"}

    result = run_cli(tmp_path, "--config", str(world.config), "run", "--once", "--log-format", fmt, env=env)

    assert result.returncode == 0, result.stderr[-3000:]
    # the credentials really were used, so a leak had every chance to happen
    assert world.telegram.messages and world.mastodon.statuses
    assert world.x1.tweets and world.x2.tweets
    assert_no_secret(result.stdout + result.stderr)

    lines = [line for line in result.stderr.splitlines() if line.strip()]
    if fmt == "json":
        records = [json.loads(line) for line in lines]  # every line is one JSON object
    else:
        records = [parse_kv(line) for line in lines if line[:4].isdigit()]
    polls = [r for r in records if r["event"] == "poll"]
    assert sorted(r["source"] for r in polls) == ["archive", "locked"]
    locked = next(r for r in polls if r["source"] == "locked")
    assert locked["outcome"] == "error" and locked["level"] in ("warning", "WARNING")
    assert "reader:***@127.0.0.1" in locked["error"]  # the URL was logged, its password was not
    deliveries = [r for r in records if r["event"] == "deliver"]
    assert {r["channel"] for r in deliveries} == {"tg", "masto", "x-oauth1", "x-oauth2"}
    assert all(str(r["delivery"]).isdigit() for r in deliveries)
    sent = [r for r in deliveries if r["status"] == "sent"]
    assert len(sent) >= 6 and all(r.get("remote_id") for r in sent)
    assert any(r["event"] == "deliver.rejected" and r["channel"] == "tg" for r in records)
    assert records[-1]["event"] == "once"


def parse_kv(line: str) -> dict[str, str]:
    """``<ts> <LEVEL> <event> k=v k="v w"`` → a dict with event and level."""
    import shlex

    ts, level, rest = line.split(None, 2)
    head, *pairs = shlex.split(rest) if "=" in rest else [rest]
    out = {"ts": ts, "level": level, "event": head}
    for pair in pairs:
        key, _, value = pair.partition("=")
        out[key] = value
    return out


def test_status_after_a_run_prints_no_secret_and_shows_the_failing_source(world: World, tmp_path: Path) -> None:
    env = {**SECRETS, "TAGRELAY_HEALTH_PORT": "0"}
    assert run_cli(tmp_path, "--config", str(world.config), "run", "--once", env=env).returncode == 0
    status = run_cli(tmp_path, "--config", str(world.config), "status", env=env)
    assert status.returncode == 0, status.stderr
    assert "locked" in status.stdout and "ERROR" in status.stdout
    assert_no_secret(status.stdout + status.stderr)
    as_json = run_cli(tmp_path, "--config", str(world.config), "status", "--json", env=env)
    assert_no_secret(as_json.stdout + as_json.stderr)
    assert json.loads(as_json.stdout)["storage"].startswith("sqlite+aiosqlite:///")


@pytest.mark.parametrize("command", [["status"], ["run", "--once"], ["run", "--once", "--log-format", "json"]])
def test_an_unreachable_database_is_reported_without_its_password(world: World, tmp_path: Path,
                                                                  command: list[str]) -> None:
    url = f"postgresql+asyncpg://tagrelay:{DB_PASSWORD}@127.0.0.1:9/tagrelay"  # port 9: nothing listens
    env = {**SECRETS, "TAGRELAY_STORAGE_URL": url, "TAGRELAY_HEALTH_PORT": "0"}
    result = run_cli(tmp_path, "--config", str(world.config), *command, env=env)
    assert result.returncode == 1
    assert "cannot open or migrate the database" in result.stderr
    assert "Traceback" not in result.stderr
    assert_no_secret(result.stdout + result.stderr)


def test_a_token_part_echoed_by_the_bot_api_is_stored_and_shown_nowhere(world: World, tmp_path: Path) -> None:
    import sqlite3

    part = TG_TOKEN.split(":", 1)[1]
    # the Bot API's error quotes only the part of the token after "123456789:": the channel is paused with it
    world.telegram.error_echoing_token_part(403, "Forbidden: bot {part} was kicked from the channel chat",
                                            times=5)
    env = {**SECRETS, "TAGRELAY_HEALTH_PORT": "0"}
    run = run_cli(tmp_path, "--config", str(world.config), "run", "--once", env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "channel.paused" in run.stderr
    assert part not in run.stdout + run.stderr

    with sqlite3.connect(world.db) as db:
        (reason,) = db.execute("SELECT paused_reason FROM channels WHERE name = 'tg'").fetchone()
        errors = [e for (e,) in db.execute("SELECT last_error FROM deliveries WHERE last_error IS NOT NULL")]
    assert reason and "was kicked from the channel chat" in reason and "403" in reason
    assert errors and not [e for e in errors if part in e]
    assert part not in reason

    for command in (["status"], ["deliveries"], ["channels", "list"]):
        for extra in ([], ["--json"]):
            shown = run_cli(tmp_path, "--config", str(world.config), *command, *extra, env=env)
            assert shown.returncode == 0, shown.stderr
            assert "kicked" in shown.stdout or command == ["deliveries"]
            assert part not in shown.stdout + shown.stderr, (command, extra)
