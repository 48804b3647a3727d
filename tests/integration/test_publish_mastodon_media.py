"""Mastodon with the featured image: upload with the alt text as ``description``, the asynchronous 202,
reuse after a failed status, the unused upload deleted after an idempotent replay, and every way an image
can fail without failing the post. Against ``FakeMastodon`` and a loopback image server, over real HTTP."""

from __future__ import annotations

import io
import logging
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from PIL import Image as PIL

from bot import media
from bot.clock import FakeClock
from bot.domain.models import DeliveryStatus, ParsedPost, Post, Subscription
from bot.errors import AmbiguousPublishError, RetryablePublishError
from bot.observability import Metrics
from bot.publishers.api import PublisherContext
from bot.publishers.mastodon import MastodonOptions, MastodonPublisher, plugin
from bot.render.message import RenderedMessage
from bot.services.delivery import ChannelRuntime, Deliverer
from bot.settings import DeliveryConfig
from bot.storage.store import Store
from bot.validation import ValidationError
from tests.delivery_support import deliver_due
from tests.fakes.http import Response
from tests.fakes.images import ImageServer, image_response, jpeg, png, png_bomb
from tests.fakes.mastodon_api import DEFAULT_TOKEN, MEDIA_V2, STATUSES, FakeMastodon
from tests.integration.test_store import poll
from tests.publish_support import DictSecrets

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
ALT = "Two students at a desk – one points at a “map” <of Iraq> & smiles"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def fake(clock: FakeClock) -> Iterator[FakeMastodon]:
    with FakeMastodon(max_characters=1000, clock=clock.now) as server:
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
async def ctx(clock: FakeClock) -> AsyncIterator[PublisherContext]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(5.0)) as http:
        yield PublisherContext(http=http, secret=DictSecrets({"MASTODON_TOKEN": DEFAULT_TOKEN}),
                               logger=logging.getLogger("test.mastodon"), clock=clock)


def options(fake: FakeMastodon, **overrides: Any) -> MastodonOptions:
    return MastodonOptions.model_validate({"name": "social", "platform": "mastodon", "instance": fake.url,
                                           **overrides})


async def publisher(fake: FakeMastodon, ctx: PublisherContext, **overrides: Any) -> MastodonPublisher:
    pub = MastodonPublisher(options(fake, **overrides), ctx, DEFAULT_TOKEN, media_poll_delays=(0.0,) * 4)
    await pub.initialize()
    return pub


def message(image: str | None, alt: str | None = ALT, text: str = "New post https://a.example/p/") -> RenderedMessage:
    return RenderedMessage(text=text, link="https://a.example/p/", image_url=image, image_alt=alt)


def skipped(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.kv["reason"] for r in caplog.records if r.getMessage() == "media.skipped"]


# -- the image arrives, described ---------------------------------------------------------------------


async def test_the_status_carries_the_image_with_its_alt_text(fake: FakeMastodon, ctx: PublisherContext,
                                                              images: ImageServer) -> None:
    data = jpeg(640, 480)
    url = images.serve("/hero.jpg", image_response(data))
    pub = await publisher(fake, ctx, image_focus="0.25,-0.5")
    await pub.publish(message(url), idempotency_key="d-1")
    (status,) = fake.statuses
    (upload,) = fake.media.values()
    assert status.media_ids == (upload.id,)
    assert (upload.description, upload.focus, upload.mime, upload.size) == (ALT, "0.25,-0.5", "image/jpeg", len(data))
    form = fake.seen("POST", MEDIA_V2)[0].multipart()
    assert form["file"].data == data  # within the limits: the very bytes, not re-encoded


async def test_no_alt_text_sends_no_description_and_send_image_false_sends_no_image(
        fake: FakeMastodon, ctx: PublisherContext, images: ImageServer) -> None:
    url = images.serve("/a.jpg", image_response(jpeg(64, 64)))
    await (await publisher(fake, ctx)).publish(message(url, alt=None), idempotency_key="d-1")
    assert "description" not in fake.seen("POST", MEDIA_V2)[0].multipart()
    opts = options(fake, send_image=False)
    rendered = plugin.render(_post(url), opts, (await publisher(fake, ctx)).render_env)
    assert rendered.image_url is None and rendered.image_alt is None


def _post(image: str) -> Post:
    return Post(key="k", source="s", title="T", url="https://a.example/p/", summary_html="", content_html="",
                tags=(), published=None, image_url=image, image_alt=ALT)


