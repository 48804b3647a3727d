"""The Bluesky publisher over real HTTP against ``FakeBluesky``: records, keys, sessions, limits, errors."""

from __future__ import annotations

import io
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from PIL import Image as PIL

from bot.bootstrap import StoreAttempts
from bot.clock import FakeClock
from bot.errors import (
    AmbiguousPublishError,
    ContentRejectedError,
    CredentialsError,
    PermanentPublishError,
    PublishError,
    RetryablePublishError,
    RetryAfter,
)
from bot.publishers.api import AttemptLimiter, PublisherContext, PublisherPlugin
from bot.publishers.bluesky import BlueskyOptions, BlueskyPublisher, plugin
from bot.publishers.bluesky.records import TID_PATTERN, record_key
from bot.publishers.bluesky.session import LOGIN_LIMIT, login_key, pds_endpoint
from bot.render.message import RenderedMessage
from bot.storage.store import Store
from bot.testing import check_plugin, sample_post
from bot.validation import ValidationError
from tests.fakes.bluesky_api import (
    APP_PASSWORD,
    CREATE_RECORD,
    CREATE_SESSION,
    DID,
    GET_RECORD,
    GET_SESSION,
    HANDLE,
    REFRESH_SESSION,
    UPLOAD_BLOB,
    FakeBluesky,
    cid_of,
)
from tests.fakes.images import ImageServer, image_response, jpeg, png
from tests.publish_support import DictSecrets, assert_clean

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
LINK = "https://archive.example.org/hello/"


def options(service: str, **overrides: Any) -> BlueskyOptions:
    return BlueskyOptions.model_validate({"name": "bsky", "platform": "bluesky", "handle": HANDLE,
                                          "service": service, **overrides})


def message(text: str = f"Hello\n\n{LINK}", *, link: str | None = LINK, card: bool = True,
            **extra: Any) -> RenderedMessage:
    start = text.encode().find(link.encode()) if link else -1
    facets = [{"index": {"byteStart": start, "byteEnd": start + len(link.encode())},
               "features": [{"$type": "app.bsky.richtext.facet#link", "uri": link}]}] if link and start >= 0 else []
    return RenderedMessage(text=text, link=link, extra={
        "facets": facets, "langs": ["en"],
        "card": {"uri": link, "title": "Hello", "description": "An excerpt."} if card and link else None, **extra})


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def fake(clock: FakeClock) -> Iterator[FakeBluesky]:
    with FakeBluesky(clock=clock.now) as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(5.0, read=0.5)) as client:
        yield client


def make_ctx(http: httpx.AsyncClient, clock: FakeClock, password: str = APP_PASSWORD,
             attempts: AttemptLimiter | None = None) -> PublisherContext:
    return PublisherContext(http=http, secret=DictSecrets({"BLUESKY_APP_PASSWORD": password}),
                            logger=logging.getLogger("test.bluesky"), clock=clock, attempts=attempts)


@pytest.fixture
def ctx(http: httpx.AsyncClient, clock: FakeClock) -> PublisherContext:
    return make_ctx(http, clock)


@pytest.fixture
async def publisher(fake: FakeBluesky, ctx: PublisherContext) -> AsyncIterator[BlueskyPublisher]:
    pub = plugin.create(options(fake.url), ctx)
    await pub.initialize()
    try:
        yield pub
    finally:
        await pub.aclose()


async def publish_error(pub: BlueskyPublisher, fake: FakeBluesky, msg: RenderedMessage | None = None,
                        key: str = "tagrelay-1") -> PublishError:
    with pytest.raises(PublishError) as info:
        await pub.publish(msg or message(), idempotency_key=key)
    assert_clean(info.value, *fake.live_secrets())
    return info.value


# -- plugin and options ---------------------------------------------------------------------------


def test_plugin_satisfies_the_contract() -> None:
    assert isinstance(plugin, PublisherPlugin)
    assert plugin.name == "bluesky"
    # the contract looks for the link in the text: with a card (the default) the URL is on the card instead
    assert check_plugin(plugin, {"handle": HANDLE, "link_in_text": True}) == []
    assert check_plugin(plugin, {"handle": HANDLE, "link_card": False}) == []


