"""Shared helpers for the publisher adapters: secrets, rate-limit headers, error classification.

Adapters classify, services decide: these helpers turn a missing secret, an
HTTP status, a rate-limit header or an httpx transport exception into one of
the ``bot.errors.PublishError`` classes. They never sleep and never retry.

Whether a request "left" matters for posting calls: an error raised before
any byte was sent (connection refused, connect timeout, pool timeout) means
nothing was posted and is plainly retryable; an error after sending (read
timeout, connection dropped mid-answer) is *ambiguous*: the post may exist.
"""

from __future__ import annotations

import email.utils
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

import httpx

from bot.errors import (
    AmbiguousPublishError,
    ContentRejectedError,
    CredentialsError,
    PermanentPublishError,
    PublishError,
    RetryablePublishError,
    RetryAfter,
)
from bot.humanize import without_controls
from bot.log import REDACTED, secret_values
from bot.publishers.api import PublisherContext

ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
"""What an ``*_env`` option must look like: the name of an environment variable."""

HTTP_URL_PATTERN = r"^https?://[^\s/?#]+(/[^\s?#]*)?$"
"""An http(s) base URL without query or fragment (``api_base``, ``instance``)."""

DEFAULT_RETRY_DELAY = 60.0
"""Seconds to wait after a 429 that carried no usable header."""

MAX_DETAIL = 300
"""Longest piece of a server's error text copied into an error message."""

LOCATION_LIMIT = 200
"""Longest ``Location`` header quoted in an error message."""

KIND_LIMIT = 60
"""Longest problem type (X's ``type``) quoted in an error message."""

NOT_SENT_ERRORS: tuple[type[Exception], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ProxyError,
    httpx.LocalProtocolError,
)
"""httpx errors raised before the request left this process: nothing can have been posted."""


# -- secrets -----------------------------------------------------------------------------------


