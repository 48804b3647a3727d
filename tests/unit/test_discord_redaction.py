"""A Discord webhook URL is a secret: its token never reaches a log line, however it is written there.

The CLI registers every channel's ``*_env`` value for redaction (the URL exactly as configured);
the publisher calls the versioned form (``/api/v10/webhooks/...``), which an httpx warning or a
traceback could quote, so ``bot.log`` also recognises the shape ``/webhooks/<id>/<token>``.
"""

from __future__ import annotations

import io
import logging
import subprocess
import sys

import pytest

from bot.log import REDACTED, configure_logging, event, redact_text
from tests.fakes.discord_api import WEBHOOK_ID, WEBHOOK_TOKEN

URLS = [
    f"https://discord.com/api/webhooks/{WEBHOOK_ID}/{WEBHOOK_TOKEN}",
    f"https://discord.com/api/v10/webhooks/{WEBHOOK_ID}/{WEBHOOK_TOKEN}?wait=true&thread_id=1",
    f"http://127.0.0.1:8080/api/v10/webhooks/{WEBHOOK_ID}/{WEBHOOK_TOKEN}/messages/1300000000000000001",
    f"HTTP Request: POST https://discordapp.com/api/webhooks/{WEBHOOK_ID}/{WEBHOOK_TOKEN} \"HTTP/1.1 429\"",
]


@pytest.mark.parametrize("text", URLS)
def test_the_token_of_any_webhook_url_is_redacted(text: str) -> None:
    out = redact_text(text)
    assert WEBHOOK_TOKEN not in out and WEBHOOK_TOKEN[:16] not in out
    assert f"/webhooks/{WEBHOOK_ID}/{REDACTED}" in out  # the id is public: kept, so the log still says which


def test_a_short_path_segment_is_not_a_token() -> None:
    assert redact_text("see /webhooks/12/overview and /webhooks/new") == "see /webhooks/12/overview and /webhooks/new"


def test_log_lines_fields_and_tracebacks_never_carry_the_token() -> None:
    stream = io.StringIO()
    hook, root = sys.excepthook, logging.getLogger()
    old = (root.level, list(root.handlers))
    handler = configure_logging("DEBUG", "json", [], stream=stream)
    try:
        log = logging.getLogger("test.discord.redaction")
        event(log, logging.WARNING, "discord.something", url=URLS[1], note=f"token {WEBHOOK_TOKEN[:3]}")
        logging.getLogger("httpx").warning("HTTP Request: POST %s", URLS[1])
        try:
            raise RuntimeError(f"failed on {URLS[2]}")
        except RuntimeError:
            log.exception("boom")
    finally:
        root.removeHandler(handler)
        root.setLevel(old[0])
        for h in old[1]:
            root.addHandler(h)
        sys.excepthook = hook
    out = stream.getvalue()
    assert out.count(REDACTED) >= 3
    assert WEBHOOK_TOKEN not in out and WEBHOOK_TOKEN[:16] not in out


def test_redacting_webhook_urls_is_linear_on_hostile_text() -> None:
    """A megabyte of near-misses (digits, slashes, token characters) in a child with a deadline."""
    code = ("from bot.log import redact_text\n"
            "redact_text('/webhooks/' + '1' * 1_000_000)\n"
            "redact_text('/webhooks/1/' * 80_000)\n"
            "redact_text('/webhooks/1/' + 'a' * 1_000_000 + '!')\n"
            "print('done')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20, check=False)
    assert result.returncode == 0 and result.stdout.strip() == "done", result.stderr
