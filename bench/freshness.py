"""Phase 7, freshness: how long a post takes from its publication to its delivery on a platform, with and
without push.

A real ``tagrelay run`` in-process (``build_app`` with the health listener and its push endpoints,
``run_forever``, the system clock, pacing on) follows one feed of the bench fake, polled every
``INTERVAL`` seconds (the usual 10 minutes scaled down, so the phase takes minutes), and sends to the
fake Mastodon. ``POSTS`` posts are published one by one, ``SPACING`` seconds apart (random, seeded): the
feed gets the post, and with push the signed ``POST /hooks/<source>`` follows at once, as the WordPress
plugin sends it. The latency of a post is the time from its publication to the status's arrival at the
fake (its own clock, the same wall clock), for every post; p50 and p95 are taken over the ``POSTS``.
Without push the latency is the wait for the next poll (up to ``INTERVAL``) plus the same work, so it
scales with the interval; with push it does not depend on the interval at all.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

from bench.common import FakeServer
from bench.ours import SECRETS, raw_config, sqlite_url
from bot.app import App
from bot.bootstrap import build_app
from bot.domain.push import SIGNATURE_HEADER, TIMESTAMP_HEADER, hook_signature
from bot.health import HealthServer
from bot.settings import Secrets, build_config
from bot.sidecars import load_push_secrets

POSTS = 50
INTERVAL = 10.0
"""Seconds between polls (both runs): the usual 10 minutes, scaled down."""
SPACING = (0.5, 1.5)
"""Seconds between two publications (uniform)."""
FEED_ITEMS = 30
"""Items in the feed: more than the posts one interval can bring at this pace, so none scrolls off unseen
(a 10-item feed polled every 10 minutes loses posts when more than 10 come in between: push or not)."""
PUSH_SECRET = "bench-push-secret-0123456789"  # noqa: S105 - a fake for the loopback fake
DEADLINE = 60.0


@dataclass
class Freshness:
    p50: float
    p95: float
    worst: float
    polls: int


def percentile(values: list[float], share: float) -> float:
    """The ``share`` quantile (0-1), interpolated between the closest ranks."""
    ordered = sorted(values)
    return float(statistics.quantiles(ordered, n=100, method="inclusive")[round(share * 100) - 1]) \
        if len(ordered) > 1 else ordered[0]


async def _ctl(server: FakeServer, action: str, **params: object) -> dict[str, object]:
    return await asyncio.to_thread(server.ctl, action, **params)


async def freshness(server: FakeServer, *, push: bool, run: int) -> Freshness:
    """Publish ``POSTS`` posts and measure each one's way to the fake Mastodon (see the module docstring)."""
    await _ctl(server, "reset")
    await _ctl(server, "feeds", count=1, items=FEED_ITEMS)
    raw = raw_config(server.url, sqlite_url(f"fresh-{'push' if push else 'poll'}-{run}"), sources=1,
                     channels=("masto",), interval=f"{INTERVAL:g}s")
    raw["delivery"]["pacing"] = True
    raw["health"] = {"host": "127.0.0.1", "port": 0}
    raw["sources"][0]["push_secret_env"] = "BENCH_PUSH_SECRET"  # noqa: S105 - a variable name
    secrets = Secrets(environ={**SECRETS, "BENCH_PUSH_SECRET": PUSH_SECRET})
    config = build_config(raw)
    health = HealthServer(config.health)
    app = build_app(config, secrets=secrets, sidecars=[health], push_secrets=load_push_secrets(config, secrets))
    rng = random.Random(run)
    published: dict[int, float] = {}
    async with app:
        task = asyncio.create_task(app.run_forever())
        try:
            await _until(lambda: app.running and health.port is not None, "the service")
            await _until(lambda: _baselined(app), "the baseline poll")
            polls_before = int(app.metrics.polls.labels("f0", "new")._value.get())
            async with httpx.AsyncClient(base_url=health.url, timeout=10) as client:
                for _ in range(POSTS):
                    await asyncio.sleep(rng.uniform(*SPACING))  # the workload's own pace, not a wait for tagrelay
                    started = time.time()
                    answer = await _ctl(server, "change", feed=0)
                    newest = answer["newest"]
                    assert isinstance(newest, list)
                    published[int(newest[0])] = started
                    if push:
                        body = f'{{"event":"publish","nonce":"{rng.getrandbits(64):016x}"}}'.encode()
                        stamp = str(int(time.time()))
                        sent = await client.post("/hooks/f0", content=body, headers={
                            TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: hook_signature(
                                PUSH_SECRET.encode(), stamp, "f0", body)})
                        if sent.status_code != 202:
                            raise RuntimeError(f"the hook answered {sent.status_code}: {sent.text}")
            arrivals = await _arrivals(server, len(published))
            polls = int(app.metrics.polls.labels("f0", "new")._value.get()) - polls_before
        finally:
            app.stop_event.set()
            await asyncio.wait_for(task, DEADLINE)
    latencies = [arrivals[post] - at for post, at in published.items()]
    return Freshness(percentile(latencies, 0.5), percentile(latencies, 0.95), max(latencies), polls)


async def _baselined(app: App) -> bool:
    return (await app.store.source("f0")).baseline_done and not app.polls.in_flight


async def _until(probe: Callable[[], bool | Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while True:
        result = probe()
        if result if isinstance(result, bool) else await result:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def _arrivals(server: FakeServer, expected: int) -> dict[int, float]:
    """Each post's arrival at the fake Mastodon, once all ``expected`` have arrived."""
    deadline = time.monotonic() + DEADLINE + INTERVAL
    while True:
        listed = (await _ctl(server, "arrivals"))["arrivals"]
        assert isinstance(listed, list)
        found = {int(post): float(at) for at, post in listed if post is not None}
        if len(found) >= expected:
            return found
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(found)} of {expected} posts reached the fake Mastodon")
        await asyncio.sleep(0.1)
