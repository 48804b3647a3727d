"""What Discord's answers mean: every error status and JSON error code → one ``PublishError``.

Discord answers an error with ``{"code": <JSON error code>, "message": "...", "errors": {...}}``
(docs.discord.com, "Opcodes and Status Codes"); ``errors`` nests the field path of each
problem down to ``{"_errors": [{"code", "message"}]}`` (a 50035 "Invalid Form Body" names the
field that is too long). A 429 carries ``{"message", "retry_after": <seconds, fractional>,
"global": <bool>}`` plus ``Retry-After`` and the ``X-RateLimit-*`` headers; a 429 from
Cloudflare (an IP ban) has no such JSON.

==========================================================  =================================================
429 (``retry_after``, else ``Retry-After``, else             ``RetryAfter`` (``global``: every channel on the
``X-RateLimit-Reset-After``)                                 host waits too)
429 from Cloudflare (no Discord JSON, no ``Retry-After``)    ``RetryAfter(CLOUDFLARE_BAN_HOLD)``
401, 50027 Invalid Webhook Token                              ``CredentialsError`` (the webhook URL)
404 + 10015 Unknown Webhook (deleted, URL regenerated)        ``CredentialsError``
403 (50013 Missing Permissions, 50001 Missing Access, …)      ``PermanentPublishError``
400/404 + 10003 Unknown Channel (thread gone)                 ``PermanentPublishError`` (check ``thread_id``)
400 + 50083 archived thread, 160005 locked thread             ``PermanentPublishError``
400 + 220001 forum needs a thread, 220002, 220003 not a       ``PermanentPublishError`` (``forum`` /
forum, 220004, 40067 forum needs a tag                        ``thread_id`` do not match the channel)
400 + 50035 invalid form body, 50006 empty message,           ``ContentRejectedError`` (one plain retry, then
50109 invalid JSON, 200000/200001 AutoMod, 240000 harmful     ``dead``)
link; 413 / 40005 too large; any other 400
404 otherwise, 3xx, other 4xx                                 ``PermanentPublishError``
5xx, 408, 130000 overloaded                                   ``RetryAfter`` with ``Retry-After``, else
                                                              ``RetryablePublishError``
==========================================================  =================================================

Everything quoted from an answer goes through ``platform_text`` (controls removed, the
webhook URL and token redacted, one bounded line); a body that is not Discord's JSON is never
quoted.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx

from bot.clock import Clock
from bot.errors import (
    ContentRejectedError,
    CredentialsError,
    PermanentPublishError,
    PublishError,
    RetryablePublishError,
    RetryAfter,
)
from bot.publishers.discord.limits import seconds_to_reset
from bot.publishers.http import (
    DEFAULT_RETRY_DELAY,
    LOCATION_LIMIT,
    classify_status,
    describe_status,
    json_body,
    parse_retry_after,
    platform_text,
)

CLOUDFLARE_BAN_HOLD = 3600.0
"""Seconds to hold after a 429 that is not Discord's (Cloudflare's IP ban) and says nothing about when."""
FIELD_PROBLEMS = 3
"""How many of a 50035's field problems an error message lists."""
_WALK_LIMIT = 200
"""Nodes of a hostile ``errors`` tree looked at, at most."""

UNKNOWN_CHANNEL = 10003
UNKNOWN_MESSAGE = 10008
UNKNOWN_WEBHOOK = 10015
INVALID_WEBHOOK_TOKEN = 50027
MISSING_ACCESS = 50001
MISSING_PERMISSIONS = 50013
ARCHIVED_THREAD = 50083
LOCKED_THREAD = 160005
FORUM_NEEDS_THREAD = 220001
FORUM_THREAD_NAME_AND_ID = 220002
THREADS_ONLY_IN_FORUMS = 220003
FORUM_NO_WEBHOOK_SERVICES = 220004
FORUM_NEEDS_TAG = 40067
API_OVERLOADED = 130000
REQUEST_TOO_LARGE = 40005

_FORUM_HINTS = {
    FORUM_NEEDS_THREAD: "the webhook posts into a forum channel: set forum = true (a thread per post) or thread_id",
    FORUM_THREAD_NAME_AND_ID: "set either forum = true or thread_id, not both",
    THREADS_ONLY_IN_FORUMS: "forum = true, but the webhook's channel is not a forum: set forum = false",
    FORUM_NO_WEBHOOK_SERVICES: "this forum channel does not take webhook posts",
    FORUM_NEEDS_TAG: "the forum requires a tag on every post; tagrelay sets none: make tags optional there",
}


def discord_error(body: Any) -> tuple[int | None, str]:
    """(JSON error code, message) of a Discord error body; (None, "") when it is not one."""
    if not isinstance(body, dict):
        return None, ""
    code = body.get("code")
    message = body.get("message")
    return (code if isinstance(code, int) and not isinstance(code, bool) else None,
            message if isinstance(message, str) else "")


def _walk(node: Any, path: tuple[str, ...], budget: list[int]) -> Iterator[tuple[str, str]]:
    """(field path, message) of every problem in a 50035 ``errors`` tree, depth first, bounded."""
    if budget[0] <= 0 or not isinstance(node, dict) or len(path) > 8:
        return
    budget[0] -= 1
    problems = node.get("_errors")
    if isinstance(problems, list):
        for problem in problems[:FIELD_PROBLEMS]:
            if isinstance(problem, dict) and isinstance(problem.get("message"), str):
                yield ".".join(path) or "(body)", problem["message"]
    for key, child in list(node.items())[:50]:
        if key != "_errors":
            yield from _walk(child, (*path, str(key)[:40]), budget)


