"""The Discord publisher over real HTTP against ``FakeDiscord``: the body it sends, every error class,
rate limits to the millisecond, the invalid-request cap, ``check`` and the webhook URL kept secret."""

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
    PermanentPublishError,
    PublishError,
    RetryablePublishError,
    RetryAfter,
)
from bot.publishers.api import PublisherContext, PublisherPlugin
from bot.publishers.discord import DiscordOptions, DiscordPlugin, DiscordPublisher, plugin
from bot.publishers.discord.answers import CLOUDFLARE_BAN_HOLD
from bot.publishers.discord.limits import DiscordLimits
from bot.publishers.discord.options import parse_webhook_url
from bot.render.message import RenderedMessage, RenderEnv
from bot.testing import check_plugin, sample_post
from bot.validation import ValidationError
from tests.fakes.discord_api import (
    ARCHIVED_THREAD_ID,
    CHANNEL_ID,
    GUILD_ID,
    THREAD_ID,
    WEBHOOK_ID,
    WEBHOOK_TOKEN,
    FakeDiscord,
)
from tests.fakes.http import Response
from tests.fakes.telegram_api import Fault
from tests.publish_support import DictSecrets, assert_clean

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
ENV = "DISCORD_WEBHOOK_URL"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def fake(clock: FakeClock) -> Iterator[FakeDiscord]:
    with FakeDiscord(clock=clock.now) as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(5.0, read=0.5)) as client:
        yield client


def options(fake: FakeDiscord, **kw: Any) -> DiscordOptions:
    return DiscordOptions.model_validate({"name": "news-dc", "platform": "discord", "api_base": fake.api_base, **kw})


def make_ctx(http: httpx.AsyncClient, clock: FakeClock, url: str) -> PublisherContext:
    return PublisherContext(http=http, secret=DictSecrets({ENV: url}), logger=logging.getLogger("test.discord"),
                            clock=clock)


def create(fake: FakeDiscord, http: httpx.AsyncClient, clock: FakeClock, *, url: str | None = None,
           plug: DiscordPlugin = plugin, **kw: Any) -> DiscordPublisher:
    return plug.create(options(fake, **kw), make_ctx(http, clock, url or fake.webhook_url))


@pytest.fixture
async def publisher(fake: FakeDiscord, http: httpx.AsyncClient, clock: FakeClock) -> DiscordPublisher:
    pub = create(fake, http, clock)
    await pub.initialize()
    return pub


def message(pub: DiscordPublisher, title: str = "Protest in Baghdad", **kw: Any) -> RenderedMessage:
    post = sample_post(title, url=kw.pop("url", "https://archive.example.org/protest/"))
    return plugin.render(post, pub.options, pub.render_env, **kw)


def secrets(fake: FakeDiscord) -> tuple[str, str]:
    return fake.webhook_url, fake.token


async def publish_error(pub: DiscordPublisher, fake: FakeDiscord, msg: RenderedMessage | None = None
                        ) -> PublishError:
    with pytest.raises(PublishError) as info:
        await pub.publish(msg or message(pub), idempotency_key="k")
    assert_clean(info.value, *secrets(fake))
    return info.value


def executes(fake: FakeDiscord) -> list[Any]:
    return [r for r in fake.requests if r.method == "POST"]


# -- plugin, options, the webhook URL ----------------------------------------------------------------


def test_plugin_satisfies_the_contract() -> None:
    assert isinstance(plugin, PublisherPlugin) and plugin.name == "discord"
    assert check_plugin(plugin, {}) == []
    assert check_plugin(plugin, {"mode": "content", "forum": True}) == []


