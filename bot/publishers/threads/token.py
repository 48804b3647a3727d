"""A Threads channel's long-lived token: where its refreshed copy is kept, when to refresh it, what status says.

Meta's rules (developers.facebook.com/docs/threads/get-started/long-lived-tokens): a long-lived token
lasts 60 days; ``GET /refresh_access_token?grant_type=th_refresh_token`` gives a new one, valid 60 days
from then, for a token at least 24 hours old and not expired; an expired token cannot be refreshed.

Where. The operator puts a token in the environment (``token_env``). What a refresh returns is a new
credential tagrelay must remember across restarts, and it is never written to the database (backups,
``db copy``, a shared PostgreSQL and its replicas would all carry it): it goes to a small JSON file,
``threads-<channel>.token`` beside the SQLite database (or the channel's ``token_file``), created with
mode 0600 and replaced atomically (write, fsync, rename). The file names the environment token it
descends from by a SHA-256 fingerprint (``source``), so putting a new token into the environment wins
over the file's; deleting the file falls back to the environment token. It also records when the token
expires, when it was refreshed, and the last refresh failure (redacted), which ``tagrelay status``
reads without any secret or network call.

Threat model: the file is as sensitive as the environment variable it descends from, and lives in the
same trust boundary as the database file and ``.env`` (the service user's data directory). Anyone who
can read the data volume, or a backup of it, can post as the profile until the token expires or is
revoked (revoke it in the Threads app settings; then put a new token into the environment). The file
is never logged, never shown, and never copied by ``tagrelay db copy``. A file readable by others is
made 0600 again when read (with a warning).

When (``refresh_due``). A token whose expiry is unknown (an environment token never refreshed here) is
refreshed at the first use; a known one when fewer than ``REFRESH_WHEN_LEFT`` days remain, not within
``MIN_AGE`` of its last refresh, and not again within ``RETRY_AFTER_FAILURE`` of a failed attempt (so a
``run --once`` every minute tries once an hour). A refresh never blocks publishing: a failure is logged
and recorded, and the current token keeps being used until Threads itself refuses it (which pauses the
channel).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bot.publishers.api import ChannelNote

LIFETIME = timedelta(days=60)
"""What Meta gives a long-lived or refreshed token."""
MIN_AGE = timedelta(hours=24)
"""Meta refreshes only tokens at least this old."""
REFRESH_WHEN_LEFT = timedelta(days=30)
"""Refresh once fewer than this many days remain: a month of margin for a refresh that keeps failing."""
RETRY_AFTER_FAILURE = timedelta(hours=1)
"""After a failed refresh, the next attempt waits this long (across restarts: the file records it)."""
WARN_WHEN_LEFT = timedelta(days=7)
"""``status`` counts a token with fewer days left than this as a problem."""
FORMAT = 1
MAX_FILE_BYTES = 64 * 1024
"""A token file larger than this is not read (it is not one of ours)."""


def fingerprint(token: str) -> str:
    """Which environment token a file descends from, without keeping that token: SHA-256, 32 hex digits."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()[:32]


def default_token_path(state_dir: Path, channel: str) -> Path:
    return state_dir / f"threads-{channel}.token"


@dataclass(frozen=True, slots=True)
class TokenState:
    """What the token file holds. ``access_token`` is None until a refresh succeeded (the environment's
    token is then in use); ``expires_at`` is None while unknown."""

    source: str
    access_token: str | None = None
    expires_at: datetime | None = None
    refreshed_at: datetime | None = None
    refresh_failed_at: datetime | None = None
    refresh_error: str | None = None

    def __repr__(self) -> str:
        return (f"TokenState(source={self.source!r}, access_token={'***' if self.access_token else None}, "
                f"expires_at={self.expires_at!r}, refreshed_at={self.refreshed_at!r})")

    def refreshed(self, token: str, expires_in: float, now: datetime) -> TokenState:
        return TokenState(self.source, token, now + timedelta(seconds=expires_in), now)

    def failed(self, error: str, now: datetime) -> TokenState:
        return replace(self, refresh_failed_at=now, refresh_error=error)


def refresh_due(state: TokenState, now: datetime) -> bool:
    """Should the token be refreshed now (module docstring, "When")?"""
    if state.refresh_failed_at is not None and now - state.refresh_failed_at < RETRY_AFTER_FAILURE:
        return False
    if state.refreshed_at is not None and now - state.refreshed_at < MIN_AGE:
        return False
    if state.expires_at is None:
        return True
    if now >= state.expires_at:
        return False  # Meta refreshes no expired token
    return state.expires_at - now <= REFRESH_WHEN_LEFT


class TokenFileError(Exception):
    """The token file exists but cannot be used (its text never includes the file's content)."""


