"""Terminal escapes and bidi controls from a feed (or an argument) never reach the operator's terminal raw.

A JSON Feed carries them in a title and a tag (JSON can hold any character);
the console channel prints the post, and every human-readable command
(``tags``, ``deliveries``, ``subscriptions``, ``audit``, ``status``,
``channels list``) must show them as visible escapes. ``--json`` output must
parse to the very same text, with nothing unsafe left raw in it either.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.cli import main
from tests.fakes.archive import ArchiveServer

CLEAR = "\x1b[2J"
RETITLE = "\x1b]0;pwned\x07"
CSI = "\x9b31m"  # the 8-bit form of ESC[
RLO = "\u202e"
TITLE = f"Breaking{CLEAR}{RETITLE} news {RLO}txt.exe{CSI}\x7f"
TAG = f"Evil{RETITLE}{RLO}tag"
REASON = f"maintenance\r{CLEAR}done\u2066"
UNSAFE = {*map(chr, range(0x20)), "\x7f", *map(chr, range(0x80, 0xA0)), "\u2028", "\u2029",
          *"\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"}


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    with ArchiveServer() as archive:
        archive.add_post(title=TITLE, tags=[TAG, "Plain"])
        monkeypatch.chdir(tmp_path)
        for var in ("TAGRELAY_STORAGE_URL", "TAGRELAY_CONFIG", "TAGRELAY_LOG_FORMAT"):
            monkeypatch.delenv(var, raising=False)
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
url = "{archive.url}/feed/json"
kind = "jsonfeed"
[[channels]]
name = "console"
platform = "console"
[[subscriptions]]
tag = "Plain"
channels = ["console"]
backfill = 1
""", encoding="utf-8")
        yield path


def cli(capsys: pytest.CaptureFixture[str], config: Path, *args: str) -> str:
    code = main(["--config", str(config), *args])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def raw_controls(text: str, *, allowed: frozenset[str] = frozenset("\n")) -> set[str]:
    return {c for c in text if c in UNSAFE and c not in allowed}


def test_human_output_shows_control_and_bidi_characters_as_escapes(
        config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    printed = cli(capsys, config, "run", "--once")
    assert "Breaking" in printed, "the console channel printed the post"
    assert not raw_controls(printed), "the console channel printed control characters raw"
    assert "\\u202etxt.exe" in printed and "\\u202etag" in printed

    cli(capsys, config, "subscribe", "--new", f"Fresh{CLEAR}{RLO}", "console")
    cli(capsys, config, "channels", "pause", "console", "--reason", REASON)
    for command in (["tags"], ["deliveries"], ["subscriptions"], ["audit"], ["status"], ["channels", "list"]):
        out = cli(capsys, config, *command)
        assert not raw_controls(out), f"`{' '.join(command)}` printed {raw_controls(out)!r} raw"
    assert "\\x1b]0;pwned\\x07" in cli(capsys, config, "tags")
    assert "\\u202etxt.exe" in cli(capsys, config, "deliveries")
    assert "Fresh\\x1b[2J\\u202e" in cli(capsys, config, "subscriptions")
    assert "Fresh\\x1b[2J\\u202e" in cli(capsys, config, "audit")
    assert "maintenance\\r\\x1b[2Jdone\\u2066" in cli(capsys, config, "channels", "list")


def test_json_output_keeps_the_exact_text_and_prints_nothing_unsafe_raw(
        config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cli(capsys, config, "run", "--once")
    cli(capsys, config, "channels", "pause", "console", "--reason", REASON)
    outputs = {name: cli(capsys, config, *name.split(), "--json")
               for name in ("tags", "deliveries", "subscriptions", "audit", "status", "channels list")}
    for name, out in outputs.items():
        assert not raw_controls(out), f"`{name} --json` printed {raw_controls(out)!r} raw"
    assert TAG in {t["name"] for t in json.loads(outputs["tags"])}
    assert {d["post_title"] for d in json.loads(outputs["deliveries"])} == {TITLE}
    assert json.loads(outputs["channels list"])[0]["counts"]["paused_reason"] == REASON
