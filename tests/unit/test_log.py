"""bot.log: redaction of secret-shaped text, the two formatters, the filter and the excepthook."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.errors import ConfigError
from bot.log import (
    MAX_LOGGED_CHARS,
    MAX_LOGGED_TRACE_CHARS,
    REDACTED,
    JsonFormatter,
    KeyValueFormatter,
    RedactingFilter,
    configure_logging,
    event,
    redact_bounded,
    redact_text,
    redact_url,
)

BOT_TOKEN = "123456789:AAFakeTokenForTagrelayTests-0123456789"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state: put it back after the test."""
    root = logging.getLogger()
    handlers, level, hook = list(root.handlers), root.level, sys.excepthook
    try:
        yield
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in handlers:
            root.addHandler(h)
        root.setLevel(level)
        sys.excepthook = hook


@pytest.mark.parametrize("text", [
    f"token {BOT_TOKEN} leaked",
    f"POST https://api.telegram.org/bot{BOT_TOKEN}/sendMessage failed",
    f"url=https://api.telegram.org/bot{BOT_TOKEN}",
])
def test_telegram_bot_tokens_are_redacted_even_inside_urls(text: str) -> None:
    out = redact_text(text)
    assert BOT_TOKEN not in out
    assert "AAFakeToken" not in out
    assert REDACTED in out


def test_bot_token_shaped_text_keeps_its_neighbours() -> None:
    out = redact_text(f"before bot{BOT_TOKEN}/getMe after")
    assert out == f"before bot{REDACTED}/getMe after"


def test_ordinary_colon_numbers_are_not_mistaken_for_tokens() -> None:
    text = "poll at 2026-11-24T08:00:00Z took 12:30 and 123456:short"
    assert redact_text(text) == text


@pytest.mark.parametrize(("text", "secret"), [
    ("Authorization: Bearer xTestOAuth2UserToken-abcdef0123456789", "xTestOAuth2UserToken-abcdef0123456789"),
    ("authorization: bearer abc.def-ghi_jkl~mno", "abc.def-ghi_jkl~mno"),
    ("GET /api?access_token=s3cr3t-value&page=2", "s3cr3t-value"),
    ('OAuth oauth_consumer_key="ck-123456", oauth_token="at-abcdef", oauth_signature="sig%3D"',
     "at-abcdef"),
])
def test_bearer_query_and_oauth_tokens_are_redacted(text: str, secret: str) -> None:
    out = redact_text(text)
    assert secret not in out
    assert REDACTED in out


def test_oauth1_header_loses_every_credential_but_keeps_its_shape() -> None:
    out = redact_text('OAuth oauth_consumer_key="ck-123456", oauth_token="at-abcdef", oauth_signature="sig%3D", '
                      'oauth_nonce="n1"')
    for value in ("ck-123456", "at-abcdef", "sig%3D"):
        assert value not in out
    assert 'oauth_nonce="n1"' in out


