"""The Mastodon publisher over real HTTP against ``FakeMastodon``; plus the shared header parsers."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

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
from bot.publishers import mastodon as mastodon_module
from bot.publishers.api import PublisherContext, PublisherPlugin
from bot.publishers.http import parse_reset_iso, parse_retry_after
from bot.publishers.mastodon import MastodonOptions, MastodonPublisher, plugin
from bot.render.message import RenderedMessage
from bot.validation import ValidationError
from tests.fakes.mastodon_api import DEFAULT_TOKEN, STATUSES, FakeMastodon, status_length
from tests.publish_support import DictSecrets, assert_clean

TOKEN = DEFAULT_TOKEN
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def options(instance: str, **overrides: Any) -> MastodonOptions:
    return MastodonOptions.model_validate({"name": "social", "platform": "mastodon", "instance": instance,
                                           **overrides})


def message(text: str = "New post: Hello https://archive.example.org/hello/", **kw: Any) -> RenderedMessage:
    kw.setdefault("link", "https://archive.example.org/hello/")
    return RenderedMessage(text=text, **kw)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def fake(clock: FakeClock) -> Iterator[FakeMastodon]:
    with FakeMastodon(max_characters=1000, clock=clock.now) as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(5.0, read=0.5)) as client:
        yield client


def make_ctx(http: httpx.AsyncClient, clock: FakeClock, token: str = TOKEN) -> PublisherContext:
    return PublisherContext(http=http, secret=DictSecrets({"MASTODON_TOKEN": token}),
                            logger=logging.getLogger("test.mastodon"), clock=clock)


@pytest.fixture
def ctx(http: httpx.AsyncClient, clock: FakeClock) -> PublisherContext:
    return make_ctx(http, clock)


@pytest.fixture
async def publisher(fake: FakeMastodon, ctx: PublisherContext) -> AsyncIterator[MastodonPublisher]:
    pub = plugin.create(options(fake.url), ctx)
    await pub.initialize()
    try:
        yield pub
    finally:
        await pub.aclose()


async def publish_error(pub: MastodonPublisher, msg: RenderedMessage | None = None,
                        key: str = "tagrelay-1") -> PublishError:
    with pytest.raises(PublishError) as info:
        await pub.publish(msg or message(), idempotency_key=key)
    assert_clean(info.value, TOKEN)
    return info.value


# -- plugin and options ---------------------------------------------------------------------------


def test_plugin_satisfies_the_contract() -> None:
    assert isinstance(plugin, PublisherPlugin)
    assert plugin.name == "mastodon"


def test_options() -> None:
    opts = options("https://mastodon.example/")
    assert opts.instance == "https://mastodon.example"
    assert (opts.token_env, opts.visibility, opts.language, opts.spoiler_text, opts.max_characters) == (
        "MASTODON_TOKEN", "public", None, None, None)
    with pytest.raises(ValidationError):
        MastodonOptions.model_validate({"name": "s", "platform": "mastodon"})  # instance is required
    with pytest.raises(ValidationError):
        options("mastodon.example")
    with pytest.raises(ValidationError):
        options("https://mastodon.example", token_env="not a name")


# -- instance limits ------------------------------------------------------------------------------


async def test_limits_come_from_v2_instance(fake: FakeMastodon, publisher: MastodonPublisher) -> None:
    assert publisher.render_env.max_chars == 1000
    assert publisher.render_env.url_length == 23
    assert [r.path for r in fake.seen("GET")] == ["/api/v2/instance"]


async def test_configured_limit_wins(fake: FakeMastodon, ctx: PublisherContext) -> None:
    pub = plugin.create(options(fake.url, max_characters=300), ctx)
    await pub.initialize()
    assert pub.render_env.max_chars == 300


async def test_falls_back_to_v1_instance(clock: FakeClock, ctx: PublisherContext) -> None:
    with FakeMastodon(max_characters=5000, characters_reserved_per_url=30, v2_instance=False,
                      clock=clock.now) as old:
        pub = plugin.create(options(old.url), ctx)
        await pub.initialize()
        assert (pub.render_env.max_chars, pub.render_env.url_length) == (5000, 30)
        assert [r.path for r in old.seen("GET")] == ["/api/v2/instance", "/api/v1/instance"]


async def test_unreachable_instance_uses_defaults_and_warns(ctx: PublisherContext,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    pub = plugin.create(options(f"http://127.0.0.1:{closed_port()}"), ctx)
    with caplog.at_level(logging.WARNING, logger="test.mastodon"):
        await pub.initialize()  # never fails start-up
    assert (pub.render_env.max_chars, pub.render_env.url_length) == (500, 23)
    assert [r.getMessage() for r in caplog.records] == ["mastodon.instance_limits_unknown"]


async def test_broken_instance_answer_uses_defaults(fake: FakeMastodon, ctx: PublisherContext) -> None:
    fake.fail_next(500, {"error": "boom"}, match="/api/v2/instance")
    fake.fail_next(200, {"uri": "x"}, match="/api/v1/instance")
    pub = plugin.create(options(fake.url), ctx)
    await pub.initialize()
    assert pub.render_env.max_chars == 500


# -- posting --------------------------------------------------------------------------------------


async def test_post_status(fake: FakeMastodon, publisher: MastodonPublisher) -> None:
    msg = message(extra={"visibility": "unlisted", "language": "de", "spoiler_text": "Blog"})
    result = await publisher.publish(msg, idempotency_key="tagrelay-42")
    [status] = fake.statuses
    assert result.remote_id == status.id
    assert result.url == f"{fake.url}/@tagrelay/{status.id}"
    assert (status.text, status.visibility, status.language, status.spoiler_text) == (
        msg.text, "unlisted", "de", "Blog")
    [request] = fake.seen("POST", STATUSES)
    assert request.header("idempotency-key") == "tagrelay-42"
    assert request.header("authorization") == f"Bearer {TOKEN}"
    assert request.json() == {"status": msg.text, "visibility": "unlisted", "language": "de",
                              "spoiler_text": "Blog"}


async def test_options_fill_in_missing_extra(fake: FakeMastodon, ctx: PublisherContext) -> None:
    pub = plugin.create(options(fake.url, visibility="private", language="fr"), ctx)
    await pub.publish(message(), idempotency_key="k")
    assert fake.seen("POST", STATUSES)[0].json() == {"status": message().text, "visibility": "private",
                                                      "language": "fr"}


async def test_every_post_carries_its_idempotency_key(fake: FakeMastodon, publisher: MastodonPublisher) -> None:
    await publisher.publish(message("one"), idempotency_key="tagrelay-1")
    await publisher.publish(message("two"), idempotency_key="tagrelay-2")
    assert [r.header("idempotency-key") for r in fake.seen("POST", STATUSES)] == ["tagrelay-1", "tagrelay-2"]
    assert len(fake.statuses) == 2


async def test_same_key_returns_the_same_status(fake: FakeMastodon, publisher: MastodonPublisher) -> None:
    first = await publisher.publish(message(), idempotency_key="tagrelay-7")
    again = await publisher.publish(message(), idempotency_key="tagrelay-7")
    assert first == again
    assert len(fake.statuses) == 1
    assert fake.idempotent_replays == 1
    assert publisher.idempotent is True


async def test_lost_answer_then_retry_returns_the_same_status(fake: FakeMastodon,
                                                              publisher: MastodonPublisher) -> None:
    release = fake.hold_next(STATUSES)
    try:
        exc = await publish_error(publisher, key="tagrelay-9")
    finally:
        release.set()
    assert isinstance(exc, AmbiguousPublishError)
    assert len(fake.statuses) == 1  # created before the answer was lost
    result = await publisher.publish(message(), idempotency_key="tagrelay-9")
    assert result.remote_id == fake.statuses[0].id
    assert len(fake.statuses) == 1


async def test_dropped_connection_is_ambiguous_and_safe_to_retry(fake: FakeMastodon,
                                                                 publisher: MastodonPublisher) -> None:
    fake.drop_next(STATUSES, process=True)
    exc = await publish_error(publisher, key="tagrelay-3")
    assert isinstance(exc, AmbiguousPublishError)
    result = await publisher.publish(message(), idempotency_key="tagrelay-3")
    assert [s.id for s in fake.statuses] == [result.remote_id]


async def test_connection_refused_is_plainly_retryable(ctx: PublisherContext) -> None:
    pub = plugin.create(options(f"http://127.0.0.1:{closed_port()}"), ctx)
    exc = await publish_error(pub)
    assert type(exc) is RetryablePublishError


# -- errors ---------------------------------------------------------------------------------------


async def test_rate_limit_waits_until_the_iso_reset(fake: FakeMastodon, publisher: MastodonPublisher) -> None:
    fake.rate_limit(NOW + timedelta(seconds=90, microseconds=627625))
    exc = await publish_error(publisher)
    assert isinstance(exc, RetryAfter)
    assert exc.delay == pytest.approx(90.627625)
    assert fake.statuses == []


async def test_rate_limit_without_header_uses_the_window(fake: FakeMastodon, publisher: MastodonPublisher) -> None:
    fake.fail_next(429, {"error": "Too many requests"}, match=STATUSES)
    exc = await publish_error(publisher)
    assert isinstance(exc, RetryAfter)
    assert exc.delay == 300


async def test_invalid_token(fake: FakeMastodon, http: httpx.AsyncClient, clock: FakeClock) -> None:
    wrong = "wrong-mastodon-token-000000000000"
    pub = plugin.create(options(fake.url), make_ctx(http, clock, wrong))
    with pytest.raises(CredentialsError) as info:
        await pub.publish(message(), idempotency_key="k")
    assert_clean(info.value, wrong)
    assert "MASTODON_TOKEN" in str(info.value) and "The access token is invalid" in str(info.value)
    with pytest.raises(CredentialsError):
        await pub.check()


async def test_text_over_the_limit_is_rejected_with_the_server_text(fake: FakeMastodon,
                                                                    ctx: PublisherContext) -> None:
    pub = plugin.create(options(fake.url, max_characters=5000), ctx)  # the renderer would allow it
    await pub.initialize()
    exc = await publish_error(pub, message("x" * 1001))
    assert type(exc) is ContentRejectedError
    assert "Text character limit of 1000 exceeded" in str(exc)


@pytest.mark.parametrize(("status", "error", "expected"), [
    (422, "Validierung fehlgeschlagen: Text überschreitet die Zeichengrenze von 500", ContentRejectedError),
    (403, "Your login is currently disabled", PermanentPublishError),
    (404, "Record not found", PermanentPublishError),
    (410, "Gone", PermanentPublishError),
    (500, "We're sorry, but something went wrong", RetryablePublishError),
    (503, "Service Unavailable", RetryablePublishError),
])
async def test_status_classification(fake: FakeMastodon, publisher: MastodonPublisher, status: int, error: str,
                                     expected: type[PublishError]) -> None:
    fake.reject(status, error)
    exc = await publish_error(publisher)
    assert type(exc) is expected
    assert error in str(exc)


async def test_503_with_retry_after(fake: FakeMastodon, publisher: MastodonPublisher) -> None:
    fake.fail_next(503, {"error": "maintenance"}, {"Retry-After": "120"}, match=STATUSES)
    exc = await publish_error(publisher)
    assert isinstance(exc, RetryAfter)
    assert exc.delay == 120


async def test_answer_without_id_is_ambiguous(fake: FakeMastodon, publisher: MastodonPublisher) -> None:
    fake.fail_next(200, {"unexpected": True}, match=STATUSES)
    assert isinstance(await publish_error(publisher), AmbiguousPublishError)


async def test_redirect_is_reported(fake: FakeMastodon, publisher: MastodonPublisher) -> None:
    fake.fail_next(301, {}, {"Location": "https://elsewhere.example/api/v1/statuses"}, match=STATUSES)
    exc = await publish_error(publisher)
    assert type(exc) is PermanentPublishError
    assert "elsewhere.example" in str(exc)


UNSAFE = {*map(chr, range(0x20)), "\x7f", *map(chr, range(0x80, 0xA0)), *"\u202a\u202b\u202c\u202d\u202e\u2066\u2069"}


@pytest.mark.parametrize(("status", "body", "headers"), [
    (422, {"error": f"Validation failed\x1b[2J\u202e: {'x' * 20_000}"}, {}),
    (403, {"error": f"token {TOKEN} \x1b]0;pwned\x07 refused"}, {}),
    (301, {}, {"Location": f"https://elsewhere.example/?access={TOKEN}&pad={'p' * 9000}"}),
])
async def test_error_text_is_one_bounded_clean_line_without_the_token(
        fake: FakeMastodon, publisher: MastodonPublisher, status: int, body: dict[str, Any],
        headers: dict[str, str]) -> None:
    fake.fail_next(status, body, headers, match=STATUSES)
    exc = await publish_error(publisher)
    assert_clean(exc, TOKEN)
    assert str(status) in exc.reason
    assert len(exc.reason) <= 800 and not set(exc.reason) & UNSAFE, exc.reason


# -- the Idempotency-Key's one-hour window and find_published ------------------------------------------

VERIFY = "/api/v1/accounts/verify_credentials"


def account_statuses(fake: FakeMastodon) -> str:
    return f"/api/v1/accounts/{fake.accounts[TOKEN].id}/statuses"


async def find_error(pub: MastodonPublisher, since: datetime = NOW, *secrets: str) -> PublishError:
    with pytest.raises(PublishError) as info:
        await pub.find_published(message(), since=since)
    assert_clean(info.value, TOKEN, *secrets)
    return info.value


def test_the_window_is_an_hour() -> None:
    assert MastodonPublisher.idempotency_window == 3600.0


async def test_the_fake_forgets_a_key_after_an_hour(fake: FakeMastodon, clock: FakeClock,
                                                    publisher: MastodonPublisher) -> None:
    """Why the delivery service must look before resending an old unconfirmed attempt."""
    first = await publisher.publish(message(), idempotency_key="tagrelay-5")
    clock.advance(3599)
    assert await publisher.publish(message(), idempotency_key="tagrelay-5") == first
    assert (len(fake.statuses), fake.idempotent_replays) == (1, 1)
    clock.advance(2)  # 3601 s after the status the key created
    second = await publisher.publish(message(), idempotency_key="tagrelay-5")
    assert second.remote_id != first.remote_id
    assert [s.id for s in fake.statuses] == [first.remote_id, second.remote_id]
    assert fake.idempotent_replays == 1
    clock.advance(60)  # the key now names the second status, for its own hour
    assert await publisher.publish(message(), idempotency_key="tagrelay-5") == second
    assert len(fake.statuses) == 2


async def test_find_published_finds_the_status(fake: FakeMastodon, clock: FakeClock, ctx: PublisherContext) -> None:
    await plugin.create(options(fake.url), ctx).publish(message(), idempotency_key="tagrelay-1")
    [status] = fake.statuses
    clock.advance(2 * 3600)
    pub = plugin.create(options(fake.url), ctx)  # a restarted bot: the account id is not known yet
    found = await pub.find_published(message(), since=NOW - timedelta(seconds=5))
    assert found is not None
    assert (found.remote_id, found.url) == (status.id, f"{fake.url}/@tagrelay/{status.id}")
    # the attempt was recorded a little after the server created the status: a minute of skew is allowed
    assert await pub.find_published(message(), since=NOW + timedelta(seconds=59)) == found
    [listing, *_] = fake.seen("GET", account_statuses(fake))
    assert (listing.arg("limit"), listing.header("authorization")) == ("40", f"Bearer {TOKEN}")
    assert len(fake.seen("GET", VERIFY)) == 1  # the account id is cached


async def test_find_published_knows_the_account_after_a_post(fake: FakeMastodon,
                                                             publisher: MastodonPublisher) -> None:
    posted = await publisher.publish(message(), idempotency_key="tagrelay-1")
    assert await publisher.find_published(message(), since=NOW) == posted
    assert fake.seen("GET", VERIFY) == []


async def test_find_published_returns_the_newest_match(fake: FakeMastodon, clock: FakeClock,
                                                       publisher: MastodonPublisher) -> None:
    await publisher.publish(message(), idempotency_key="a")
    clock.advance(10)
    newer = await publisher.publish(message(), idempotency_key="b")
    assert await publisher.find_published(message(), since=NOW) == newer


async def test_find_published_ignores_other_messages(fake: FakeMastodon, clock: FakeClock,
                                                     publisher: MastodonPublisher) -> None:
    await publisher.publish(message("New post: Other https://archive.example.org/other/",
                                    link="https://archive.example.org/other/"), idempotency_key="a")
    await publisher.publish(message("New post: Hello again https://archive.example.org/hello/again/",
                                    link="https://archive.example.org/hello/again/"), idempotency_key="b")
    await publisher.publish(message("New post: Hello https://archive.example.org/hello/2",
                                    link="https://archive.example.org/hello/2"), idempotency_key="c")
    assert await publisher.find_published(message(), since=NOW) is None
    assert await publisher.find_published(message("Hi https://archive.example.org/hello/2",
                                                   link="https://archive.example.org/hello/2"),
                                          since=NOW) is not None


async def test_find_published_ignores_statuses_before_since(fake: FakeMastodon, clock: FakeClock,
                                                            publisher: MastodonPublisher) -> None:
    await publisher.publish(message(), idempotency_key="tagrelay-1")  # at NOW
    clock.advance(3 * 3600)
    await publisher.publish(message("Something else https://archive.example.org/else/",
                                    link="https://archive.example.org/else/"), idempotency_key="tagrelay-2")
    assert await publisher.find_published(message(), since=NOW + timedelta(hours=1)) is None
    assert await publisher.find_published(message(), since=NOW + timedelta(seconds=61)) is None  # beyond the skew
    # newest first: it stopped at the first status older than since - 60 s, one page each
    assert len(fake.seen("GET", account_statuses(fake))) == 2


async def test_find_published_on_an_empty_account(fake: FakeMastodon, publisher: MastodonPublisher) -> None:
    assert await publisher.find_published(message(), since=NOW) is None


async def test_find_published_without_a_link_matches_the_first_line(fake: FakeMastodon,
                                                                    publisher: MastodonPublisher) -> None:
    msg = message("Tom & Jerry <3  said:\nsecond line", link=None)
    posted = await publisher.publish(msg, idempotency_key="k")
    assert await publisher.find_published(msg, since=NOW) == posted  # content has "&amp;", "&lt;3"
    assert await publisher.find_published(message("Tom & Jerry <3 said: (other)", link=None), since=NOW) is None
    # a template that leaves the link out: the first line identifies the message
    no_link_in_text = message("Fresh: Hello\nby me", link="https://archive.example.org/hello/")
    posted = await publisher.publish(no_link_in_text, idempotency_key="k2")
    assert await publisher.find_published(no_link_in_text, since=NOW) == posted


async def test_find_published_pages_back_to_since(fake: FakeMastodon, clock: FakeClock,
                                                  publisher: MastodonPublisher) -> None:
    posted = await publisher.publish(message(), idempotency_key="target")
    for i in range(45):
        clock.advance(1)
        await publisher.publish(message(f"Filler {i} https://archive.example.org/f{i}/",
                                        link=f"https://archive.example.org/f{i}/"), idempotency_key=f"f{i}")
    assert await publisher.find_published(message(), since=NOW) == posted
    first, second = fake.seen("GET", account_statuses(fake))
    assert (first.arg("max_id"), second.arg("max_id")) == (None, fake.statuses[6].id)


async def test_find_published_gives_up_after_a_few_pages(fake: FakeMastodon, clock: FakeClock,
                                                         publisher: MastodonPublisher,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mastodon_module, "LOOKUP_MAX_PAGES", 1)
    for i in range(41):
        await publisher.publish(message(f"Filler {i}", link=None), idempotency_key=f"f{i}")
    exc = await find_error(publisher)
    assert isinstance(exc, AmbiguousPublishError)  # cannot tell: never "not there"


async def test_find_published_with_an_invalid_token(fake: FakeMastodon, http: httpx.AsyncClient,
                                                    clock: FakeClock) -> None:
    wrong = "wrong-mastodon-token-000000000000"
    pub = plugin.create(options(fake.url), make_ctx(http, clock, wrong))
    exc = await find_error(pub, NOW, wrong)
    assert type(exc) is CredentialsError
    assert "MASTODON_TOKEN" in str(exc) and "The access token is invalid" in str(exc)


async def test_find_published_token_rejected_on_the_listing(fake: FakeMastodon, publisher: MastodonPublisher) -> None:
    await publisher.publish(message(), idempotency_key="k")
    fake.reject(401, "The access token was revoked", match=account_statuses(fake))
    assert type(await find_error(publisher)) is CredentialsError


@pytest.mark.parametrize(("status", "error", "expected"), [
    (503, "Service Unavailable", RetryablePublishError),
    (500, "We're sorry, but something went wrong", RetryablePublishError),
    (403, "This action is outside the authorized scopes", PermanentPublishError),
    (404, "Record not found", PermanentPublishError),
])
@pytest.mark.parametrize("where", ["verify", "listing"])
async def test_find_published_error_classification(fake: FakeMastodon, publisher: MastodonPublisher, status: int,
                                                   error: str, expected: type[PublishError], where: str) -> None:
    fake.reject(status, error, match=VERIFY if where == "verify" else account_statuses(fake))
    exc = await find_error(publisher)
    assert type(exc) is expected
    assert error in str(exc)
    if status == 403:
        assert ("read:accounts" if where == "verify" else "read:statuses") in str(exc)


async def test_find_published_rate_limit_and_retry_after(fake: FakeMastodon, publisher: MastodonPublisher) -> None:
    fake.rate_limit(NOW + timedelta(seconds=90), match=VERIFY)
    exc = await find_error(publisher)
    assert isinstance(exc, RetryAfter) and exc.delay == pytest.approx(90)
    fake.fail_next(503, {"error": "maintenance"}, {"Retry-After": "120"}, match=account_statuses(fake))
    exc = await find_error(publisher)
    assert isinstance(exc, RetryAfter) and exc.delay == 120


async def test_find_published_transport_errors_are_retryable(fake: FakeMastodon, publisher: MastodonPublisher,
                                                             ctx: PublisherContext) -> None:
    fake.drop_next(VERIFY)
    assert type(await find_error(publisher)) is RetryablePublishError  # a read: never ambiguous
    await publisher.find_published(message(), since=NOW)  # the account id is cached now
    release = fake.hold_next(account_statuses(fake))
    try:
        assert type(await find_error(publisher)) is RetryablePublishError  # read timeout
    finally:
        release.set()
    refused = plugin.create(options(f"http://127.0.0.1:{closed_port()}"), ctx)
    assert type(await find_error(refused)) is RetryablePublishError


async def test_find_published_odd_answers(fake: FakeMastodon, publisher: MastodonPublisher) -> None:
    fake.fail_next(200, {"no": "id"}, match=VERIFY)
    assert type(await find_error(publisher)) is RetryablePublishError
    fake.fail_next(200, {"error": "not a list"}, match=account_statuses(fake))
    assert type(await find_error(publisher)) is RetryablePublishError
    fake.fail_next(200, [{"id": "1", "created_at": "garbage", "content": None}, "junk", {"no": "id"}],
                   match=account_statuses(fake))
    assert await publisher.find_published(message(), since=NOW) is None


async def test_find_published_accepts_a_naive_since(fake: FakeMastodon, publisher: MastodonPublisher) -> None:
    posted = await publisher.publish(message(), idempotency_key="k")
    assert await publisher.find_published(message(), since=NOW.replace(tzinfo=None)) == posted


async def test_find_published_skips_reblogs(fake: FakeMastodon, publisher: MastodonPublisher) -> None:
    status = {"id": "5", "created_at": "2026-01-01T12:00:01.000Z", "url": None, "uri": "u",
              "content": "<p>https://archive.example.org/hello/</p>", "reblog": {"id": "4"}}
    fake.fail_next(200, [status], match=account_statuses(fake))
    await publisher.publish(message("x", link=None), idempotency_key="k")  # learns the account id
    assert await publisher.find_published(message(), since=NOW) is None
    assert fake.seen("GET", account_statuses(fake))[0].arg("exclude_reblogs") == "true"


async def test_find_published_matches_mastodon_html(fake: FakeMastodon, publisher: MastodonPublisher) -> None:
    """Real content links the URL and splits it into spans; &-escapes the query."""
    link = "https://archive.example.org/hello/?a=1&b=2"
    content = ('<p>New post: Hello<br /><a href="https://archive.example.org/hello/?a=1&amp;b=2" rel="nofollow '
               'noopener" target="_blank"><span class="invisible">https://</span><span class="ellipsis">'
               'archive.example.org/hello/?a=1</span><span class="invisible">&amp;b=2</span></a></p>')
    status = {"id": "7", "created_at": "2026-01-01T12:00:01.000Z", "url": None, "uri": "https://m.example/7",
              "content": content, "reblog": None}
    await publisher.publish(message("x", link=None), idempotency_key="k")
    fake.fail_next(200, [status], match=account_statuses(fake))
    found = await publisher.find_published(message(f"New post: Hello\n{link}", link=link), since=NOW)
    assert found is not None and (found.remote_id, found.url) == ("7", "https://m.example/7")


async def test_fake_lists_statuses_like_mastodon(http: httpx.AsyncClient, clock: FakeClock) -> None:
    other = FakeMastodon(tokens={TOKEN: "tagrelay", "other-token": "someone"}, clock=clock.now)
    with other:
        mine = plugin.create(options(other.url), make_ctx(http, clock))
        theirs = plugin.create(options(other.url), make_ctx(http, clock, "other-token"))
        for i in range(45):
            await mine.publish(message(f"mine {i}", link=None), idempotency_key=f"m{i}")
        await theirs.publish(message("theirs", link=None), idempotency_key="t")
        url = f"{other.url}/api/v1/accounts/{other.accounts[TOKEN].id}/statuses"
        auth = {"Authorization": "Bearer other-token"}
        default = (await http.get(url, headers=auth)).json()
        assert len(default) == 20 and default[0]["content"] == "<p>mine 44</p>"
        assert len((await http.get(url, params={"limit": "100"}, headers=auth)).json()) == 40
        paged = (await http.get(url, params={"max_id": default[-1]["id"]}, headers=auth)).json()
        assert paged[0]["content"] == "<p>mine 24</p>"
        assert all(s["account"]["username"] == "tagrelay" for s in default + paged)
        missing = await http.get(f"{other.url}/api/v1/accounts/1/statuses", headers=auth)
        assert (missing.status_code, missing.json()) == (404, {"error": "Record not found"})
        assert (await http.get(url)).status_code == 401
        assert (await http.get(url, headers={"Authorization": "Bearer nope"})).status_code == 401


# -- check and credentials --------------------------------------------------------------------------


async def test_check(fake: FakeMastodon, publisher: MastodonPublisher) -> None:
    info = await publisher.check()
    assert info.display == f"@tagrelay on 127.0.0.1:{fake.port}"
    assert info.detail["max_characters"] == 1000


def test_missing_token_names_channel_and_variable(ctx: PublisherContext) -> None:
    with pytest.raises(CredentialsError) as info:
        plugin.create(options("https://mastodon.example", token_env="SOCIAL_TOKEN"), ctx)
    assert info.value.channel == "social"
    assert "SOCIAL_TOKEN" in str(info.value)


async def test_repr_hides_the_token(publisher: MastodonPublisher) -> None:
    assert TOKEN not in repr(publisher)


def test_render_delegates_to_the_renderer() -> None:
    pytest.importorskip("bot.render.mastodon")
    from bot.testing import check_plugin

    assert check_plugin(plugin, {"instance": "https://mastodon.example"}) == []


async def test_rendered_post_is_accepted(fake: FakeMastodon, publisher: MastodonPublisher) -> None:
    pytest.importorskip("bot.render.mastodon")
    from bot.testing import sample_post

    opts = options(fake.url, spoiler_text="Blog")
    msg = plugin.render(sample_post("A long title " * 30), opts, publisher.render_env)
    result = await publisher.publish(msg, idempotency_key="k")
    assert result.remote_id == fake.statuses[0].id


# -- the fake's own counting and the header parsers -------------------------------------------------


def test_fake_counts_like_mastodon() -> None:
    assert status_length("Hi https://example.org/a/very/long/path/indeed") == 3 + 23
    assert status_length("👨‍👩‍👧 @alice@example.social", "CW") == 1 + 1 + 6 + 2


@pytest.mark.parametrize(("value", "expected"), [
    ("2026-01-01T12:01:30.627625Z", 90.627625),
    ("2026-01-01T12:01:30+00:00", 90.0),
    ("2026-01-01T13:01:30+01:00", 90.0),
    ("2026-01-01T12:01:30", 90.0),              # naive: UTC
    ("2026-01-01T11:00:00Z", 0.0),              # past: now
    ("1767268890", None),                       # epoch is not Mastodon's format
    ("", None),
    (None, None),
])
def test_parse_reset_iso(value: str | None, expected: float | None) -> None:
    assert parse_reset_iso(value, NOW) == (pytest.approx(expected) if expected is not None else None)


@pytest.mark.parametrize(("value", "expected"), [
    ("120", 120.0),
    (" 7 ", 7.0),
    ("-5", 0.0),
    ("Thu, 01 Jan 2026 12:02:00 GMT", 120.0),
    ("soon", None),
    ("nan", None),
    (None, None),
])
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected
