"""WebSub (issue 20, push): the running service subscribes to the hub its feed advertises, answers the hub's
verification of intent, polls on a correctly signed notification (and ignores a badly signed one), renews
before the lease ends and retries a hub that failed. A loopback hub (``tests/fakes/websub_hub.py``), a
loopback archive and Telegram Bot API, an injectable clock, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import io
import json
import socket
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.cli import main
from bot.clock import FakeClock
from bot.domain.push import WebSubState, websub_secret
from bot.settings import Secrets
from bot.storage import tables as t
from tests.fakes.archive import ArchiveServer
from tests.fakes.telegram_api import DEFAULT_TOKEN, FakeBotApi
from tests.fakes.websub_hub import FakeHub
from tests.push_support import Running, eventually, make_config, serving

MASTER = "websub-master-secret-0123456789"
SECRETS = Secrets(environ={"TAGRELAY_WEBSUB_SECRET": MASTER, "TG_BOT_TOKEN": DEFAULT_TOKEN})
LEASE = 3600


async def off(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call the hub (blocking urllib) off the event loop that serves the callback."""
    return await asyncio.to_thread(fn, *args, **kwargs)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    with FakeHub(grant=LEASE) as server:
        yield server


@pytest.fixture
def archive(hub: FakeHub) -> Iterator[ArchiveServer]:
    with ArchiveServer() as server:
        server.add_post(title="Old MEK", tags=["MEK"])
        server.hub = hub.url + "/"
        yield server


@pytest.fixture
def telegram() -> Iterator[FakeBotApi]:
    with FakeBotApi() as fake:
        yield fake


def raw_config(db_url: str, archive: ArchiveServer, telegram: FakeBotApi, port: int, **push: Any) -> dict[str, Any]:
    return {
        "storage": {"url": db_url, "lease_ttl": "10m"},
        "service": {"jitter": 0},
        "delivery": {"pacing": False},
        "health": {"host": "127.0.0.1", "port": port},
        "push": {"public_url": f"http://127.0.0.1:{port}", "min_gap": "1s", "lease": "1d", "renew_before": "10m",
                 **push},
        "sources": [
            {"name": "archive", "url": archive.url + "/feed/", "kind": "rss", "interval": "1h"},
            {"name": "json", "url": archive.url + "/feed/json", "kind": "jsonfeed", "interval": "1h",
             "websub": False},
        ],
        "channels": [{"name": "tg", "platform": "telegram", "chat_id": "@tagrelay_test", "api_base": telegram.url,
                      "token_env": "TG_BOT_TOKEN"}],
        "subscriptions": [{"tag": "MEK", "channels": ["tg"]}],
    }


class Setup:
    def __init__(self, running: Running, clock: FakeClock, archive: ArchiveServer, hub: FakeHub) -> None:
        self.running = running
        self.app = running.app
        self.clock = clock
        self.archive = archive
        self.hub = hub
        self.topic = archive.url + "/feed/"
        self.callback = f"{running.url}/websub/archive"

    async def subscription(self) -> Any:
        return await self.app.store.websub_subscription("archive")


@pytest.fixture
async def websub(db_url: str, archive: ArchiveServer, telegram: FakeBotApi, hub: FakeHub,
                 clock: FakeClock) -> AsyncIterator[Setup]:
    port = free_port()
    config = make_config(raw_config(db_url, archive, telegram, port), SECRETS)
    async with serving(config, SECRETS, clock=clock) as running:
        setup = Setup(running, clock, archive, hub)

        async def active() -> bool:
            # the service marks it active as it answers the hub's check; the hub records it once that answer
            # is back (in its own thread): wait for both, or a notification can find no subscriber yet
            sub = await setup.subscription()
            return sub is not None and sub.state == WebSubState.ACTIVE and bool(hub.verified())

        await eventually(active, "the verified subscription")
        yield setup


