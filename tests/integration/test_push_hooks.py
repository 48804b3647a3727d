"""``POST /hooks/<source>`` on the running service (issue 20, push): a valid call delivers a new post within
seconds; a bad signature, a replay, a stale timestamp, an oversize body or an unknown source change
nothing; a flood coalesces; a failing or rate-limited source keeps its backoff; the payload is never
believed. The real service (``build_app``, ``run_forever``, its health listener), a loopback archive and a
loopback Telegram Bot API, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import pytest

from bot.settings import Secrets
from tests.fakes.archive import ArchiveServer
from tests.fakes.telegram_api import DEFAULT_TOKEN, FakeBotApi
from tests.push_support import Running, eventually, make_config, payload, serving, signed

SECRET = "archive-hook-secret-0123456789"
QUIET_SECRET = "quiet-hook-secret-0123456789"
FEED = "/feed/"
WITHIN = 10.0
"""A pushed post reaches the channel within this (the target is seconds; the machine is shared)."""


@pytest.fixture
def archive() -> Iterator[ArchiveServer]:
    with ArchiveServer() as server:
        server.add_post(title="Old MEK", tags=["MEK"])
        yield server


@pytest.fixture
def telegram() -> Iterator[FakeBotApi]:
    with FakeBotApi() as fake:
        yield fake


def raw_config(db_url: str, archive: ArchiveServer, telegram: FakeBotApi, **push: Any) -> dict[str, Any]:
    return {
        "storage": {"url": db_url, "lease_ttl": "10m"},
        "service": {"jitter": 0},
        "delivery": {"pacing": False},
        "health": {"host": "127.0.0.1", "port": 0},
        "push": {"min_gap": "0.2s", **push},
        "sources": [
            {"name": "archive", "url": archive.url + FEED, "kind": "rss", "interval": "1h",
             "push_secret_env": "ARCHIVE_PUSH_SECRET"},
            {"name": "quiet", "url": archive.url + "/feed/json", "kind": "jsonfeed", "interval": "1h"},
        ],
        "channels": [{"name": "tg", "platform": "telegram", "chat_id": "@tagrelay_test", "api_base": telegram.url,
                      "token_env": "TG_BOT_TOKEN"}],
        "subscriptions": [{"tag": "MEK", "channels": ["tg"]}],
    }


SECRETS = Secrets(environ={"ARCHIVE_PUSH_SECRET": SECRET, "TG_BOT_TOKEN": DEFAULT_TOKEN})


@pytest.fixture
async def service(db_url: str, archive: ArchiveServer, telegram: FakeBotApi) -> AsyncIterator[Running]:
    config = make_config(raw_config(db_url, archive, telegram), SECRETS)
    async with serving(config, SECRETS) as running:
        await eventually(lambda: baselined(running), "the first polls (baselines)")
        yield running


async def baselined(running: Running) -> bool:
    states = [await running.app.store.source(n) for n in ("archive", "quiet")]
    return all(s.baseline_done for s in states) and not running.app.polls.in_flight


def sent_titles(telegram: FakeBotApi) -> list[str]:
    return [m.text or "" for m in telegram.messages]


# -- a valid call -------------------------------------------------------------------------------------------


async def test_a_valid_call_delivers_a_new_post_within_seconds(service: Running, archive: ArchiveServer,
                                                               telegram: FakeBotApi) -> None:
    fetched = archive.count(FEED)
    post = archive.add_post(title="Pushed MEK news", tags=["MEK"])
    started = time.monotonic()
    answer = await service.hook("archive", payload(url=post.link(archive.url)), secret=SECRET)
    assert answer.status_code == 202, answer.text
    assert answer.json()["source"] == "archive" and answer.json()["poll"] in ("queued", "due")
    took = await eventually(lambda: any("Pushed MEK news" in t for t in sent_titles(telegram)),
                            "the pushed post on Telegram", deadline=WITHIN)
    assert time.monotonic() - started < WITHIN and took < WITHIN
    assert archive.count(FEED) == fetched + 1  # one poll, not a hammering
    state = await service.app.store.source("archive")
    assert state.push_requests == 1
    assert state.next_poll_at is not None and state.next_poll_at > service.app.clock.now() + timedelta(minutes=30)


async def test_the_payload_is_a_trigger_never_content(service: Running, archive: ArchiveServer,
                                                      telegram: FakeBotApi, caplog: pytest.LogCaptureFixture) -> None:
    post = archive.add_post(title="The archive title", tags=["MEK"])
    forged = payload(url=post.link(archive.url), title="FORGED TITLE", tags=["MEK"], content="<b>FORGED</b>")
    with caplog.at_level(logging.INFO, logger="tagrelay.push"):
        answer = await service.hook("archive", forged, secret=SECRET)
        assert answer.status_code == 202
        await eventually(lambda: any("The archive title" in t for t in sent_titles(telegram)), "the post")
        # any body at all triggers a poll once it is signed: nothing in it is needed
        for body in (b"", b"not json", b"[1,2", json.dumps({"url": "javascript:alert(1)"}).encode()):
            assert (await service.hook("archive", body, secret=SECRET)).status_code == 202
    assert not any("FORGED" in t for t in sent_titles(telegram))
    hooks = [r.kv for r in caplog.records if r.getMessage() == "push.hook"]  # type: ignore[attr-defined]
    assert hooks[0] == {"source": "archive", "event": "publish", "post_url": post.link(archive.url)}
    assert [h.get("post_url") for h in hooks[1:]] == [None] * 4  # a javascript: "URL" is not even logged
    logged = caplog.text + repr([r.__dict__ for r in caplog.records])
    assert SECRET not in logged and "FORGED" not in logged


# -- refused calls change nothing ---------------------------------------------------------------------------


async def _unchanged(service: Running, archive: ArchiveServer, before: tuple[Any, int, int]) -> None:
    state = await service.app.store.source("archive")
    assert (state.next_poll_at, state.push_requests, archive.count(FEED)) == before


async def _snapshot(service: Running, archive: ArchiveServer) -> tuple[Any, int, int]:
    state = await service.app.store.source("archive")
    return state.next_poll_at, state.push_requests, archive.count(FEED)


async def test_a_bad_signature_gets_401_and_changes_nothing(service: Running, archive: ArchiveServer) -> None:
    before = await _snapshot(service, archive)
    body = payload()
    good = signed(SECRET, "archive", body)
    cases = [
        signed("a-wrong-secret-of-enough-length", "archive", body),
        signed(SECRET, "quiet", body),  # signed for another source
        signed(SECRET, "archive", body + b" "),  # the body was changed on the way
        {**good, "X-Tagrelay-Signature": "sha256=" + "0" * 64},
        {k: v for k, v in good.items() if k != "X-Tagrelay-Signature"},
        {k: v for k, v in good.items() if k != "X-Tagrelay-Timestamp"},
        {**good, "X-Tagrelay-Timestamp": "soon"},
    ]
    for headers in cases:
        answer = await service.client.post("/hooks/archive", content=body, headers=headers)
        assert (answer.status_code, answer.text) == (401, "invalid signature\n"), headers
    await _unchanged(service, archive, before)


async def test_an_unknown_source_or_one_without_a_hook_looks_exactly_like_a_bad_signature(
        service: Running, archive: ArchiveServer) -> None:
    before = await _snapshot(service, archive)
    for source in ("nosuchsource", "quiet", "archive/../quiet", "%2e%2e", "a" * 300):
        answer = await service.hook(source, payload(), secret=SECRET)
        assert (answer.status_code, answer.text) == (401, "invalid signature\n"), source
    await _unchanged(service, archive, before)
    assert (await service.app.store.source("quiet")).push_requests == 0


async def test_a_replay_and_a_stale_or_future_timestamp_are_refused(service: Running, archive: ArchiveServer,
                                                                    telegram: FakeBotApi) -> None:
    body = payload()
    headers = signed(SECRET, "archive", body)
    first = await service.client.post("/hooks/archive", content=body, headers=headers)
    assert first.status_code == 202
    before = await _snapshot(service, archive)
    again = await service.client.post("/hooks/archive", content=body, headers=headers)
    assert (again.status_code, again.text) == (409, "already received\n")
    now = int(time.time())
    for stamp in (now - 301 - 5, now + 301 + 5):
        stale = await service.hook("archive", body, secret=SECRET, timestamp=stamp)
        assert (stale.status_code, stale.text) == (401, "timestamp outside the accepted window\n")
    state = await service.app.store.source("archive")
    assert state.push_requests == before[1]  # neither counted


async def test_an_oversize_body_is_refused_unread(service: Running, archive: ArchiveServer) -> None:
    before = await _snapshot(service, archive)
    big = b"x" * (64 * 1024 + 1)
    answer = await service.hook("archive", big, secret=SECRET)
    assert answer.status_code == 413

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: the cap holds while reading
        for _ in range(80):
            yield b"y" * 1024

    headers = signed(SECRET, "archive", b"y" * 80 * 1024)
    answer = await service.client.post("/hooks/archive", content=chunked(), headers=headers)
    assert answer.status_code == 413
    await _unchanged(service, archive, before)


async def test_only_post_is_accepted(service: Running) -> None:
    for method in ("GET", "PUT", "DELETE"):
        answer = await service.client.request(method, "/hooks/archive")
        assert answer.status_code == 405 and answer.headers["Allow"] == "POST"


# -- coalescing, backoff ------------------------------------------------------------------------------------


async def test_a_flood_during_a_poll_coalesces_into_one_more_poll(service: Running, archive: ArchiveServer,
                                                                  telegram: FakeBotApi) -> None:
    fetched = archive.count(FEED)
    release = archive.hold(FEED)
    try:
        assert (await service.hook("archive", payload(), secret=SECRET)).status_code == 202
        # the poll has fetched (its answer is held back): a post published now is not in what it read
        await eventually(lambda: archive.count(FEED) == fetched + 1, "the pushed poll's fetch")
        archive.add_post(title="Published during the poll", tags=["MEK"])
        answers = await asyncio.gather(*(service.hook("archive", payload(post_id=i), secret=SECRET)
                                         for i in range(30)))
        assert {a.status_code for a in answers} == {202}
        assert {a.json()["poll"] for a in answers} <= {"due", "queued"}
    finally:
        release.set()
        archive.release_all()
    await eventually(lambda: any("Published during the poll" in t for t in sent_titles(telegram)),
                     "the post published during the first poll")
    await eventually(lambda: not service.app.polls.in_flight, "the polls to end")
    assert archive.count(FEED) == fetched + 2  # the running poll, then ONE more for thirty calls
    state = await service.app.store.source("archive")
    assert state.push_requests == 32  # the first call, thirty during the poll, and the one follow-up
    follow_ups = service.app.metrics.pushes.labels("follow_up", "queued")._value.get()
    assert follow_ups + service.app.metrics.pushes.labels("follow_up", "due")._value.get() == 1
    assert state.next_poll_at is not None and state.next_poll_at > service.app.clock.now() + timedelta(minutes=30)


async def test_a_push_never_shortens_a_failing_sources_backoff(service: Running, archive: ArchiveServer,
                                                               telegram: FakeBotApi) -> None:
    archive.fail_next(503, path=FEED, retry_after="3600")
    fetched = archive.count(FEED)
    assert (await service.hook("archive", payload(), secret=SECRET)).status_code == 202

    async def failed() -> bool:
        return (await service.app.store.source("archive")).last_outcome == "error"

    await eventually(failed, "the failed poll")
    held = await service.app.store.source("archive")
    assert held.next_poll_at is not None and held.next_poll_at > service.app.clock.now() + timedelta(minutes=50)
    await eventually(lambda: not service.app.polls.in_flight, "the failed poll to end")
    archive.add_post(title="Not fetched while the source waits", tags=["MEK"])
    answer = await service.hook("archive", payload(post_id=2), secret=SECRET)
    assert answer.status_code == 202 and answer.json()["poll"] == "held"
    state = await service.app.store.source("archive")
    assert state.next_poll_at == held.next_poll_at  # Retry-After: 3600 still holds
    assert archive.count(FEED) == fetched + 1
    # the driver may run a round now, but it finds nothing due: the database says one hour
    service.app.polls.wake.set()
    rounds = service.app.polls.rounds
    await eventually(lambda: service.app.polls.rounds > rounds, "a round")
    assert "archive" not in service.app.polls.in_flight  # a round starts what is due before it counts itself
    assert archive.count(FEED) == fetched + 1
    assert not telegram.messages or all("Not fetched" not in t for t in sent_titles(telegram))


async def test_on_postgresql_a_push_to_one_instance_is_polled_by_whichever_may(
        db_url: str, archive: ArchiveServer, telegram: FakeBotApi) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("several instances share PostgreSQL only (SQLite is one instance: its file lock)")
    config = make_config(raw_config(db_url, archive, telegram), SECRETS)
    async with serving(config, SECRETS) as one, serving(config, SECRETS) as two:
        await eventually(lambda: baselined(one), "the first polls")
        fetched = archive.count(FEED)
        release = archive.hold(FEED)
        try:
            assert (await one.hook("archive", payload(), secret=SECRET)).status_code == 202
            await eventually(lambda: archive.count(FEED) == fetched + 1, "a poll by either instance")
            archive.add_post(title="Pushed to the other instance", tags=["MEK"])
            # the second push reaches the other instance while the first poll (on either) is still running
            assert (await two.hook("archive", payload(post_id=2), secret=SECRET)).status_code == 202
        finally:
            release.set()
            archive.release_all()
        await eventually(lambda: any("Pushed to the other instance" in t for t in sent_titles(telegram)),
                         "the post pushed during the first poll")
        await eventually(lambda: not one.app.polls.in_flight and not two.app.polls.in_flight, "the polls to end")
        assert archive.count(FEED) == fetched + 2
        assert len([t for t in sent_titles(telegram) if "Pushed to the other instance" in t]) == 1
