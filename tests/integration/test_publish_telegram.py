"""The Telegram publisher over real HTTP: PTB's own httpx client against ``FakeBotApi``."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from bot.clock import FakeClock
from bot.errors import (
    AmbiguousPublishError,
    ChatMigratedError,
    ContentRejectedError,
    CredentialsError,
    PermanentPublishError,
    PublishError,
    RetryablePublishError,
    RetryAfter,
)
from bot.publishers.api import PublisherContext, PublisherPlugin
from bot.publishers.telegram import TelegramOptions, TelegramPublisher, parse_chat_id, plugin
from bot.render.message import RenderedMessage
from bot.validation import ValidationError
from tests.fakes.http import Response
from tests.fakes.telegram_api import (
    DEFAULT_CHANNEL_ID,
    DEFAULT_TOKEN,
    Chat,
    FakeBotApi,
    Fault,
)
from tests.publish_support import DictSecrets, assert_clean

TOKEN = DEFAULT_TOKEN


def options(fake: FakeBotApi | str, **overrides: Any) -> TelegramOptions:
    base = fake if isinstance(fake, str) else fake.api_base
    data = {"name": "tg-main", "platform": "telegram", "chat_id": "@tagrelay_test", "api_base": base, **overrides}
    return TelegramOptions.model_validate(data)


def message(text: str = "New post: <b>Hello</b>", **kw: Any) -> RenderedMessage:
    kw.setdefault("link", "https://archive.example.org/hello/")
    kw.setdefault("format", "html")
    return RenderedMessage(text=text, **kw)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def fake() -> Iterator[FakeBotApi]:
    server = FakeBotApi(token=TOKEN, chats=[Chat(DEFAULT_CHANNEL_ID, username="tagrelay_test"),
                                            Chat(-1009876543210, title="Private channel")])
    with server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(5.0, read=0.5)) as client:
        yield client


@pytest.fixture
def ctx(http: httpx.AsyncClient) -> PublisherContext:
    return PublisherContext(http=http, secret=DictSecrets({"TG_BOT_TOKEN": TOKEN}),
                            logger=logging.getLogger("test.telegram"), clock=FakeClock())


@pytest.fixture
async def publisher(fake: FakeBotApi, ctx: PublisherContext) -> AsyncIterator[TelegramPublisher]:
    pub = plugin.create(options(fake), ctx)
    await pub.initialize()
    try:
        yield pub
    finally:
        await pub.aclose()


async def publish_error(pub: TelegramPublisher, msg: RenderedMessage | None = None) -> PublishError:
    with pytest.raises(PublishError) as info:
        await pub.publish(msg or message(), idempotency_key="tagrelay-1")
    assert_clean(info.value, TOKEN)
    return info.value


# -- plugin and options ---------------------------------------------------------------------------


def test_plugin_satisfies_the_contract() -> None:
    assert isinstance(plugin, PublisherPlugin)
    assert plugin.name == "telegram"
    assert issubclass(plugin.options_model, TelegramOptions)


def test_option_defaults() -> None:
    opts = TelegramOptions.model_validate({"name": "t", "platform": "telegram", "chat_id": "@chan_name"})
    assert (opts.token_env, opts.api_base, opts.at_least_once) == ("TG_BOT_TOKEN", "https://api.telegram.org", False)


@pytest.mark.parametrize(("raw", "target"), [
    ("@mychannel", "@mychannel"),
    ("-1001234567890", -1001234567890),
    (-1001234567890, -1001234567890),           # an int in TOML is accepted too
    (" -1009223372036854775 ", -1009223372036854775),
    ("123456789", 123456789),                   # a private chat with a user
])
def test_chat_id_parsing(raw: Any, target: int | str) -> None:
    opts = options("https://api.telegram.org", chat_id=raw)
    assert opts.target == target
    assert type(opts.target) is type(target)
    assert parse_chat_id(str(raw)) == target


@pytest.mark.parametrize("raw", ["mychannel", "@a", "0", "-1001234567890123456789", "@bad-name", "", "1.5"])
def test_bad_chat_ids_are_config_errors(raw: str) -> None:
    with pytest.raises(ValidationError, match="chat_id"):
        options("https://api.telegram.org", chat_id=raw)


def test_unknown_keys_and_bad_api_base_are_rejected() -> None:
    with pytest.raises(ValidationError):
        options("https://api.telegram.org", token="oops")
    with pytest.raises(ValidationError):
        options("ftp://api.telegram.org")


# -- sending --------------------------------------------------------------------------------------


async def test_send_message_to_a_public_channel(fake: FakeBotApi, publisher: TelegramPublisher) -> None:
    result = await publisher.publish(message(extra={"link_preview": True, "disable_notification": True}),
                                     idempotency_key="tagrelay-1")
    assert result.remote_id == "1"
    assert result.url == "https://t.me/tagrelay_test/1"
    [sent] = fake.messages
    assert sent.method == "sendMessage"
    assert sent.chat_id == DEFAULT_CHANNEL_ID
    assert sent.text == "New post: <b>Hello</b>"
    assert sent.parse_mode == "HTML"
    assert sent.link_preview_options == {"url": "https://archive.example.org/hello/"}
    assert sent.disable_notification is True


async def test_numeric_chat_id_is_sent_as_int64(fake: FakeBotApi, ctx: PublisherContext) -> None:
    pub = plugin.create(options(fake, chat_id="-1001234567890"), ctx)
    try:
        result = await pub.publish(message(), idempotency_key="k")
    finally:
        await pub.aclose()
    assert fake.seen("POST")[-1].form()["chat_id"] == ["-1001234567890"]
    assert fake.messages[0].chat_id == DEFAULT_CHANNEL_ID
    assert result.url == "https://t.me/tagrelay_test/1"  # the answer's chat has a username


async def test_private_channel_has_no_public_url(fake: FakeBotApi, ctx: PublisherContext) -> None:
    pub = plugin.create(options(fake, chat_id="-1009876543210"), ctx)
    try:
        result = await pub.publish(message(), idempotency_key="k")
    finally:
        await pub.aclose()
    assert result == type(result)(remote_id="1", url=None)


async def test_plain_text_without_preview(fake: FakeBotApi, publisher: TelegramPublisher) -> None:
    await publisher.publish(message("a < b & c", format="plain", extra={"link_preview": False}), idempotency_key="k")
    [sent] = fake.messages
    assert sent.parse_mode is None
    assert sent.text == "a < b & c"
    assert sent.link_preview_options == {"is_disabled": True}
    assert sent.disable_notification is False


async def test_preview_url_from_the_renderer(fake: FakeBotApi, publisher: TelegramPublisher) -> None:
    await publisher.publish(message(extra={"link_preview": True, "link_preview_url": "https://e.org/card"}),
                            idempotency_key="k")
    assert fake.messages[0].link_preview_options == {"url": "https://e.org/card"}


async def test_image_is_sent_as_photo_with_caption(fake: FakeBotApi, publisher: TelegramPublisher) -> None:
    result = await publisher.publish(message("<i>Caption</i>", image_url="https://archive.example.org/cover.jpg"),
                                     idempotency_key="k")
    [sent] = fake.messages
    assert (sent.method, sent.photo, sent.caption, sent.parse_mode) == (
        "sendPhoto", "https://archive.example.org/cover.jpg", "<i>Caption</i>", "HTML")
    assert result.remote_id == "1"


# -- errors ---------------------------------------------------------------------------------------


async def test_flood_control_gives_retry_after(fake: FakeBotApi, publisher: TelegramPublisher) -> None:
    fake.flood(retry_after=17)
    exc = await publish_error(publisher)
    assert isinstance(exc, RetryAfter)
    assert exc.delay == 17
    assert fake.messages == []


async def test_retry_after_as_timedelta(fake: FakeBotApi, publisher: TelegramPublisher,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "1")  # PTB then hands out a timedelta
    fake.flood(retry_after=9)
    exc = await publish_error(publisher)
    assert isinstance(exc, RetryAfter)
    assert exc.delay == 9


async def test_chat_migration(fake: FakeBotApi, publisher: TelegramPublisher, ctx: PublisherContext) -> None:
    fake.add_chat(Chat(-1005555555555, type="supergroup", title="Upgraded"))
    fake.migrate(-1005555555555)
    exc = await publish_error(publisher)
    assert isinstance(exc, ChatMigratedError)
    assert exc.new_chat_id == -1005555555555
    # what the delivery service does next: rebuild with the new id and retry
    moved = plugin.create(publisher.options.model_copy(update={"chat_id": str(exc.new_chat_id)}), ctx)
    try:
        await moved.publish(message(), idempotency_key="k")
    finally:
        await moved.aclose()
    assert fake.messages[0].chat_id == -1005555555555


@pytest.mark.parametrize(("code", "description", "expected"), [
    (403, "Forbidden: bot was kicked from the channel chat", PermanentPublishError),
    (403, "Forbidden: bot is not a member of the channel chat", PermanentPublishError),
    (403, "Forbidden: bot was blocked by the user", PermanentPublishError),
    (400, "Bad Request: need administrator rights in the channel chat", PermanentPublishError),
    (400, "Bad Request: message is too long", ContentRejectedError),
    (400, "Bad Request: message caption is too long", ContentRejectedError),
    (400, "Bad Request: wrong file identifier/HTTP URL specified", ContentRejectedError),
    (401, "Unauthorized", CredentialsError),
    (404, "Not Found", CredentialsError),
    (500, "Internal Server Error", RetryablePublishError),
    (502, "Bad Gateway", RetryablePublishError),
])
async def test_bot_api_errors(fake: FakeBotApi, publisher: TelegramPublisher, code: int, description: str,
                              expected: type[PublishError]) -> None:
    fake.error(code, description)
    exc = await publish_error(publisher)
    assert type(exc) is expected
    assert exc.channel == "tg-main"
    if code < 500:
        assert description.split(": ", 1)[-1].lower() in str(exc).lower()


async def test_forbidden_is_not_a_credentials_problem(fake: FakeBotApi, publisher: TelegramPublisher) -> None:
    fake.error(403, "Forbidden: bot was kicked from the channel chat")
    exc = await publish_error(publisher)
    assert not isinstance(exc, CredentialsError)


async def test_unknown_chat(fake: FakeBotApi, ctx: PublisherContext) -> None:
    pub = plugin.create(options(fake, chat_id="@nobody_here"), ctx)
    try:
        exc = await publish_error(pub)
    finally:
        await pub.aclose()
    assert type(exc) is PermanentPublishError
    assert "chat not found" in str(exc).lower()


async def test_markup_rejected_by_the_server(fake: FakeBotApi, publisher: TelegramPublisher) -> None:
    exc = await publish_error(publisher, message("<p>Hello</p>"))
    assert type(exc) is ContentRejectedError
    assert "can't parse entities" in str(exc).lower()


async def test_too_long_text_and_caption(fake: FakeBotApi, publisher: TelegramPublisher) -> None:
    exc = await publish_error(publisher, message("x" * 4097, format="plain"))
    assert type(exc) is ContentRejectedError and "message is too long" in str(exc).lower()
    exc = await publish_error(publisher, message("x" * 1025, format="plain", image_url="https://e.org/i.jpg"))
    assert type(exc) is ContentRejectedError and "caption is too long" in str(exc).lower()
    assert fake.messages == []


async def test_server_error_with_html_body_is_retryable(fake: FakeBotApi, publisher: TelegramPublisher) -> None:
    fake.add_fault(Fault(response=Response.text("<html>502 Bad Gateway</html>", 502, "text/html")))
    exc = await publish_error(publisher)
    assert type(exc) is RetryablePublishError


PART = TOKEN.split(":", 1)[1]
UNSAFE = {*map(chr, range(0x20)), "\x7f", *map(chr, range(0x80, 0xA0)), *"\u202a\u202b\u202c\u202d\u202e\u2066\u2069"}


@pytest.mark.parametrize("answer", [
    # the description echoes the secret part of the token, with terminal escapes and bidi controls
    Response.json({"ok": False, "error_code": 403,
                   "description": f"Forbidden: bot {PART} was kicked\x1b[2J\u202e from the channel chat"}, 403),
    # unknown parameters, dumped by the PTB-compatible text before
    Response.json({"ok": False, "error_code": 400, "description": "Bad Request: odd",
                   "parameters": {"token_part": PART, "junk": "x" * 5000}}, 400),
    # a body that is not JSON, quoted by the PTB-compatible text before
    Response.text(f"<html>bad gateway {PART} \x1b]0;pwned\x07</html>" + "y" * 5000, 502, "text/html"),
    # a huge description
    Response.json({"ok": False, "error_code": 400, "description": "Bad Request: " + "z" * 20_000 + PART}, 400),
])
async def test_error_text_is_reduced_to_status_code_and_description(
        fake: FakeBotApi, publisher: TelegramPublisher, answer: Response) -> None:
    fake.add_fault(Fault(response=answer))
    exc = await publish_error(publisher)
    assert_clean(exc, TOKEN, PART)
    reason = exc.reason
    assert len(reason) <= 600, len(reason)
    assert not set(reason) & UNSAFE, reason
    assert "junk" not in reason and "xxxxx" not in reason and "yyyyy" not in reason and "<html>" not in reason


async def test_wrong_token(fake: FakeBotApi, http: httpx.AsyncClient) -> None:
    bad = "987654321:AAWrongTokenWrongTokenWrongToken123"
    ctx = PublisherContext(http=http, secret=DictSecrets({"TG_BOT_TOKEN": bad}),
                           logger=logging.getLogger("test"), clock=FakeClock())
    pub = plugin.create(options(fake), ctx)
    try:
        with pytest.raises(CredentialsError) as info:
            await pub.initialize()
        assert_clean(info.value, bad)
        assert "TG_BOT_TOKEN" in str(info.value) and "tg-main" in str(info.value)
        with pytest.raises(CredentialsError) as info:
            await pub.publish(message(), idempotency_key="k")
        assert_clean(info.value, bad)
        with pytest.raises(CredentialsError) as info:
            await pub.check()
        assert_clean(info.value, bad)
    finally:
        await pub.aclose()


# -- ambiguity --------------------------------------------------------------------------------------


async def test_timeout_after_sending_is_ambiguous(fake: FakeBotApi, publisher: TelegramPublisher) -> None:
    release = fake.hold_next("sendMessage")
    try:
        exc = await publish_error(publisher)
    finally:
        release.set()
    assert isinstance(exc, AmbiguousPublishError)
    assert len(fake.messages) == 1  # it was in fact posted
    assert publisher.idempotent is False


async def test_connection_dropped_after_posting_is_ambiguous(fake: FakeBotApi,
                                                             publisher: TelegramPublisher) -> None:
    fake.drop_next("sendMessage", process=True)
    exc = await publish_error(publisher)
    assert isinstance(exc, AmbiguousPublishError)
    assert len(fake.messages) == 1


async def test_connection_refused_is_plainly_retryable(ctx: PublisherContext) -> None:
    pub = plugin.create(options(f"http://127.0.0.1:{closed_port()}"), ctx)
    await pub.initialize()  # an unreachable Bot API does not stop start-up
    try:
        exc = await publish_error(pub)
    finally:
        await pub.aclose()
    assert type(exc) is RetryablePublishError
    assert "nothing was sent" in str(exc)


async def test_unreachable_at_start_only_warns(ctx: PublisherContext, caplog: pytest.LogCaptureFixture) -> None:
    pub = plugin.create(options(f"http://127.0.0.1:{closed_port()}"), ctx)
    with caplog.at_level(logging.WARNING, logger="test.telegram"):
        await pub.initialize()
    await pub.aclose()
    assert any(r.getMessage() == "telegram.getme_failed" for r in caplog.records)
    assert all(TOKEN not in r.getMessage() and TOKEN not in str(getattr(r, "kv", "")) for r in caplog.records)


# -- check and credentials --------------------------------------------------------------------------


async def test_check_names_bot_and_chat(fake: FakeBotApi, publisher: TelegramPublisher) -> None:
    info = await publisher.check()
    assert info.display == "@tagrelay_test_bot (id 123456789) → chat @tagrelay_test"
    assert info.detail["chat_id"] == DEFAULT_CHANNEL_ID
    assert info.detail["chat_title"] == "Tagrelay test channel"


async def test_check_fails_for_unreachable_chat(fake: FakeBotApi, ctx: PublisherContext) -> None:
    pub = plugin.create(options(fake, chat_id="@nobody_here"), ctx)
    try:
        with pytest.raises(PermanentPublishError, match=r"(?i)chat not found"):
            await pub.check()
    finally:
        await pub.aclose()


def test_missing_token_names_channel_and_variable(ctx: PublisherContext) -> None:
    opts = options("https://api.telegram.org", token_env="MY_TG_TOKEN")
    with pytest.raises(CredentialsError) as info:
        plugin.create(opts, ctx)
    assert info.value.channel == "tg-main"
    assert "MY_TG_TOKEN" in str(info.value)


def test_empty_token_is_missing(http: httpx.AsyncClient) -> None:
    ctx = PublisherContext(http=http, secret=lambda name: "", logger=logging.getLogger("t"), clock=FakeClock())
    with pytest.raises(CredentialsError, match="TG_BOT_TOKEN"):
        plugin.create(options("https://api.telegram.org"), ctx)


async def test_aclose_closes_pools_without_initialize(fake: FakeBotApi, ctx: PublisherContext) -> None:
    pub = plugin.create(options(fake), ctx)
    await pub.publish(message(), idempotency_key="k")  # works before initialize()
    await pub.aclose()
    exc = await publish_error(pub)  # a closed pool sends nothing: plainly retryable, not ambiguous
    assert type(exc) is RetryablePublishError
    assert "not initialized" in str(exc)


async def test_repr_hides_the_token(publisher: TelegramPublisher) -> None:
    assert TOKEN not in repr(publisher)
    assert TOKEN not in str(publisher)


def test_render_delegates_to_the_renderer() -> None:
    pytest.importorskip("bot.render.telegram")
    from bot.testing import check_plugin

    assert check_plugin(plugin, {"chat_id": "@tagrelay_test"}) == []


async def test_rendered_post_is_accepted(fake: FakeBotApi, publisher: TelegramPublisher) -> None:
    pytest.importorskip("bot.render.telegram")
    from bot.testing import sample_post

    msg = plugin.render(sample_post("Q&A: <script> & more"), publisher.options, publisher.render_env)
    result = await publisher.publish(msg, idempotency_key="k")
    assert result.remote_id == "1"
    assert fake.messages[0].parse_mode == ("HTML" if msg.format == "html" else None)
