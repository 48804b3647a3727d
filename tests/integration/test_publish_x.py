"""The X publisher over real HTTP against ``FakeX`` (which verifies OAuth 1.0a signatures); x_auth's offline parts."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from bot.clock import FakeClock
from bot.errors import (
    AmbiguousPublishError,
    ContentRejectedError,
    CredentialsError,
    CreditsExhaustedError,
    DuplicateContentError,
    PermanentPublishError,
    PublishError,
    RetryablePublishError,
    RetryAfter,
)
from bot.publishers.api import PublisherContext, PublisherPlugin
from bot.publishers.http import parse_reset_epoch
from bot.publishers.x import XOptions, XPublisher, plugin, rate_limit_delay
from bot.publishers.x_auth import x_auth_flow
from bot.render.message import RenderedMessage
from bot.validation import ValidationError
from tests.fakes.x_api import (
    ACCESS_TOKEN,
    ACCESS_TOKEN_SECRET,
    BEARER_TOKEN,
    CONSUMER_KEY,
    CONSUMER_SECRET,
    TWEETS,
    FakeX,
    hmac_sha1_signature,
    parse_oauth_header,
    signature_base_string,
)
from tests.publish_support import DictSecrets, assert_clean

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
EPOCH = int(NOW.timestamp())
OAUTH1_ENV = {"X_CONSUMER_KEY": CONSUMER_KEY, "X_CONSUMER_SECRET": CONSUMER_SECRET,
              "X_ACCESS_TOKEN": ACCESS_TOKEN, "X_ACCESS_TOKEN_SECRET": ACCESS_TOKEN_SECRET}
ALL_SECRETS = (CONSUMER_SECRET, ACCESS_TOKEN, ACCESS_TOKEN_SECRET, BEARER_TOKEN)


def options(api_base: str, **overrides: Any) -> XOptions:
    return XOptions.model_validate({"name": "x-main", "platform": "x", "api_base": api_base, **overrides})


def message(text: str = "New post: Hello https://archive.example.org/hello/") -> RenderedMessage:
    return RenderedMessage(text=text, link="https://archive.example.org/hello/")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def fake() -> Iterator[FakeX]:
    with FakeX(epoch=EPOCH) as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(5.0, read=0.5)) as client:
        yield client


def make_ctx(http: httpx.AsyncClient, clock: FakeClock, env: dict[str, str] | None = None) -> PublisherContext:
    return PublisherContext(http=http, secret=DictSecrets(OAUTH1_ENV if env is None else env),
                            logger=logging.getLogger("test.x"), clock=clock)


@pytest.fixture
def ctx(http: httpx.AsyncClient, clock: FakeClock) -> PublisherContext:
    return make_ctx(http, clock)


@pytest.fixture
async def publisher(fake: FakeX, ctx: PublisherContext) -> AsyncIterator[XPublisher]:
    pub = plugin.create(options(fake.url), ctx)
    await pub.initialize()
    try:
        yield pub
    finally:
        await pub.aclose()


async def publish_error(pub: XPublisher, msg: RenderedMessage | None = None) -> PublishError:
    with pytest.raises(PublishError) as info:
        await pub.publish(msg or message(), idempotency_key="tagrelay-1")
    assert_clean(info.value, *ALL_SECRETS)
    return info.value


# -- plugin and options ---------------------------------------------------------------------------


def test_plugin_satisfies_the_contract() -> None:
    assert isinstance(plugin, PublisherPlugin)
    assert plugin.name == "x"


def test_defaults_are_oauth1() -> None:
    opts = XOptions.model_validate({"name": "x", "platform": "x"})
    assert opts.auth_style == "oauth1"
    assert (opts.api_base, opts.consumer_key_env, opts.consumer_secret_env, opts.access_token_env,
            opts.access_token_secret_env, opts.bearer_token_env) == (
        "https://api.x.com", "X_CONSUMER_KEY", "X_CONSUMER_SECRET", "X_ACCESS_TOKEN", "X_ACCESS_TOKEN_SECRET", None)


def test_bearer_token_selects_oauth2() -> None:
    assert options("https://api.x.com", bearer_token_env="X_USER_TOKEN").auth_style == "oauth2"


def test_both_auth_styles_is_a_config_error() -> None:
    with pytest.raises(ValidationError, match="not both"):
        options("https://api.x.com", bearer_token_env="X_USER_TOKEN", access_token_env="MY_TOKEN")


def test_bad_env_names_are_rejected() -> None:
    with pytest.raises(ValidationError):
        options("https://api.x.com", bearer_token_env="")
    with pytest.raises(ValidationError):
        options("https://api.x.com", consumer_key_env="X-KEY")


# -- OAuth 1.0a -----------------------------------------------------------------------------------


def test_fake_verifier_matches_the_documented_example() -> None:
    """X's "Creating a signature" worked example (developer docs), so the fake's verifier is right."""
    params = [("status", "Hello Ladies + Gentlemen, a signed OAuth request!"), ("include_entities", "true"),
              ("oauth_consumer_key", "xvz1evFS4wEEPTGEFPHBog"),
              ("oauth_nonce", "kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg"), ("oauth_signature_method", "HMAC-SHA1"),
              ("oauth_timestamp", "1318622958"), ("oauth_token", "370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb"),
              ("oauth_version", "1.0")]
    base = signature_base_string("POST", "https://api.twitter.com/1.1/statuses/update.json", params)
    assert hmac_sha1_signature(base, "kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw",
                               "LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE") == "hCtSmYh+iHYCEqBWrE7C7hYmtUk="


async def test_post_signed_with_oauth1(fake: FakeX, publisher: XPublisher) -> None:
    text = "Neu: Grüße & 日本語 + 👨‍👩‍👧 https://archive.example.org/hello/?a=1&b=2"
    result = await publisher.publish(message(text), idempotency_key="tagrelay-1")
    assert fake.auth_failures == []
    [tweet] = fake.tweets
    assert (tweet.text, tweet.auth) == (text, "oauth1")
    assert result.remote_id == tweet.id
    assert result.url == f"https://x.com/i/web/status/{tweet.id}"
    [request] = fake.seen("POST", TWEETS)
    oauth = parse_oauth_header(request.header("authorization") or "")
    assert oauth["oauth_consumer_key"] == CONSUMER_KEY
    assert "oauth_body_hash" in oauth  # the JSON body is covered by its hash, not as parameters
    assert request.json() == {"text": text}


async def test_each_request_gets_a_fresh_nonce(fake: FakeX, publisher: XPublisher) -> None:
    await publisher.publish(message("one"), idempotency_key="1")
    await publisher.publish(message("two"), idempotency_key="2")
    await publisher.check()
    assert fake.auth_failures == []
    assert len(fake.tweets) == 2


async def test_wrong_secret_fails_the_signature(fake: FakeX, http: httpx.AsyncClient, clock: FakeClock) -> None:
    env = {**OAUTH1_ENV, "X_ACCESS_TOKEN_SECRET": "not-the-right-secret-000000000000"}
    pub = plugin.create(options(fake.url), make_ctx(http, clock, env))
    exc = await publish_error(pub)
    assert_clean(exc, "not-the-right-secret-000000000000")
    assert isinstance(exc, CredentialsError)
    assert "X_ACCESS_TOKEN_SECRET" in str(exc)
    assert fake.auth_failures and fake.auth_failures[0].startswith("bad signature")


# -- OAuth 2.0 ------------------------------------------------------------------------------------


async def test_post_with_oauth2_user_token(fake: FakeX, http: httpx.AsyncClient, clock: FakeClock) -> None:
    pub = plugin.create(options(fake.url, bearer_token_env="X_USER_TOKEN"),
                        make_ctx(http, clock, {"X_USER_TOKEN": BEARER_TOKEN}))
    await pub.publish(message(), idempotency_key="k")
    assert [t.auth for t in fake.tweets] == ["oauth2"]
    assert fake.seen("POST", TWEETS)[0].header("authorization") == f"Bearer {BEARER_TOKEN}"


async def test_expired_oauth2_token(fake: FakeX, http: httpx.AsyncClient, clock: FakeClock) -> None:
    pub = plugin.create(options(fake.url, bearer_token_env="X_USER_TOKEN"),
                        make_ctx(http, clock, {"X_USER_TOKEN": "expired-user-token-0000000000"}))
    exc = await publish_error(pub)
    assert_clean(exc, "expired-user-token-0000000000")
    assert isinstance(exc, CredentialsError)
    assert "X_USER_TOKEN" in str(exc) and "2 hours" in str(exc)


# -- errors ---------------------------------------------------------------------------------------


async def test_duplicate_text(fake: FakeX, publisher: XPublisher) -> None:
    await publisher.publish(message(), idempotency_key="1")
    exc = await publish_error(publisher)
    assert type(exc) is DuplicateContentError
    assert len(fake.tweets) == 1


async def test_rate_limit_waits_until_reset(fake: FakeX, publisher: XPublisher) -> None:
    fake.rate_limit(EPOCH + 120)
    exc = await publish_error(publisher)
    assert isinstance(exc, RetryAfter)
    assert exc.delay == 120
    assert fake.tweets == []


async def test_daily_cap_waits_for_the_daily_reset(fake: FakeX, publisher: XPublisher) -> None:
    fake.rate_limit(EPOCH + 7200, daily=True)  # 15-min window resets earlier, but the 24-hour cap is spent
    exc = await publish_error(publisher)
    assert isinstance(exc, RetryAfter)
    assert exc.delay == 7200
    assert "x-user-limit-24hour" in str(exc)


async def test_rate_limit_without_headers(fake: FakeX, publisher: XPublisher) -> None:
    fake.fail_next(429, {"title": "Too Many Requests", "detail": "Too Many Requests", "status": 429},
                   match=TWEETS)
    exc = await publish_error(publisher)
    assert isinstance(exc, RetryAfter)
    assert exc.delay == 900


async def test_out_of_credits(fake: FakeX, publisher: XPublisher) -> None:
    fake.payment_required()
    exc = await publish_error(publisher)
    assert type(exc) is CreditsExhaustedError and isinstance(exc, PermanentPublishError)  # 402: its own class
    assert "credits" in str(exc)
    assert "does not have any credits" in exc.reason and "[credits]" in exc.reason  # X's detail and problem type


async def test_oauth1_permissions(fake: FakeX, publisher: XPublisher) -> None:
    fake.forbid_oauth1_permissions()
    exc = await publish_error(publisher)
    assert type(exc) is PermanentPublishError
    assert "Read and write" in str(exc)


async def test_too_long_text_is_rejected(fake: FakeX, publisher: XPublisher) -> None:
    exc = await publish_error(publisher, message("日本語" * 47))  # 282 weighted characters
    assert type(exc) is ContentRejectedError
    assert "too long" in str(exc)


@pytest.mark.parametrize(("status", "body", "expected"), [
    (403, {"title": "Forbidden", "detail": "You are not permitted to perform this action.",
           "type": "https://api.x.com/2/problems/client-forbidden", "status": 403}, PermanentPublishError),
    (401, {"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"},
     CredentialsError),
    (400, {"errors": [{"message": "Invalid reply settings"}], "title": "Invalid Request",
           "type": "https://api.twitter.com/2/problems/invalid-request"}, ContentRejectedError),
    (500, {"title": "Internal Server Error", "status": 500}, RetryablePublishError),
    (503, {"title": "Service Unavailable", "detail": "Service Unavailable", "status": 503},
     RetryablePublishError),
])
async def test_status_classification(fake: FakeX, publisher: XPublisher, status: int, body: dict[str, Any],
                                     expected: type[PublishError]) -> None:
    fake.fail_next(status, body, match=TWEETS)
    exc = await publish_error(publisher)
    assert type(exc) is expected
    assert str(status) in str(exc)


UNSAFE = {*map(chr, range(0x20)), "\x7f", *map(chr, range(0x80, 0xA0)), *"\u202a\u202b\u202c\u202d\u202e\u2066\u2069"}


@pytest.mark.parametrize("body", [
    {"title": "Forbidden", "detail": f"no\x1b[2J\u202e {ACCESS_TOKEN_SECRET} " + "d" * 20_000, "status": 403,
     "type": "about:blank\x1b]0;pwned\x07" + "t" * 5000},
    {"errors": [{"message": f"bad {CONSUMER_SECRET}\x9b31m " + "m" * 20_000}]},
])
async def test_error_text_is_one_bounded_clean_line_without_secrets(fake: FakeX, publisher: XPublisher,
                                                                   body: dict[str, Any]) -> None:
    fake.fail_next(403, body, match=TWEETS)
    exc = await publish_error(publisher)
    assert_clean(exc, *ALL_SECRETS)
    assert "403" in exc.reason
    assert len(exc.reason) <= 800 and not set(exc.reason) & UNSAFE, exc.reason


async def test_timeout_is_ambiguous_and_a_retry_meets_the_duplicate(fake: FakeX, publisher: XPublisher) -> None:
    release = fake.hold_next(TWEETS)
    try:
        exc = await publish_error(publisher)
    finally:
        release.set()
    assert isinstance(exc, AmbiguousPublishError)
    assert len(fake.tweets) == 1
    again = await publish_error(publisher)
    assert isinstance(again, DuplicateContentError)  # the delivery service records this as sent
    assert publisher.idempotent is False


async def test_connection_refused_is_plainly_retryable(ctx: PublisherContext) -> None:
    pub = plugin.create(options(f"http://127.0.0.1:{closed_port()}"), ctx)
    exc = await publish_error(pub)
    assert type(exc) is RetryablePublishError


# -- check and credentials --------------------------------------------------------------------------


async def test_check(fake: FakeX, publisher: XPublisher) -> None:
    info = await publisher.check()
    assert info.display == "@tagrelay_test"
    assert info.detail["auth"] == "oauth1"
    assert fake.auth_failures == []


@pytest.mark.parametrize("missing", sorted(OAUTH1_ENV))
def test_missing_credential_names_channel_and_variable(http: httpx.AsyncClient, clock: FakeClock,
                                                       missing: str) -> None:
    env = {k: v for k, v in OAUTH1_ENV.items() if k != missing}
    with pytest.raises(CredentialsError) as info:
        plugin.create(options("https://api.x.com"), make_ctx(http, clock, env))
    assert info.value.channel == "x-main"
    assert missing in str(info.value)
    assert_clean(info.value, *ALL_SECRETS)


def test_missing_bearer_token(http: httpx.AsyncClient, clock: FakeClock) -> None:
    with pytest.raises(CredentialsError, match="X_USER_TOKEN"):
        plugin.create(options("https://api.x.com", bearer_token_env="X_USER_TOKEN"), make_ctx(http, clock, {}))


async def test_repr_hides_credentials(publisher: XPublisher) -> None:
    for secret in ALL_SECRETS:
        assert secret not in repr(publisher)


def test_render_delegates_to_the_renderer() -> None:
    pytest.importorskip("bot.render.x")
    from bot.testing import check_plugin

    assert check_plugin(plugin, {}) == []


async def test_rendered_post_is_accepted(fake: FakeX, publisher: XPublisher) -> None:
    pytest.importorskip("bot.render.x")
    from bot.testing import sample_post

    msg = plugin.render(sample_post("A long title " * 30), options(fake.url), publisher.render_env)
    result = await publisher.publish(msg, idempotency_key="k")
    assert result.remote_id == fake.tweets[0].id


# -- rate-limit headers -----------------------------------------------------------------------------


def test_rate_limit_delay_picks_the_latest_exhausted_window() -> None:
    headers = httpx.Headers({"x-rate-limit-remaining": "0", "x-rate-limit-reset": str(EPOCH + 60),
                             "x-app-limit-24hour-remaining": "0", "x-app-limit-24hour-reset": str(EPOCH + 5000)})
    assert rate_limit_delay(headers, NOW) == (5000, "x-app-limit-24hour")
    assert rate_limit_delay(httpx.Headers({"x-rate-limit-reset": str(EPOCH + 30)}), NOW) == (30, "x-rate-limit")
    assert rate_limit_delay(httpx.Headers({}), NOW) == (None, "x-rate-limit")


@pytest.mark.parametrize(("value", "expected"), [
    (str(EPOCH + 61), 61.0), (f"{EPOCH - 10}", 0.0), ("2026-01-01T12:00:00Z", None), ("", None), ("-1", None),
])
def test_parse_reset_epoch(value: str, expected: float | None) -> None:
    assert parse_reset_epoch(value, NOW) == expected


# -- x_auth (the parts that need no network) ---------------------------------------------------------


AUTH_KEY = "auth-consumer-key-123"
AUTH_SECRET = "auth-consumer-secret-456"


class StubHandler:
    """Stands in for tweepy.OAuth1UserHandler."""

    def __init__(self, key: str, secret: str, *, fail: str | None = None) -> None:
        self.key, self.secret, self.fail = key, secret, fail
        self.verifier: str | None = None

    def get_authorization_url(self) -> str:
        if self.fail == "request":
            raise RuntimeError(f"401 Client Error for key {self.key} secret {self.secret}")
        return "https://api.twitter.com/oauth/authorize?oauth_token=req-token"

    def get_access_token(self, verifier: str) -> tuple[str, str]:
        if self.fail == "pin":
            raise RuntimeError("Token request failed with code 401")
        self.verifier = verifier
        return "111-user-token", "user-token-secret"


def test_x_auth_flow_happy_path() -> None:
    said: list[str] = []
    asked: list[str] = []
    handlers: list[StubHandler] = []

    def make(key: str, secret: str) -> StubHandler:
        handlers.append(StubHandler(key, secret))
        return handlers[-1]

    def ask(prompt: str) -> str:
        asked.append(prompt)
        return " 1234567 \n"

    result = x_auth_flow("ck", "cs-secret", ask=ask, say=said.append, make_handler=make)
    assert result == ("111-user-token", "user-token-secret")
    assert handlers[0].verifier == "1234567"
    assert any("oauth_token=req-token" in line for line in said)
    assert asked == ["3. Enter the PIN: "]
    assert all("cs-secret" not in line for line in said)


@pytest.mark.parametrize(("fail", "pin", "match"), [
    ("request", "123", "request token"),
    ("pin", "123", "did not accept the PIN"),
    (None, "abc", "PIN is the number"),
])
def test_x_auth_flow_errors(fail: str | None, pin: str, match: str) -> None:
    with pytest.raises(CredentialsError, match=match) as info:
        x_auth_flow(AUTH_KEY, AUTH_SECRET, ask=lambda _: pin, say=lambda _: None,
                    make_handler=lambda k, s: StubHandler(k, s, fail=fail))
    assert_clean(info.value, AUTH_SECRET, AUTH_KEY)


def test_x_auth_flow_needs_both_keys() -> None:
    with pytest.raises(CredentialsError):
        x_auth_flow("", "secret", ask=lambda _: "1", say=lambda _: None, make_handler=StubHandler)