async def test_the_service_subscribes_to_the_advertised_hub_and_confirms_the_verification(websub: Setup) -> None:
    hub, clock = websub.hub, websub.clock
    [request] = hub.requests_made
    assert request["hub.mode"] == "subscribe"
    assert request["hub.callback"] == websub.callback
    assert request["hub.topic"] == websub.topic  # the feed's rel="self"
    assert request["hub.lease_seconds"] == "86400"
    secret = request["hub.secret"]
    assert len(secret) == 64 and MASTER not in secret
    assert secret == websub_secret(MASTER.encode(), websub.callback, websub.topic)
    [(callback, mode, topic, status, echoed)] = hub.verifications
    assert (callback, mode, topic, status, echoed) == (websub.callback, "subscribe", websub.topic, 200, True)
    sub = await websub.subscription()
    assert sub.hub == hub.url + "/" and sub.topic == websub.topic and sub.lease_seconds == LEASE
    assert sub.expires_at == clock.now() + timedelta(seconds=LEASE)
    assert sub.renew_at == clock.now() + timedelta(seconds=LEASE - 600)  # renew_before = 10m
    # the jsonfeed source has websub = false: its hub is ignored
    assert await websub.app.store.websub_subscription("json") is None
    # nothing secret is stored
    async with websub.app.store.engine.connect() as conn:
        rows = (await conn.execute(select(t.websub_subscriptions))).all()
    assert MASTER not in repr(rows) and secret not in repr(rows)


async def test_a_signed_notification_polls_the_source_and_delivers_the_new_post(
        websub: Setup, telegram: FakeBotApi) -> None:
    fetched = websub.archive.count("/feed/")
    websub.clock.advance(5)  # past [push] min_gap since the baseline poll
    websub.archive.add_post(title="Hub says hello", tags=["MEK"])
    assert await off(websub.hub.publish, websub.topic, websub.archive.rss().encode()) == [202]
    await eventually(lambda: any("Hub says hello" in (m.text or "") for m in telegram.messages), "the new post")
    assert websub.archive.count("/feed/") == fetched + 1
    assert (await websub.app.store.source("archive")).push_requests == 1
    for algorithm in ("sha1", "sha512"):  # every method WebSub allows
        assert await off(websub.hub.publish, websub.topic, b"<rss/>", algorithm=algorithm) == [202]
    await eventually(lambda: websub.app.metrics.pushes.labels("websub", "due")._value.get()
                     + websub.app.metrics.pushes.labels("websub", "queued")._value.get() == 3, "three pushes")


async def test_a_badly_signed_or_unsigned_notification_is_acknowledged_and_ignored(websub: Setup) -> None:
    before = await websub.app.store.source("archive")
    fetched = websub.archive.count("/feed/")
    websub.clock.advance(5)
    body = websub.archive.rss().encode()
    assert await off(websub.hub.publish, websub.topic, body, secret="not-the-derived-secret") == [202]
    assert await off(websub.hub.publish, websub.topic, body, signature="sha256=" + "0" * 64) == [202]
    assert await off(websub.hub.publish, websub.topic, body, signature="") == [202]
    assert await off(websub.hub.publish, websub.topic, body, signature="md5=abc") == [202]
    after = await websub.app.store.source("archive")
    assert (after.push_requests, after.next_poll_at) == (before.push_requests, before.next_poll_at)
    assert websub.archive.count("/feed/") == fetched
    assert websub.app.metrics.pushes.labels("websub", "bad_signature")._value.get() == 4
    # a source without a subscription has no callback at all
    client = websub.running.client
    assert (await client.post("/websub/json", content=body)).status_code == 404
    assert (await client.post("/websub/nosuchsource", content=body)).status_code == 404


async def test_only_the_verifications_tagrelay_asked_for_are_confirmed(websub: Setup) -> None:
    hub, callback = websub.hub, websub.callback
    assert (await off(hub.verify, callback, "subscribe", "https://someone-else.example/feed/"))[0] == 404
    # nobody unsubscribes tagrelay for it
    assert (await off(hub.verify, callback, "unsubscribe", websub.topic))[0] == 404
    json_callback, json_topic = f"{websub.running.url}/websub/json", websub.archive.url + "/feed/json"
    assert (await off(hub.verify, json_callback, "subscribe", json_topic))[0] == 404
    status, _ = await off(hub.verify, callback, "subscribe", websub.topic, lease=LEASE, challenge="abc\x07def")
    assert status == 400
    client = websub.running.client
    assert (await client.get("/websub/archive")).status_code == 404  # no mode, no topic
    assert (await client.put("/websub/archive")).status_code == 405
    assert (await websub.subscription()).state == WebSubState.ACTIVE  # none of it changed the subscription


