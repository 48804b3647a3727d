"""The CLI end to end, in-process, on the shipped example config and sample archive."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bot.cli import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of config/ in a temp dir; the database goes there too."""
    shutil.copytree(ROOT / "config", tmp_path / "config")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TAGRELAY_STORAGE_URL", f"sqlite+aiosqlite:///{tmp_path / 'data' / 'tagrelay.db'}")
    for var in ("TAGRELAY_CONFIG", "TAGRELAY_LOG_FORMAT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TAGRELAY_HEALTH_PORT", "0")
    return tmp_path


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["--config", "config/tagrelay.example.toml", *args])
    out, err = capsys.readouterr()
    return code, out, err


def console_messages(out: str) -> list[str]:
    """The bodies printed by the console publisher, one per delivery."""
    blocks = [b for b in out.split("── console ─ delivery ") if b.strip()]
    return [b.split("\n", 1)[1].strip() for b in blocks]


def test_run_once_backfills_then_restart_delivers_nothing_twice(workdir: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "run", "--once")
    assert code == 0, err
    messages = console_messages(out)
    # backfill = 2 per subscription; posts carrying both tags count once for the console channel
    assert 2 <= len(messages) <= 4
    assert len(set(messages)) == len(messages)
    assert all("https://archive.example.org/" in m for m in messages)
    assert "poll" in err and "outcome=baseline" in err
    code, out, err = cli(capsys, "run", "--once")
    assert code == 0
    assert console_messages(out) == []
    code, out, _ = cli(capsys, "deliveries", "--json")
    rows = json.loads(out)
    assert len(rows) == len(messages) and {r["status"] for r in rows} == {"sent"}


def test_status_tags_subscriptions_and_preview(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "run", "--once")[0] == 0
    code, out, _ = cli(capsys, "status", "--json")
    status = json.loads(out)
    assert code == 0 and status["problems"] == []
    assert status["sources"][0]["name"] == "archive" and status["sources"][0]["last_outcome"] == "baseline"
    assert status["channels"][0]["counts"]["sent"] >= 2
    code, out, _ = cli(capsys, "status")
    assert "OK" in out.splitlines()[0] and "archive" in out and "console" in out

    code, out, _ = cli(capsys, "tags", "--json")
    tags = {t["slug"]: t for t in json.loads(out)}
    # curly and straight apostrophes in the archive are one tag
    assert "iraq-protest-against-irans-meddling" in tags
    assert sum(1 for slug in tags if slug.startswith("iraq-protest-against-iran")) == 1
    assert tags["mek"]["posts"] >= 2

    code, out, err = cli(capsys, "subscribe", "Iraq protest against Iran's meddling", "console")
    assert code == 0 and "already subscribed" in out
    code, out, err = cli(capsys, "subscribe", "No Such Tag Anywhere", "console")
    assert code == 2 and "unknown tag" in err and "--new" in err
    code, out, err = cli(capsys, "subscribe", "Future tag", "console", "--new")
    assert code == 0 and "subscribed" in out
    code, out, _ = cli(capsys, "subscriptions", "--json")
    subs = {(s["slug"], s["origin"]) for s in json.loads(out)}
    assert ("future-tag", "cli") in subs and ("mek", "config") in subs
    code, out, _ = cli(capsys, "unsubscribe", "Future tag", "console")
    assert code == 0 and "unsubscribed" in out
    code, out, err = cli(capsys, "subscribe", "MEK", "nope")
    assert code == 2 and "unknown channel 'nope'" in err

    code, out, _ = cli(capsys, "preview", "MEK")
    assert code == 0 and "── console (console" in out and "https://archive.example.org/" in out

    code, out, _ = cli(capsys, "audit", "--json")
    actions = [e["action"] for e in json.loads(out)]
    assert actions[:2] == ["unsubscribe", "subscribe"]


def test_bad_config_exits_2_naming_the_key_and_writes_nothing(workdir: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    cfg = workdir / "config" / "tagrelay.example.toml"
    cfg.write_text(cfg.read_text().replace('interval = "30s"', 'interval = "soon"\nintervall = 5'))
    code, _, err = cli(capsys, "run", "--once")
    assert code == 2
    assert err.startswith("tagrelay: config error: sources[0].")
    assert err.count("\n") == 1
    assert not (workdir / "data").exists()


def test_unknown_channel_in_subscription_is_a_config_error(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = workdir / "config" / "tagrelay.example.toml"
    cfg.write_text(cfg.read_text().replace('channels = ["console"]', 'channels = ["consol"]', 1))
    code, _, err = cli(capsys, "status")
    assert code == 2 and "subscriptions[0].channels[0]" in err and "'consol'" in err


def test_python_dash_m_bot_is_the_same_command() -> None:
    result = subprocess.run([sys.executable, "-m", "bot", "--help"], capture_output=True, text=True, check=False,
                            timeout=60)
    assert result.returncode == 0
    assert "subscribe" in result.stdout and "status" in result.stdout


def test_a_sqlite_service_run_leaves_the_heavy_libraries_unloaded(workdir: Path) -> None:
    """The memory budget (docs/performance.md §4) depends on what the service never imports on SQLite:
    Alembic (migrations run in a child), the ORM and SQLAlchemy's asyncio extension, aiosqlite, the
    PostgreSQL dialect, python-telegram-bot (admin bot only). A fresh process, a real run. (pydantic left this
    list in issue 16: it is the configuration's library now, within the relaxed budget; docs/architecture.md.)"""
    heavy = ["alembic", "sqlalchemy.orm", "sqlalchemy.ext.asyncio", "aiosqlite", "sqlalchemy.dialects.postgresql",
             "telegram", "feedparser"]
    code = (
        "import atexit, sys\n"
        f"heavy = {heavy!r}\n"
        "atexit.register(lambda: print('LOADED', [m for m in heavy if m in sys.modules], file=sys.stderr))\n"
        "from bot.cli import main\n"
        "sys.exit(main(['--config', 'config/tagrelay.example.toml', 'run', '--once']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=workdir, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    loaded = [line for line in proc.stderr.splitlines() if line.startswith("LOADED ")]
    # feedparser too: the sample archive is well-formed, so the fast path parses all of it
    assert loaded == ["LOADED []"], proc.stderr[-2000:]
    assert "outcome=baseline" in proc.stderr  # it did run: the first cycle recorded the archive