def require_secret(ctx: PublisherContext, channel: str, env_name: str) -> str:
    """The secret in environment variable ``env_name``, or ``CredentialsError`` naming both.

    ``ctx.secret`` normally raises ``CredentialsError`` itself; this also covers
    a lookup that returns an empty string, and makes sure the error names this
    channel and the variable, never a value.
    """
    try:
        value = ctx.secret(env_name)
    except CredentialsError as exc:
        reason = exc.reason if env_name in exc.reason else f"environment variable {env_name}: {exc.reason}"
        raise CredentialsError(channel, reason) from None
    if not value or not value.strip():
        raise CredentialsError(channel, f"environment variable {env_name} is not set or empty "
                                        "(set it in the environment or in .env)")
    return value.strip()


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret value, and each part of one (``bot.log.secret_values``), replaced by ``***``."""
    for secret in sorted(secret_values(secrets), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


def shorten(text: str, limit: int = MAX_DETAIL) -> str:
    """One line of at most ``limit`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def platform_text(text: str, secrets: Iterable[str], limit: int = MAX_DETAIL) -> str:
    """A text a platform sent (an error description, a problem type, a ``Location``) made fit to be a
    ``PublishError`` reason, which is stored (``deliveries.last_error``, a channel's pause reason),
    logged, announced and shown: control and bidi characters removed, secrets and their parts
    redacted, one line of at most ``limit`` characters. Linear in ``len(text)``.

    Controls go first, so that a token split by them is whole again when it is redacted.
    """
    return shorten(redact(without_controls(text), secrets), limit)


# -- rate-limit headers ------------------------------------------------------------------------


def seconds_until(when: datetime, now: datetime) -> float:
    """Seconds from ``now`` to ``when`` (negative if past). Naive datetimes are taken as UTC."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return (when - now).total_seconds()


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """A ``Retry-After`` header (delta-seconds or HTTP-date) as seconds from ``now``; None if unusable."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        return max(0.0, seconds_until(when, now))
    return max(0.0, seconds) if seconds == seconds else None  # NaN check


def parse_reset_epoch(value: str | None, now: datetime) -> float | None:
    """An ``x-rate-limit-reset``-style header (Unix epoch seconds) as seconds from ``now``."""
    if value is None or not value.strip():
        return None
    try:
        epoch = float(value.strip())
    except ValueError:
        return None
    if epoch != epoch or epoch <= 0:  # NaN or nonsense
        return None
    try:
        when = datetime.fromtimestamp(epoch, UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return max(0.0, seconds_until(when, now))


def parse_reset_iso(value: str | None, now: datetime) -> float | None:
    """A Mastodon ``X-RateLimit-Reset`` header (ISO 8601 timestamp) as seconds from ``now``."""
    if value is None or not value.strip():
        return None
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return max(0.0, seconds_until(when, now))


# -- responses ---------------------------------------------------------------------------------


def json_body(response: httpx.Response) -> Any | None:
    """The response's JSON, or None if it is not JSON (or nested too deeply to decode: hostile)."""
    try:
        return json.loads(response.content) if response.content else None
    except (ValueError, RecursionError):
        return None


def describe_status(status: int) -> str:
    """``"503 Service Unavailable"``."""
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def describe_exception(exc: BaseException) -> str:
    """``"ReadTimeout: timed out"``, or just the class name when the message is empty."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {shorten(text)}" if text else type(exc).__name__


# -- classification ----------------------------------------------------------------------------


def transport_error(channel: str, exc: Exception, *, action: str, sending: bool) -> PublishError:
    """Classify an httpx exception raised while ``action`` was under way.

    ``sending`` is True for calls that create a post: there an error after the
    request left is an ``AmbiguousPublishError``. For reads it is plainly retryable.
    """
    error: PublishError
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        error = PermanentPublishError(channel, f"{action}: unusable URL ({describe_exception(exc)}); "
                                               "check the channel's base URL")
        error.nothing_sent = True
        return error
    if isinstance(exc, NOT_SENT_ERRORS):
        error = RetryablePublishError(channel, f"{action}: {describe_exception(exc)} (nothing was sent)")
        error.nothing_sent = True
        return error
    if sending:
        return AmbiguousPublishError(channel, f"{action}: {describe_exception(exc)} after the request was sent; "
                                              "the post may or may not exist")
    return RetryablePublishError(channel, f"{action}: {describe_exception(exc)}")


def classify_status(channel: str, status: int, detail: str, *, retry_delay: float | None = None,
                    default_delay: float = DEFAULT_RETRY_DELAY) -> PublishError:
    """The generic mapping of an HTTP error status to a ``PublishError``.

    Platform modules handle their special cases first and fall back to this:

    ==========================  =======================================================
    429                         ``RetryAfter(retry_delay or default_delay)``
    5xx                         ``RetryAfter`` if the server said when, else ``RetryablePublishError``
    408                         ``RetryablePublishError``
    401                         ``CredentialsError``
    400, 413, 422               ``ContentRejectedError``
    anything else (402/403/404/410/3xx ...)  ``PermanentPublishError``
    ==========================  =======================================================
    """
    what = f"{describe_status(status)}: {detail}" if detail else describe_status(status)
    if status == 429:
        delay = retry_delay if retry_delay is not None else default_delay
        return RetryAfter(channel, delay, f"rate limited ({what}); retry after {delay:.0f}s")
    if status >= 500:
        if retry_delay is not None:
            return RetryAfter(channel, retry_delay, f"server error ({what}); retry after {retry_delay:.0f}s")
        return RetryablePublishError(channel, f"server error ({what})")
    if status == 408:
        return RetryablePublishError(channel, f"request timeout ({what})")
    if status == 401:
        return CredentialsError(channel, f"credentials rejected ({what})")
    if status in (400, 413, 422):
        return ContentRejectedError(channel, f"message rejected ({what})")
    return PermanentPublishError(channel, f"refused ({what})")
