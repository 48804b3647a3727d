"""Logging: one line per event, key=value for humans or JSON, secrets redacted everywhere.

Call sites log an event name plus fields through ``event(log, level, "poll",
source=..., outcome=...)`` (stored on the record as ``record.kv``). A
``RedactingFilter`` on the output handler scrubs every record, whichever
library logged it: known secret values (the tokens tagrelay read from the
environment) and secret-shaped text (passwords in URLs, Telegram bot tokens,
``Bearer`` tokens, ``access_token=`` query parameters, OAuth 1.0a header
values, JSON Web Tokens, the token of a Discord webhook URL) become ``***`` in the message,
the fields and the exception text.
Each message and field value is cut to ``MAX_LOGGED_CHARS`` (exception text to
``MAX_LOGGED_TRACE_CHARS``) before it is redacted, so a megabyte of feed text
costs no more to log than two kilobytes; every redaction pattern is linear.
``configure_logging`` also redacts tracebacks of uncaught exceptions.

Formats::

    text  2026-11-24T08:00:00Z INFO  poll source=archive outcome=new posts=9 new=1 queued=1
    json  {"ts": "2026-11-24T08:00:00.123+00:00", "level": "info", "event": "poll",
           "logger": "tagrelay.poll", "source": "archive", "outcome": "new", ...}
"""

from __future__ import annotations

import json
import logging
import re
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TextIO

from bot.errors import ConfigError
from bot.humanize import json_visible_controls, visible_controls

# scheme://user:password@ — the match may only start where a run of scheme characters starts (the
# lookbehind): otherwise a long run such as a 250 KB link path is rescanned from each of its positions
# (quadratic). ``pre`` then holds the run's leading digits/punctuation too, which are written back.
_URL_PASSWORD = re.compile(r"(?<![a-z0-9+.\-])(?P<pre>[0-9+.\-]*[a-z][a-z0-9+.\-]*://[^:/@\s]*:)"
                           r"(?P<pw>[^@/\s]+)(?P<post>@)", re.I)
# Telegram bot tokens: <bot id>:<35 characters>, also inside URLs (".../bot123:AA.../sendMessage")
_BOT_TOKEN = re.compile(r"(?<![0-9])\d{5,12}:[A-Za-z0-9_-]{20,}(?![A-Za-z0-9_-])")
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}")
_QUERY_SECRET = re.compile(r"(?i)([?&;](?:access_token|refresh_token|token|api_key|apikey|client_secret|"
                           r"password|secret)=)[^&;#\s\"']+")
_OAUTH1 = re.compile(r"(?i)(oauth_(?:token|signature|consumer_key|verifier)=\"?)[^\",&\s]+")
# JSON Web Tokens (Bluesky's access and refresh JWTs): header and payload are base64url JSON, so both start
# with "eyJ"; a match may only start where a run of base64url characters starts (linear)
_JWT = re.compile(r"(?<![A-Za-z0-9_\-])eyJ[A-Za-z0-9_\-]{4,}\.eyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]*")
# Discord webhook URLs: .../webhooks/<id>/<token>; the token is the secret (the id is public)
_WEBHOOK_TOKEN = re.compile(r"(/webhooks/[0-9]{1,20}/)[A-Za-z0-9_\-]{16,}")

REDACTED = "***"

MAX_LOGGED_CHARS = 2_000
"""A logged message or field value longer than this is cut, with ``…(+N chars)`` appended."""
MAX_LOGGED_TRACE_CHARS = 20_000
"""The same bound for exception and stack text (a traceback is many lines)."""
_REDACTION_LOOKAHEAD = 4_096
"""Characters past the cut that redaction still reads, so that a secret straddling the cut is
recognised; the redacted text keeps none of them (see ``redact_bounded``)."""

_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

_RESERVED = ("ts", "level", "event", "logger", "exception")
"""JSON keys of the envelope; a field with one of these names is written as ``field_<name>``."""


SECRET_PART_MIN = 8
"""Shortest ``:``-separated component of a secret that is redacted on its own."""