def test_options(fake: FakeDiscord) -> None:
    opts = options(fake, thread_id=1234567890123456789, api_base="https://proxy.example/api/")
    assert (opts.webhook_url_env, opts.mode, opts.forum, opts.at_least_once) == (ENV, "embed", False, False)
    assert opts.thread_id == "1234567890123456789" and opts.api_base == "https://proxy.example/api"
    assert DiscordOptions.model_validate({"name": "d", "platform": "discord"}).api_base == "https://discord.com/api"
    for bad in ({"webhook_url_env": "https://discord.com/api/webhooks/1/x"}, {"thread_id": "12"},
                {"thread_id": "abc"}, {"api_base": "discord.com"}, {"forum": True, "thread_id": "1234567890123456789"},
                {"mode": "thread"}):
        with pytest.raises(ValidationError) as info:
            options(fake, **bad)
        assert "discord.com/api/webhooks/1/x" not in str(info.value)  # a pasted URL is never repeated


@pytest.mark.parametrize("url", [
    "https://discord.com/api/webhooks/1198765432109876543/" + WEBHOOK_TOKEN,
    "https://discord.com/api/v10/webhooks/1198765432109876543/" + WEBHOOK_TOKEN + "/",
    "https://discordapp.com/api/webhooks/1198765432109876543/" + WEBHOOK_TOKEN,
    "https://canary.discord.com/api/webhooks/1198765432109876543/" + WEBHOOK_TOKEN,
    "  https://ptb.discord.com/api/v9/webhooks/1198765432109876543/" + WEBHOOK_TOKEN + "\n",
])
def test_discord_webhook_urls_are_taken_apart(url: str) -> None:
    address = parse_webhook_url(url, api_base="https://discord.com/api", env_name=ENV)
    assert (address.webhook_id, address.token) == (WEBHOOK_ID, WEBHOOK_TOKEN)
    assert address.url == f"https://discord.com/api/v10/webhooks/{WEBHOOK_ID}/{WEBHOOK_TOKEN}"
    assert WEBHOOK_TOKEN not in repr(address)


@pytest.mark.parametrize(("url", "says"), [
    ("not a url", "does not hold a Discord webhook URL"),
    (f"https://discord.com/api/webhooks/{WEBHOOK_ID}", "does not hold a Discord webhook URL"),
    (f"https://discord.com/api/webhooks/{WEBHOOK_ID}/{WEBHOOK_TOKEN}?thread_id=1", "thread_id"),
    (f"https://discord.com/api/webhooks/12/{WEBHOOK_TOKEN}", "does not hold a Discord webhook URL"),
    (f"https://evil.example/api/webhooks/{WEBHOOK_ID}/{WEBHOOK_TOKEN}", "refusing to send its token elsewhere"),
    (f"http://discord.com/api/webhooks/{WEBHOOK_ID}/{WEBHOOK_TOKEN}", "refusing to send its token elsewhere"),
])
async def test_a_bad_webhook_url_is_a_credentials_error_that_never_quotes_it(
        fake: FakeDiscord, http: httpx.AsyncClient, clock: FakeClock, url: str, says: str) -> None:
    opts = DiscordOptions.model_validate({"name": "news-dc", "platform": "discord"})
    with pytest.raises(CredentialsError) as info:
        plugin.create(opts, make_ctx(http, clock, url))
    assert ENV in info.value.reason and says in info.value.reason
    assert_clean(info.value, url.strip(), WEBHOOK_TOKEN)


async def test_a_missing_variable_names_itself(http: httpx.AsyncClient, clock: FakeClock) -> None:
    opts = DiscordOptions.model_validate({"name": "news-dc", "platform": "discord", "webhook_url_env": "HOOK"})
    ctx = PublisherContext(http=http, secret=DictSecrets({}), logger=logging.getLogger("t"), clock=clock)
    with pytest.raises(CredentialsError, match="HOOK"):
        plugin.create(opts, ctx)


async def test_a_webhook_url_must_point_under_the_configured_api_base(
        fake: FakeDiscord, http: httpx.AsyncClient, clock: FakeClock) -> None:
    elsewhere = f"http://127.0.0.1:{closed_port()}/api/webhooks/{WEBHOOK_ID}/{WEBHOOK_TOKEN}"
    with pytest.raises(CredentialsError, match="does not point at the channel's api_base"):
        create(fake, http, clock, url=elsewhere)
    with pytest.raises(CredentialsError):  # a Discord URL with a test api_base is refused too
        create(fake, http, clock, url=f"https://discord.com/api/webhooks/{WEBHOOK_ID}/{WEBHOOK_TOKEN}")


