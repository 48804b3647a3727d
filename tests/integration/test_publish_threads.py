"""The Threads publisher over real HTTP against ``FakeThreads``: containers, staging, resuming, errors, the token."""

from __future__ import annotations

import json
import logging
import stat
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
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
from bot.publishers.api import PublisherContext, PublisherPlugin, PublishesStaged, RenderedMessage
from bot.publishers.threads import ThreadsOptions, ThreadsPublisher, plugin
from bot.publishers.threads.client import RATE_LIMIT_FALLBACK
from bot.publishers.threads.publisher import QUOTA_RECHECK, message_digest
from bot.publishers.threads.token import TokenFile, fingerprint
from bot.render.message import RenderEnv
from bot.testing import check_plugin, sample_post
from bot.validation import ValidationError
from tests.fakes.threads_api import (
    CONTAINERS,
    DEFAULT_TOKEN,
    PUBLISH,
    QUOTA,
    REFRESH,
    USER_ID,
    USERNAME,
    FakeThreads,
)
from tests.publish_support import DictSecrets, assert_clean

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LINK = "https://archive.example.org/hello/"


def options(api_base: str = "https://graph.threads.net", **overrides: Any) -> ThreadsOptions:
    return ThreadsOptions.model_validate({"name": "threads-main", "platform": "threads", "api_base": api_base,
                                          **overrides})


def message(text: str = f"Hello\n\n{LINK}", *, image: bool = False, **kw: Any) -> RenderedMessage:
    if image:
        return RenderedMessage(text=text, link=LINK, image_url="https://archive.example.org/a.jpg",
                               image_alt="A harbour", extra={"media_type": "IMAGE", "link_attachment": None}, **kw)
    return RenderedMessage(text=text, link=LINK, extra={"media_type": "TEXT", "link_attachment": LINK}, **kw)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def fake(clock: FakeClock) -> Iterator[FakeThreads]:
    with FakeThreads(clock=clock.now) as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(5.0, read=0.5)) as client:
        yield client


