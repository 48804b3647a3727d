"""The health sidecar: /healthz, /readyz, /metrics on 127.0.0.1, its [health] table and its wiring."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot import __version__
from bot.app import App
from bot.bootstrap import build_app
from bot.errors import ConfigError, StorageError
from bot.health import DEFAULT_PORT, HealthServer, HealthSettings, load_health_settings
from bot.observability import Metrics
from bot.settings import Config, Secrets, build_config
from bot.sidecars import make_sidecars
from bot.storage.store import Store

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "config" / "sample-archive.xml"
DEADLINE = 20.0


def make_config(tmp_path: Path, *, paused: bool = False, health: dict[str, Any] | None = None) -> Config:
    raw: dict[str, Any] = {
        "storage": {"url": f"sqlite+aiosqlite:///{tmp_path / 'tagrelay.db'}"},
        "sources": [{"name": "archive", "url": str(SAMPLE), "interval": "1h"}],
        "channels": [{"name": "console", "platform": "console", "paused": paused, "stream": "stderr"}],
        "subscriptions": [{"tag": "MEK", "channels": ["console"], "backfill": 2}],
    }
    if health is not None:
        raw["health"] = health
    return build_config(raw, path=tmp_path / "tagrelay.toml")


def local(port: int = 0, timeout: float = 5.0) -> HealthSettings:
    return HealthSettings(host="127.0.0.1", port=port, timeout=timeout)


async def eventually(probe: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll ``probe`` until it is true or the deadline passes."""
    deadline = time.monotonic() + DEADLINE
    while not await probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Parse an exposition (fails on invalid text format) into {(name, labels): value}."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@dataclass
class RunningApp:
    app: App
    server: HealthServer
    client: httpx.AsyncClient
    task: asyncio.Task[None]

    async def get(self, path: str) -> httpx.Response:
        return await self.client.get(path)


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[RunningApp]:
    """The real service (sample archive → paused console channel) with the health server on a free port."""
    server = HealthServer(local())
    app = build_app(make_config(tmp_path, paused=True), secrets=Secrets(environ={}), sidecars=[server])
    async with app:
        task = asyncio.create_task(app.run_forever())

        async def ready() -> bool:
            if task.done():
                task.result()
            return server.port is not None and app.running

        await eventually(ready, "the service to start")
        async with httpx.AsyncClient(base_url=server.url, timeout=DEADLINE) as client:
            try:
                yield RunningApp(app, server, client, task)
            finally:
                app.stop_event.set()
                await asyncio.wait_for(task, DEADLINE)


# -- endpoints on the real service ---------------------------------------------------------------


async def test_healthz_and_readyz_answer_while_the_service_runs(running: RunningApp) -> None:
    assert running.server.port not in (None, 0)
    assert running.server.url.startswith("http://127.0.0.1:")
    live = await running.get("/healthz")
    assert live.status_code == 200 and live.text == "ok\n"
    ready = await running.get("/readyz")
    assert ready.status_code == 200
    assert ready.headers["content-type"] == "application/json"
    assert ready.json() == {"status": "ready", "checks": {"database": "ok", "scheduler": "running"}}
    assert ready.headers["cache-control"] == "no-store"