async def test_an_upload_processed_asynchronously_is_waited_for(fake: FakeMastodon, ctx: PublisherContext,
                                                                images: ImageServer) -> None:
    url = images.serve("/slow.jpg", image_response(jpeg(64, 64)))
    fake.media_processing = 2
    await (await publisher(fake, ctx)).publish(message(url), idempotency_key="d-1")
    (upload,) = fake.media.values()
    assert fake.statuses[0].media_ids == (upload.id,)
    assert [r.method for r in fake.requests if r.path.startswith("/api/v1/media/")] == ["GET", "GET", "GET"]


async def test_an_upload_that_never_finishes_is_left_out_boundedly(fake: FakeMastodon, ctx: PublisherContext,
                                                                   images: ImageServer,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    url = images.serve("/stuck.jpg", image_response(jpeg(64, 64)))
    fake.media_processing = 1000
    with caplog.at_level(logging.WARNING, logger="test.mastodon"):
        await (await publisher(fake, ctx)).publish(message(url), idempotency_key="d-1")
    assert fake.statuses[0].media_ids == ()
    assert len([r for r in fake.requests if r.path.startswith("/api/v1/media/")]) == 4  # the bound
    assert any("still processing" in reason for reason in skipped(caplog))


async def test_an_image_over_the_instance_limits_is_made_to_fit(fake: FakeMastodon, ctx: PublisherContext,
                                                                images: ImageServer) -> None:
    fake.image_size_limit = 300_000
    fake.image_matrix_limit = 500 * 500
    fake.supported_mime_types = ("image/jpeg", "image/png")
    url = images.serve("/big.webp", image_response(png(900, 700), "image/webp"))  # a lying Content-Type too
    await (await publisher(fake, ctx)).publish(message(url), idempotency_key="d-1")
    (upload,) = fake.media.values()
    assert upload.size <= 300_000 and upload.width * upload.height <= 500 * 500 and upload.mime == "image/jpeg"
    assert fake.statuses[0].media_ids == (upload.id,) and upload.description == ALT


@pytest.mark.parametrize("broken", ["missing", "html", "bomb", "file-redirect"])
async def test_a_broken_image_still_lets_the_post_out(fake: FakeMastodon, ctx: PublisherContext,
                                                      images: ImageServer, caplog: pytest.LogCaptureFixture,
                                                      broken: str) -> None:
    url = {
        "missing": images.url + "/gone.jpg",
        "html": images.serve("/h.jpg", Response.text("<html>no</html>", content_type="image/jpeg")),
        "bomb": images.serve("/b.png", image_response(png_bomb(), "image/png")),
        "file-redirect": images.serve("/r", Response(302, b"", {"Location": "file:///etc/passwd"})),
    }[broken]
    with caplog.at_level(logging.WARNING, logger="test.mastodon"):
        await (await publisher(fake, ctx)).publish(message(url), idempotency_key="d-1")
    (status,) = fake.statuses
    assert status.media_ids == () and fake.media == {}
    (reason,) = skipped(caplog)
    assert "/etc/passwd" not in reason


@pytest.mark.parametrize(("status", "error"), [(422, "Validation failed: File content type is invalid"),
                                               (403, "This action is outside the authorized scopes"),
                                               (429, "Too many requests"), (503, "Service Unavailable")])
async def test_a_refused_upload_still_lets_the_post_out(fake: FakeMastodon, ctx: PublisherContext,
                                                        images: ImageServer, caplog: pytest.LogCaptureFixture,
                                                        status: int, error: str) -> None:
    url = images.serve("/a.jpg", image_response(jpeg(64, 64)))
    fake.reject(status, error, match=MEDIA_V2)
    with caplog.at_level(logging.WARNING, logger="test.mastodon"):
        await (await publisher(fake, ctx)).publish(message(url), idempotency_key="d-1")
    assert fake.statuses[0].media_ids == ()
    assert any(str(status) in reason for reason in skipped(caplog))


# -- nothing twice ------------------------------------------------------------------------------------


async def test_a_status_that_failed_after_its_upload_reuses_the_upload(fake: FakeMastodon, ctx: PublisherContext,
                                                                       images: ImageServer) -> None:
    url = images.serve("/a.jpg", image_response(jpeg(64, 64)))
    pub = await publisher(fake, ctx)
    fake.reject(503, "Service Unavailable", match=STATUSES, times=2)
    for _ in range(2):
        with pytest.raises(RetryablePublishError):
            await pub.publish(message(url), idempotency_key="d-1")
    await pub.publish(message(url), idempotency_key="d-1")
    assert len(fake.media) == 1 and len(fake.seen("POST", MEDIA_V2)) == 1  # one upload for three attempts
    assert images.gets("/a.jpg") == 1
    assert fake.statuses[0].media_ids == tuple(fake.media)


async def test_a_lost_answer_then_a_retry_posts_once_with_one_image(fake: FakeMastodon, ctx: PublisherContext,
                                                                    images: ImageServer) -> None:
    url = images.serve("/a.jpg", image_response(jpeg(64, 64)))
    pub = await publisher(fake, ctx)
    fake.drop_next(STATUSES, process=True)  # the status is made, its answer lost
    with pytest.raises(AmbiguousPublishError):
        await pub.publish(message(url), idempotency_key="d-1")
    await pub.publish(message(url), idempotency_key="d-1")  # same key: Mastodon replays the status
    assert len(fake.statuses) == 1 and fake.idempotent_replays == 1
    assert len(fake.media) == 1 and fake.seen("DELETE") == []


async def test_after_a_crash_the_second_upload_is_deleted_not_attached(fake: FakeMastodon, clock: FakeClock,
                                                                       images: ImageServer) -> None:
    """A new process (its upload memory empty) retries a delivery whose status exists: the Idempotency-Key
    returns that status with the first image, and the second upload is deleted."""
    url = images.serve("/a.jpg", image_response(jpeg(64, 64)))
    for attempt in range(2):
        async with httpx.AsyncClient(timeout=httpx.Timeout(5.0)) as http:
            ctx = PublisherContext(http=http, secret=DictSecrets({"MASTODON_TOKEN": DEFAULT_TOKEN}),
                                   logger=logging.getLogger("test.mastodon"), clock=clock)
            pub = await publisher(fake, ctx)
            if attempt == 0:
                fake.drop_next(STATUSES, process=True)
                with pytest.raises(AmbiguousPublishError):
                    await pub.publish(message(url), idempotency_key="d-1")
                media.CACHE.clear()  # a new process has no cache either
            else:
                result = await pub.publish(message(url), idempotency_key="d-1")
    (status,) = fake.statuses
    assert result.remote_id == status.id and len(fake.media) == 2
    first, second = fake.media.values()
    assert status.media_ids == (first.id,) and not first.deleted
    assert second.deleted and second.status_id is None
    assert [r.path for r in fake.seen("DELETE")] == [f"/api/v1/media/{second.id}"]


def test_image_focus_is_validated() -> None:
    for bad in ("2,0", "0.5", "x,y", "0.5,0.5,0.5", "-1.5,0"):
        with pytest.raises(ValidationError, match="image_focus"):
            MastodonOptions.model_validate({"name": "s", "platform": "mastodon", "instance": "https://m.example",
                                            "image_focus": bad})
    ok = MastodonOptions.model_validate({"name": "s", "platform": "mastodon", "instance": "https://m.example",
                                         "image_focus": "-1.0, 0.25"})
    assert ok.image_focus == "-1.0, 0.25"


# -- through the delivery service ---------------------------------------------------------------------


async def test_a_delivered_post_arrives_with_its_image_and_alt_text(fake: FakeMastodon, ctx: PublisherContext,
                                                                    images: ImageServer, store: Store,
                                                                    clock: FakeClock) -> None:
    good = images.serve("/good.jpg", image_response(jpeg(320, 200)))
    broken = images.serve("/broken.jpg", Response.text("<html/>", content_type="image/jpeg"))
    await store.sync_config([("archive", "https://a.example/feed/", "rss")], [("social", "mastodon")],
                            [Subscription("mek", "MEK", "social")], clock.now())
    await poll(store, clock, [])
    await poll(store, clock, [
        ParsedPost(title="With image", url="https://a.example/1/", guid="p1", tags=("MEK",), image_url=good,
                   image_alt=ALT, published=datetime(2026, 1, 1, tzinfo=UTC)),
        ParsedPost(title="Broken image", url="https://a.example/2/", guid="p2", tags=("MEK",), image_url=broken,
                   image_alt="never shown", published=datetime(2026, 1, 2, tzinfo=UTC)),
    ])
    pub = await publisher(fake, ctx)
    deliverer = Deliverer(store, {"social": ChannelRuntime("social", "mastodon", plugin, options(fake), pub)},
                          clock, DeliveryConfig(pacing=False), Metrics(), owner="test")
    outcomes = await deliver_due(deliverer)
    assert [o.status for o in outcomes] == [DeliveryStatus.SENT, DeliveryStatus.SENT]
    with_image, without = fake.statuses
    assert "With image" in with_image.text and len(with_image.media_ids) == 1
    assert fake.media[with_image.media_ids[0]].description == ALT
    assert "Broken image" in without.text and without.media_ids == ()
    decoded = PIL.open(io.BytesIO(jpeg(320, 200)))
    assert (fake.media[with_image.media_ids[0]].width, fake.media[with_image.media_ids[0]].height) == decoded.size
