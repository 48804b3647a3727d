"""Edits and deletions over real HTTP: the Telegram, Mastodon and X publishers against their loopback fakes,
which answer with each platform's documented success bodies and error texts."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from bot.clock import FakeClock
from bot.errors import (
    AmbiguousPublishError,
    ChangeRefusedError,
    ContentRejectedError,
    MessageGoneError,
    PermanentPublishError,
    PublishError,
    RetryAfter,
)
from bot.publishers import mastodon, telegram, x
from bot.publishers.api import ChangeResult, PublisherContext, abilities
from bot.publishers.bluesky import BlueskyOptions
from bot.publishers.bluesky import plugin as bluesky_plugin
from bot.publishers.discord import DiscordOptions
from bot.publishers.discord import plugin as discord_plugin
from bot.render.message import RenderedMessage
from bot.testing import sample_post
from tests.fakes.bluesky_api import APP_PASSWORD, FakeBluesky
from tests.fakes.bluesky_api import HANDLE as BSKY_HANDLE
from tests.fakes.discord_api import FakeDiscord
from tests.fakes.mastodon_api import DEFAULT_TOKEN as MASTODON_TOKEN
from tests.fakes.mastodon_api import FakeMastodon
from tests.fakes.telegram_api import DEFAULT_CHANNEL_ID, FakeBotApi
from tests.fakes.telegram_api import DEFAULT_TOKEN as TELEGRAM_TOKEN
from tests.fakes.x_api import ACCESS_TOKEN, ACCESS_TOKEN_SECRET, CONSUMER_KEY, CONSUMER_SECRET, TWEETS, FakeX
from tests.publish_support import DictSecrets, assert_clean

SECRETS = DictSecrets({"TG_BOT_TOKEN": TELEGRAM_TOKEN, "MASTODON_TOKEN": MASTODON_TOKEN,
                       "X_CONSUMER_KEY": CONSUMER_KEY, "X_CONSUMER_SECRET": CONSUMER_SECRET,
                       "X_ACCESS_TOKEN": ACCESS_TOKEN, "X_ACCESS_TOKEN_SECRET": ACCESS_TOKEN_SECRET})
LINK = "https://archive.example.org/hello/"


def html(text: str, image: str | None = None) -> RenderedMessage:
    return RenderedMessage(text=text, link=LINK, format="html", image_url=image)


def plain(text: str) -> RenderedMessage:
    return RenderedMessage(text=text, link=LINK, format="plain")


@pytest.fixture
async def ctx() -> AsyncIterator[PublisherContext]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(5.0, read=0.5)) as client:
        yield PublisherContext(http=client, secret=SECRETS, logger=logging.getLogger("test.changes"),
                               clock=FakeClock())


# -- Telegram ------------------------------------------------------------------------------------


@pytest.fixture
def bot_api() -> Iterator[FakeBotApi]:
    now = [1_700_000_000.0]
    with FakeBotApi(clock=lambda: now[0]) as fake:
        fake.now = now  # type: ignore[attr-defined]
        yield fake


def tg(fake: FakeBotApi, ctx: PublisherContext) -> telegram.TelegramPublisher:
    opts = telegram.TelegramOptions.model_validate({"name": "tg", "platform": "telegram", "chat_id": "@tagrelay_test",
                                                    "api_base": fake.api_base})
    return telegram.plugin.create(opts, ctx)


async def test_telegram_declares_edit_delete_and_its_48_hour_limit(bot_api: FakeBotApi, ctx: PublisherContext) -> None:
    found = abilities(tg(bot_api, ctx))
    assert found.editor is not None and found.deleter is not None and found.delete_max_age == 48 * 3600


async def test_telegram_edits_a_text_message_and_a_repeat_is_not_modified(bot_api: FakeBotApi,
                                                                         ctx: PublisherContext) -> None:
    pub = tg(bot_api, ctx)
    sent = await pub.publish(html("<b>Old</b> title"), idempotency_key="k")
    assert sent.remote_id is not None
    assert await pub.edit(sent.remote_id, html("<b>New</b> title")) == ChangeResult()
    again = await pub.edit(sent.remote_id, html("<b>New</b> title"))  # an answer lost, the edit made again
    assert again.already is not None and "not modified" in again.already
    assert [(c.method, c.text) for c in bot_api.changes] == [("editMessageText", "<b>New</b> title")]
    edit = next(r for r in bot_api.seen("POST") if r.path.endswith("/editMessageText"))
    assert edit.form()["chat_id"] == ["@tagrelay_test"] and edit.form()["parse_mode"] == ["HTML"]


async def test_telegram_edits_a_photo_by_media_and_falls_back_to_the_other_kind(bot_api: FakeBotApi,
                                                                                ctx: PublisherContext) -> None:
    pub = tg(bot_api, ctx)
    photo = await pub.publish(html("Caption", "https://img.example/1.jpg"), idempotency_key="k")
    text = await pub.publish(html("Text only"), idempotency_key="k2")
    assert photo.remote_id and text.remote_id
    await pub.edit(photo.remote_id, html("Caption, fixed", "https://img.example/2.jpg"))
    await pub.edit(photo.remote_id, html("Caption without image"))  # no text to edit there: the caption
    await pub.edit(text.remote_id, html("Text, now with an image", "https://img.example/3.jpg"))  # no media: text
    assert [(c.method, c.text, c.photo) for c in bot_api.changes] == [
        ("editMessageMedia", "Caption, fixed", "https://img.example/2.jpg"),
        ("editMessageCaption", "Caption without image", "https://img.example/2.jpg"),
        ("editMessageText", "Text, now with an image", None)]


async def test_telegram_deletes_once_and_a_gone_message_is_gone(bot_api: FakeBotApi, ctx: PublisherContext) -> None:
    pub = tg(bot_api, ctx)
    sent = await pub.publish(html("Bye"), idempotency_key="k")
    assert sent.remote_id is not None
    assert await pub.delete(sent.remote_id) == ChangeResult()
    with pytest.raises(MessageGoneError) as gone:
        await pub.delete(sent.remote_id)
    assert "message to delete not found" in gone.value.reason.lower()
    with pytest.raises(MessageGoneError):
        await pub.edit(sent.remote_id, html("Too late"))
    assert [c.method for c in bot_api.changes] == ["deleteMessage"]
    assert_clean(gone.value, TELEGRAM_TOKEN)


async def test_telegram_refuses_to_delete_after_48_hours(bot_api: FakeBotApi, ctx: PublisherContext) -> None:
    pub = tg(bot_api, ctx)
    sent = await pub.publish(html("Old"), idempotency_key="k")
    assert sent.remote_id is not None
    bot_api.now[0] += 49 * 3600  # type: ignore[attr-defined]
    with pytest.raises(ChangeRefusedError) as refused:
        await pub.delete(sent.remote_id)
    assert "48 hours" in refused.value.reason and bot_api.changes == []


async def test_telegram_change_errors_keep_their_classes(bot_api: FakeBotApi, ctx: PublisherContext) -> None:
    pub = tg(bot_api, ctx)
    sent = await pub.publish(html("Hello"), idempotency_key="k")
    assert sent.remote_id is not None
    bot_api.flood(9, match="editMessageText")
    with pytest.raises(RetryAfter) as flood:
        await pub.edit(sent.remote_id, html("Hello, edited"))
    assert flood.value.delay == 9
    with pytest.raises(ContentRejectedError):
        await pub.edit(sent.remote_id, html("<p>not Telegram HTML</p>"))
    bot_api.error(403, "Forbidden: bot was kicked from the channel chat", match="deleteMessage")
    with pytest.raises(PermanentPublishError):
        await pub.delete(sent.remote_id)
    bot_api.drop_next("deleteMessage", process=True)
    with pytest.raises(AmbiguousPublishError):
        await pub.delete(sent.remote_id)  # deleted, the answer lost
    with pytest.raises(MessageGoneError):
        await pub.delete(sent.remote_id)  # the repeat finds it gone
    with pytest.raises(ChangeRefusedError):
        await pub.delete("not-a-number")
    assert DEFAULT_CHANNEL_ID in {c.chat_id for c in bot_api.changes}


# -- Mastodon ------------------------------------------------------------------------------------


@pytest.fixture
def instance() -> Iterator[FakeMastodon]:
    with FakeMastodon() as fake:
        yield fake


def masto(fake: FakeMastodon, ctx: PublisherContext) -> mastodon.MastodonPublisher:
    opts = mastodon.MastodonOptions.model_validate({"name": "masto", "platform": "mastodon", "instance": fake.url,
                                                    "spoiler_text": "News"})
    return mastodon.plugin.create(opts, ctx)


async def test_mastodon_edits_with_put_after_reading_the_source(instance: FakeMastodon,
                                                               ctx: PublisherContext) -> None:
    pub = masto(instance, ctx)
    found = abilities(pub)
    assert found.editor is not None and found.deleter is not None and found.delete_max_age is None
    sent = await pub.publish(plain(f"Old title {LINK}"), idempotency_key="k")
    assert sent.remote_id is not None
    assert await pub.edit(sent.remote_id, plain(f"New title {LINK}")) == ChangeResult()
    again = await pub.edit(sent.remote_id, plain(f"New title {LINK}"))  # a repeat: the source shows it already
    assert again.already is not None
    (status,) = instance.statuses
    assert status.text == f"New title {LINK}" and status.edits == [f"Old title {LINK}"]  # one edit, not two
    puts = instance.seen("PUT")
    assert len(puts) == 1 and puts[0].json() == {"status": f"New title {LINK}", "spoiler_text": "News"}
    assert "visibility" not in puts[0].json()  # a status's visibility cannot change
    assert instance.seen("GET", f"/api/v1/statuses/{sent.remote_id}/source")


async def test_mastodon_deletes_and_a_deleted_status_is_gone(instance: FakeMastodon, ctx: PublisherContext) -> None:
    pub = masto(instance, ctx)
    sent = await pub.publish(plain(f"Bye {LINK}"), idempotency_key="k")
    assert sent.remote_id is not None
    assert await pub.delete(sent.remote_id) == ChangeResult()
    for call in (pub.delete(sent.remote_id), pub.edit(sent.remote_id, plain("x"))):
        with pytest.raises(MessageGoneError):
            await call
    assert instance.deletions == [sent.remote_id]


async def test_mastodon_change_errors(instance: FakeMastodon, ctx: PublisherContext) -> None:
    pub = masto(instance, ctx)
    sent = await pub.publish(plain(f"Hello {LINK}"), idempotency_key="k")
    assert sent.remote_id is not None
    with pytest.raises(ContentRejectedError):
        await pub.edit(sent.remote_id, plain("x" * 600))  # 422: over the instance's 500
    instance.fail_next(503, {"error": "Service Unavailable"}, match=f"/api/v1/statuses/{sent.remote_id}")
    with pytest.raises(PublishError) as unavailable:
        await pub.delete(sent.remote_id)
    assert not isinstance(unavailable.value, MessageGoneError)
    assert_clean(unavailable.value, MASTODON_TOKEN)
    assert instance.deletions == []


# -- X -------------------------------------------------------------------------------------------


@pytest.fixture
def api_x() -> Iterator[FakeX]:
    with FakeX() as fake:
        yield fake


async def test_x_deletes_but_has_no_edit(api_x: FakeX, ctx: PublisherContext) -> None:
    opts = x.XOptions.model_validate({"name": "x", "platform": "x", "api_base": api_x.url})
    pub = x.plugin.create(opts, ctx)
    found = abilities(pub)
    assert found.editor is None and found.deleter is not None
    sent = await pub.publish(plain(f"Post {LINK}"), idempotency_key="k")
    assert sent.remote_id is not None
    assert await pub.delete(sent.remote_id) == ChangeResult()
    with pytest.raises(MessageGoneError):
        await pub.delete(sent.remote_id)
    assert [t.id for t in api_x.deleted] == [sent.remote_id] and api_x.tweets == []
    assert api_x.auth_failures == []  # the DELETE is signed like the POST
    api_x.rate_limit(2_000_000_000, match=f"{TWEETS}/123")
    with pytest.raises(RetryAfter):
        await pub.delete("123")


# -- Discord (webhook messages) and Bluesky (records) --------------------------------------------


async def test_discord_edits_and_deletes_its_webhook_messages(ctx: PublisherContext) -> None:
    with FakeDiscord(clock=FakeClock().now) as fake:
        opts = DiscordOptions.model_validate({"name": "dc", "platform": "discord", "api_base": fake.api_base})
        dctx = PublisherContext(http=ctx.http, secret=DictSecrets({"DISCORD_WEBHOOK_URL": fake.webhook_url}),
                                logger=ctx.logger, clock=ctx.clock)
        pub = discord_plugin.create(opts, dctx)
        await pub.initialize()
        found = abilities(pub)
        assert found.editor is not None and found.deleter is not None and found.delete_max_age is None
        post = sample_post("Protest in Baghdad", url=LINK)
        sent = await pub.publish(discord_plugin.render(post, opts, pub.render_env), idempotency_key="k")
        assert sent.remote_id is not None
        fixed = discord_plugin.render(sample_post("Protest in Baghdad, corrected", url=LINK), opts, pub.render_env)
        assert await pub.edit(sent.remote_id, fixed) == ChangeResult()
        assert await pub.edit(sent.remote_id, fixed) == ChangeResult()  # a repeat sets the same content
        assert fake.messages[0].embeds[0]["title"] == "Protest in Baghdad, corrected"
        assert await pub.delete(sent.remote_id) == ChangeResult()
        assert await pub.delete(sent.remote_id) == ChangeResult()  # gone already (10008): done
        with pytest.raises(MessageGoneError):
            await pub.edit(sent.remote_id, fixed)  # not a paused channel: nothing to edit
        assert fake.live() == []
        assert_clean(MessageGoneError("dc", "x"), fake.token)


async def test_bluesky_deletes_its_record_and_a_repeat_is_a_no_op(ctx: PublisherContext) -> None:
    with FakeBluesky(clock=FakeClock().now) as fake:
        opts = BlueskyOptions.model_validate({"name": "bsky", "platform": "bluesky", "handle": BSKY_HANDLE,
                                              "service": fake.url})
        bctx = PublisherContext(http=ctx.http, secret=DictSecrets({"BLUESKY_APP_PASSWORD": APP_PASSWORD}),
                                logger=ctx.logger, clock=ctx.clock)
        pub = bluesky_plugin.create(opts, bctx)
        found = abilities(pub)
        assert found.editor is None and found.deleter is not None  # Bluesky has no edit
        sent = await pub.publish(RenderedMessage(text=f"Hello {LINK}", link=LINK), idempotency_key="tagrelay-k")
        assert sent.remote_id is not None and sent.remote_id.startswith("at://")
        assert await pub.delete(sent.remote_id) == ChangeResult()
        assert await pub.delete(sent.remote_id) == ChangeResult()  # not there any more: the PDS does nothing
        assert fake.posts == {} and len(fake.deleted) == 1
        for foreign in ("at://did:plc:other/app.bsky.feed.like/3k", "https://bsky.app/x", "at://a/b"):
            with pytest.raises(ChangeRefusedError):
                await pub.delete(foreign)
        assert len(fake.deleted) == 1