async def test_metrics_are_prometheus_text_and_queue_gauges_refresh_on_scrape(running: RunningApp) -> None:
    # the channel is paused, so the delivery loop never refreshes the queue gauges itself:
    # only the scrape can make tagrelay_queue_depth show the backfilled deliveries
    latest: dict[str, Any] = {}

    async def polled() -> bool:
        resp = await running.get("/metrics")
        latest["resp"] = resp
        found = samples(resp.text)
        latest["samples"] = found
        return found.get(("tagrelay_polls_total", (("outcome", "baseline"), ("source", "archive")))) == 1.0

    await eventually(polled, "the first poll to show in /metrics")
    resp: httpx.Response = latest["resp"]
    found = latest["samples"]
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert found[("tagrelay_queue_depth", (("channel", "console"),))] == 2.0
    assert found[("tagrelay_oldest_queued_age_seconds", (("channel", "console"),))] >= 0.0
    # every poll outcome exists from the start, so a 304 ratio is defined before the first 304
    assert found[("tagrelay_polls_total", (("outcome", "not_modified"), ("source", "archive")))] == 0.0
    assert found[("tagrelay_polls_total", (("outcome", "error"), ("source", "archive")))] == 0.0
    assert found[("tagrelay_source_last_success_timestamp_seconds", (("source", "archive"),))] > 1.7e9
    assert ("tagrelay_info", (("version", __version__),)) in found
    assert any(name == "process_start_time_seconds" for name, _ in found)


async def test_head_404_and_405(running: RunningApp) -> None:
    head = await running.client.head("/healthz")
    assert head.status_code == 200 and head.content == b"" and head.headers["content-length"] == "3"
    missing = await running.get("/admin")
    assert missing.status_code == 404
    post = await running.client.post("/metrics", content=b"x")
    assert post.status_code == 405 and post.headers["allow"] == "GET, HEAD"


async def raw_exchange(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), DEADLINE)
    finally:
        writer.close()


@pytest.mark.parametrize(("request_bytes", "status"), [
    (b"GARBAGE\r\n\r\n", b"400"),
    (b"GET /healthz SPDY/3\r\n\r\n", b"400"),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", b"400"),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-A: b\r\n" * 70 + b"\r\n", b"400"),
    (b"GET /healthz HTTP/1.1\r\n\r\n", b"400"),  # HTTP/1.1 without Host (RFC 9112 §3.2)
    (b"GET /healthz HTTP/1.0\r\nHost: x\r\n\r\n", b"200"),
])
async def test_malformed_requests_get_an_error_and_the_server_survives(
        running: RunningApp, request_bytes: bytes, status: bytes, caplog: pytest.LogCaptureFixture) -> None:
    # aiohttp's parser answers every malformed request 400 (it has no 431/505), in the request's HTTP version
    assert running.server.port is not None
    with caplog.at_level(logging.DEBUG):
        answer = await raw_exchange(running.server.port, request_bytes)  # returns at EOF: the server closed it
    # the client's fault: at most a debug line, never an error with a traceback that a client could repeat
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert re.match(rb"HTTP/1\.[01] " + status + rb" ", answer), answer[:80]
    assert b"aiohttp" not in answer.partition(b"\r\n\r\n")[2]  # no traceback, no internals in the body
    assert (await running.get("/healthz")).status_code == 200


