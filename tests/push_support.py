"""The running service with its push endpoints, for the push tests: ``build_app`` with the health listener
(port 0) as the one sidecar, the push secrets loaded as ``tagrelay run`` loads them, ``run_forever`` in a
task; plus the hook's request format, built here exactly as the WordPress plugin builds it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from bot.app import App
from bot.bootstrap import build_app, validate_service_config
from bot.clock import SystemClock
from bot.domain.push import SIGNATURE_HEADER, TIMESTAMP_HEADER, hook_signature
from bot.health import HealthServer
from bot.publishers.api import Clock, PublisherPlugin
from bot.settings import Config, Secrets
from bot.sidecars import load_push_secrets

DEADLINE = 20.0


async def eventually(probe: Callable[[], Awaitable[bool]] | Callable[[], bool], what: str,
                     deadline: float = DEADLINE) -> float:
    """Poll ``probe`` until it is true; the seconds it took. Fails at the deadline (no fixed sleeps)."""
    started = time.monotonic()
    while True:
        result = probe()
        if not isinstance(result, bool):
            result = await result
        if result:
            return time.monotonic() - started
        if time.monotonic() - started > deadline:
            raise AssertionError(f"timed out after {deadline:.0f}s waiting for {what}")
        await asyncio.sleep(0.01)


def signed(secret: str, source: str, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
    """The hook's headers for ``body`` (what contrib/wordpress/tagrelay-push.php sends)."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    return {TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: hook_signature(secret.encode(), stamp, source, body),
            "Content-Type": "application/json"}


def payload(event: str = "publish", url: str = "https://archive.example.org/a-post/", **more: Any) -> bytes:
    return json.dumps({"event": event, "post_id": 3001, "type": "post", "url": url, **more}).encode()


@dataclass
class Running:
    app: App
    health: HealthServer
    client: httpx.AsyncClient
    task: asyncio.Task[None]

    @property
    def url(self) -> str:
        return self.health.url

    async def hook(self, source: str, body: bytes = b"{}", *, secret: str, timestamp: int | None = None,
                   headers: Mapping[str, str] | None = None) -> httpx.Response:
        sent = {**signed(secret, source, body, timestamp=timestamp), **(headers or {})}
        return await self.client.post(f"/hooks/{source}", content=body, headers=sent)


def make_config(raw: Mapping[str, Any], secrets: Secrets,
                plugins: Mapping[str, PublisherPlugin] | None = None) -> Config:
    return validate_service_config(raw, path=None, secrets=secrets, plugins=plugins)


@contextlib.asynccontextmanager
async def serving(config: Config, secrets: Secrets, *, clock: Clock | None = None,
                  plugins: dict[str, PublisherPlugin] | None = None) -> AsyncIterator[Running]:
    """The service, running, with its health listener (and push endpoints) on a free port."""
    health = HealthServer(config.health)
    app = build_app(config, secrets=secrets, clock=clock or SystemClock(), sidecars=[health], plugins=plugins,
                    push_secrets=load_push_secrets(config, secrets))
    async with app:
        task = asyncio.create_task(app.run_forever())
        try:
            await eventually(lambda: task.done() or (app.running and health.port is not None), "the service")
            if task.done():
                task.result()
            async with httpx.AsyncClient(base_url=health.url, timeout=DEADLINE) as client:
                yield Running(app, health, client, task)
        finally:
            app.stop_event.set()
            await asyncio.wait_for(task, DEADLINE)