# -- posting -------------------------------------------------------------------------------------------


async def test_an_embed_is_posted_with_wait_and_no_mention_can_ping(fake: FakeDiscord,
                                                                   publisher: DiscordPublisher) -> None:
    msg = message(publisher, "@everyone look <@&1234>")
    result = await publisher.publish(msg, idempotency_key="k")
    [sent] = fake.messages
    assert result.remote_id == sent.id
    assert result.url == f"https://discord.com/channels/{GUILD_ID}/{CHANNEL_ID}/{sent.id}"
    [request] = executes(fake)
    assert request.path == f"/api/v10/webhooks/{WEBHOOK_ID}/{WEBHOOK_TOKEN}"
    assert request.query == {"wait": ["true"]}
    body = request.json()
    assert body == {**msg.extra["payload"], "allowed_mentions": {"parse": []}}
    assert body["embeds"][0]["title"] == "@everyone look \\<@&1234\\>"
    assert sent.pinged == [] and sent.allowed_mentions == {"parse": []}


async def test_content_mode_cannot_ping_either(fake: FakeDiscord, http: httpx.AsyncClient, clock: FakeClock) -> None:
    pub = create(fake, http, clock, mode="content")
    await pub.publish(message(pub, "@everyone @here <@1> <@&2> news"), idempotency_key="k")
    [sent] = fake.messages
    assert "@everyone @here" in sent.content and sent.embeds == [] and sent.pinged == []
    assert fake.messages[0].content == executes(fake)[0].json()["content"]


async def test_a_payload_cannot_turn_pings_back_on(fake: FakeDiscord, publisher: DiscordPublisher) -> None:
    hostile = RenderedMessage(text="@everyone", link=None,
                              extra={"payload": {"content": "@everyone", "allowed_mentions": {"parse": ["everyone"]}}})
    await publisher.publish(hostile, idempotency_key="k")
    assert fake.messages[0].pinged == []


async def test_a_thread_id_posts_into_that_thread(fake: FakeDiscord, http: httpx.AsyncClient,
                                                  clock: FakeClock) -> None:
    pub = create(fake, http, clock, thread_id=THREAD_ID)
    await pub.initialize()
    result = await pub.publish(message(pub), idempotency_key="k")
    assert executes(fake)[0].query == {"wait": ["true"], "thread_id": [THREAD_ID]}
    assert fake.messages[0].channel_id == THREAD_ID
    assert result.url == f"https://discord.com/channels/{GUILD_ID}/{THREAD_ID}/{result.remote_id}"


async def test_a_forum_gets_one_thread_per_post_named_after_its_title(
        clock: FakeClock, http: httpx.AsyncClient) -> None:
    with FakeDiscord(forum=True, clock=clock.now) as forum:
        pub = create(forum, http, clock, forum=True)
        await pub.publish(message(pub, "First post"), idempotency_key="a")
        await pub.publish(message(pub, "Second post"), idempotency_key="b")
        first, second = forum.messages
        assert (first.thread_name, second.thread_name) == ("First post", "Second post")
        assert first.channel_id != second.channel_id != CHANNEL_ID
        # a forum post's thread has its starter message's id: edits and deletions find it there
        await pub.edit_message(first.id, message(pub, "First post, corrected"))
        await pub.delete_message(second.id)
        assert first.embeds[0]["title"] == "First post, corrected" and forum.live() == [first]
        assert [r.query.get("thread_id") for r in forum.requests[-2:]] == [[first.id], [second.id]]