def field_problems(body: Any) -> list[tuple[str, str]]:
    """The first ``FIELD_PROBLEMS`` (field, message) pairs of a 50035's ``errors``."""
    errors = body.get("errors") if isinstance(body, dict) else None
    found: list[tuple[str, str]] = []
    for item in _walk(errors, (), [_WALK_LIMIT]):
        found.append(item)
        if len(found) >= FIELD_PROBLEMS:
            break
    return found


def rate_limit_delay(response: httpx.Response, now: datetime, body: Any) -> tuple[float | None, bool]:
    """(seconds to wait, global?) of a 429: the body's ``retry_after``, else ``Retry-After``, else
    ``X-RateLimit-Reset-After``; (None, False) when none is usable."""
    is_global = isinstance(body, dict) and body.get("global") is True
    value = body.get("retry_after") if isinstance(body, dict) else None
    if isinstance(value, int | float) and not isinstance(value, bool) and value == value and value >= 0:
        return float(value), is_global  # an endless wait is capped by the delivery decision (a week)
    headers = {k.lower(): v for k, v in response.headers.items()}
    is_global = is_global or headers.get("x-ratelimit-global", "").strip().lower() == "true"
    from_header = parse_retry_after(headers.get("retry-after"), now)
    if from_header is not None:
        return from_header, is_global
    return seconds_to_reset(headers, now), is_global


class Classifier:
    """Turns a failed answer into a ``PublishError`` for one channel; quotes nothing secret."""

    def __init__(self, channel: str, env_name: str, secrets: list[str], clock: Clock) -> None:
        self.channel = channel
        self.clock = clock
        self.env_name = env_name
        self.secrets = secrets

    def text(self, value: str, limit: int | None = None) -> str:
        return platform_text(value, self.secrets) if limit is None else platform_text(value, self.secrets, limit)

    def describe(self, status: int, code: int | None, message: str, body: Any) -> str:
        """``"400 Bad Request: Invalid Form Body (code 50035; embeds.0.description: Must be …)"``."""
        what = describe_status(status)
        if message:
            what += f": {self.text(message, 120)}"
        details = [f"code {code}"] if code is not None else []
        details += [f"{self.text(field, 60)}: {self.text(problem, 120)}" for field, problem in field_problems(body)]
        return f"{what} ({'; '.join(details)})" if details else what

    def rate_limited(self, delay: float | None, *, is_global: bool, discord_json: bool, what: str,
                     action: str) -> RetryAfter:
        if delay is None:
            delay = DEFAULT_RETRY_DELAY if discord_json else CLOUDFLARE_BAN_HOLD
        if not discord_json:
            return RetryAfter(self.channel, delay, f"{action}: 429 without Discord's answer (Cloudflare may have "
                                                   f"banned this address for too many invalid requests); "
                                                   f"retry after {delay:.0f}s")
        scope = "global rate limit" if is_global else "rate limit"
        return RetryAfter(self.channel, delay, f"Discord {scope} on {action} ({what}); retry after {delay:.3f}s")

    def classify(self, response: httpx.Response, *, action: str, delay: float | None = None,
                 is_global: bool = False) -> PublishError:
        """A non-2xx answer as a ``PublishError`` (the table in the module docstring)."""
        status = response.status_code
        body = json_body(response)
        code, message = discord_error(body)
        what = self.describe(status, code, message, body)
        channel, env = self.channel, self.env_name
        if status == 429:
            discord_json = isinstance(body, dict) and ("retry_after" in body or "message" in body)
            return self.rate_limited(delay, is_global=is_global, discord_json=discord_json, what=what, action=action)
        if status == 401 or code == INVALID_WEBHOOK_TOKEN:
            return CredentialsError(channel, f"Discord rejected the webhook token in {env} ({action}: {what}); "
                                             "copy the webhook URL again from the channel's Integrations settings")
        if code == UNKNOWN_WEBHOOK:
            return CredentialsError(channel, f"Discord says the webhook in {env} no longer exists ({action}: "
                                             f"{what}): it was deleted or its URL regenerated; create a webhook "
                                             f"and put its URL in {env}")
        if code in _FORUM_HINTS:
            return PermanentPublishError(channel, f"Discord refused {action} ({what}): {_FORUM_HINTS[code]}")
        if code == UNKNOWN_CHANNEL:
            return PermanentPublishError(channel, f"Discord cannot find the channel or thread ({action}: {what}); "
                                                  "check thread_id (a deleted thread) and the webhook's channel")
        if code in (ARCHIVED_THREAD, LOCKED_THREAD):
            return PermanentPublishError(channel, f"Discord refused {action} ({what}): the thread in thread_id is "
                                                  "archived or locked; reopen it or point thread_id elsewhere")
        if status == 403:
            return PermanentPublishError(channel, f"Discord refused {action} ({what}); the webhook may lack the "
                                                  "right to post there (Missing Permissions / Missing Access)")
        if code == API_OVERLOADED:
            return RetryablePublishError(channel, f"Discord is overloaded ({action}: {what})")
        if status in (400, 413, 422) or code == REQUEST_TOO_LARGE:
            return ContentRejectedError(channel, f"Discord rejected the message ({action}: {what})")
        if 300 <= status < 400:
            location = self.text(response.headers.get("Location", "?"), LOCATION_LIMIT)
            return PermanentPublishError(channel, f"Discord redirected {action} to {location} ({what}); "
                                                  "check api_base")
        if status == 404:
            return PermanentPublishError(channel, f"Discord: {action} not found ({what}); check api_base and the "
                                                  f"webhook URL in {env}")
        retry = parse_retry_after(response.headers.get("Retry-After"), self.clock.now()) if status >= 500 \
            else None
        return classify_status(channel, status, f"Discord: {what}", retry_delay=retry)
