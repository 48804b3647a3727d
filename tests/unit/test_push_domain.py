"""The push decisions, pure: the hook's signature and window, the replay memory, what a push does to a
source's schedule, and the WebSub subscriber's arithmetic (signatures, secrets, leases, verification)."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.domain.push import (
    MAX_LEASE,
    MIN_LEASE,
    HookCheck,
    PushOutcome,
    ReplayGuard,
    Verification,
    WebSubState,
    WebSubSubscription,
    callback_url,
    check_hook,
    hook_signature,
    hub_lease,
    hub_signature_ok,
    parse_hook_signature,
    parse_timestamp,
    poll_request,
    renewal_time,
    retry_delay,
    verification,
    websub_secret,
)

SECRET = b"0123456789abcdef-hook-secret"
NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def check(body: bytes = b"{}", *, source: str = "archive", timestamp: str | None = None,
          signature: str | None = None, secret: bytes = SECRET, now: float = NOW, window: float = 300.0,
          signed_for: str | None = None, signed_body: bytes | None = None) -> HookCheck:
    stamp = timestamp if timestamp is not None else str(int(now))
    sig = signature if signature is not None else hook_signature(
        secret, stamp, signed_for or source, body if signed_body is None else signed_body)
    return check_hook(SECRET, source=source, timestamp=stamp, signature=sig, body=body, now=now, window=window)


# -- the hook --------------------------------------------------------------------------------------------


def test_the_signed_text_is_timestamp_source_and_body_under_hmac_sha256() -> None:
    expected = hmac.new(SECRET, b"1767225600.archive.{\"event\":\"publish\"}", hashlib.sha256).hexdigest()
    assert hook_signature(SECRET, "1767225600", "archive", b'{"event":"publish"}') == f"sha256={expected}"


def test_a_correctly_signed_call_within_the_window_passes() -> None:
    assert check() == HookCheck.OK
    assert check(timestamp=str(int(NOW) - 300)) == HookCheck.OK  # the window's edges are inside it
    assert check(timestamp=str(int(NOW) + 300)) == HookCheck.OK
    upper = hook_signature(SECRET, str(int(NOW)), "archive", b"{}").upper().replace("SHA256=", "sha256=")
    assert check(signature=upper) == HookCheck.OK  # hex in any case


@pytest.mark.parametrize(("change", "verdict"), [
    ({"secret": b"another secret of enough length"}, HookCheck.BAD_SIGNATURE),
    ({"signed_body": b'{"event":"update"}'}, HookCheck.BAD_SIGNATURE),  # the body was changed on the way
    ({"signed_for": "other-source"}, HookCheck.BAD_SIGNATURE),  # signed for another source sharing the secret
    ({"timestamp": str(int(NOW) - 301)}, HookCheck.STALE),  # an old call replayed after the window
    ({"timestamp": str(int(NOW) + 301)}, HookCheck.STALE),  # a sender whose clock runs far ahead
    ({"timestamp": ""}, HookCheck.MALFORMED),
    ({"timestamp": "1767225600.5"}, HookCheck.MALFORMED),
    ({"timestamp": "-1767225600"}, HookCheck.MALFORMED),
    ({"timestamp": "١٧٦٧٢٢٥٦٠٠"}, HookCheck.MALFORMED),  # Arabic-Indic digits: isdigit() but not ASCII
    ({"timestamp": "9" * 13}, HookCheck.MALFORMED),
    ({"signature": ""}, HookCheck.MALFORMED),
    ({"signature": "sha1=" + "0" * 40}, HookCheck.MALFORMED),
    ({"signature": "sha256=" + "0" * 63}, HookCheck.MALFORMED),
    ({"signature": "sha256=" + "g" * 64}, HookCheck.MALFORMED),
    ({"signature": "sha256=" + "0" * 64}, HookCheck.BAD_SIGNATURE),
])
def test_anything_else_is_refused_and_says_why(change: dict[str, object], verdict: HookCheck) -> None:
    assert check(**change) == verdict  # type: ignore[arg-type]


def test_missing_headers_are_malformed() -> None:
    assert check_hook(SECRET, source="a", timestamp=None, signature="sha256=" + "0" * 64, body=b"", now=NOW,
                      window=300) == HookCheck.MALFORMED
    assert check_hook(SECRET, source="a", timestamp="1", signature=None, body=b"", now=NOW,
                      window=300) == HookCheck.MALFORMED
    assert parse_timestamp(" 42 ") == 42 and parse_hook_signature(None) is None


@given(body=st.binary(max_size=2048), source=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}", fullmatch=True),
       offset=st.integers(-300, 300), flip=st.integers(0, 2047))
def test_property_any_signed_call_passes_and_any_changed_byte_fails(body: bytes, source: str, offset: int,
                                                                     flip: int) -> None:
    stamp = str(int(NOW) + offset)
    signature = hook_signature(SECRET, stamp, source, body)
    assert check_hook(SECRET, source=source, timestamp=stamp, signature=signature, body=body, now=NOW,
                      window=300) == HookCheck.OK
    if body:
        i = flip % len(body)
        changed = body[:i] + bytes([body[i] ^ 0x01]) + body[i + 1:]
        assert check_hook(SECRET, source=source, timestamp=stamp, signature=signature, body=changed, now=NOW,
                          window=300) == HookCheck.BAD_SIGNATURE


# -- replays ---------------------------------------------------------------------------------------------


def test_a_signature_seen_within_the_window_is_a_replay_and_forgotten_after_it() -> None:
    guard = ReplayGuard()
    assert guard.admit(b"sig-1", expires=NOW + 300, now=NOW) is True
    assert guard.admit(b"sig-1", expires=NOW + 300, now=NOW + 299) is False
    assert guard.admit(b"sig-2", expires=NOW + 300, now=NOW + 1) is True
    assert guard.admit(b"sig-1", expires=NOW + 700, now=NOW + 301) is True  # the old one could not pass any more
    assert len(guard) == 1


def test_the_replay_memory_is_bounded_and_says_so_when_full() -> None:
    guard = ReplayGuard(capacity=3)
    for i in range(3):
        assert guard.admit(bytes([i]), expires=NOW + 10 + i, now=NOW) is True
    assert guard.admit(b"x", expires=NOW + 20, now=NOW) is None  # full: refused, nothing forgotten early
    assert guard.admit(bytes([0]), expires=NOW + 20, now=NOW) is False
    assert guard.admit(b"x", expires=NOW + 20, now=NOW + 10.5) is True  # the first one expired: room again


# -- what a push does to the schedule --------------------------------------------------------------------


def test_a_push_brings_a_healthy_source_forward_to_now() -> None:
    request = poll_request(next_poll_at=T0 + timedelta(minutes=10), failures=0,
                           last_poll_at=T0 - timedelta(minutes=5), now=T0, min_gap=2)
    assert (request.outcome, request.at) == (PushOutcome.QUEUED, T0)


def test_a_push_right_after_a_poll_waits_for_the_minimum_gap() -> None:
    request = poll_request(next_poll_at=T0 + timedelta(minutes=10), failures=0,
                           last_poll_at=T0 - timedelta(seconds=0.5), now=T0, min_gap=2)
    assert (request.outcome, request.at) == (PushOutcome.QUEUED, T0 + timedelta(seconds=1.5))


def test_a_source_already_due_absorbs_the_push() -> None:
    assert poll_request(next_poll_at=T0 - timedelta(seconds=1), failures=0, last_poll_at=None, now=T0,
                        min_gap=2).outcome == PushOutcome.DUE
    assert poll_request(next_poll_at=None, failures=0, last_poll_at=None, now=T0,
                        min_gap=2).outcome == PushOutcome.DUE
    # due within the gap already: nothing to move
    request = poll_request(next_poll_at=T0 + timedelta(seconds=1), failures=0, last_poll_at=T0, now=T0, min_gap=2)
    assert (request.outcome, request.at) == (PushOutcome.DUE, T0 + timedelta(seconds=1))


def test_a_failing_or_rate_limited_source_keeps_its_backoff() -> None:
    later = T0 + timedelta(hours=1)  # a 503 with Retry-After: 3600 is recorded as a failure with this time
    request = poll_request(next_poll_at=later, failures=1, last_poll_at=T0, now=T0, min_gap=2)
    assert (request.outcome, request.at) == (PushOutcome.HELD, later)
    # once its time has come it is due like any other
    assert poll_request(next_poll_at=T0, failures=3, last_poll_at=None, now=T0,
                        min_gap=2).outcome == PushOutcome.DUE


@given(next_in=st.floats(-1e6, 1e6), failures=st.integers(0, 50), last_ago=st.none() | st.floats(0, 1e6),
       gap=st.floats(0.1, 3600))
def test_property_a_push_never_delays_a_poll_nor_shortens_a_backoff(next_in: float, failures: int,
                                                                     last_ago: float | None, gap: float) -> None:
    next_at = T0 + timedelta(seconds=next_in)
    last = None if last_ago is None else T0 - timedelta(seconds=last_ago)
    request = poll_request(next_poll_at=next_at, failures=failures, last_poll_at=last, now=T0, min_gap=gap)
    assert request.at <= next_at or request.outcome == PushOutcome.DUE
    if failures and next_at > T0:
        assert request.at == next_at
    if request.outcome == PushOutcome.QUEUED:
        assert request.at >= T0 and (last is None or request.at >= last + timedelta(seconds=gap) or request.at == T0)


# -- WebSub ----------------------------------------------------------------------------------------------


def test_each_subscription_gets_its_own_derived_secret() -> None:
    master = b"websub master secret, long enough"
    cb = callback_url("https://relay.example.org/", "archive")
    assert cb == "https://relay.example.org/websub/archive"
    one = websub_secret(master, cb, "https://site/feed/")
    assert one == websub_secret(master, cb, "https://site/feed/")  # the same across renewals
    assert len(one) == 64 and master.decode() not in one
    assert one != websub_secret(master, cb, "https://site/feed/json")
    assert one != websub_secret(b"another master secret of length", cb, "https://site/feed/")


@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "sha384", "sha512"])
def test_hub_signatures_of_every_allowed_method_are_checked(algorithm: str) -> None:
    body = b"<rss>...</rss>"
    digest = hmac.new(b"s3cret", body, getattr(hashlib, algorithm)).hexdigest()
    assert hub_signature_ok("s3cret", f"{algorithm}={digest}", body)
    assert hub_signature_ok("s3cret", f"{algorithm.upper()}={digest.upper()}", body)
    assert not hub_signature_ok("other", f"{algorithm}={digest}", body)
    assert not hub_signature_ok("s3cret", f"{algorithm}={digest}", body + b" ")


@pytest.mark.parametrize("header", [None, "", "sha256", "md5=" + hashlib.md5(b"x").hexdigest(),  # noqa: S324
                                    "sha256=zz", "sha256=" + "a" * 300, "=abc"])
def test_a_missing_or_malformed_hub_signature_fails(header: str | None) -> None:
    assert not hub_signature_ok("s3cret", header, b"x")


def test_a_hub_lease_is_clamped_and_renewed_before_it_ends() -> None:
    assert hub_lease("86400", 864000) == 86400
    assert hub_lease(None, 864000) == 864000
    assert hub_lease("1", 864000) == MIN_LEASE
    assert hub_lease("9" * 12, 864000) == MAX_LEASE
    assert hub_lease("-5", 864000) == 864000 and hub_lease("1e9", 864000) == 864000
    assert renewal_time(T0, 864000, 86400) == T0 + timedelta(days=9)
    assert renewal_time(T0, 3600, 86400) == T0 + timedelta(minutes=30)  # never before half the lease
    assert [retry_delay(n) for n in (1, 2, 3)] == [60, 120, 240] and retry_delay(40) == 86400


def _sub(state: WebSubState = WebSubState.ACTIVE) -> WebSubSubscription:
    return WebSubSubscription("archive", "https://hub/", "https://site/feed/", state)


@pytest.mark.parametrize(("mode", "topic", "sub", "expected"), [
    ("subscribe", "https://site/feed/", _sub(), Verification.CONFIRM),
    ("subscribe", "https://site/feed/", _sub(WebSubState.REQUESTED), Verification.CONFIRM),
    ("subscribe", "https://other/feed/", _sub(), Verification.REFUSE),
    ("subscribe", "https://site/feed/", _sub(WebSubState.DROPPED), Verification.REFUSE),
    ("subscribe", "https://site/feed/", None, Verification.REFUSE),
    ("unsubscribe", "https://site/feed/", _sub(), Verification.REFUSE),  # nobody unsubscribes us for us
    ("unsubscribe", "https://site/feed/", _sub(WebSubState.DROPPED), Verification.CONFIRM),
    ("unsubscribe", "https://old/feed/", _sub(), Verification.CONFIRM),
    ("denied", "https://site/feed/", _sub(WebSubState.REQUESTED), Verification.DENIED),
    ("denied", "https://other/feed/", _sub(), Verification.REFUSE),
    ("nonsense", "https://site/feed/", _sub(), Verification.REFUSE),
    (None, None, _sub(), Verification.REFUSE),
])
def test_a_verification_of_intent_is_confirmed_only_for_what_tagrelay_asked(
        mode: str | None, topic: str | None, sub: WebSubSubscription | None, expected: Verification) -> None:
    assert verification(mode, topic, sub) == expected