def _stamp(when: datetime | None) -> str | None:
    return when.astimezone(UTC).isoformat(timespec="seconds") if when is not None else None


def _when(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _text(value: Any, limit: int) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


class TokenFile:
    """The JSON file of one channel (module docstring, "Where")."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __repr__(self) -> str:
        return f"TokenFile({str(self.path)!r})"

    def load(self) -> tuple[TokenState | None, str | None]:
        """(state, warning): None when there is no file; ``TokenFileError`` when it cannot be read or is
        not a token file. ``warning``: the file was readable by others (its mode is fixed to 0600)."""
        try:
            info = self.path.stat()
        except FileNotFoundError:
            return None, None
        except OSError as exc:
            raise TokenFileError(f"cannot read {self.path}: {exc.strerror}") from None
        warning = None
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            with contextlib.suppress(OSError):
                self.path.chmod(0o600)
            warning = f"{self.path} was accessible to other users (mode {stat.S_IMODE(info.st_mode):o}); set to 0600"
        if info.st_size > MAX_FILE_BYTES:
            raise TokenFileError(f"{self.path} is not a tagrelay token file ({info.st_size} bytes)")
        try:
            data = json.loads(self.path.read_bytes())
        except OSError as exc:
            raise TokenFileError(f"cannot read {self.path}: {exc.strerror}") from None
        except ValueError:
            raise TokenFileError(f"{self.path} is not a tagrelay token file (not JSON)") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("source"), str):
            raise TokenFileError(f"{self.path} is not a tagrelay token file (format {FORMAT} expected)")
        return TokenState(source=data["source"], access_token=_text(data.get("access_token"), 4096),
                          expires_at=_when(data.get("expires_at")), refreshed_at=_when(data.get("refreshed_at")),
                          refresh_failed_at=_when(data.get("refresh_failed_at")),
                          refresh_error=_text(data.get("refresh_error"), 500)), warning

    def save(self, state: TokenState, channel: str) -> None:
        """Replace the file atomically: a 0600 temporary file in the same directory, fsync, rename, fsync the
        directory. Raises ``OSError``."""
        data = {"format": FORMAT, "channel": channel, "source": state.source, "access_token": state.access_token,
                "expires_at": _stamp(state.expires_at), "refreshed_at": _stamp(state.refreshed_at),
                "refresh_failed_at": _stamp(state.refresh_failed_at), "refresh_error": state.refresh_error}
        folder = self.path.parent
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        temp = folder / f".{self.path.name}.{os.getpid()}.tmp"
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(json.dumps(data, indent=1).encode("utf-8"))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(temp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                temp.unlink()
            raise
        with contextlib.suppress(OSError):  # the rename is durable once the directory is
            dir_fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)


def _days(delta: timedelta) -> str:
    days = delta.total_seconds() / 86400
    if days >= 2:
        return f"{int(days)} days"
    hours = max(0, int(delta.total_seconds() // 3600))
    return f"{hours} hour{'s' if hours != 1 else ''}"


def token_notes(state: TokenState | None, now: datetime, *, env_name: str, channel: str) -> list[ChannelNote]:
    """What ``status`` says about a channel's token (no secret in it)."""
    resume = f"then `tagrelay channels resume {channel}`"
    if state is None or state.expires_at is None:
        text = (f"access token expiry unknown: the token in {env_name} has not been refreshed by tagrelay yet "
                "(Threads tokens last 60 days; it is refreshed at the next post)")
        if state is not None and state.refresh_error and state.refresh_failed_at is not None:
            text += f"; the last refresh failed {_ago(now - state.refresh_failed_at)}: {state.refresh_error}"
        return [ChannelNote(text)]
    left = state.expires_at - now
    on = state.expires_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    if left.total_seconds() <= 0:
        return [ChannelNote(f"access token expired on {on}: create a new long-lived token, put it in {env_name}, "
                            f"{resume}", problem=True)]
    text = f"access token expires in {_days(left)} (on {on})"
    if state.refreshed_at is not None:
        text += f"; refreshed {_ago(now - state.refreshed_at)}"
    failing = state.refresh_error is not None and state.refresh_failed_at is not None
    if failing:
        assert state.refresh_failed_at is not None
        text += f"; the last refresh failed {_ago(now - state.refresh_failed_at)}: {state.refresh_error}"
    if left < WARN_WHEN_LEFT:
        advice = (f"if refreshing keeps failing, create a new long-lived token and put it in {env_name}" if failing
                  else "it is refreshed at the next post")
        return [ChannelNote(f"{text}; {advice}", problem=True)]
    return [ChannelNote(text)]


def _ago(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 120:
        return f"{seconds}s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    if seconds < 172800:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} days ago"