@pytest.mark.parametrize(("fake_forum", "opts", "code", "hint"), [
    (True, {}, "220001", "set forum = true"),
    (False, {"forum": True}, "220003", "set forum = false"),
    (False, {"thread_id": ARCHIVED_THREAD_ID}, "50083", "archived or locked"),
    (False, {"thread_id": "1999999999999999999"}, "10003", "check thread_id"),
])
async def test_a_thread_setting_that_does_not_match_the_channel_pauses_it(
        clock: FakeClock, http: httpx.AsyncClient, fake_forum: bool, opts: dict[str, Any], code: str,
        hint: str) -> None:
    with FakeDiscord(forum=fake_forum, clock=clock.now) as fake:
        pub = create(fake, http, clock, **opts)
        error = await publish_error(pub, fake)
        assert type(error) is PermanentPublishError
        assert f"code {code}" in error.reason and hint in error.reason
        assert fake.messages == []


async def test_messages_in_a_thread_are_edited_there(fake: FakeDiscord, http: httpx.AsyncClient,
                                                     clock: FakeClock) -> None:
    pub = create(fake, http, clock, thread_id=THREAD_ID)
    result = await pub.publish(message(pub), idempotency_key="k")
    assert result.remote_id is not None
    await pub.edit_message(result.remote_id, message(pub, "Corrected"))
    assert fake.messages[0].embeds[0]["title"] == "Corrected"
    assert fake.requests[-1].query == {"thread_id": [THREAD_ID]}


async def test_edit_and_delete_a_message(fake: FakeDiscord, publisher: DiscordPublisher) -> None:
    result = await publisher.publish(message(publisher), idempotency_key="k")
    assert result.remote_id is not None
    edited = await publisher.edit_message(result.remote_id, message(publisher, "Corrected title"))
    assert edited.remote_id == result.remote_id
    assert fake.messages[0].embeds[0]["title"] == "Corrected title"
    assert fake.messages[0].edits[0]["allowed_mentions"] == {"parse": []}
    await publisher.delete_message(result.remote_id)
    assert fake.live() == []
    await publisher.delete_message(result.remote_id)  # already gone (10008): done
    with pytest.raises(PermanentPublishError):
        await publisher.edit_message(result.remote_id, message(publisher))
    with pytest.raises(PermanentPublishError):
        await publisher.delete_message("../../evil")
    calls = [(r.method, "/messages/" in r.path) for r in fake.requests]
    assert calls == [("GET", False), ("POST", False), ("PATCH", True), ("DELETE", True), ("DELETE", True),
                     ("PATCH", True)]  # the bad id never left


# -- check: read-only --------------------------------------------------------------------------------


async def test_check_reads_the_webhook_and_sends_nothing(fake: FakeDiscord, http: httpx.AsyncClient,
                                                         clock: FakeClock) -> None:
    pub = create(fake, http, clock, thread_id=THREAD_ID)
    info = await pub.check()
    assert info.display == f"webhook 'tagrelay' → thread {THREAD_ID} of channel {CHANNEL_ID} (server {GUILD_ID})"
    assert info.detail == {"webhook": "tagrelay", "webhook_id": WEBHOOK_ID, "channel_id": CHANNEL_ID,
                           "guild_id": GUILD_ID, "mode": "embed", "api_base": fake.api_base, "thread_id": THREAD_ID}
    assert WEBHOOK_TOKEN not in repr(info)  # the GET's answer carries the token: never passed on
    assert [r.method for r in fake.requests] == ["GET"] and fake.messages == []


async def test_check_names_a_deleted_webhook(fake: FakeDiscord, publisher: DiscordPublisher) -> None:
    fake.delete_webhook()
    with pytest.raises(CredentialsError, match="no longer exists") as info:
        await publisher.check()
    assert "code 10015" in info.value.reason and ENV in info.value.reason
    assert_clean(info.value, *secrets(fake))