class Sleeps:
    """The publisher's injected sleep: records the delays, waits for nothing."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


class Stages:
    """The delivery service's ``stage``: records what was staged and how many publish requests had been
    received by then (none may have left before the container id was recorded)."""

    def __init__(self, fake: FakeThreads) -> None:
        self.fake = fake
        self.values: list[str] = []
        self.publishes_before: list[int] = []

    async def __call__(self, value: str) -> None:
        self.values.append(value)
        self.publishes_before.append(len(self.fake.seen("POST", PUBLISH)))


def make_ctx(http: httpx.AsyncClient, clock: FakeClock, tmp_path: Path | None,
             token: str = DEFAULT_TOKEN) -> PublisherContext:
    return PublisherContext(http=http, secret=DictSecrets({"THREADS_ACCESS_TOKEN": token}),
                            logger=logging.getLogger("test.threads"), clock=clock, state_dir=tmp_path)


async def make_publisher(fake: FakeThreads, http: httpx.AsyncClient, clock: FakeClock, tmp_path: Path, *,
                         token: str = DEFAULT_TOKEN, sleeps: Sleeps | None = None,
                         **overrides: Any) -> ThreadsPublisher:
    opts = options(fake.url, **overrides)
    pub = plugin.create(opts, make_ctx(http, clock, tmp_path, token))
    if sleeps is not None:  # the same publisher with a sleep that waits for nothing
        pub = ThreadsPublisher(opts, make_ctx(http, clock, tmp_path, token), token, pub._file, sleep=sleeps)
    await pub.initialize()
    return pub


@pytest.fixture
async def pub(fake: FakeThreads, http: httpx.AsyncClient, clock: FakeClock,
              tmp_path: Path) -> AsyncIterator[ThreadsPublisher]:
    publisher = await make_publisher(fake, http, clock, tmp_path)
    try:
        yield publisher
    finally:
        await publisher.aclose()


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def secrets_of(fake: FakeThreads) -> list[str]:
    return [DEFAULT_TOKEN, *fake.refreshes]


async def publish_error(pub: ThreadsPublisher, fake: FakeThreads, msg: RenderedMessage | None = None,
                        staged: str | None = None) -> PublishError:
    with pytest.raises(PublishError) as info:
        await pub.publish_staged(msg or message(), idempotency_key="k", staged=staged, stage=Stages(fake))
    assert_clean(info.value, *secrets_of(fake))
    return info.value


# -- plugin and options ---------------------------------------------------------------------------


def test_plugin_satisfies_the_contract() -> None:
    assert isinstance(plugin, PublisherPlugin)
    assert plugin.name == "threads"
    assert check_plugin(plugin, {}) == []


def test_options() -> None:
    opts = options("https://graph.threads.net/")
    assert (opts.api_base, opts.api_version, opts.user_id, opts.token_env, opts.token_file, opts.image_wait,
            opts.send_image) == ("https://graph.threads.net", "v1.0", "me", "THREADS_ACCESS_TOKEN", None, 60.0,
                                 False)
    assert options("https://x.example", user_id="17841400000000001", image_wait="2m").image_wait == 120.0
    for bad in ({"api_version": "1.0"}, {"user_id": "../me"}, {"token_env": "not a name"},
                {"image_wait": "1h"}, {"image_wait": 0}, {"api_base": "graph.threads.net"}, {"unknown": 1}):
        with pytest.raises(ValidationError):
            options(**{"api_base": "https://graph.threads.net", **bad})


def test_a_channel_without_a_place_for_its_token_is_a_credentials_error(http: httpx.AsyncClient,
                                                                      clock: FakeClock) -> None:
    with pytest.raises(CredentialsError) as info:  # PostgreSQL: no state_dir, no token_file
        plugin.create(options("https://graph.threads.net"), make_ctx(http, clock, None))
    assert "token_file" in info.value.reason
    with pytest.raises(CredentialsError) as missing:
        plugin.create(options("https://graph.threads.net"),
                      PublisherContext(http=http, secret=DictSecrets({}), logger=logging.getLogger("t"), clock=clock))
    assert "THREADS_ACCESS_TOKEN" in missing.value.reason


async def test_the_publisher_declares_staging(pub: ThreadsPublisher) -> None:
    assert isinstance(pub, PublishesStaged) and pub.idempotent
    assert pub.render_env == RenderEnv(max_chars=500)


# -- a post: container, staged, published -----------------------------------------------------------


async def test_a_text_post_is_a_container_staged_then_published(fake: FakeThreads, pub: ThreadsPublisher) -> None:
    stages = Stages(fake)
    msg = message()
    result = await pub.publish_staged(msg, idempotency_key="k", staged=None, stage=stages)

    (container,) = fake.containers
    assert container.media_type == "TEXT"
    assert container.params == {"media_type": "TEXT", "text": msg.text, "link_attachment": LINK}
    assert stages.values == [f"{container.id}:{message_digest(msg)}"]
    assert stages.publishes_before == [0]  # recorded before the publishing request left
    (post,) = fake.posts
    assert (post.text, post.link_attachment, post.container_id) == (msg.text, LINK, container.id)
    assert (result.remote_id, result.url) == (post.id, post.permalink)
    # first the token's refresh (its expiry was unknown), the one call Meta documents with the token in the
    # query; every other call carries the (refreshed) token in the Authorization header only
    assert [(r.method, r.path) for r in fake.requests] == [
        ("GET", REFRESH), ("GET", QUOTA), ("POST", CONTAINERS), ("POST", PUBLISH), ("GET", f"/v1.0/{post.id}")]
    (fresh,) = fake.refreshes
    for request in fake.requests[1:]:
        assert request.header("authorization") == f"Bearer {fresh}"
        assert "access_token" not in request.query and b"access_token" not in request.body
    assert fake.requests[3].query == {"creation_id": [container.id]}


async def test_an_image_post_waits_for_its_container(fake: FakeThreads, http: httpx.AsyncClient, clock: FakeClock,
                                                     tmp_path: Path) -> None:
    sleeps = Sleeps()
    pub = await make_publisher(fake, http, clock, tmp_path, sleeps=sleeps)
    fake.image_polls = 3
    result = await pub.publish_staged(message(image=True), idempotency_key="k", staged=None, stage=Stages(fake))
    (container,) = fake.containers
    assert container.params == {"media_type": "IMAGE", "text": message().text,
                                "image_url": "https://archive.example.org/a.jpg", "alt_text": "A harbour"}
    assert sleeps.delays == [0.5, 1.0, 2.0]  # bounded, growing waits between status reads
    assert fake.posts[0].image_url == "https://archive.example.org/a.jpg" and result.remote_id == fake.posts[0].id


async def test_an_image_threads_cannot_process_is_rejected_so_the_plain_text_post_goes(
        fake: FakeThreads, pub: ThreadsPublisher) -> None:
    fake.image_error = "UNKNOWN"
    err = await publish_error(pub, fake, message(image=True))
    assert isinstance(err, ContentRejectedError) and "UNKNOWN" in err.reason
    assert fake.posts == []


async def test_an_image_still_processing_is_tried_again_later_on_the_same_container(
        fake: FakeThreads, http: httpx.AsyncClient, clock: FakeClock, tmp_path: Path) -> None:
    sleeps = Sleeps()
    pub = await make_publisher(fake, http, clock, tmp_path, sleeps=sleeps, image_wait=2)
    fake.image_polls = 10
    stages = Stages(fake)
    with pytest.raises(RetryablePublishError) as info:
        await pub.publish_staged(message(image=True), idempotency_key="k", staged=None, stage=stages)
    assert "still processing" in info.value.reason and sum(sleeps.delays) <= 2
    fake.containers[0].ready_after = 0  # Threads is done with it now
    await pub.publish_staged(message(image=True), idempotency_key="k", staged=stages.values[0], stage=stages)
    assert len(fake.containers) == 1 and len(fake.posts) == 1


async def test_a_text_container_not_ready_is_waited_for_then_published(
        fake: FakeThreads, http: httpx.AsyncClient, clock: FakeClock, tmp_path: Path) -> None:
    sleeps = Sleeps()
    pub = await make_publisher(fake, http, clock, tmp_path, sleeps=sleeps)
    fake.text_polls = 3  # the refused publish and the status read after it see IN_PROGRESS, then one wait
    await pub.publish_staged(message(), idempotency_key="k", staged=None, stage=Stages(fake))
    assert len(fake.seen("POST", PUBLISH)) == 2 and len(fake.posts) == 1  # refused (not ready), then published
    assert sleeps.delays == [0.5]


# -- a lost answer, a crash: the staged container is asked about, never posted twice -------------------


async def test_a_lost_publish_answer_is_ambiguous_and_the_retry_finds_the_post(
        fake: FakeThreads, pub: ThreadsPublisher) -> None:
    fake.drop_next(PUBLISH, process=True)  # the post is made; the answer never arrives
    stages = Stages(fake)
    with pytest.raises(AmbiguousPublishError):
        await pub.publish_staged(message(), idempotency_key="k", staged=None, stage=stages)
    assert len(fake.posts) == 1
    result = await pub.publish_staged(message(), idempotency_key="k", staged=stages.values[0], stage=stages)
    assert len(fake.posts) == 1 and len(fake.containers) == 1  # nothing new
    assert (result.remote_id, result.url) == (fake.posts[0].id, fake.posts[0].permalink)
    assert stages.values == [stages.values[0]]  # nothing staged again


async def test_a_container_staged_but_never_published_is_published(fake: FakeThreads, pub: ThreadsPublisher) -> None:
    # the process died after staging, before the publish request left
    stages = Stages(fake)
    container = (await fake_container(fake, message()))
    result = await pub.publish_staged(message(), idempotency_key="k", staged=f"{container}:{message_digest(message())}",
                                      stage=stages)
    assert len(fake.containers) == 1 and [p.container_id for p in fake.posts] == [container]
    assert stages.values == [] and result.remote_id == fake.posts[0].id


async def test_an_expired_container_is_replaced(fake: FakeThreads, pub: ThreadsPublisher, clock: FakeClock) -> None:
    container = await fake_container(fake, message())
    clock.advance(25 * 3600)
    stages = Stages(fake)
    await pub.publish_staged(message(), idempotency_key="k", staged=f"{container}:{message_digest(message())}",
                             stage=stages)
    assert len(fake.containers) == 2 and fake.posts[0].container_id == fake.containers[1].id
    assert stages.values == [f"{fake.containers[1].id}:{message_digest(message())}"]


async def test_a_container_of_another_rendering_is_left_unless_it_was_published(
        fake: FakeThreads, pub: ThreadsPublisher) -> None:
    rich, plain = message(image=True), message("Hello (plain)\n\n" + LINK)
    container = await fake_container(fake, message())  # FINISHED, never published
    await pub.publish_staged(plain, idempotency_key="k", staged=f"{container}:{message_digest(rich)}",
                             stage=Stages(fake))
    assert [p.text for p in fake.posts] == [plain.text] and len(fake.containers) == 2
    # published, whatever it held: the post is there, nothing more is sent
    staged = f"{fake.posts[0].container_id}:{message_digest(rich)}"
    result = await pub.publish_staged(message("other"), idempotency_key="k", staged=staged, stage=Stages(fake))
    assert len(fake.posts) == 1 and result.remote_id == fake.posts[0].id


async def test_a_container_threads_does_not_know_is_looked_for_among_the_latest_posts(
        fake: FakeThreads, pub: ThreadsPublisher) -> None:
    first = await pub.publish_staged(message(), idempotency_key="k", staged=None, stage=Stages(fake))
    found = await pub.publish_staged(message(), idempotency_key="k", staged="999:abc", stage=Stages(fake))
    assert found.remote_id == first.remote_id and len(fake.posts) == 1
    other = message("Another\n\nhttps://archive.example.org/other/")
    other = RenderedMessage(other.text, "https://archive.example.org/other/", extra=other.extra)
    await pub.publish_staged(other, idempotency_key="k", staged="999:abc", stage=Stages(fake))
    assert len(fake.posts) == 2  # not among them: posted


async def test_a_publish_refused_for_an_already_published_container_counts_as_sent(
        fake: FakeThreads, pub: ThreadsPublisher) -> None:
    result = await pub.publish_staged(message(), idempotency_key="k", staged=None, stage=Stages(fake))
    again = await pub._publish(fake.containers[0].id, message())  # Threads refuses a second publish
    assert again.remote_id == result.remote_id and len(fake.posts) == 1


async def fake_container(fake: FakeThreads, msg: RenderedMessage) -> str:
    """A TEXT container made directly on the fake (as an earlier, killed attempt made it)."""
    async with httpx.AsyncClient() as client:
        answer = await client.post(f"{fake.url}{CONTAINERS}", data={"media_type": "TEXT", "text": msg.text,
                                                                   "access_token": DEFAULT_TOKEN})
    assert answer.status_code == 200, answer.text
    fake.requests.clear()
    return str(answer.json()["id"])


# -- limits ---------------------------------------------------------------------------------------


async def test_a_429_is_held_for_exactly_its_retry_after(fake: FakeThreads, pub: ThreadsPublisher) -> None:
    fake.rate_limit(1234, match=PUBLISH)
    err = await publish_error(pub, fake)
    assert isinstance(err, RetryAfter) and err.delay == 1234.0
    fake.rate_limit(77, match=CONTAINERS)
    err = await publish_error(pub, fake)
    assert isinstance(err, RetryAfter) and err.delay == 77.0


async def test_a_graph_throttle_waits_the_estimated_time_to_regain_access(fake: FakeThreads,
                                                                         pub: ThreadsPublisher) -> None:
    fake.throttle(12, match=CONTAINERS)
    err = await publish_error(pub, fake)
    assert isinstance(err, RetryAfter) and err.delay == 720.0
    fake.fail_next(400, {"error": {"message": "Application request limit reached", "type": "OAuthException",
                                   "code": 4}}, match=CONTAINERS)
    err = await publish_error(pub, fake)
    assert isinstance(err, RetryAfter) and err.delay == RATE_LIMIT_FALLBACK


async def test_a_spent_publishing_quota_holds_the_channel_before_any_container(fake: FakeThreads,
                                                                               pub: ThreadsPublisher) -> None:
    fake.spend_quota(250)
    err = await publish_error(pub, fake)
    assert isinstance(err, RetryAfter) and err.delay == QUOTA_RECHECK and "250 of 250" in err.reason
    assert fake.containers == [] and fake.posts == []


async def test_a_post_threads_refuses_is_content_rejected(fake: FakeThreads, pub: ThreadsPublisher) -> None:
    many = " ".join(f"https://l{i}.example/" for i in range(6))
    err = await publish_error(pub, fake, message(f"{many}\n\n{LINK}"))  # the renderer never makes this
    assert isinstance(err, ContentRejectedError) and "LINK_LIMIT" in err.reason


# -- errors ---------------------------------------------------------------------------------------


async def test_an_expired_token_pauses_the_channel_with_the_reason(fake: FakeThreads, pub: ThreadsPublisher) -> None:
    fake.expire(DEFAULT_TOKEN)
    err = await publish_error(pub, fake)
    assert isinstance(err, CredentialsError)
    assert "expired" in err.reason and "THREADS_ACCESS_TOKEN" in err.reason and "190/463" in err.reason


async def test_a_revoked_token_pauses_the_channel_with_the_reason(fake: FakeThreads, pub: ThreadsPublisher) -> None:
    fake.revoke(DEFAULT_TOKEN)
    err = await publish_error(pub, fake)
    assert isinstance(err, CredentialsError) and "password changed" in err.reason


async def test_a_token_echoed_in_an_error_is_redacted(fake: FakeThreads, pub: ThreadsPublisher) -> None:
    fake.fail_next(403, {"error": {"message": f"Permissions error for token {DEFAULT_TOKEN}", "type":
                                   "OAuthException", "code": 10}}, match=CONTAINERS)
    err = await publish_error(pub, fake)  # assert_clean: no token in message, repr or traceback
    assert isinstance(err, PermanentPublishError) and "threads_content_publish" in err.reason


@pytest.mark.parametrize(("status", "body", "kind"), [
    (503, {"error": {"message": "Service temporarily unavailable", "code": 2}}, RetryablePublishError),
    (500, {"error": {"message": "An unknown error occurred", "code": 1}}, RetryablePublishError),
    (502, None, RetryablePublishError),
])
async def test_server_errors_are_retryable(fake: FakeThreads, pub: ThreadsPublisher, status: int,
                                          body: dict[str, Any] | None, kind: type[PublishError]) -> None:
    fake.fail_next(status, body, match=CONTAINERS)
    err = await publish_error(pub, fake)
    assert type(err) is kind and fake.posts == []


async def test_an_unreachable_api_is_retryable(http: httpx.AsyncClient, clock: FakeClock, tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pub = plugin.create(options(f"http://127.0.0.1:{port}"), make_ctx(http, clock, tmp_path))
    await pub.initialize()
    with pytest.raises(RetryablePublishError) as info:
        await pub.publish(message(), idempotency_key="k")
    assert not isinstance(info.value, AmbiguousPublishError) and "nothing was sent" in info.value.reason


async def test_a_lost_container_answer_is_only_retryable(fake: FakeThreads, pub: ThreadsPublisher) -> None:
    fake.drop_next(CONTAINERS, process=True)  # a container nobody knows about: it expires unpublished
    err = await publish_error(pub, fake)
    assert type(err) is RetryablePublishError and fake.posts == []


# -- the token: refreshed before it expires, kept in a 0600 file, never in an error -------------------


async def test_the_token_is_refreshed_once_kept_in_a_private_file_and_used_after_a_restart(
        fake: FakeThreads, http: httpx.AsyncClient, clock: FakeClock, tmp_path: Path) -> None:
    pub = await make_publisher(fake, http, clock, tmp_path)
    await pub.publish(message(), idempotency_key="k")  # expiry unknown: refreshed at the first post
    (fresh,) = fake.refreshes
    refresh = fake.seen("GET", REFRESH)[0]
    assert refresh.query == {"grant_type": ["th_refresh_token"], "access_token": [DEFAULT_TOKEN]}
    assert fake.posts[0].token == fresh  # the post went out with the refreshed token
    path = tmp_path / "threads-threads-main.token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(path.read_text())
    assert data["access_token"] == fresh and data["source"] == fingerprint(DEFAULT_TOKEN)
    assert data["expires_at"] == (NOW + timedelta(days=60)).isoformat()
    assert DEFAULT_TOKEN not in path.read_text() and names(tmp_path) == [path.name]

    clock.advance(86400 * 29)  # 31 days left: not yet
    await pub.publish(message("second " + LINK), idempotency_key="k2")
    assert len(fake.refreshes) == 1
    clock.advance(86400 * 2)  # 29 days left: refreshed, once
    await pub.publish(message("third " + LINK), idempotency_key="k3")
    await pub.publish(message("fourth " + LINK), idempotency_key="k4")
    assert len(fake.refreshes) == 2

    restarted = await make_publisher(fake, http, clock, tmp_path)
    await restarted.publish(message("after restart " + LINK), idempotency_key="k5")
    assert fake.posts[-1].token == fake.refreshes[-1] and len(fake.refreshes) == 2


async def test_a_new_token_in_the_environment_wins_over_the_file(fake: FakeThreads, http: httpx.AsyncClient,
                                                                 clock: FakeClock, tmp_path: Path) -> None:
    pub = await make_publisher(fake, http, clock, tmp_path)
    await pub.publish(message(), idempotency_key="k")
    new = "THAAoperatorsNewToken-0123456789abcdefghijklmnop"
    fake.tokens[new] = type(fake.tokens[DEFAULT_TOKEN])(new, NOW - timedelta(days=3), NOW + timedelta(days=57))
    replaced = await make_publisher(fake, http, clock, tmp_path, token=new)
    await replaced.publish(message("with the new token " + LINK), idempotency_key="k2")
    assert fake.seen("POST", PUBLISH)[-1].header("authorization") in (f"Bearer {new}", f"Bearer {fake.refreshes[-1]}")
    assert fake.posts[-1].token != fake.refreshes[0]


async def test_a_failed_refresh_is_recorded_retried_hourly_and_never_blocks_a_post(
        fake: FakeThreads, http: httpx.AsyncClient, clock: FakeClock, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    young = "THAAjustIssuedToken-abcdefghijklmnopqrstuvwxyz012345"
    fake.tokens[young] = type(fake.tokens[DEFAULT_TOKEN])(young, NOW - timedelta(hours=2), NOW + timedelta(days=60))
    pub = await make_publisher(fake, http, clock, tmp_path, token=young)
    with caplog.at_level(logging.WARNING, logger="test.threads"):
        await pub.publish(message(), idempotency_key="k")
    assert len(fake.posts) == 1 and fake.refreshes == []  # posted with the young token
    assert any(r.getMessage() == "threads.token_refresh_failed" for r in caplog.records)
    assert young not in caplog.text
    data = json.loads((tmp_path / "threads-threads-main.token").read_text())
    assert data["access_token"] is None and "too new" in data["refresh_error"]
    clock.advance(1800)
    await make_publisher(fake, http, clock, tmp_path, token=young)  # a restart remembers the failure
    await pub.publish(message("b " + LINK), idempotency_key="k2")
    assert len(fake.seen("GET", REFRESH)) == 1
    clock.advance(23 * 3600)  # the token is 25 h old now
    await pub.publish(message("c " + LINK), idempotency_key="k3")
    assert len(fake.refreshes) == 1 and fake.posts[-1].token == fake.refreshes[0]


async def test_an_unusable_token_file_falls_back_to_the_environment(fake: FakeThreads, http: httpx.AsyncClient,
                                                                   clock: FakeClock, tmp_path: Path) -> None:
    path = tmp_path / "threads-threads-main.token"
    path.write_text("not json")
    pub = await make_publisher(fake, http, clock, tmp_path)
    await pub.publish(message(), idempotency_key="k")
    assert len(fake.posts) == 1 and json.loads(path.read_text())["access_token"] == fake.refreshes[0]


# -- channels test: read-only -----------------------------------------------------------------------


async def test_check_reads_the_profile_and_quota_and_sends_nothing(fake: FakeThreads, pub: ThreadsPublisher) -> None:
    fake.spend_quota(4)
    info = await pub.check()
    assert info.display == f"@{USERNAME} on Threads"
    assert info.detail["id"] == USER_ID and info.detail["publishing quota"] == "4 of 250 posts in the last 24 h"
    assert "expiry unknown" in info.detail["access token"]
    assert {r.method for r in fake.requests} == {"GET"} and fake.refreshes == [] and fake.containers == []


async def test_check_reports_a_revoked_token(fake: FakeThreads, pub: ThreadsPublisher) -> None:
    fake.revoke(DEFAULT_TOKEN)
    with pytest.raises(CredentialsError) as info:
        await pub.check()
    assert_clean(info.value, DEFAULT_TOKEN)


def test_the_render_is_the_threads_renderer() -> None:
    msg = plugin.render(sample_post(), options("https://graph.threads.net"), RenderEnv())
    assert msg.extra["media_type"] == "TEXT" and msg.limit == 500


def test_token_file_repr_and_state_repr_hide_the_token(tmp_path: Path) -> None:
    from bot.publishers.threads.token import TokenState

    state = TokenState("abc").refreshed("SECRET-TOKEN-VALUE", 60.0, NOW)
    assert "SECRET-TOKEN-VALUE" not in repr(state) and "SECRET" not in repr(TokenFile(tmp_path / "t"))