def test_options() -> None:
    opts = options("https://bsky.example/", handle="@Newsroom.Example.org", langs=["en", "pt-BR"])
    assert (opts.handle, opts.service, opts.langs) == ("Newsroom.Example.org", "https://bsky.example", ("en", "pt-BR"))
    default = BlueskyOptions.model_validate({"name": "b", "platform": "bluesky", "handle": "did:plc:abc123"})
    assert (default.service, default.app_password_env, default.link_card, default.link_in_text,
            default.card_image, default.langs) == ("https://bsky.social", "BLUESKY_APP_PASSWORD", True, False,
                                                   True, ())
    for bad in ({"handle": "not a handle"}, {"handle": "newsroom"}, {"service": "bsky.social"},
                {"app_password_env": "not a name"}, {"langs": ["en", "de", "fr", "it"]}, {"langs": ["english!"]},
                {"template": "{{ title }}"}):
        with pytest.raises(ValidationError):
            options(**{"service": "https://bsky.example", **bad})
    with pytest.raises(ValidationError):
        BlueskyOptions.model_validate({"name": "b", "platform": "bluesky"})  # the handle is required


def test_missing_password_names_channel_and_variable(ctx: PublisherContext) -> None:
    with pytest.raises(CredentialsError) as info:
        plugin.create(options("https://bsky.example", app_password_env="NEWSROOM_BSKY"), ctx)
    assert info.value.channel == "bsky" and "NEWSROOM_BSKY" in str(info.value)


# -- posting --------------------------------------------------------------------------------------


async def test_post_record_shape(fake: FakeBluesky, publisher: BlueskyPublisher) -> None:
    msg = message()
    result = await publisher.publish(msg, idempotency_key="tagrelay-42")
    rkey = record_key("tagrelay-42")
    assert TID_PATTERN.match(rkey)
    assert result.remote_id == f"at://{DID}/app.bsky.feed.post/{rkey}"
    assert result.url == f"https://bsky.app/profile/{DID}/post/{rkey}"
    [created] = fake.created
    assert created.rkey == rkey
    assert created.record == {
        "$type": "app.bsky.feed.post", "text": msg.text, "createdAt": "2026-01-01T12:00:00.000Z",
        "facets": msg.extra["facets"], "langs": ["en"],
        "embed": {"$type": "app.bsky.embed.external",
                  "external": {"uri": LINK, "title": "Hello", "description": "An excerpt."}}}
    [login] = fake.seen("POST", CREATE_SESSION)
    assert login.json() == {"identifier": HANDLE, "password": APP_PASSWORD}
    [create] = fake.seen("POST", CREATE_RECORD)
    assert create.json()["repo"] == DID and create.json()["collection"] == "app.bsky.feed.post"
    assert create.header("authorization", "").startswith("Bearer ey")
    # the key was read back first: nothing there yet
    assert [r.path for r in fake.requests] == [CREATE_SESSION, GET_RECORD, CREATE_RECORD]
    assert fake.seen("GET", GET_RECORD)[0].query == {"repo": [DID], "collection": ["app.bsky.feed.post"],
                                                      "rkey": [rkey]}


async def test_a_message_without_card_or_link(fake: FakeBluesky, publisher: BlueskyPublisher) -> None:
    await publisher.publish(message("Just words", link=None), idempotency_key="k")
    assert fake.created[0].record == {"$type": "app.bsky.feed.post", "text": "Just words",
                                      "createdAt": "2026-01-01T12:00:00.000Z", "langs": ["en"]}


async def test_one_login_for_many_posts(fake: FakeBluesky, publisher: BlueskyPublisher, clock: FakeClock) -> None:
    for i in range(5):
        clock.advance(60)
        await publisher.publish(message(), idempotency_key=f"tagrelay-{i}")
    assert (fake.logins, len(fake.created), publisher.logins) == (1, 5, 1)
    assert len({c.rkey for c in fake.created}) == 5


async def test_the_same_key_posts_once(fake: FakeBluesky, publisher: BlueskyPublisher) -> None:
    first = await publisher.publish(message(), idempotency_key="tagrelay-7")
    again = await publisher.publish(message(), idempotency_key="tagrelay-7")
    assert first == again
    assert len(fake.created) == 1 and len(fake.seen("POST", CREATE_RECORD)) == 1
    assert publisher.idempotent is True and not hasattr(publisher, "idempotency_window")


async def test_a_lost_answer_is_resolved_by_reading_the_key_back(fake: FakeBluesky,
                                                                 publisher: BlueskyPublisher) -> None:
    fake.drop_next(CREATE_RECORD, process=True)  # the post is made, the connection drops
    exc = await publish_error(publisher, fake, key="tagrelay-9")
    assert isinstance(exc, AmbiguousPublishError)
    assert len(fake.created) == 1
    result = await publisher.publish(message(), idempotency_key="tagrelay-9")
    assert result.remote_id == f"at://{DID}/app.bsky.feed.post/{fake.created[0].rkey}"
    assert len(fake.created) == 1
    assert len(fake.seen("POST", CREATE_RECORD)) == 1  # nothing was sent again: getRecord said it is there


async def test_a_held_answer_then_a_restart(fake: FakeBluesky, clock: FakeClock, http: httpx.AsyncClient) -> None:
    """A new process (new publisher, new login) finds the post of the killed one under the same key."""
    first = plugin.create(options(fake.url), make_ctx(http, clock))
    release = fake.hold_next(CREATE_RECORD)
    try:
        assert isinstance(await publish_error(first, fake, key="tagrelay-5"), AmbiguousPublishError)
    finally:
        release.set()
    restarted = plugin.create(options(fake.url), make_ctx(http, clock))
    result = await restarted.publish(message(), idempotency_key="tagrelay-5")
    assert len(fake.created) == 1 and result.remote_id is not None and fake.created[0].rkey in result.remote_id
    assert fake.logins == 2


async def test_a_taken_key_found_after_the_create_failed(fake: FakeBluesky, publisher: BlueskyPublisher) -> None:
    """A stale read says "not there", the create meets the PDS's 500 for a taken key: read back, it is ours."""
    fake.drop_next(CREATE_RECORD, process=True)
    await publish_error(publisher, fake, key="tagrelay-3")
    fake.fail_next(400, {"error": "RecordNotFound", "message": "Could not locate record"}, match=GET_RECORD)
    result = await publisher.publish(message(), idempotency_key="tagrelay-3")
    assert result.remote_id is not None and len(fake.created) == 1
    assert [r.path for r in fake.requests[-3:]] == [GET_RECORD, CREATE_RECORD, GET_RECORD]


async def test_a_key_holding_another_record_fails_this_delivery(fake: FakeBluesky,
                                                                publisher: BlueskyPublisher) -> None:
    await publisher.publish(message("Other post https://archive.example.org/other/",
                                    link="https://archive.example.org/other/", card=False), idempotency_key="k")
    exc = await publish_error(publisher, fake, key="k")  # the same key, another post: never called "sent"
    assert type(exc) is ContentRejectedError and "already holds another record" in str(exc)
    assert len(fake.created) == 1


async def test_a_real_server_error_stays_an_error(fake: FakeBluesky, publisher: BlueskyPublisher) -> None:
    fake.fail_next(500, {"error": "InternalServerError", "message": "Internal Server Error"}, match=CREATE_RECORD)
    exc = await publish_error(publisher, fake)
    assert type(exc) is RetryablePublishError and "InternalServerError" in str(exc)
    assert fake.created == []


# -- sessions: refresh once, log in again only when the refresh is refused ----------------------------


async def test_expired_access_token_is_refreshed_once(fake: FakeBluesky, publisher: BlueskyPublisher) -> None:
    await publisher.publish(message(), idempotency_key="a")
    fake.expire_access_tokens()
    await publisher.publish(message(), idempotency_key="b")
    assert (fake.logins, fake.refreshes, len(fake.created)) == (1, 1, 2)
    creates = fake.seen("POST", CREATE_RECORD)
    assert len(creates) == 3  # one refused as ExpiredToken, made again with the new token
    assert creates[1].header("authorization") != creates[2].header("authorization")
    assert fake.seen("POST", REFRESH_SESSION)[0].header("authorization", "").startswith("Bearer ey")


async def test_still_expired_after_the_refresh_is_not_a_loop(fake: FakeBluesky, publisher: BlueskyPublisher) -> None:
    await publisher.publish(message(), idempotency_key="a")
    fake.expire_access_tokens()
    fake.fail_next(400, {"error": "ExpiredToken", "message": "Token has expired"}, match=CREATE_RECORD, times=2)
    exc = await publish_error(publisher, fake, key="b")
    assert isinstance(exc, CredentialsError) and "ExpiredToken" in str(exc)
    assert (fake.refreshes, len(fake.seen("POST", REFRESH_SESSION))) == (1, 1)


async def test_a_refused_refresh_logs_in_again(fake: FakeBluesky, publisher: BlueskyPublisher) -> None:
    await publisher.publish(message(), idempotency_key="a")
    fake.revoke_sessions()
    await publisher.publish(message(), idempotency_key="b")
    assert (fake.logins, len(fake.created)) == (2, 2)


async def test_a_revoked_app_password_is_a_credentials_error(fake: FakeBluesky, publisher: BlueskyPublisher) -> None:
    await publisher.publish(message(), idempotency_key="a")
    secrets = fake.live_secrets()
    fake.revoke_app_password()
    exc = await publish_error(publisher, fake, key="b")
    assert_clean(exc, *secrets)
    assert type(exc) is CredentialsError
    assert "BLUESKY_APP_PASSWORD" in str(exc) and "Invalid identifier or password" in str(exc)
    assert len(fake.created) == 1


async def test_a_wrong_password(fake: FakeBluesky, http: httpx.AsyncClient, clock: FakeClock) -> None:
    pub = plugin.create(options(fake.url), make_ctx(http, clock, "wrong-pass-word-0000"))
    exc = await publish_error(pub, fake)
    assert_clean(exc, "wrong-pass-word-0000")
    assert type(exc) is CredentialsError
    with pytest.raises(CredentialsError):
        await pub.check()


async def test_the_account_password_with_2fa(fake: FakeBluesky, publisher: BlueskyPublisher) -> None:
    fake.fail_next(401, {"error": "AuthFactorTokenRequired", "message": "A sign in code has been sent"},
                   match=CREATE_SESSION)
    exc = await publish_error(publisher, fake)
    assert type(exc) is CredentialsError and "app password" in str(exc)


async def test_a_taken_down_account_is_permanent(fake: FakeBluesky, publisher: BlueskyPublisher) -> None:
    fake.fail_next(401, {"error": "AccountTakedown", "message": "Account has been taken down"},
                   match=CREATE_SESSION)
    exc = await publish_error(publisher, fake)
    assert type(exc) is PermanentPublishError and "AccountTakedown" in str(exc)


async def test_logins_are_limited_across_restarts(fake: FakeBluesky, store: Store, clock: FakeClock,
                                                  http: httpx.AsyncClient) -> None:
    """A process restarted in a loop (a new publisher each time, one database) logs in at most 12 times at
    once, then once per 40 minutes: far below createSession's 30 per 5 minutes and 100 a day."""
    limiter = StoreAttempts(store, clock)
    results: list[str] = []
    reasons: list[str] = []
    for _ in range(20):
        pub = plugin.create(options(fake.url), make_ctx(http, clock, attempts=limiter))
        try:
            await pub.check()
            results.append("ok")
        except RetryAfter as exc:
            results.append(f"held {exc.delay:.0f}s")
            reasons.append(exc.reason)
        clock.advance(1)
    assert all("postponed" in r and "48 logins a day" in r for r in reasons)
    # the bucket: 12 at once, then one token every 2,400 s; at t seconds after the start, the wait is 2400 - t
    assert results == ["ok"] * 12 + [f"held {2400 - t}s" for t in range(12, 20)]
    assert fake.logins == 12
    clock.advance(2400 - 20)
    await plugin.create(options(fake.url), make_ctx(http, clock, attempts=limiter)).check()
    assert fake.logins == 13
    assert LOGIN_LIMIT == (48.0, 86400.0)
    assert login_key(fake.url, HANDLE) == f"login:bluesky:127.0.0.1:{fake.port}:{HANDLE}"


async def test_without_a_database_logins_are_limited_in_the_process(fake: FakeBluesky, clock: FakeClock,
                                                                    http: httpx.AsyncClient) -> None:
    pub = plugin.create(options(fake.url), make_ctx(http, clock, "wrong-pass-word-0000"))
    kinds = []
    for _ in range(14):
        with pytest.raises(PublishError) as info:
            await pub.check()
        kinds.append(type(info.value).__name__)
    assert kinds == ["CredentialsError"] * 12 + ["RetryAfter"] * 2
    assert fake.logins == 12


# -- rate limits and other errors -------------------------------------------------------------------