async def test_initialize_raises_only_for_credentials(fake: FakeDiscord, http: httpx.AsyncClient,
                                                      clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    fake.regenerate_token()
    with pytest.raises(CredentialsError, match="rejected the webhook token"):
        await create(fake, http, clock, url=f"{fake.url}/api/webhooks/{WEBHOOK_ID}/{WEBHOOK_TOKEN}").initialize()
    unreachable = f"http://127.0.0.1:{closed_port()}/api"
    pub = plugin.create(DiscordOptions.model_validate({"name": "news-dc", "platform": "discord",
                                                       "api_base": unreachable}),
                        make_ctx(http, clock, f"{unreachable}/webhooks/{WEBHOOK_ID}/{WEBHOOK_TOKEN}"))
    with caplog.at_level(logging.WARNING, logger="test.discord"):
        await pub.initialize()  # an unreachable Discord does not stop start-up
    assert [r.getMessage() for r in caplog.records] == ["discord.webhook_unread"]


# -- rate limits ---------------------------------------------------------------------------------------


async def test_a_429_waits_exactly_retry_after_and_sends_nothing_before(
        fake: FakeDiscord, publisher: DiscordPublisher, clock: FakeClock) -> None:
    fake.rate_limit(37.25)
    error = await publish_error(publisher, fake)
    assert isinstance(error, RetryAfter) and error.delay == 37.25
    assert "Discord rate limit" in error.reason and "37.250s" in error.reason
    clock.advance(37.249)
    early = await publish_error(publisher, fake)  # the bucket still waits: nothing reaches Discord
    assert isinstance(early, RetryAfter) and early.delay == pytest.approx(0.001)
    assert "nothing was sent" in early.reason
    assert len(executes(fake)) == 1
    clock.advance(0.001)
    await publisher.publish(message(publisher), idempotency_key="k")
    assert len(executes(fake)) == 2 and len(fake.messages) == 1


async def test_a_spent_bucket_is_waited_for_before_any_429(clock: FakeClock, http: httpx.AsyncClient) -> None:
    """``X-RateLimit-Remaining: 0`` with ``Reset-After``: the next send waits for the reset instead of
    earning a 429 (which Cloudflare would count)."""
    with FakeDiscord(clock=clock.now, bucket_limit=2, bucket_window=2.5) as fake:
        pub = create(fake, http, clock)
        await pub.publish(message(pub), idempotency_key="a")
        clock.advance(0.5)
        await pub.publish(message(pub), idempotency_key="b")  # Remaining: 0, Reset-After: 2.0
        waited = await publish_error(pub, fake)
        assert isinstance(waited, RetryAfter) and waited.delay == pytest.approx(2.0)
        assert "bucket" in waited.reason and "nothing was sent" in waited.reason
        clock.advance(2.0)
        await pub.publish(message(pub), idempotency_key="c")
        assert len(fake.messages) == 3 and len(executes(fake)) == 3
        assert (fake.rate_limited, fake.invalid_requests) == (0, 0)


async def test_a_global_limit_holds_every_channel_on_the_host(fake: FakeDiscord, http: httpx.AsyncClient,
                                                              clock: FakeClock) -> None:
    own = DiscordPlugin()
    first = create(fake, http, clock, plug=own)
    second = own.create(DiscordOptions.model_validate({"name": "other-dc", "platform": "discord",
                                                       "api_base": fake.api_base}),
                        make_ctx(http, clock, fake.webhook_url))
    fake.rate_limit(4.5, is_global=True)
    error = await publish_error(first, fake)
    assert isinstance(error, RetryAfter) and error.delay == 4.5 and "global" in error.reason
    held = await publish_error(second, fake)
    assert isinstance(held, RetryAfter) and held.delay == pytest.approx(4.5)
    assert "global" in held.reason and len(executes(fake)) == 1
    clock.advance(4.5)
    await second.publish(message(second), idempotency_key="k")
    assert len(fake.messages) == 1


@pytest.mark.parametrize(("retry_after", "hold"), [(None, CLOUDFLARE_BAN_HOLD), (1800, 1800.0)])
async def test_a_cloudflare_ban_holds_long(fake: FakeDiscord, publisher: DiscordPublisher, retry_after: int | None,
                                           hold: float) -> None:
    fake.cloudflare_ban(retry_after=retry_after)
    error = await publish_error(publisher, fake)
    assert isinstance(error, RetryAfter) and error.delay == hold and "Cloudflare" in error.reason
    assert "<html" not in error.reason.lower()


async def test_invalid_requests_are_counted_and_capped_before_cloudflare_would_ban(
        fake: FakeDiscord, http: httpx.AsyncClient, clock: FakeClock) -> None:
    limits = DiscordLimits(budget=3)
    opts = options(fake)
    url = fake.webhook_url
    address = parse_webhook_url(url, api_base=fake.api_base, env_name=ENV)
    pub = DiscordPublisher(opts, make_ctx(http, clock, url), address, limits, [url, address.token])
    fake.error(401, 50027, "Invalid Webhook Token", match="get", times=3)
    for _ in range(3):
        with pytest.raises(CredentialsError):
            await pub.check()
        clock.advance(60)
    with pytest.raises(RetryAfter) as info:
        await pub.check()
    assert "3 invalid requests" in info.value.reason and "Cloudflare" in info.value.reason
    assert info.value.delay == pytest.approx(600 - 180)  # until the first of them is 10 minutes old
    assert len(fake.requests) == 3 and fake.invalid_requests == 3
    clock.advance(600 - 180)
    await pub.check()
    assert limits.invalid_total == 3


# -- errors ----------------------------------------------------------------------------------------------


async def test_a_rejected_token_and_a_deleted_webhook_are_credentials(fake: FakeDiscord,
                                                                      publisher: DiscordPublisher) -> None:
    fake.regenerate_token()
    error = await publish_error(publisher, fake)
    assert isinstance(error, CredentialsError) and "code 50027" in error.reason and ENV in error.reason
    fake.delete_webhook()
    error = await publish_error(publisher, fake)
    assert isinstance(error, CredentialsError) and "Unknown Webhook" in error.reason
    assert "no longer exists" in error.reason and fake.messages == []


@pytest.mark.parametrize(("status", "code", "text", "kind"), [
    (403, 50013, "Missing Permissions", PermanentPublishError),
    (403, 50001, "Missing Access", PermanentPublishError),
    (400, 50006, "Cannot send an empty message", ContentRejectedError),
    (400, 240000, "Message blocked by harmful links filter", ContentRejectedError),
    (413, 40005, "Request entity too large", ContentRejectedError),
    (500, 0, "500: Internal Server Error", RetryablePublishError),
    (503, 130000, "API resource is currently overloaded. Try again a little later", RetryablePublishError),
    (404, 0, "404: Not Found", PermanentPublishError),
])
async def test_each_error_answer_has_its_class(fake: FakeDiscord, publisher: DiscordPublisher, status: int,
                                               code: int, text: str, kind: type[PublishError]) -> None:
    fake.error(status, code, text)
    error = await publish_error(publisher, fake)
    assert type(error) is kind and text in error.reason


async def test_invalid_form_body_names_the_field(fake: FakeDiscord, publisher: DiscordPublisher) -> None:
    errors = {"embeds": {"0": {"description": {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH",
                                                            "message": "Must be 4096 or fewer in length."}]}}}}
    fake.error(400, 50035, "Invalid Form Body", errors)
    error = await publish_error(publisher, fake)
    assert isinstance(error, ContentRejectedError)
    assert "code 50035; embeds.0.description: Must be 4096 or fewer in length." in error.reason


