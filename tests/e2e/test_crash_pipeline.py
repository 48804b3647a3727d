"""SIGKILL in the middle of a claimed group (pipelined delivery): a real ``tagrelay run`` subprocess sends posts
to the loopback Mastodon and X, whose platforms deduplicate, so each channel claims its deliveries in groups
and commits their outcomes a few at a time. The service is killed while a group is under way — when the K-th
status request arrives (dropped unhandled), or once the K-th status is made and its answer held — and
restarted at once, a few times; then everything left goes out and the service stops on SIGTERM.

Checked: each post exactly once on Mastodon and on X, oldest first, every delivery ``sent``; a kill left
several deliveries ``sending`` at once (a group, not one claim); the resends met the platform's
deduplication (Mastodon's idempotent replays). Kills are triggered by requests, never by timers.
``TAGRELAY_CRASH_SEED`` replays a run.
"""

from __future__ import annotations

import os
import random
import re
import signal
import threading
from collections import Counter
from pathlib import Path

import pytest

from tests.e2e.service import Db, Platforms, Service, platforms, wait_until, write_config
from tests.fakes.http import DROP, Request
from tests.fakes.mastodon_api import STATUSES
from tests.fakes.telegram_api import Fault

ROUNDS = 4
PER_ROUND = 60
SHUTDOWN_TIMEOUT = 2.0


def number(text: str) -> int | None:
    m = re.search(r"/post-(\d{4})/", text)
    return int(m[1]) if m else None


def publish(fakes: Platforms, first: int, count: int) -> list[int]:
    numbers = list(range(first, first + count))
    for n in numbers:  # tagged Iraq: Mastodon and X (not Telegram)
        fakes.archive.add_post(title=f"Post {n:04d}", tags=["Iraq"], slug=f"post-{n:04d}")
    return numbers


class StatusTrigger:
    """Acts on the K-th ``POST /api/v1/statuses`` from the moment it is armed (in the fake's thread)."""

    def __init__(self, fakes: Platforms, service: Service, k: int, *, hold: bool) -> None:
        self.fakes = fakes
        self.service = service
        self.k = k
        self.hold = hold
        self.count = 0
        self.fault: Fault | None = None
        self.reached = threading.Event()
        fakes.mastodon.on_request = self._on_request

    def _on_request(self, request: Request) -> object:
        if request.method != "POST" or request.path != STATUSES:
            return None
        self.count += 1
        if self.count != self.k:
            return None
        if self.hold:  # the status is made, its answer held: killed between "made" and "recorded"
            self.fault = Fault(hold=threading.Event(), process=True, match=STATUSES)
            self.fakes.mastodon.add_fault(self.fault)
            self.reached.set()
            return None
        self.service.kill_now()  # killed as the request arrives: claimed, never made
        self.reached.set()
        return DROP

    def disarm(self) -> None:
        self.fakes.mastodon.on_request = None
        if self.fault is not None and self.fault.hold is not None:
            self.fault.hold.set()


def made_and_held(fakes: Platforms, trigger: StatusTrigger) -> bool:
    """Wait until the held status is made (the fault taken, every request to the fake handled)."""
    fake = fakes.mastodon
    return fake.wait_for(lambda: trigger.fault is not None and trigger.fault.times == 0
                         and fake.handled == len(fake.requests), 30)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sigkill_mid_group_posts_each_post_once_and_loses_none(tmp_path: Path) -> None:
    seed = int(os.environ.get("TAGRELAY_CRASH_SEED") or random.SystemRandom().randrange(2**32))
    print(f"\npipelined crash test seed {seed}")
    rng = random.Random(seed)
    with platforms() as fakes:
        fakes.archive.add_post(title="Before", tags=["Iraq"], slug="before-0")  # the baseline: never sent
        config = write_config(tmp_path, fakes, shutdown_timeout=SHUTDOWN_TIMEOUT)
        db = Db(config)
        posts: list[int] = []
        in_flight: list[int] = []
        for rnd in range(ROUNDS):
            service = Service(config).start()
            try:
                if rnd == 0:
                    wait_until(db.baseline_done, 30, "the first poll (the baseline)")
                hold = rnd % 2 == 1
                trigger = StatusTrigger(fakes, service, rng.randint(18, 45), hold=hold)
                try:
                    posts += publish(fakes, len(posts) + 1, PER_ROUND)
                    assert trigger.reached.wait(60), f"round {rnd} (seed {seed}): never reached; {service.tail()}"
                    if hold:  # the status is made and its answer held: nothing else is in flight to Mastodon
                        assert made_and_held(fakes, trigger), service.tail()
                        service.kill_now()
                    assert service.wait(60) == -signal.SIGKILL, service.tail()
                finally:
                    trigger.disarm()
            finally:
                service.stop()
            in_flight.append(sum(1 for _, chan, _, st, _ in db.deliveries() if chan == "masto" and st == "sending"))

        service = Service(config).start()  # the last run, at once: everything left goes out, then SIGTERM
        try:
            wait_until(lambda: {st for _, chan, _, st, _ in db.deliveries() if chan in ("masto", "x")} == {"sent"}
                       and len(db.deliveries()) == 2 * len(posts), 90, f"everything to be sent (seed {seed})")
            service.signal(signal.SIGTERM)
            assert service.wait(SHUTDOWN_TIMEOUT + 15) == 0, service.tail()
        finally:
            service.stop()

        summary = f"seed={seed} in_flight_at_kills={in_flight} replays={fakes.mastodon.idempotent_replays}"
        for chan in ("masto", "x"):
            arrived = [number(text) for text in fakes.posted(chan)]
            twice = sorted(n for n, c in Counter(arrived).items() if c > 1)
            assert twice == [], f"{chan} got posts twice: {twice} ({summary})"
            assert arrived == posts, f"{chan}: not every post once, oldest first ({summary})"
        assert max(in_flight) > 1, f"no kill found a group claimed ({summary})"
        assert {st for _, _, _, st, _ in db.deliveries()} == {"sent"}, summary
        print(f"pipelined crash test: {summary}")