@pytest.mark.parametrize(("url", "expected"), [
    ("postgresql+asyncpg://tagrelay:Pg-Secret@db:5432/tagrelay", "postgresql+asyncpg://tagrelay:***@db:5432/tagrelay"),
    ("postgresql+asyncpg://:onlypass@db/x", "postgresql+asyncpg://:***@db/x"),
    ("https://reader:p%40ss:word@archive.example/feed/", "https://reader:***@archive.example/feed/"),
    ("sqlite+aiosqlite:////data/tagrelay.db", "sqlite+aiosqlite:////data/tagrelay.db"),
    ("postgresql+asyncpg://tagrelay@db/tagrelay", "postgresql+asyncpg://tagrelay@db/tagrelay"),
])
def test_redact_url_replaces_only_the_password(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_known_secret_values_are_replaced_longest_first() -> None:
    out = redact_text("a=abcdef123 b=abcdef123456", ["abcdef123", "abcdef123456"])
    assert out == f"a={REDACTED} b={REDACTED}"


def test_the_secret_part_of_a_token_is_redacted_on_its_own() -> None:
    bot_id, part = BOT_TOKEN.split(":", 1)
    assert redact_text(f"Forbidden: bot token part {part} rejected", [BOT_TOKEN]) == \
        f"Forbidden: bot token part {REDACTED} rejected"
    # any secret: each ':'-separated component of 8+ characters that is not just digits (a bot id is public)
    assert redact_text("user x-key-12345678 and 1234567890", ["x-key-12345678:1234567890:short"]) == \
        f"user {REDACTED} and 1234567890"
    assert redact_text(f"bot {bot_id} says hi", [BOT_TOKEN]) == f"bot {bot_id} says hi"
    record = _record("deliver", kv={"error": f"403: {part}"})
    RedactingFilter([BOT_TOKEN]).filter(record)
    assert part not in KeyValueFormatter().format(record)


def _record(msg: str, *args: object, kv: dict[str, object] | None = None,
            exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    record = logging.LogRecord("tagrelay.test", logging.WARNING, __file__, 1, msg, args or None, exc_info)
    if kv is not None:
        record.kv = kv
    return record


def test_filter_scrubs_message_args_fields_and_exception() -> None:
    secret = "mastodon-test-token-0123456789abcdef"
    try:
        raise RuntimeError(f"boom with {secret}")
    except RuntimeError as caught:
        record = _record("send failed: %s", f"token={secret}", kv={"error": f"x {secret}", "attempt": 2},
                         exc=caught)
    assert RedactingFilter([secret]).filter(record) is True
    text = KeyValueFormatter().format(record)
    assert secret not in text
    assert "send failed: token=***" in text
    assert "attempt=2" in text
    assert "RuntimeError: boom with ***" in text
    assert getattr(record, "kv", {})["attempt"] == 2  # numbers stay numbers


def test_key_value_line_quotes_values_with_spaces() -> None:
    record = _record("deliver", kv={"channel": "tg", "delivery": 7, "error": "too long", "note": None,
                                    "ms": 12.5})
    RedactingFilter().filter(record)
    line = KeyValueFormatter().format(record)
    assert line.split(" ", 2)[1] == "WARNING"
    assert line.endswith('deliver channel=tg delivery=7 error="too long" note=- ms=12.5')


@pytest.mark.parametrize("formatter", [KeyValueFormatter(), JsonFormatter()])
def test_log_lines_show_control_and_bidi_characters_as_escapes(formatter: logging.Formatter) -> None:
    hostile = "Breaking\x1b[2J\x1b]0;pwned\x07\u202etxt.exe\x9b31m\x7f"
    record = _record(f"title {hostile}", kv={"title": hostile, "tag": "a\u2066b"})
    RedactingFilter().filter(record)
    line = formatter.format(record)
    raw = set(line) & {"\x1b", "\x07", "\u202e", "\x9b", "\x7f", "\u2066"}
    assert not raw, f"raw controls in the log line: {raw!r}"
    if isinstance(formatter, JsonFormatter):
        assert json.loads(line)["title"] == hostile  # same value, escaped as JSON
    else:
        assert "\\x1b[2J" in line and "\\u202etxt.exe" in line


def test_json_formatter_emits_one_parseable_object_with_the_fields() -> None:
    record = _record("poll", kv={"source": "archive", "outcome": "new", "new": 3, "ms": 1.5, "ok": True,
                                 "event": "clash", "level": "clash"})
    RedactingFilter().filter(record)
    line = JsonFormatter().format(record)
    assert "\n" not in line
    data = json.loads(line)
    assert data["event"] == "poll" and data["level"] == "warning" and data["logger"] == "tagrelay.test"
    assert data["source"] == "archive" and data["outcome"] == "new"
    assert data["new"] == 3 and data["ms"] == 1.5 and data["ok"] is True
    # fields never overwrite the envelope
    assert data["field_event"] == "clash" and data["field_level"] == "clash"
    assert data["ts"].endswith("+00:00")


def test_json_formatter_keeps_the_redacted_traceback() -> None:
    try:
        raise ValueError(f"url https://api.telegram.org/bot{BOT_TOKEN}/getMe")
    except ValueError as caught:
        record = _record("crash", exc=caught)
    RedactingFilter().filter(record)
    data = json.loads(JsonFormatter().format(record))
    assert "ValueError" in data["exception"] and BOT_TOKEN not in data["exception"]


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize("fmt", ["text", "json"])
def test_configure_logging_redacts_every_logger(fmt: str) -> None:
    stream = io.StringIO()
    configure_logging("INFO", fmt, ["env-secret-value-42"], stream=stream)
    event(logging.getLogger("tagrelay.poll"), logging.INFO, "poll", source="a", error="env-secret-value-42")
    logging.getLogger("some.library").warning("connecting to postgresql://u:dbpw1234@h/d")
    logging.getLogger("httpx").info("chatty and below WARNING: dropped")
    out = stream.getvalue()
    assert "env-secret-value-42" not in out and "dbpw1234" not in out
    assert "chatty" not in out
    lines = out.strip().splitlines()
    assert len(lines) == 2
    if fmt == "json":
        assert [json.loads(line)["event"] for line in lines] == ["poll", "connecting to postgresql://u:***@h/d"]


@pytest.mark.usefixtures("restore_logging")
def test_configure_logging_redacts_uncaught_tracebacks() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "text", ["uncaught-secret-77"], stream=stream)
    try:
        raise RuntimeError("died holding uncaught-secret-77")
    except RuntimeError as exc:
        sys.excepthook(type(exc), exc, exc.__traceback__)
    assert "RuntimeError: died holding ***" in stream.getvalue()


@pytest.mark.usefixtures("restore_logging")
def test_configure_logging_rejects_an_unknown_level() -> None:
    with pytest.raises(ConfigError) as info:
        configure_logging("verbose", "text")
    assert info.value.key == "TAGRELAY_LOG_LEVEL"


# -- issue 15: linear redaction, bounded log lines -----------------------------------------

_OLD_URL_PASSWORD = re.compile(r"(?P<pre>[a-z][a-z0-9+.\-]*://[^:/@\s]*:)(?P<pw>[^@/\s]+)(?P<post>@)", re.I)
"""The quadratic pattern issue 15 replaced: the reference for what the linear one must match."""


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="aZ1+.-:/@ _\u212a\u017fé", max_size=40))
def test_linear_url_password_pattern_redacts_exactly_what_the_old_one_did(text: str) -> None:
    expected = _OLD_URL_PASSWORD.sub(lambda m: f"{m['pre']}{REDACTED}{m['post']}", text)
    assert redact_url(text) == expected