async def test_a_hostile_error_tree_is_bounded(fake: FakeDiscord, publisher: DiscordPublisher) -> None:
    deep: dict[str, Any] = {"_errors": [{"message": "bottom"}]}
    for i in range(500):
        deep = {str(i): deep, **{f"k{j}": {"_errors": "x"} for j in range(3)}}
    fake.error(400, 50035, "Invalid Form Body \x1b[2J\u202e", deep)
    error = await publish_error(publisher, fake)
    assert isinstance(error, ContentRejectedError) and len(error.reason) < 700
    assert "\x1b" not in error.reason and "\u202e" not in error.reason


async def test_an_answer_nested_too_deeply_to_decode_is_still_classified(fake: FakeDiscord,
                                                                      publisher: DiscordPublisher) -> None:
    body = b"[" * 100_000 + b"]" * 100_000  # json.loads raises RecursionError, not ValueError
    fake.add_fault(Fault(response=Response(403, body, {"Content-Type": "application/json"}), match="execute"))
    error = await publish_error(publisher, fake)
    assert type(error) is PermanentPublishError and "403 Forbidden" in error.reason
    fake.add_fault(Fault(response=Response(200, body, {"Content-Type": "application/json"}), match="execute",
                         process=True))
    assert isinstance(await publish_error(publisher, fake), AmbiguousPublishError)


