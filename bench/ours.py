"""tagrelay, in-process, against the bench fake: the peer workloads, polling and delivery throughput.

Each measurement builds a real ``App`` (``bot.bootstrap.build_app``: the same
store, sources, publishers and services ``tagrelay run`` uses) on a fresh
SQLite file, with pacing switched off (the fake has no rate limits).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.common import WORK, FakeServer
from bot import __version__
from bot.app import App
from bot.bootstrap import build_app
from bot.settings import Config, HttpConfig, Secrets, build_config
from bot.sources.http import CONNECT_TIMEOUT_CAP, make_feed_client, make_http_client, user_agent

TG_TOKEN = "123456789:AAbenchbenchbenchbenchbenchbenchbenc"  # noqa: S105 - a fake for the loopback fake
SECRETS = {"BENCH_MASTODON_TOKEN": "bench-mastodon-token-0123456789", "BENCH_TG_TOKEN": TG_TOKEN,
           "BENCH_X_TOKEN": "bench-x-user-token-0123456789"}
ALL_CHANNELS = ("masto", "tg", "x")


def channel_tables(base: str, names: tuple[str, ...]) -> list[dict[str, Any]]:
    tables = {
        # text posts only, as the peers send and as the old commits measured; an image's cost is
        # `python -m bench.media_cost` (a fetch, Pillow and an upload per post: issue 18)
        "masto": {"name": "masto", "platform": "mastodon", "instance": base, "token_env": "BENCH_MASTODON_TOKEN",
                  "send_image": False},
        "tg": {"name": "tg", "platform": "telegram", "chat_id": "@bench", "api_base": base,
               "token_env": "BENCH_TG_TOKEN"},
        "x": {"name": "x", "platform": "x", "api_base": base, "bearer_token_env": "BENCH_X_TOKEN"},
    }
    return [tables[n] for n in names]


def raw_config(base: str, storage_url: str, *, sources: int, channels: tuple[str, ...] = ("masto",),
               interval: str = "1h", concurrency: int = 16, lease_ttl: float = 60.0) -> dict[str, Any]:
    return {
        "storage": {"url": storage_url, "lease_ttl": lease_ttl},
        "http": {"concurrency": concurrency},
        "service": {"jitter": 0},
        "delivery": {"pacing": False, "concurrency": 4},
        "sources": [{"name": f"f{i}", "url": f"{base}/feeds/f{i}.xml", "kind": "rss", "interval": interval}
                    for i in range(sources)],
        "channels": channel_tables(base, channels),
        "subscriptions": [{"tag": "News", "channels": list(channels)}],
    }


def sqlite_url(name: str) -> str:
    folder = WORK / "db"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return f"sqlite+aiosqlite:///{path}"


def make_config(server: FakeServer, name: str, **kw: Any) -> Config:
    return build_config(raw_config(server.url, sqlite_url(name), **kw))


# -- HTTP clients compared side by side -------------------------------------------------------------

ClientFactory = Callable[[HttpConfig], Any]


def _httpx(cfg: HttpConfig) -> httpx.AsyncClient:
    return make_http_client(cfg, version=__version__)


def _httpx_aiohttp(cfg: HttpConfig) -> httpx.AsyncClient:
    return make_feed_client(cfg, version=__version__)  # the feed client, for the publishers too


def _httpx2(cfg: HttpConfig) -> Any:
    import httpx2

    return httpx2.AsyncClient(
        headers={"User-Agent": user_agent(cfg, __version__)},
        timeout=httpx2.Timeout(cfg.timeout, connect=min(cfg.timeout, CONNECT_TIMEOUT_CAP)),
        limits=httpx2.Limits(max_connections=cfg.concurrency, max_keepalive_connections=cfg.concurrency,
                             keepalive_expiry=30.0),
        follow_redirects=True, max_redirects=cfg.max_redirects)


PRODUCTION = "production (feeds: aiohttp transport; publishers: httpx)"
"""``build_app``'s own clients: ``make_feed_client`` for the sources, ``make_http_client`` for the publishers."""

CLIENTS: dict[str, ClientFactory | None] = {PRODUCTION: None, "httpx 0.28 for everything": _httpx,
                                            "aiohttp transport for everything": _httpx_aiohttp, "httpx2": _httpx2}


def available_clients() -> dict[str, ClientFactory | None]:
    """The production pair always (None: ``build_app`` makes its own); the candidates when installed."""
    out: dict[str, ClientFactory | None] = {}
    for name, factory in CLIENTS.items():
        if factory is not None:
            try:
                factory(HttpConfig())
            except ImportError:
                continue
        out[name] = factory
    return out


async def open_app(config: Config, client: ClientFactory | None = None) -> App:
    http = client(config.http) if client is not None else None
    app = build_app(config, secrets=Secrets(environ=SECRETS), http=http, sidecars=())
    if http is not None:
        app.parts.close_http = True  # the app owns the client either way
    await app.__aenter__()
    return app