async def test_429_waits_until_ratelimit_reset(fake: FakeBluesky, publisher: BlueskyPublisher) -> None:
    fake.rate_limit(int(NOW.timestamp()) + 1234)
    exc = await publish_error(publisher, fake)
    assert isinstance(exc, RetryAfter) and exc.delay == 1234
    assert fake.created == []


async def test_429_on_the_login(fake: FakeBluesky, publisher: BlueskyPublisher) -> None:
    fake.rate_limit(int(NOW.timestamp()) + 300, match=CREATE_SESSION)
    exc = await publish_error(publisher, fake)
    assert isinstance(exc, RetryAfter) and exc.delay == 300 and "createSession" in str(exc)


@pytest.mark.parametrize(("headers", "delay"), [({"Retry-After": "90"}, 90), ({}, 300)])
async def test_429_without_ratelimit_reset(fake: FakeBluesky, publisher: BlueskyPublisher,
                                           headers: dict[str, str], delay: float) -> None:
    fake.fail_next(429, {"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"}, headers,
                   match=CREATE_RECORD)
    exc = await publish_error(publisher, fake)
    assert isinstance(exc, RetryAfter) and exc.delay == delay


async def test_the_fake_enforces_the_write_points(fake: FakeBluesky, publisher: BlueskyPublisher) -> None:
    """5,000 points an hour, 3 per create: the 1,667th create in an hour is refused with the reset time."""
    fake.account.writes = [(NOW, 3)] * 1666
    exc = await publish_error(publisher, fake)
    assert isinstance(exc, RetryAfter) and exc.delay == 3600


@pytest.mark.parametrize(("status", "body", "expected"), [
    (400, {"error": "InvalidRequest", "message": "Invalid app.bsky.feed.post record: Record/text must not be "
                                                "longer than 300 graphemes"}, ContentRejectedError),
    (413, {"error": "PayloadTooLarge", "message": "request entity too large"}, ContentRejectedError),
    (400, {"error": "ConcurrentWrites", "message": "too many concurrent writes"}, RetryablePublishError),
    (502, {"error": "UpstreamFailure", "message": "Upstream Failure"}, RetryablePublishError),
    (403, {"error": "Forbidden", "message": "no"}, PermanentPublishError),
    (400, {"error": "AccountDeactivated", "message": "Account is deactivated"}, PermanentPublishError),
])
async def test_classification(fake: FakeBluesky, publisher: BlueskyPublisher, status: int, body: dict[str, str],
                              expected: type[PublishError]) -> None:
    fake.fail_next(status, body, match=CREATE_RECORD)
    exc = await publish_error(publisher, fake)
    assert type(exc) is expected
    assert body["message"] in str(exc)


async def test_the_fake_refuses_a_long_text(fake: FakeBluesky, publisher: BlueskyPublisher) -> None:
    exc = await publish_error(publisher, fake, message("x" * 301, link=None))
    assert type(exc) is ContentRejectedError and "300 graphemes" in str(exc)


async def test_503_with_retry_after(fake: FakeBluesky, publisher: BlueskyPublisher) -> None:
    fake.fail_next(503, {"error": "ServiceUnavailable", "message": "maintenance"}, {"Retry-After": "120"},
                   match=CREATE_RECORD)
    exc = await publish_error(publisher, fake)
    assert isinstance(exc, RetryAfter) and exc.delay == 120


async def test_a_read_timeout_on_the_create_is_ambiguous(fake: FakeBluesky, publisher: BlueskyPublisher) -> None:
    release = fake.hold_next(CREATE_RECORD)
    try:
        assert isinstance(await publish_error(publisher, fake), AmbiguousPublishError)
    finally:
        release.set()


async def test_a_failed_read_back_is_retryable_never_ambiguous(fake: FakeBluesky,
                                                               publisher: BlueskyPublisher) -> None:
    fake.drop_next(GET_RECORD)
    assert type(await publish_error(publisher, fake)) is RetryablePublishError
    assert fake.seen("POST", CREATE_RECORD) == []


async def test_connection_refused_is_plainly_retryable(ctx: PublisherContext) -> None:
    pub = plugin.create(options(f"http://127.0.0.1:{closed_port()}"), ctx)
    with pytest.raises(PublishError) as info:
        await pub.publish(message(), idempotency_key="k")
    assert type(info.value) is RetryablePublishError and "nothing was sent" in str(info.value)