async def test_an_error_quoting_the_token_is_redacted(fake: FakeDiscord, publisher: DiscordPublisher) -> None:
    fake.error(403, 50013, f"Missing Permissions for {fake.webhook_url} ({fake.token[5:40]})")
    error = await publish_error(publisher, fake)  # assert_clean: neither the URL nor the token
    assert "***" in error.reason


async def test_a_5xx_with_retry_after_waits_as_told(fake: FakeDiscord, publisher: DiscordPublisher) -> None:
    fake.fail_next(503, {"message": "Service Unavailable", "code": 0}, {"Retry-After": "12"}, match="execute")
    error = await publish_error(publisher, fake)
    assert isinstance(error, RetryAfter) and error.delay == 12


async def test_a_redirect_is_permanent_and_its_location_redacted(fake: FakeDiscord,
                                                                 publisher: DiscordPublisher) -> None:
    fake.fail_next(301, {}, {"Location": fake.webhook_url + "/moved"}, match="execute")
    error = await publish_error(publisher, fake)
    assert type(error) is PermanentPublishError and "redirected" in error.reason


# -- ambiguous outcomes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["drop", "timeout"])
async def test_a_lost_answer_is_ambiguous_and_the_message_exists(fake: FakeDiscord, publisher: DiscordPublisher,
                                                                 how: str) -> None:
    if how == "drop":
        fake.drop_next("execute", process=True)
    else:
        fake.hold_next("execute")
    error = await publish_error(publisher, fake)
    assert isinstance(error, AmbiguousPublishError) and "may or may not" in error.reason
    assert len(fake.messages) == 1 and publisher.idempotent is False


async def test_a_2xx_without_a_message_id_is_ambiguous(fake: FakeDiscord, publisher: DiscordPublisher) -> None:
    fake.add_fault(Fault(response=Response.json({"id": "not-a-snowflake"}), match="execute", process=True))
    error = await publish_error(publisher, fake)
    assert isinstance(error, AmbiguousPublishError) and "without a message id" in error.reason


async def test_connection_refused_sent_nothing(http: httpx.AsyncClient, clock: FakeClock) -> None:
    base = f"http://127.0.0.1:{closed_port()}/api"
    opts = DiscordOptions.model_validate({"name": "news-dc", "platform": "discord", "api_base": base})
    url = f"{base}/webhooks/{WEBHOOK_ID}/{WEBHOOK_TOKEN}"
    pub = plugin.create(opts, make_ctx(http, clock, url))
    with pytest.raises(RetryablePublishError) as info:
        await pub.publish(message(pub), idempotency_key="k")
    assert type(info.value) is RetryablePublishError and "nothing was sent" in info.value.reason
    assert_clean(info.value, url, WEBHOOK_TOKEN)


async def test_a_closed_publisher_sends_nothing(fake: FakeDiscord, publisher: DiscordPublisher) -> None:
    await publisher.aclose()
    with pytest.raises(RetryablePublishError, match="closed"):
        await publisher.publish(message(publisher), idempotency_key="k")
    assert executes(fake) == []


def test_the_publisher_never_shows_its_url(fake: FakeDiscord, publisher: DiscordPublisher) -> None:
    assert WEBHOOK_TOKEN not in repr(publisher) and WEBHOOK_ID in repr(publisher)
    assert RenderEnv() == publisher.render_env