async def test_the_subscription_is_renewed_before_the_lease_ends(websub: Setup) -> None:
    first = await websub.subscription()
    assert await websub.app.push.websub.renew_due() == 0  # not due yet
    websub.clock.advance(LEASE - 600 + 1)  # the renewal time has come
    assert await websub.app.push.websub.renew_due() == 1
    await eventually(lambda: len(websub.hub.verifications) == 2, "the hub's second verification")
    await off(websub.hub.join)
    second = await websub.subscription()
    assert len(websub.hub.requests_made) == 2 and websub.hub.requests_made[1]["hub.secret"] == \
        websub.hub.requests_made[0]["hub.secret"]
    assert second.state == WebSubState.ACTIVE
    assert second.expires_at == websub.clock.now() + timedelta(seconds=LEASE)
    assert first.expires_at is not None and second.expires_at is not None and second.expires_at > first.expires_at


async def test_a_hub_that_fails_is_asked_again_with_backoff(websub: Setup) -> None:
    websub.clock.advance(LEASE - 600 + 1)
    websub.hub.fail_next(503)
    assert await websub.app.push.websub.renew_due() == 1
    failed = await websub.subscription()
    assert failed.state == WebSubState.FAILED and failed.attempts == 1
    assert failed.last_error == "the hub answered HTTP 503"
    assert failed.renew_at == websub.clock.now() + timedelta(seconds=60)
    assert await websub.app.push.websub.renew_due() == 0  # not before its time
    websub.clock.advance(61)
    assert await websub.app.push.websub.renew_due() == 1
    await eventually(lambda: len(websub.hub.verifications) == 2, "the hub's second verification")
    await off(websub.hub.join)
    assert (await websub.subscription()).state == WebSubState.ACTIVE
    # a notification still polls while the subscription is renewed (the hub's lease had not ended)
    assert await off(websub.hub.publish, websub.topic, b"<rss/>") == [202]


async def test_a_denied_subscription_is_recorded_and_asked_again_later(websub: Setup) -> None:
    assert await off(websub.hub.deny, websub.callback, websub.topic, reason="topic not allowed") == 200
    sub = await websub.subscription()
    assert sub.state == WebSubState.DENIED and sub.last_error == "topic not allowed"
    assert sub.renew_at == websub.clock.now() + timedelta(days=1)


async def test_a_feed_that_stops_advertising_its_hub_is_dropped_and_its_callback_closes(websub: Setup) -> None:
    websub.archive.hub = None
    websub.archive.add_post(title="Changed feed", tags=["MEK"])  # a new ETag: the next poll reads the feed
    websub.clock.advance(3601)  # the hourly poll

    async def dropped() -> bool:
        sub = await websub.subscription()
        return sub is not None and sub.state == WebSubState.DROPPED

    websub.app.polls.wake.set()
    await eventually(dropped, "the dropped subscription")
    assert await websub.app.push.websub.renew_due() == 0
    assert await off(websub.hub.publish, websub.topic, b"<rss/>") == [404]  # no longer wanted: nothing polls
    # and tagrelay may be unsubscribed now
    assert (await off(websub.hub.verify, websub.callback, "unsubscribe", websub.topic))[0] == 200


@pytest.mark.parametrize("hub_url", ["file:///etc/passwd", "ftp://hub.example/", "javascript:alert(1)"])
async def test_a_hub_that_is_not_http_is_never_contacted(db_url: str, archive: ArchiveServer, telegram: FakeBotApi,
                                                         hub: FakeHub, clock: FakeClock, hub_url: str) -> None:
    archive.hub = hub_url
    config = make_config(raw_config(db_url, archive, telegram, free_port()), SECRETS)
    async with serving(config, SECRETS, clock=clock) as running:
        async def polled() -> bool:
            return (await running.app.store.source("archive")).baseline_done

        await eventually(polled, "the first poll")
        assert await running.app.store.websub_subscription("archive") is None
        assert hub.requests_made == []