UNSAFE = {*map(chr, range(0x20)), "\x7f", "\u202e"}


async def test_error_text_is_one_clean_line_without_secrets(fake: FakeBluesky, publisher: BlueskyPublisher) -> None:
    await publisher.publish(message(), idempotency_key="a")
    access = next(t for t, tok in fake.tokens.items() if tok.kind == "access")
    fake.fail_next(400, {"error": "InvalidRequest\x1b[2J", "message": f"bad {access} {APP_PASSWORD}\u202e "
                                                                      + "x" * 20_000}, match=CREATE_RECORD)
    exc = await publish_error(publisher, fake, key="b")
    assert access not in str(exc) and APP_PASSWORD not in str(exc)
    assert len(exc.reason) <= 800 and not set(exc.reason) & UNSAFE, exc.reason


# -- the DID document's PDS, check ------------------------------------------------------------------


async def test_repo_calls_go_to_the_pds_of_the_did_document(clock: FakeClock, ctx: PublisherContext) -> None:
    """The session's DID document names the account's PDS: repository calls go there (the entryway keeps the
    login and getSession). An https endpoint or the service itself is trusted; plain http elsewhere is not
    (the access token would travel in clear), and the service is used instead."""
    with FakeBluesky(clock=clock.now) as pds, FakeBluesky(clock=clock.now) as entryway:
        entryway.pds_url = pds.url  # http on another port
        pub = plugin.create(options(entryway.url), ctx)
        await pub.publish(message(), idempotency_key="k")
        assert len(entryway.created) == 1 and pds.requests == []


def test_pds_endpoint_rules() -> None:
    doc = {"service": [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer",
                        "serviceEndpoint": "https://morel.us-east.host.bsky.network/"}]}
    assert pds_endpoint(doc, "https://bsky.social") == "https://morel.us-east.host.bsky.network"
    for endpoint in ("http://evil.example", "https://x.example/?q=1", "ftp://x.example", 7):
        bad = {"service": [{"id": "did:plc:x#atproto_pds", "serviceEndpoint": endpoint}]}
        assert pds_endpoint(bad, "https://bsky.social") == "https://bsky.social"
    assert pds_endpoint({"service": [{"id": "#atproto_pds", "serviceEndpoint": "http://127.0.0.1:9/"}]},
                        "http://127.0.0.1:9") == "http://127.0.0.1:9"
    assert pds_endpoint(None, "https://bsky.social") == pds_endpoint({"service": "x"}, "https://bsky.social") \
        == "https://bsky.social"


async def test_check_reads_the_session_and_posts_nothing(fake: FakeBluesky, publisher: BlueskyPublisher) -> None:
    info = await publisher.check()
    assert info.display == f"@{HANDLE} on 127.0.0.1:{fake.port}"
    assert info.detail["did"] == DID and info.detail["pds"] == fake.url
    assert [r.path for r in fake.requests] == [CREATE_SESSION, GET_SESSION]
    assert fake.created == []


async def test_check_of_an_inactive_account(fake: FakeBluesky, publisher: BlueskyPublisher) -> None:
    fake.account.active = False
    with pytest.raises(PermanentPublishError, match="not active"):
        await publisher.check()


async def test_repr_hides_secrets(fake: FakeBluesky, publisher: BlueskyPublisher) -> None:
    await publisher.publish(message(), idempotency_key="a")
    for secret in fake.live_secrets():
        assert secret not in repr(publisher)
        assert secret not in repr(publisher._keeper.session)


async def test_a_rendered_post_is_accepted(fake: FakeBluesky, publisher: BlueskyPublisher) -> None:
    opts = options(fake.url, hashtags=True, langs=["en"])
    post = sample_post("Protests in 🇮🇶 Baghdad — مرحبا #MeToo " * 3, tags=("Editor’s picks", "MEK"))
    msg = plugin.render(post, opts, publisher.render_env)
    await publisher.publish(msg, idempotency_key="k")
    record = fake.created[0].record
    assert record["text"] == msg.text and record["embed"]["external"]["uri"] == post.url
    data = msg.text.encode()
    assert {data[f["index"]["byteStart"]:f["index"]["byteEnd"]].decode() for f in record["facets"]} == {
        "#EditorsPicks", "#MEK", "#MeToo"}