async def drain(app: App) -> int:
    """Send everything due: the delivery driver in burst mode, as ``run --once`` does."""
    batch = await app.deliveries.burst()
    return sum(1 for o in batch if o.status.value == "sent")


# -- 1. the peer workloads ------------------------------------------------------------------------------


@dataclass
class PeerFigures:
    new_entries: float
    unchanged: float


async def peer_workloads(server: FakeServer, feeds: int, items: int, run: int) -> PeerFigures:
    """(a) one cycle that detects, records and posts feeds×items new entries; (b) the same feeds unchanged.

    Fair to the peers, which post every entry on their first run: the sources were
    baselined on empty feeds first (not timed), then the feeds were filled.
    """
    server.ctl("reset")  # forget idempotency keys: this run's fresh database posts the same entries again
    server.feeds(feeds, 0)
    app = await open_app(make_config(server, f"peers-{run}", sources=feeds))
    try:
        await app.run_once()  # baseline: empty feeds
        server.feeds(feeds, items)
        before = server.ctl("stats")["statuses"]
        started = time.perf_counter()
        report = await app.run_once()
        new_entries = time.perf_counter() - started
        sent = sum(1 for d in report.deliveries if d.status.value == "sent")
        posted = server.ctl("stats")["statuses"] - before
        rows = await app.store.deliveries(status="sent", limit=feeds * items + 1)
        if not sent == posted == len(rows) == feeds * items:
            raise RuntimeError(f"tagrelay posted {posted}, reported {sent}, recorded {len(rows)} "
                               f"of {feeds * items}")
        started = time.perf_counter()
        again = await app.run_once()
        unchanged = time.perf_counter() - started
        if again.deliveries or any(p.outcome != "not_modified" for p in again.polls):
            raise RuntimeError("the unchanged re-check found something new")
    finally:
        await app.aclose()
    return PeerFigures(new_entries, unchanged)


# -- 2. polling throughput --------------------------------------------------------------------------------


@dataclass
class PollFigures:
    polls_per_s: float
    cpu_ms_per_poll: float
    changed: int


class PollingBench:
    """1,000 sources, baselined; each round 10 % of the feeds change (one new post), the rest answer 304."""

    def __init__(self, server: FakeServer, sources: int) -> None:
        self.server = server
        self.sources = sources
        self.apps: dict[str, App] = {}

    async def setup(self, clients: dict[str, ClientFactory | None]) -> None:
        self.server.feeds(self.sources, 10)
        for i, (name, factory) in enumerate(clients.items()):
            app = await open_app(make_config(self.server, f"poll-{i}", sources=self.sources), factory)
            await app.polls.burst()  # baseline, not timed
            self.apps[name] = app

    async def round(self, name: str) -> PollFigures:
        app = self.apps[name]
        cpu, wall = time.process_time(), time.perf_counter()
        outcomes = await app.polls.burst()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        errors = [o for o in outcomes if o.outcome == "error"]
        if errors:
            raise RuntimeError(f"{len(errors)} polls failed: {errors[0].error}")
        changed = sum(1 for o in outcomes if o.outcome == "new")
        return PollFigures(len(outcomes) / wall, 1000 * cpu / len(outcomes), changed)

    async def close(self) -> None:
        for app in self.apps.values():
            await app.aclose()
        self.apps.clear()


# -- 3. delivery throughput -------------------------------------------------------------------------------


@dataclass
class DeliveryFigures:
    per_s: float
    cpu_ms_per_delivery: float
    deliveries: int


async def delivery_throughput(server: FakeServer, client: ClientFactory | None, feeds: int, items: int, run: int,
                              label: str) -> DeliveryFigures:
    """Queue feeds×items posts for Mastodon, Telegram and X (not timed), then time sending them all:
    one delivery at a time per channel; Telegram commits each claim before its send, Mastodon and X (their
    platforms deduplicate) claim groups and commit outcomes a few at a time (``bot.services.pipeline``)."""
    server.ctl("reset")
    server.feeds(feeds, 0)
    app = await open_app(make_config(server, f"deliver-{label}-{run}", sources=feeds, channels=ALL_CHANNELS),
                         client)
    try:
        await app.polls.burst()
        server.feeds(feeds, items)
        await app.polls.burst()
        expected = feeds * items * len(ALL_CHANNELS)
        cpu, wall = time.process_time(), time.perf_counter()
        sent = await drain(app)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if sent != expected:
            stuck = [d for d in await app.store.deliveries(limit=expected) if d.status != "sent"]
            detail = "; ".join(sorted({f"{d.channel}: {d.status} {d.last_error}" for d in stuck}))[:500]
            raise RuntimeError(f"{label}: sent {sent} of {expected} ({detail})")
    finally:
        await app.aclose()
    return DeliveryFigures(sent / wall, 1000 * cpu / sent, sent)


def clean_work() -> None:
    shutil.rmtree(WORK / "db", ignore_errors=True)