async def test_a_hub_in_the_link_header_and_a_hub_that_verifies_first(db_url: str, archive: ArchiveServer,
                                                                      telegram: FakeBotApi, clock: FakeClock) -> None:
    with FakeHub(verify_first=True) as eager:
        archive.hub, archive.hub_header = eager.url + "/", True
        config = make_config(raw_config(db_url, archive, telegram, free_port()), SECRETS)
        async with serving(config, SECRETS, clock=clock) as running:
            async def active() -> bool:
                sub = await running.app.store.websub_subscription("archive")
                return sub is not None and sub.state == WebSubState.ACTIVE

            await eventually(active, "the subscription verified before the request was answered")
            assert eager.requests_made[0]["hub.topic"] == archive.url + "/feed/"
            assert (await running.app.store.websub_subscription("archive")).lease_seconds == 86400


async def test_sources_list_shows_how_pushes_reach_each_source(websub: Setup, db_url: str, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the CLI reads .env from the working directory
    for name in ("TAGRELAY_STORAGE_URL", "TAGRELAY_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TAGRELAY_WEBSUB_SECRET", MASTER)
    monkeypatch.setenv("ARCHIVE_HOOK_SECRET", "archive-hook-secret-0123456789")
    config = tmp_path / "tagrelay.toml"
    config.write_text(f"""
[storage]
url = "{db_url}"

[push]
public_url = "{websub.running.url}"

[[sources]]
name = "archive"
url = "{websub.archive.url}/feed/"
kind = "rss"
push_secret_env = "ARCHIVE_HOOK_SECRET"

[[sources]]
name = "json"
url = "{websub.archive.url}/feed/json"
kind = "jsonfeed"
websub = false
""", encoding="utf-8")

    def cli(*args: str) -> str:
        out, err = io.StringIO(), io.StringIO()
        assert main(["--config", str(config), *args], out=out, err=err) == 0, err.getvalue()
        return out.getvalue()

    table = await off(cli, "sources", "list")
    expires = (websub.clock.now() + timedelta(seconds=LEASE)).strftime("%Y-%m-%d %H:%M")
    archive_row = next(line for line in table.splitlines() if line.startswith("archive"))
    json_row = next(line for line in table.splitlines() if line.startswith("json"))
    assert f"hook, websub active until {expires}Z" in archive_row
    assert " - " in json_row
    listed = json.loads(await off(cli, "sources", "list", "--json"))
    assert listed[0]["push"]["hook"] is True and listed[0]["push"]["websub"]["state"] == "active"
    assert listed[1]["push"] == {"hook": False, "websub": None}
    assert MASTER not in table and MASTER not in json.dumps(listed)


async def test_a_restart_requests_the_subscriptions_again_at_most_once_an_hour(
        db_url: str, archive: ArchiveServer, telegram: FakeBotApi, hub: FakeHub, clock: FakeClock) -> None:
    config = make_config(raw_config(db_url, archive, telegram, free_port()), SECRETS)

    async def active(running: Running, requests: int) -> bool:
        sub = await running.app.store.websub_subscription("archive")
        return len(hub.requests_made) == requests and sub is not None and sub.state == WebSubState.ACTIVE

    async with serving(config, SECRETS, clock=clock) as running:
        await eventually(lambda: active(running, 1), "the first subscription")
        first = await running.app.store.websub_subscription("archive")
    clock.advance(600)
    async with serving(config, SECRETS, clock=clock) as running:  # restarted within the hour: left alone
        sub = await running.app.store.websub_subscription("archive")
        assert sub is not None and first is not None and sub.renew_at == first.renew_at
        assert await running.app.push.websub.renew_due() == 0 and len(hub.requests_made) == 1
    clock.advance(3600)
    # later: asked again at start (a changed secret, a hub that forgot it)
    async with serving(config, SECRETS, clock=clock) as running:
        await eventually(lambda: active(running, 2), "the subscription requested again at start")
        again = await running.app.store.websub_subscription("archive")
        assert again is not None and again.expires_at == clock.now() + timedelta(seconds=LEASE)
