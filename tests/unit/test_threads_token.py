"""The Threads token file (0600, atomic, fingerprinted), the refresh policy and what ``status`` says."""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.publishers.threads import plugin
from bot.publishers.threads.options import ThreadsOptions
from bot.publishers.threads.token import (
    MIN_AGE,
    REFRESH_WHEN_LEFT,
    RETRY_AFTER_FAILURE,
    WARN_WHEN_LEFT,
    TokenFile,
    TokenFileError,
    TokenState,
    fingerprint,
    refresh_due,
    token_notes,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
TOKEN = "THAArefreshedToken-0123456789abcdef"


def state(**kw: object) -> TokenState:
    return TokenState(**{"source": fingerprint("env-token"), **kw})  # type: ignore[arg-type]


def test_the_fingerprint_names_a_token_without_keeping_it() -> None:
    assert fingerprint("a") == fingerprint("a") != fingerprint("b")
    assert len(fingerprint("a")) == 32 and fingerprint("a") != "a"


def test_the_file_is_private_written_atomically_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "data" / "threads-x.token"
    saved = state(access_token=TOKEN, expires_at=NOW + timedelta(days=60), refreshed_at=NOW)
    TokenFile(path).save(saved, "x")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert sorted(p.name for p in path.parent.iterdir()) == ["threads-x.token"]  # no temporary left
    loaded, warning = TokenFile(path).load()
    assert loaded == saved and warning is None
    data = json.loads(path.read_text())
    assert data["format"] == 1 and data["channel"] == "x" and data["expires_at"] == "2026-07-31T12:00:00+00:00"
    # replaced, not rewritten in place: a reader never sees half a file
    before = path.stat().st_ino
    TokenFile(path).save(saved.failed("boom", NOW), "x")
    assert path.stat().st_ino != before


def test_a_file_others_can_read_is_made_private_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "threads-x.token"
    TokenFile(path).save(state(), "x")
    os.chmod(path, 0o644)
    loaded, warning = TokenFile(path).load()
    assert loaded == state() and warning is not None and "0600" in warning
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("content", [b"THAAsecret-not-json", b"[]", b'{"format": 2, "source": "THAAsecret"}',
                                     b'{"format": 1, "access_token": "THAAsecret"}', b"\xff\xfe", b"{" * 70000])
def test_a_file_that_is_not_ours_is_refused_without_quoting_it(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "threads-x.token"
    path.write_bytes(content)
    with pytest.raises(TokenFileError) as info:
        TokenFile(path).load()
    assert str(path) in str(info.value) and "THAAsecret" not in str(info.value)


def test_no_file_is_no_state(tmp_path: Path) -> None:
    assert TokenFile(tmp_path / "none").load() == (None, None)


@pytest.mark.parametrize(("current", "due"), [
    (state(), True),  # expiry unknown: refresh at the first use
    (state(expires_at=NOW + REFRESH_WHEN_LEFT + timedelta(seconds=1), refreshed_at=NOW - timedelta(days=29)), False),
    (state(expires_at=NOW + REFRESH_WHEN_LEFT, refreshed_at=NOW - timedelta(days=30)), True),
    (state(expires_at=NOW + timedelta(days=1), refreshed_at=NOW - MIN_AGE + timedelta(seconds=1)), False),
    (state(expires_at=NOW - timedelta(seconds=1)), False),  # expired: Meta refreshes no expired token
    (state(refresh_failed_at=NOW - RETRY_AFTER_FAILURE + timedelta(seconds=1)), False),
    (state(refresh_failed_at=NOW - RETRY_AFTER_FAILURE), True),
])
def test_when_a_token_is_refreshed(current: TokenState, due: bool) -> None:
    assert refresh_due(current, NOW) is due


def test_status_says_how_long_the_token_has_left() -> None:
    (unknown,) = token_notes(None, NOW, env_name="TH_TOKEN", channel="th")
    assert "expiry unknown" in unknown.text and not unknown.problem
    (fine,) = token_notes(state(access_token=TOKEN, expires_at=NOW + timedelta(days=41), refreshed_at=NOW -
                                timedelta(days=19)), NOW, env_name="TH_TOKEN", channel="th")
    assert fine.text.startswith("access token expires in 41 days (on 2026-07-12 12:00 UTC); refreshed 19 days ago")
    assert not fine.problem
    (soon,) = token_notes(state(expires_at=NOW + WARN_WHEN_LEFT - timedelta(hours=1),
                                refresh_failed_at=NOW - timedelta(minutes=5), refresh_error="refused (400)"),
                          NOW, env_name="TH_TOKEN", channel="th")
    assert soon.problem and "6 days" in soon.text and "refused (400)" in soon.text and "TH_TOKEN" in soon.text
    (gone,) = token_notes(state(expires_at=NOW - timedelta(days=1)), NOW, env_name="TH_TOKEN", channel="th")
    assert gone.problem and "expired on 2026-05-31" in gone.text and "channels resume th" in gone.text
    for note in (unknown, fine, soon, gone):
        assert TOKEN not in note.text


def test_the_plugin_reports_the_notes_from_the_file_beside_the_database(tmp_path: Path) -> None:
    opts = ThreadsOptions(name="th", platform="threads")
    TokenFile(tmp_path / "threads-th.token").save(state(access_token=TOKEN, expires_at=NOW + timedelta(days=3),
                                                        refreshed_at=NOW), "th")
    (note,) = plugin.channel_notes(opts, state_dir=tmp_path, now=NOW)
    assert note.problem and "3 days" in note.text
    (none,) = plugin.channel_notes(opts, state_dir=None, now=NOW)
    assert none.problem and "token_file" in none.text
    elsewhere = opts.model_copy(update={"token_file": tmp_path / "nowhere.token"})
    assert "expiry unknown" in plugin.channel_notes(elsewhere, state_dir=None, now=NOW)[0].text