# -- the card's thumbnail -----------------------------------------------------------------------------


@pytest.fixture
def images() -> Iterator[ImageServer]:
    with ImageServer() as server:
        yield server


def with_image(url: str) -> RenderedMessage:
    return replace(message(), image_url=url, image_alt="A crowd in Baghdad")


async def test_a_small_image_is_uploaded_as_it_is(fake: FakeBluesky, publisher: BlueskyPublisher,
                                                  images: ImageServer) -> None:
    data = jpeg(640, 480)
    url = images.serve("/thumb-small.jpg", image_response(data, "application/octet-stream"))  # the type is sniffed
    await publisher.publish(with_image(url), idempotency_key="k")
    [upload] = fake.seen("POST", UPLOAD_BLOB)
    assert (upload.body, upload.header("content-type")) == (data, "image/jpeg")
    thumb = fake.created[0].record["embed"]["external"]["thumb"]
    assert thumb == {"$type": "blob", "ref": {"$link": cid_of(data)}, "mimeType": "image/jpeg", "size": len(data)}
    assert [r.path for r in fake.requests] == [CREATE_SESSION, GET_RECORD, UPLOAD_BLOB, CREATE_RECORD]


async def test_a_big_image_is_downscaled_below_a_megabyte(fake: FakeBluesky, publisher: BlueskyPublisher,
                                                          images: ImageServer) -> None:
    data = png(2600, 1400)  # noise: about 11 MB as PNG
    assert len(data) > 10_000_000
    url = images.serve("/thumb-big.png", image_response(data, "image/png"))
    await publisher.publish(with_image(url), idempotency_key="k")
    [upload] = fake.seen("POST", UPLOAD_BLOB)
    assert len(upload.body) <= 1_000_000 and upload.header("content-type") == "image/jpeg"
    with PIL.open(io.BytesIO(upload.body)) as shrunk:
        assert max(shrunk.size) <= 2000
    assert fake.created[0].record["embed"]["external"]["thumb"]["size"] == len(upload.body)


@pytest.mark.parametrize("how", ["missing", "not an image", "upload refused", "upload failed"])
async def test_a_failed_image_leaves_the_card_without_thumbnail(fake: FakeBluesky, publisher: BlueskyPublisher,
                                                                images: ImageServer, how: str,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    path = f"/thumb-{how.replace(' ', '-')}.jpg"
    if how == "not an image":
        images.serve(path, image_response(b"<html>hello</html>", "image/jpeg"))
    elif how != "missing":
        images.serve(path, image_response(jpeg(320, 200, seed=len(how))))
    if how == "upload refused":
        fake.fail_next(400, {"error": "InvalidRequest", "message": "bad blob"}, match=UPLOAD_BLOB)
    if how == "upload failed":
        fake.fail_next(503, {"error": "ServiceUnavailable", "message": "later"}, match=UPLOAD_BLOB)
    with caplog.at_level(logging.WARNING, logger="test.bluesky"):
        await publisher.publish(with_image(images.url + path), idempotency_key="k")
    external = fake.created[0].record["embed"]["external"]
    assert "thumb" not in external and external["uri"] == LINK
    assert [r.getMessage() for r in caplog.records] == ["bluesky.thumb_skipped"]


async def test_a_rate_limited_upload_holds_the_channel(fake: FakeBluesky, publisher: BlueskyPublisher,
                                                       images: ImageServer) -> None:
    url = images.serve("/thumb-limited.jpg", image_response(jpeg(320, 200, seed=9)))
    fake.rate_limit(int(NOW.timestamp()) + 60, match=UPLOAD_BLOB)
    exc = await publish_error(publisher, fake, with_image(url))
    assert isinstance(exc, RetryAfter) and exc.delay == 60 and fake.created == []


async def test_the_upload_renews_an_expired_token(fake: FakeBluesky, publisher: BlueskyPublisher,
                                                  images: ImageServer) -> None:
    await publisher.publish(message(), idempotency_key="a")
    fake.expire_access_tokens()
    url = images.serve("/thumb-renew.jpg", image_response(jpeg(320, 200, seed=11)))
    await publisher.publish(with_image(url), idempotency_key="b")
    assert fake.refreshes == 1 and "thumb" in fake.created[1].record["embed"]["external"]
