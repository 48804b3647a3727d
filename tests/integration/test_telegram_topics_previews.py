"""Telegram forum topics (``thread_id``), link preview options and the photo that cannot be used, against
``FakeBotApi`` over real HTTP; a deleted topic pauses the channel through the real delivery service."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from bot.clock import FakeClock
from bot.domain.models import DeliveryStatus, ParsedPost, Post, Subscription
from bot.errors import ContentRejectedError, PermanentPublishError
from bot.observability import Metrics
from bot.publishers.api import PublisherContext
from bot.publishers.telegram import TelegramOptions, TelegramPublisher, plugin
from bot.render.message import RenderEnv
from bot.services.delivery import ChannelRuntime, Deliverer
from bot.settings import DeliveryConfig
from bot.storage.store import Store
from bot.validation import ValidationError
from tests.delivery_support import deliver_due
from tests.fakes.http import Response
from tests.fakes.images import ImageServer, image_response, jpeg
from tests.fakes.telegram_api import DEFAULT_CHANNEL_ID, DEFAULT_TOKEN, Chat, FakeBotApi
from tests.integration.test_store import poll
from tests.publish_support import DictSecrets

FORUM_ID = -1005550001111
TOPIC = 42


@pytest.fixture
def fake() -> Iterator[FakeBotApi]:
    server = FakeBotApi(chats=[Chat(DEFAULT_CHANNEL_ID, username="tagrelay_test")], fetch_photos=True)
    server.forum(FORUM_ID, [TOPIC, 77], username="tagrelay_forum")
    with server:
        yield server


@pytest.fixture
def images() -> Iterator[ImageServer]:
    with ImageServer() as server:
        yield server


@pytest.fixture
async def ctx() -> AsyncIterator[PublisherContext]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(5.0)) as http:
        yield PublisherContext(http=http, secret=DictSecrets({"TG_BOT_TOKEN": DEFAULT_TOKEN}),
                               logger=logging.getLogger("test.telegram"), clock=FakeClock())


def options(fake: FakeBotApi, **overrides: Any) -> TelegramOptions:
    return TelegramOptions.model_validate({"name": "tg", "platform": "telegram", "chat_id": "@tagrelay_forum",
                                           "api_base": fake.api_base, **overrides})


def a_post(image: str | None = None, alt: str | None = None) -> Post:
    return Post(key="k", source="archive", title="Hello forum", url="https://archive.example.org/hello/",
                summary_html="<p>Short.</p>", content_html="", tags=(), published=None, image_url=image,
                image_alt=alt)


async def send(fake: FakeBotApi, ctx: PublisherContext, post: Post, **overrides: Any) -> TelegramPublisher:
    opts = options(fake, **overrides)
    pub = plugin.create(opts, ctx)
    await pub.publish(plugin.render(post, opts, RenderEnv()), idempotency_key="k1")
    return pub


# -- topics -----------------------------------------------------------------------------------------


async def test_a_forum_topic_channel_posts_into_its_topic(fake: FakeBotApi, ctx: PublisherContext,
                                                          images: ImageServer) -> None:
    await send(fake, ctx, a_post(), thread_id=TOPIC)
    photo = images.serve("/hero.jpg", image_response(jpeg(320, 200)))
    await send(fake, ctx, a_post(photo), thread_id=TOPIC, send_image=True)
    sent = fake.sent_to(FORUM_ID)
    assert [(m.method, m.message_thread_id) for m in sent] == [("sendMessage", TOPIC), ("sendPhoto", TOPIC)]
    assert sent[1].photo_bytes is not None and sent[1].photo_bytes > 0


async def test_without_thread_id_no_topic_is_named(fake: FakeBotApi, ctx: PublisherContext) -> None:
    await send(fake, ctx, a_post())
    (sent,) = fake.sent_to(FORUM_ID)
    assert sent.message_thread_id is None and "message_thread_id" not in sent.params


async def test_a_deleted_topic_pauses_the_channel_with_the_reason(fake: FakeBotApi, ctx: PublisherContext,
                                                                  store: Store, clock: FakeClock) -> None:
    await store.sync_config([("archive", "https://a.example/feed/", "rss")], [("tg", "telegram")],
                            [Subscription("mek", "MEK", "tg")], clock.now())
    await poll(store, clock, [])
    await poll(store, clock, [ParsedPost(title=f"Post {n}", url=f"https://a.example/{n}/", guid=f"p{n}",
                                         tags=("MEK",), published=datetime(2026, 1, n, tzinfo=UTC))
                              for n in (1, 2)])
    opts = options(fake, thread_id=TOPIC)
    channels = {"tg": ChannelRuntime("tg", "telegram", plugin, opts, plugin.create(opts, ctx))}
    deliverer = Deliverer(store, channels, clock, DeliveryConfig(pacing=False), Metrics(), owner="test")
    fake.delete_topic(FORUM_ID, TOPIC)
    outcomes = await deliver_due(deliverer)
    assert [o.status for o in outcomes] == [DeliveryStatus.QUEUED]  # kept, not lost
    chan = await store.channel("tg")
    assert chan.paused and chan.paused_reason is not None
    assert f"topic {TOPIC}" in chan.paused_reason and "message thread not found" in chan.paused_reason.lower()
    assert fake.sent_to(FORUM_ID) == []
    asked = [r.form() for r in fake.seen("POST") if r.path.endswith("/sendMessage")]
    assert len(asked) == 1 and asked[0]["message_thread_id"] == [str(TOPIC)]


async def test_channels_test_says_whether_the_chat_is_a_forum(fake: FakeBotApi, ctx: PublisherContext) -> None:
    info = await plugin.create(options(fake, thread_id=TOPIC), ctx).check()
    assert info.detail["thread_id"] == TOPIC and f"topic {TOPIC}" in info.display
    with pytest.raises(PermanentPublishError, match="is not a forum") as caught:
        await plugin.create(options(fake, chat_id="@tagrelay_test", thread_id=TOPIC), ctx).check()
    assert "thread_id = 42" in caught.value.reason
    await plugin.create(options(fake, chat_id="@tagrelay_test"), ctx).check()  # no thread_id: no forum needed


@pytest.mark.parametrize("value", [0, -3, 2**31, "42", 1.5, True])
def test_thread_id_must_be_a_positive_message_id(fake: FakeBotApi, value: object) -> None:
    with pytest.raises(ValidationError, match="thread_id"):
        options(fake, thread_id=value)


# -- link previews ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("keys", "expected"), [
    ({}, {"url": "https://archive.example.org/hello/"}),
    ({"link_preview": False}, {"is_disabled": True}),
    ({"link_preview_media": "small"}, {"url": "https://archive.example.org/hello/", "prefer_small_media": True}),
    ({"link_preview_media": "large", "link_preview_above_text": True},
     {"url": "https://archive.example.org/hello/", "prefer_large_media": True, "show_above_text": True}),
    ({"link_preview_url": "image", "link_preview_media": "large"},
     {"url": "https://img.example.org/hero.jpg", "prefer_large_media": True}),
    ({"link_preview_url": "first", "link_preview_above_text": True}, {"show_above_text": True}),
])
async def test_link_preview_options(fake: FakeBotApi, ctx: PublisherContext, keys: dict[str, Any],
                                    expected: dict[str, Any]) -> None:
    await send(fake, ctx, a_post("https://img.example.org/hero.jpg", "Alt"), **keys)
    (sent,) = fake.sent_to(FORUM_ID)
    assert sent.link_preview_options == expected


async def test_a_preview_of_the_image_falls_back_to_the_post_link(fake: FakeBotApi, ctx: PublisherContext) -> None:
    await send(fake, ctx, a_post(), link_preview_url="image")
    assert fake.sent_to(FORUM_ID)[0].link_preview_options == {"url": "https://archive.example.org/hello/"}


@pytest.mark.parametrize(("keys", "problem"), [
    ({"link_preview": False, "link_preview_media": "large"}, "no effect with link_preview = false"),
    ({"link_preview_url": "first", "link_preview_media": "small"}, "link_preview_media needs link_preview_url"),
    ({"link_preview_url": "featured"}, "link_preview_url"),
    ({"link_preview_media": "huge"}, "link_preview_media"),
])
def test_absurd_preview_keys_are_refused_at_load(fake: FakeBotApi, keys: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        options(fake, **keys)


# -- a photo Telegram cannot use --------------------------------------------------------------------


async def test_a_photo_telegram_cannot_fetch_goes_out_as_text(fake: FakeBotApi, ctx: PublisherContext,
                                                              images: ImageServer,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    broken = images.serve("/login", Response.text("<html>please log in</html>", content_type="text/html"))
    with caplog.at_level(logging.WARNING, logger="test.telegram"):
        await send(fake, ctx, a_post(broken, "Alt text"), send_image=True, thread_id=TOPIC)
    (sent,) = fake.sent_to(FORUM_ID)
    assert sent.method == "sendMessage" and "Hello forum" in (sent.text or "")
    assert sent.message_thread_id == TOPIC
    assert len(fake.seen("POST")) == 2  # the refused sendPhoto, then the text: nothing twice
    skipped = [r for r in caplog.records if r.getMessage() == "telegram.photo_skipped"]
    assert len(skipped) == 1 and "wrong type of the web page content" in skipped[0].kv["reason"].lower()


async def test_a_caption_problem_is_not_mistaken_for_a_photo_problem(fake: FakeBotApi, ctx: PublisherContext,
                                                                     images: ImageServer) -> None:
    photo = images.serve("/ok.jpg", image_response(jpeg(64, 64)))
    fake.error(400, "Bad Request: can't parse entities: Unsupported start tag", match="sendPhoto")
    with pytest.raises(ContentRejectedError, match=r"(?i)can.t parse entities"):
        await send(fake, ctx, a_post(photo), send_image=True)
    assert fake.sent_to(FORUM_ID) == []  # no silent text fallback: the plain retry decides