def secret_values(secrets: Iterable[str]) -> set[str]:
    """The values to redact for ``secrets``: each secret, and each of its ``:``-separated components
    of ``SECRET_PART_MIN``+ characters that is not only digits. A Telegram token ``id:secret`` thus
    also registers ``secret``, which a Bot API server may echo alone; the bot id is public. A URL's
    parts are not registered (its scheme is no secret; ``redact_url`` covers its password)."""
    values: set[str] = set()
    for secret in secrets:
        if secret:
            values.add(secret)
            if ":" in secret and "://" not in secret:
                values.update(p for p in secret.split(":") if len(p) >= SECRET_PART_MIN and not p.isdigit())
    return values


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """Remove secret values (and their parts) and secret-shaped substrings (URL passwords, bot tokens, ...)."""
    for secret in sorted(secret_values(secrets), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    text = redact_url(text)
    text = _BOT_TOKEN.sub(REDACTED, text)
    text = _BEARER.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    text = _QUERY_SECRET.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    text = _WEBHOOK_TOKEN.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    text = _OAUTH1.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    return _JWT.sub(REDACTED, text)


def redact_bounded(text: str, limit: int = MAX_LOGGED_CHARS, secrets: Iterable[str] = ()) -> str:
    """``text`` redacted and cut to at most ``limit`` characters plus a ``…(+N chars)`` marker.

    Redaction reads only the first ``limit + _REDACTION_LOOKAHEAD`` characters, so its cost is
    bounded however long ``text`` is. A secret cut at the end of that window is not recognised, so
    the window's last ``_REDACTION_LOOKAHEAD`` (redacted) characters are never shown: any secret
    shorter than that is either redacted whole or not shown at all.
    """
    window = text[: limit + _REDACTION_LOOKAHEAD]
    redacted = redact_text(window, secrets)
    keep = limit if len(window) == len(text) else min(limit, len(redacted) - _REDACTION_LOOKAHEAD)
    if len(redacted) <= keep:
        return redacted
    keep = max(keep, 0)
    hidden = len(redacted) - keep + len(text) - len(window)
    return f"{redacted[:keep]}…(+{hidden} chars)"


def redact_url(url: str) -> str:
    """A database or service URL with its password replaced."""
    return _URL_PASSWORD.sub(lambda m: f"{m['pre']}{REDACTED}{m['post']}", url)


class RedactingFilter(logging.Filter):
    """Scrubs secrets from a record's message, fields and exception text.

    Attach it to a *handler* (as ``configure_logging`` does) so that records of
    every logger pass through it. It formats the message once (``args`` are
    merged into ``msg``) and renders the exception into ``exc_text``.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def redact(self, text: str, limit: int = MAX_LOGGED_CHARS) -> str:
        """``text`` redacted and bounded (``redact_bounded``)."""
        return redact_bounded(text, limit, self.secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redact(record.getMessage())
        record.args = None
        fields = getattr(record, "kv", None)
        if isinstance(fields, Mapping):
            record.kv = {k: v if isinstance(v, bool | int | float | type(None)) else self.redact(str(v))
                         for k, v in fields.items()}
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info),
                                          MAX_LOGGED_TRACE_CHARS)
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = self.redact(record.exc_text, MAX_LOGGED_TRACE_CHARS)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info, MAX_LOGGED_TRACE_CHARS)
        return True


def _fmt_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        value = f"{value:.3f}".rstrip("0").rstrip(".")
    text = str(value)
    if not text or any(c in text for c in ' "=\n\t'):
        return json.dumps(text, ensure_ascii=False)
    return text


def _stamp(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class KeyValueFormatter(logging.Formatter):
    """``2026-11-24T08:00:00Z INFO  poll source=archive outcome=new new=3``."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [_stamp(record), f"{record.levelname:<5}", record.getMessage()]
        fields = getattr(record, "kv", None)
        if isinstance(fields, Mapping):
            parts.extend(f"{k}={_fmt_value(v)}" for k, v in fields.items())
        line = visible_controls(" ".join(parts))  # one line; a feed's ESC[2J or U+202E is shown, never obeyed
        if record.exc_text:
            line += "\n" + visible_controls(record.exc_text, multiline=True)
        if record.stack_info:
            line += "\n" + visible_controls(record.stack_info, multiline=True)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, event, logger, then the fields (numbers stay numbers)."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "event": record.getMessage(),
            "logger": record.name,
        }
        fields = getattr(record, "kv", None)
        if isinstance(fields, Mapping):
            for k, v in fields.items():
                key = f"field_{k}" if k in _RESERVED else str(k)
                data[key] = v if isinstance(v, int | float | bool | type(None)) else str(v)
        if record.exc_text:
            data["exception"] = record.exc_text
        if record.stack_info:
            data["stack"] = record.stack_info
        return json_visible_controls(json.dumps(data, ensure_ascii=False))


ExceptHook = Callable[[type[BaseException], BaseException, TracebackType | None], Any]


def _redacting_excepthook(secrets: list[str], stream: TextIO | None) -> ExceptHook:
    def hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        text = "".join(traceback.format_exception(kind, exc, tb))
        out = stream or sys.stderr
        out.write(redact_text(text, secrets))
        out.flush()

    return hook


def configure_logging(level: str = "INFO", fmt: str = "text", secrets: Iterable[str] = (),
                      stream: TextIO | None = None) -> logging.Handler:
    """Install one handler on the root logger; quiet chatty libraries. Returns the handler.

    Also replaces ``sys.excepthook`` so that the traceback of an exception nobody
    caught is printed with the same redaction.
    """
    if level.upper() not in _LEVELS:
        raise ConfigError("TAGRELAY_LOG_LEVEL", f"{level!r} is not one of {', '.join(_LEVELS)}")
    known = [s for s in secrets if s]
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    handler.addFilter(RedactingFilter(known))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpcore", "apscheduler", "telegram", "aiosqlite", "asyncio", "alembic", "tweepy"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    sys.excepthook = _redacting_excepthook(known, stream)
    return handler


def event(logger: logging.Logger, level: int, name: str, **fields: Any) -> None:
    """Log ``name`` with structured fields."""
    logger.log(level, name, extra={"kv": fields})