def test_a_long_field_value_is_cut_with_a_marker_and_redacted() -> None:
    value = f"https://user:hunter2secret@h/{'a' * 1_000_000}"
    record = _record("poll", kv={"link": value})
    RedactingFilter().filter(record)
    logged = record.kv["link"]
    assert isinstance(logged, str)
    assert "hunter2secret" not in logged
    assert logged.startswith(f"https://user:{REDACTED}@h/aaa")
    assert len(logged) <= MAX_LOGGED_CHARS + len("…(+1000000 chars)")
    shown, marker = logged.split("…(+")
    # every character of the redacted value is either shown or counted as hidden
    assert len(shown) + int(marker.removesuffix(" chars)")) == len(value) - len("hunter2secret") + len(REDACTED)


def test_a_long_message_and_traceback_are_bounded() -> None:
    try:
        raise ValueError("x" * 1_000_000)
    except ValueError as exc:
        record = _record("m" * 1_000_000, exc=exc)
    RedactingFilter().filter(record)
    assert len(record.getMessage()) < MAX_LOGGED_CHARS + 30
    assert record.exc_text is not None and len(record.exc_text) < MAX_LOGGED_TRACE_CHARS + 30


@pytest.mark.parametrize("offset", [-30, -10, -1, 0, 1, 4_096 - 20, 4_096 - 1, 4_096, 4_100, 9_000])
def test_a_secret_straddling_the_cut_is_never_shown_even_in_part(offset: int) -> None:
    secret = "S3cretValueThatMustNotLeak-0123456789"
    text = "x" * (MAX_LOGGED_CHARS + offset) + secret + "y" * 10_000
    out = redact_bounded(text, secrets=[secret])
    assert "S3cret" not in out and secret[-8:] not in out
    out = redact_bounded("x" * (MAX_LOGGED_CHARS + offset) + f" {BOT_TOKEN} " + "y" * 10_000)
    assert BOT_TOKEN[:12] not in out and "AAFake" not in out


def test_redaction_shrinking_the_window_does_not_pull_a_cut_secret_into_view() -> None:
    secret = "K" * 40
    # the window is mostly a long redacted query value, so the redacted text is short: a secret
    # cut at the window's end must still not appear
    text = "?token=" + "v" * (MAX_LOGGED_CHARS + 4_096 - 7 - 20) + " " + secret + "z" * 100
    out = redact_bounded(text, secrets=[secret])
    assert "KKKK" not in out
    assert out.endswith(" chars)")


def test_short_text_is_only_redacted() -> None:
    assert redact_bounded("plain text", secrets=["text"]) == f"plain {REDACTED}"
