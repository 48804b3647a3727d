"""Logging: one line per event, key=value for humans or JSON, secrets redacted everywhere.

Call sites log an event name plus fields: ``log.info("poll", extra={"kv": {...}})``
via the ``event`` helper. A ``RedactingFilter`` replaces every known secret
value (tokens from the environment, passwords in database URLs, bot tokens in
Telegram URLs) with ``***`` in the message, the fields and exception text.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

_URL_PASSWORD = re.compile(r"(?P<pre>[a-z][a-z0-9+.\-]*://[^:/@\s]*:)(?P<pw>[^@/\s]+)(?P<post>@)", re.I)
_BOT_TOKEN = re.compile(r"\b\d{5,12}:[A-Za-z0-9_-]{20,}\b")
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}")

REDACTED = "***"


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """Remove secret values and secret-shaped substrings (URL passwords, bot tokens, bearer tokens)."""
    for secret in sorted(set(secrets), key=len, reverse=True):
        if secret:
            text = text.replace(secret, REDACTED)
    text = _URL_PASSWORD.sub(lambda m: f"{m['pre']}{REDACTED}{m['post']}", text)
    text = _BOT_TOKEN.sub(REDACTED, text)
    return _BEARER.sub(lambda m: f"{m.group(1)}{REDACTED}", text)


def redact_url(url: str) -> str:
    """A database or service URL with its password replaced."""
    return _URL_PASSWORD.sub(lambda m: f"{m['pre']}{REDACTED}{m['post']}", url)


class RedactingFilter(logging.Filter):
    """Scrubs secrets from a record's message, fields and exception text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact_text(record.getMessage(), self.secrets)
        record.args = None
        fields = getattr(record, "kv", None)
        if isinstance(fields, Mapping):
            record.kv = {k: redact_text(str(v), self.secrets) if isinstance(v, str) else v
                         for k, v in fields.items()}
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info), self.secrets)
            record.exc_info = None
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


class KeyValueFormatter(logging.Formatter):
    """``2026-11-24T08:00:00Z INFO  poll source=archive outcome=new new=3``."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        parts = [stamp, f"{record.levelname:<5}", record.getMessage()]
        fields = getattr(record, "kv", None)
        if isinstance(fields, Mapping):
            parts.extend(f"{k}={_fmt_value(v)}" for k, v in fields.items())
        line = " ".join(parts)
        if record.exc_text:
            line += "\n" + record.exc_text
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, event, logger, then the fields."""

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
                data[k] = v if isinstance(v, int | float | bool | type(None)) else str(v)
        if record.exc_text:
            data["exception"] = record.exc_text
        return json.dumps(data, ensure_ascii=False)


def configure_logging(level: str = "INFO", fmt: str = "text", secrets: Iterable[str] = (),
                      stream: TextIO | None = None) -> logging.Handler:
    """Install one handler on the root logger; quiet chatty libraries. Returns the handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    handler.addFilter(RedactingFilter(secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpcore", "apscheduler", "telegram", "aiosqlite", "asyncio", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return handler


def event(logger: logging.Logger, level: int, name: str, **fields: Any) -> None:
    """Log ``name`` with structured fields."""
    logger.log(level, name, extra={"kv": fields})
