"""X with the featured image (opt-in): the v2 upload, its processing, the alt text through the media
metadata endpoint, one upload per delivery, and every way the image can fail without failing the post.
Against ``FakeX`` (which verifies every OAuth 1.0a signature, uploads included) over real HTTP."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from bot import media
from bot.clock import FakeClock
from bot.domain.models import Post
from bot.errors import RetryablePublishError
from bot.publishers.api import PublisherContext
from bot.publishers.x import ALT_TEXT_CHARS, BearerAuth, OAuth1Signer, XOptions, XPublisher, plugin
from bot.render.message import RenderedMessage, RenderEnv
from tests.fakes.http import Response
from tests.fakes.images import ImageServer, image_response, jpeg, png
from tests.fakes.x_api import (
    ACCESS_TOKEN,
    ACCESS_TOKEN_SECRET,
    BEARER_TOKEN,
    CONSUMER_KEY,
    CONSUMER_SECRET,
    MEDIA_METADATA,
    MEDIA_UPLOAD,
    TWEETS,
    FakeX,
    problem,
)
from tests.publish_support import DictSecrets

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
ENV = {"X_CONSUMER_KEY": CONSUMER_KEY, "X_CONSUMER_SECRET": CONSUMER_SECRET, "X_ACCESS_TOKEN": ACCESS_TOKEN,
       "X_ACCESS_TOKEN_SECRET": ACCESS_TOKEN_SECRET, "X_USER_TOKEN": BEARER_TOKEN}
ALT = "A crowd in Baghdad holding banners – “No to meddling”"


@pytest.fixture
def fake() -> Iterator[FakeX]:
    with FakeX(epoch=int(NOW.timestamp())) as server:
        yield server


@pytest.fixture
def images() -> Iterator[ImageServer]:
    with ImageServer() as server:
        yield server


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[None]:
    media.CACHE.clear()
    yield
    media.CACHE.clear()


@pytest.fixture
async def ctx() -> AsyncIterator[PublisherContext]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(5.0)) as http:
        yield PublisherContext(http=http, secret=DictSecrets(ENV), logger=logging.getLogger("test.x"),
                               clock=FakeClock(NOW))


def options(fake: FakeX, **overrides: Any) -> XOptions:
    return XOptions.model_validate({"name": "x", "platform": "x", "api_base": fake.url, "send_image": True,
                                    **overrides})


def publisher(fake: FakeX, ctx: PublisherContext, **overrides: Any) -> XPublisher:
    opts = options(fake, **overrides)
    auth: httpx.Auth
    if opts.bearer_token_env is not None:
        auth, secrets = BearerAuth(BEARER_TOKEN), [BEARER_TOKEN]
    else:
        secrets = [CONSUMER_KEY, CONSUMER_SECRET, ACCESS_TOKEN, ACCESS_TOKEN_SECRET]
        auth = OAuth1Signer(*secrets)
    return XPublisher(opts, ctx, auth, secrets, media_poll_delays=(0.0,) * 3)


def message(image: str | None, alt: str | None = ALT, n: int = 1) -> RenderedMessage:
    return RenderedMessage(text=f"New post {n} https://a.example/{n}/", link=f"https://a.example/{n}/",
                           image_url=image, image_alt=alt)


def logged(caplog: pytest.LogCaptureFixture, name: str) -> list[str]:
    return [r.kv["reason"] for r in caplog.records if r.getMessage() == name]


@pytest.mark.parametrize("auth", ["oauth1", "oauth2"])
async def test_the_post_carries_the_image_and_its_alt_text(fake: FakeX, ctx: PublisherContext,
                                                           images: ImageServer, auth: str) -> None:
    data = jpeg(640, 360)
    url = images.serve("/hero.jpg", image_response(data))
    extra = {"bearer_token_env": "X_USER_TOKEN"} if auth == "oauth2" else {}
    await publisher(fake, ctx, **extra).publish(message(url), idempotency_key="d-1")
    (tweet,) = fake.tweets
    (upload,) = fake.media.values()
    assert tweet.media_ids == (upload.id,) and tweet.auth == auth
    assert (upload.alt_text, upload.size, upload.mime, upload.category) == (ALT, len(data), "image/jpeg",
                                                                            "tweet_image")
    assert fake.auth_failures == []  # the upload and the metadata request are signed like the post


async def test_send_image_is_off_by_default(fake: FakeX) -> None:
    opts = XOptions.model_validate({"name": "x", "platform": "x", "api_base": fake.url})
    post = Post(key="k", source="s", title="T", url="https://a.example/1/", summary_html="", content_html="",
                tags=(), published=None, image_url="https://img.example/a.jpg", image_alt=ALT)
    assert plugin.render(post, opts, RenderEnv()).image_url is None
    assert plugin.render(post, opts.model_copy(update={"send_image": True}), RenderEnv()).image_alt == ALT


async def test_processing_is_waited_for_and_a_long_alt_text_is_cut(fake: FakeX, ctx: PublisherContext,
                                                                   images: ImageServer) -> None:
    url = images.serve("/a.jpg", image_response(jpeg(64, 64)))
    fake.media_processing = 2
    await publisher(fake, ctx).publish(message(url, alt="word " * 400), idempotency_key="d-1")
    (upload,) = fake.media.values()
    assert fake.tweets[0].media_ids == (upload.id,)
    assert upload.alt_text is not None and len(upload.alt_text) == ALT_TEXT_CHARS and upload.alt_text.endswith("…")
    assert len([r for r in fake.seen("GET", MEDIA_UPLOAD) if r.arg("command") == "STATUS"]) == 2


async def test_an_image_over_5_mb_is_made_to_fit(fake: FakeX, ctx: PublisherContext, images: ImageServer) -> None:
    big = png(1500, 1400)  # noise: about 6.3 MB as PNG
    assert len(big) > 5 * 1024 * 1024
    url = images.serve("/big.png", image_response(big, "image/png"))
    await publisher(fake, ctx).publish(message(url), idempotency_key="d-1")
    (upload,) = fake.media.values()
    assert upload.size <= 5 * 1024 * 1024 and upload.mime == "image/jpeg"
    assert fake.tweets[0].media_ids == (upload.id,)


async def test_a_refused_alt_text_keeps_the_image(fake: FakeX, ctx: PublisherContext, images: ImageServer,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    url = images.serve("/a.jpg", image_response(jpeg(64, 64)))
    fake.fail_next(400, problem(400, "Invalid Request", "Invalid alt text."), match=MEDIA_METADATA)
    with caplog.at_level(logging.WARNING, logger="test.x"):
        await publisher(fake, ctx).publish(message(url), idempotency_key="d-1")
    (upload,) = fake.media.values()
    assert fake.tweets[0].media_ids == (upload.id,) and upload.alt_text is None
    assert len(logged(caplog, "media.alt_skipped")) == 1


@pytest.mark.parametrize("broken", ["missing", "html", "upload-refused", "upload-503", "never-processed"])
async def test_a_broken_image_still_lets_the_post_out(fake: FakeX, ctx: PublisherContext, images: ImageServer,
                                                      caplog: pytest.LogCaptureFixture, broken: str) -> None:
    good = images.serve("/a.jpg", image_response(jpeg(64, 64)))
    url = {"missing": images.url + "/gone.jpg",
           "html": images.serve("/h.jpg", Response.text("<html/>", content_type="image/jpeg"))}.get(broken, good)
    if broken == "upload-refused":
        fake.fail_next(400, problem(400, "Invalid Request", "Unsupported media type."), match=MEDIA_UPLOAD)
    elif broken == "upload-503":
        fake.fail_next(503, problem(503, "Service Unavailable", "Service Unavailable"), match=MEDIA_UPLOAD)
    elif broken == "never-processed":
        fake.media_processing = 100
    with caplog.at_level(logging.WARNING, logger="test.x"):
        await publisher(fake, ctx).publish(message(url), idempotency_key="d-1")
    (tweet,) = fake.tweets
    assert tweet.media_ids == ()
    assert len(logged(caplog, "media.skipped")) == 1


async def test_a_post_that_failed_after_its_upload_reuses_it(fake: FakeX, ctx: PublisherContext,
                                                             images: ImageServer) -> None:
    url = images.serve("/a.jpg", image_response(jpeg(64, 64)))
    pub = publisher(fake, ctx)
    fake.fail_next(503, problem(503, "Service Unavailable", "Service Unavailable"), match=TWEETS, times=2)
    for _ in range(2):
        with pytest.raises(RetryablePublishError):
            await pub.publish(message(url), idempotency_key="d-1")
    await pub.publish(message(url), idempotency_key="d-1")
    assert len(fake.media) == 1  # one upload (and one paid metadata request) for three attempts
    assert len(fake.seen("POST", MEDIA_UPLOAD)) == 1 and len(fake.seen("POST", MEDIA_METADATA)) == 1
    assert fake.tweets[0].media_ids == tuple(fake.media)
    await pub.publish(message(url, n=2), idempotency_key="d-2")  # another delivery: its own upload
    assert len(fake.media) == 2