async def test_every_answer_closes_its_connection_and_is_not_cached(running: RunningApp) -> None:
    assert running.server.port is not None
    for path in (b"/healthz", b"/readyz", b"/metrics", b"/nowhere"):
        answer = await raw_exchange(running.server.port, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        head = answer.partition(b"\r\n\r\n")[0].lower()
        assert b"\r\nconnection: close" in head and b"\r\ncache-control: no-store" in head, head


# -- readiness failures (a fake app around real or fake stores) ----------------------------------


class _HangingStore:
    async def ping(self) -> None:
        await asyncio.Event().wait()


class _NoQueue:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.calls = 0

    async def refresh_queue_metrics(self) -> None:
        self.calls += 1
        if self.error is not None:
            raise self.error


@dataclass
class FakeApp:
    """Stands in for ``App`` (the ``HealthTarget`` protocol): running flag, store, deliverer, metrics."""

    store: Any
    running: bool = True
    stop_event: asyncio.Event = field(default_factory=asyncio.Event)
    deliverer: _NoQueue = field(default_factory=_NoQueue)
    metrics: Metrics = field(default_factory=Metrics)
    config: Config = field(default_factory=Config)
    push: Any = None


class Serve(Protocol):
    def __call__(self, app: FakeApp, timeout: float = ...) -> Awaitable[httpx.AsyncClient]: ...


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    servers: list[HealthServer] = []
    clients: list[httpx.AsyncClient] = []

    async def start(app: FakeApp, timeout: float = 5.0) -> httpx.AsyncClient:
        server = HealthServer(local(timeout=timeout))
        await server.start(app)
        servers.append(server)
        client = httpx.AsyncClient(base_url=server.url, timeout=DEADLINE)
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.aclose()
    for server in servers:
        await server.stop()


async def test_readyz_is_503_when_the_database_is_unreachable(
        tmp_path: Path, serve: Serve) -> None:
    store = Store.open(f"sqlite+aiosqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'x.db'}", create_dirs=False)
    with pytest.raises(StorageError):
        await store.ping()  # the premise: the real store cannot reach this database
    try:
        client = await serve(FakeApp(store=store))
        resp = await client.get("/readyz")
        assert resp.status_code == 503
        body = resp.json()
        assert body["status"] == "unavailable"
        assert body["checks"] == {"database": "error", "scheduler": "running"}
        assert "database unreachable" in body["reason"]
        assert (await client.get("/healthz")).status_code == 200  # alive, just not ready
    finally:
        await store.aclose()


async def test_readyz_is_503_when_the_database_hangs(serve: Serve
                                                     ) -> None:
    client = await serve(FakeApp(store=_HangingStore()), timeout=0.5)
    resp = await client.get("/readyz")  # the store never answers: only the probe's own timeout ends this
    assert resp.status_code == 503
    assert resp.json()["checks"]["database"] == "timeout"
    assert "did not answer within 0.5s" in resp.json()["reason"]


@pytest.mark.parametrize(("stopping", "state"), [(False, "starting"), (True, "stopping")])
async def test_readyz_is_503_while_starting_or_stopping(
        tmp_path: Path, serve: Serve, stopping: bool, state: str
) -> None:
    store = Store.open(f"sqlite+aiosqlite:///{tmp_path / 'ok.db'}")
    try:
        app = FakeApp(store=store, running=False)
        if stopping:
            app.stop_event.set()
        client = await serve(app)
        resp = await client.get("/readyz")
        assert resp.status_code == 503
        assert resp.json()["checks"] == {"database": "ok", "scheduler": state}
        assert resp.json()["reason"] == f"the service is {state}"
    finally:
        await store.aclose()


async def test_metrics_still_render_when_the_queue_refresh_fails(
        serve: Serve, caplog: pytest.LogCaptureFixture) -> None:
    app = FakeApp(store=_HangingStore(), deliverer=_NoQueue(StorageError("database unreachable: OSError")))
    app.metrics.set_queue("tg", 4, 120.0)
    client = await serve(app)
    resp = await client.get("/metrics")
    assert resp.status_code == 200
    assert samples(resp.text)[("tagrelay_queue_depth", (("channel", "tg"),))] == 4.0
    assert app.deliverer.calls == 1
    assert any(r.getMessage() == "metrics.refresh_failed" for r in caplog.records)


async def test_each_scrape_refreshes_the_queue_gauges(serve: Serve
                                                      ) -> None:
    app = FakeApp(store=_HangingStore())
    client = await serve(app)
    for expected in (1, 2, 3):
        assert (await client.get("/metrics")).status_code == 200
        assert app.deliverer.calls == expected
    await client.get("/healthz")
    await client.get("/readyz")
    assert app.deliverer.calls == 3


# -- lifecycle -------------------------------------------------------------------------------------


async def test_stop_closes_the_listener(serve: Serve) -> None:
    server = HealthServer(local())
    await server.start(FakeApp(store=_HangingStore()))
    port = server.port
    assert port is not None
    assert (await raw_exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")).startswith(b"HTTP/1.1 200")
    await server.stop()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)
    await server.stop()  # idempotent


async def test_a_taken_port_is_a_config_error_naming_health_port() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = HealthServer(local(port))
        with pytest.raises(ConfigError) as info:
            await server.start(FakeApp(store=_HangingStore()))
    assert info.value.key == "health.port"
    assert str(port) in info.value.reason and "TAGRELAY_HEALTH_PORT" in info.value.reason


async def test_run_forever_does_not_start_polling_when_the_health_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = HealthServer(local(taken.getsockname()[1]))
        app = build_app(make_config(tmp_path), secrets=Secrets(environ={}), sidecars=[server])
        async with app:
            with pytest.raises(ConfigError):
                await asyncio.wait_for(app.run_forever(), DEADLINE)
            assert not app.running
            assert [s.last_poll_at for s in await app.store.sources()] == [None]


# -- the [health] table and the environment ------------------------------------------------------


def test_defaults_listen_on_loopback_port_9464() -> None:
    settings = load_health_settings(None)
    assert settings == HealthSettings(enabled=True, host="127.0.0.1", port=9464, timeout=2.0)
    assert DEFAULT_PORT == 9464


def test_table_values_and_env_overrides() -> None:
    everywhere = "0.0.0.0"  # noqa: S104 - the container's setting, only parsed here
    env = {"TAGRELAY_HEALTH_HOST": everywhere, "TAGRELAY_HEALTH_PORT": "0"}
    settings = load_health_settings({"host": "localhost", "port": 9000, "timeout": "5s"}, env.get)
    assert (settings.host, settings.port, settings.timeout) == (everywhere, 0, 5.0)
    assert load_health_settings({"port": 9000}, {"TAGRELAY_HEALTH_PORT": " "}.get).port == 9000


@pytest.mark.parametrize(("raw", "env", "key"), [
    ({"port": 70000}, {}, "health.port"),
    ({"port": -1}, {}, "health.port"),
    ({"port": "http"}, {}, "health.port"),
    ({"host": "not a host!"}, {}, "health.host"),
    ({"enabled": "sometimes"}, {}, "health.enabled"),
    ({"timeout": "soon"}, {}, "health.timeout"),
    ({"prot": 9000}, {}, "health.prot"),
    ([1, 2], {}, "health"),
    ({}, {"TAGRELAY_HEALTH_PORT": "nine"}, "TAGRELAY_HEALTH_PORT"),
    ({}, {"TAGRELAY_HEALTH_PORT": "99999"}, "TAGRELAY_HEALTH_PORT"),
    ({}, {"TAGRELAY_HEALTH_HOST": "bad host"}, "TAGRELAY_HEALTH_HOST"),
])
def test_bad_values_name_their_key(raw: Any, env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_health_settings(raw, env.get)
    assert info.value.key == key


def test_make_sidecars_builds_the_health_server_unless_disabled(tmp_path: Path) -> None:
    env = Secrets(environ={"TAGRELAY_HEALTH_PORT": "0"})
    sidecars = make_sidecars(make_config(tmp_path), env)
    assert [s.name for s in sidecars] == ["health"]
    server = sidecars[0]
    assert isinstance(server, HealthServer) and server.settings.port == 0
    assert make_sidecars(make_config(tmp_path, health={"enabled": False}), env) == []
    with pytest.raises(ConfigError) as info:
        make_sidecars(make_config(tmp_path, health={"port": 65536}), env)
    assert info.value.key == "health.port"


def test_a_bad_health_table_stops_the_cli_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.cli import main

    cfg = tmp_path / "tagrelay.toml"
    cfg.write_text(f'[storage]\nurl = "sqlite+aiosqlite:///{tmp_path / "t.db"}"\n\n[health]\nport = 123456\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TAGRELAY_STORAGE_URL", raising=False)
    monkeypatch.delenv("TAGRELAY_HEALTH_PORT", raising=False)
    assert main(["--config", str(cfg), "run", "--once"]) == 2
    assert "health.port" in capsys.readouterr().err
