"""Issue 15, defect 6: `config check` and `run --once` agree on every bad config.

Each bad config from the defect (and more) is given to the real CLI in a fresh process: both commands exit 2
with one stderr line naming the key, no traceback, and no database file is created.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

BASE = """
[storage]
url = "sqlite+aiosqlite:///{db}"
lease_ttl = {lease_ttl}

[delivery]
account_limits = {{ console = {account_limit} }}

[health]
{health}

[[sources]]
name = "archive"
url = "sample-archive.xml"
interval = {interval}

[[channels]]
name = "console"
platform = "console"
rate_limit = {rate_limit}

{extra}

[[subscriptions]]
tag = "MEK"
channels = ["console"]
backfill = 1
"""

GOOD = {"lease_ttl": '"60s"', "account_limit": '"30/s"', "health": "enabled = false", "interval": '"30s"',
        "rate_limit": '"1/s"', "extra": ""}

# (id, what to change in GOOD, extra environment, what stderr's one line starts with after "config error: ")
CASES: list[tuple[str, dict[str, str], dict[str, str], str]] = [
    ("interval-1e308", {"interval": "1e308"}, {}, "sources[0].interval: "),
    ("interval-inf", {"interval": "inf"}, {}, "sources[0].interval: "),
    ("interval-nan", {"interval": "nan"}, {}, "sources[0].interval: "),
    ("interval-int64-max", {"interval": "9223372036854775807"}, {}, "sources[0].interval: "),
    ("interval-huge-days", {"interval": '"99999999999999999999d"'}, {}, "sources[0].interval: "),
    ("interval-zero", {"interval": "0"}, {}, "sources[0].interval: "),
    ("lease-ttl-huge", {"lease_ttl": "1e308"}, {}, "storage.lease_ttl: "),
    ("rate-lots", {"rate_limit": '"lots"'}, {}, "channels[0].rate_limit: "),
    ("rate-zero", {"rate_limit": '"0/s"'}, {}, "channels[0].rate_limit: "),
    ("rate-negative", {"rate_limit": '"-1/m"'}, {}, "channels[0].rate_limit: "),
    ("rate-overflow", {"rate_limit": '"1e309/s"'}, {}, "channels[0].rate_limit: "),
    ("account-limit-lots", {"account_limit": '"lots"'}, {}, "delivery.account_limits.console: "),
    ("health-port-99999", {"health": "port = 99999"}, {}, "health.port: "),
    ("health-port-negative", {"health": "port = -1"}, {}, "health.port: "),
    ("health-bogus-key", {"health": "bogus_key = 1"}, {}, "health.bogus_key: "),
    ("health-port-env", {"health": ""}, {"TAGRELAY_HEALTH_PORT": "²"}, "TAGRELAY_HEALTH_PORT: "),
    ("token-not-set", {"extra": '[[channels]]\nname = "tg"\nplatform = "telegram"\nchat_id = "@tagrelay_test"\n'
                                'token_env = "TAGRELAY_E2E_UNSET_TOKEN"'}, {},
     "channels[1]: channel 'tg': environment variable TAGRELAY_E2E_UNSET_TOKEN is not set"),
    ("unknown-table", {"extra": "[telegram_admin]\nenabled = true"}, {}, "telegram_admin: "),
    ("hashtags-huge-int", {"extra": "", "rate_limit": '"1/s"\nmax_hashtags = ' + "9" * 400}, {},
     "channels[0].max_hashtags: "),
    ("nested-5000", {"extra": "deep = " + "[" * 5000 + "]" * 5000}, {}, ""),
]


def run_cli(folder: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot", "--config", "tagrelay.toml", *args], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def environment(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAGRELAY_")}
    env.update({"PYTHONPATH": str(ROOT), **extra})
    return env


def write(folder: Path, change: dict[str, str]) -> Path:
    shutil.copy(ROOT / "config" / "sample-archive.xml", folder / "sample-archive.xml")
    db = folder / "data" / "tagrelay.db"
    (folder / "tagrelay.toml").write_text(BASE.format(db=db, **{**GOOD, **change}), encoding="utf-8")
    return db


def test_the_good_config_passes_both_commands(tmp_path: Path) -> None:
    """The control: the same file without the fault is accepted, and `run --once` creates the database."""
    db = write(tmp_path, {})
    env = environment({})
    check = run_cli(tmp_path, env, "config", "check")
    assert check.returncode == 0 and "OK" in check.stdout, check.stderr
    assert not db.exists()
    once = run_cli(tmp_path, env, "run", "--once")
    assert once.returncode == 0, once.stderr
    assert db.exists()


@pytest.mark.parametrize(("change", "extra_env", "starts"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_config_check_and_run_once_refuse_the_same_bad_config(tmp_path: Path, change: dict[str, str],
                                                              extra_env: dict[str, str], starts: str) -> None:
    db = write(tmp_path, change)
    env = environment(extra_env)
    for command in (["config", "check"], ["run", "--once"]):
        proc = run_cli(tmp_path, env, *command)
        where = f"{' '.join(command)}: {proc.stderr[-1500:]}"
        assert proc.returncode == 2, where
        assert "Traceback" not in proc.stderr, where
        assert proc.stderr.count("\n") == 1 and proc.stderr.endswith("\n"), where
        assert proc.stderr.startswith("tagrelay: config error: " + starts), where
        assert not db.exists() and not db.parent.exists(), where


def test_x_auth_is_not_refused_for_the_tokens_it_is_there_to_obtain(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Every other command refuses an X channel whose tokens are not set; `x-auth` gets past the config (to
    ask for the app's consumer key, the one thing it needs)."""
    write(tmp_path, {"extra": '[[channels]]\nname = "x"\nplatform = "x"'})
    env = environment({"X_CONSUMER_KEY": "", "X_ACCESS_TOKEN": ""})
    status = run_cli(tmp_path, env, "status")
    assert status.returncode == 2 and "channels[1]: channel 'x': environment variable X_" in status.stderr
    xauth = run_cli(tmp_path, env, "x-auth")
    assert xauth.returncode == 2, xauth.stderr
    assert xauth.stderr.startswith("tagrelay: config error: X_CONSUMER_KEY: set your X app's consumer key")
