"""A source's ``Retry-After`` on real wire: a 429/503 sets the next poll, capped at ``max_backoff``.

Loopback archive, a real SQLite store and the fake clock; the poller's own skip decides.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from bot.clock import FakeClock
from tests.source_support import Harness, Site, harness_builder, running_site


@pytest.fixture
def site() -> Iterator[Site]:
    yield from running_site()


@pytest.fixture
def harness_for(tmp_path: Path, clock: FakeClock) -> Callable[..., Harness]:
    return harness_builder(tmp_path, clock)


# --- Retry-After ----------------------------------------------------------------------


async def first_failure(h: Harness, site: Site, status: int, retry_after: str) -> tuple[float, str]:
    """Baseline, then one failing poll; the seconds until the next poll and the error."""
    await h.app.run_once()
    site.fail_next(status, path="/feed/", retry_after=retry_after)
    h.clock.advance(120)
    report = await h.app.run_once()
    assert [p.outcome for p in report.polls] == ["error"]
    outcome = report.polls[0]
    assert outcome.next_poll_at is not None
    state = await h.app.store.source("archive")
    assert state.next_poll_at == outcome.next_poll_at
    return (outcome.next_poll_at - h.clock.now()).total_seconds(), outcome.error or ""


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_sets_the_next_poll(site: Site, harness_for: Callable[..., Harness],
                                              status: int) -> None:
    h = harness_for(site.url + "/feed/", kind="rss", interval=2)
    async with h.app:
        wait, error = await first_failure(h, site, status, "120")
        assert 120 <= wait <= 121
        assert "retry after 120s" in error
        h.clock.advance(60)
        assert (await h.app.poller.poll_source("archive")).outcome == "skipped"
        requests = len(site.seen("GET", "/feed/"))
        h.clock.advance(61)
        assert (await h.app.poller.poll_source("archive")).outcome in ("not_modified", "unchanged")
        assert len(site.seen("GET", "/feed/")) == requests + 1


async def test_an_http_date_retry_after(site: Site, harness_for: Callable[..., Harness]) -> None:
    h = harness_for(site.url + "/feed/", kind="rss", interval=2)
    async with h.app:
        when = datetime.now(UTC) + timedelta(minutes=10)  # the server's clock is the real one
        wait, _ = await first_failure(h, site, 503, format_datetime(when, usegmt=True))
        assert 580 <= wait <= 601


@pytest.mark.parametrize("value", ["99999999", "9" * 400, "Fri, 31 Dec 9999 23:59:59 GMT"])
async def test_a_huge_retry_after_is_capped_at_max_backoff(site: Site, harness_for: Callable[..., Harness],
                                                           value: str) -> None:
    h = harness_for(site.url + "/feed/", kind="rss", interval=2, max_backoff="1h")
    async with h.app:
        wait, error = await first_failure(h, site, 429, value)
        assert wait == pytest.approx(3600, abs=1)
        assert "service.max_backoff" in error
        assert len(error) < 400


@pytest.mark.parametrize("value", ["soon", "-5", "nan", "inf", "1e400", "0x20", "1_000", "Mon, 99 Foo"])
async def test_a_garbage_retry_after_leaves_the_normal_backoff(site: Site, harness_for: Callable[..., Harness],
                                                               value: str) -> None:
    h = harness_for(site.url + "/feed/", kind="rss", interval=60)
    async with h.app:
        wait, _ = await first_failure(h, site, 429, value)
        assert 54 <= wait <= 66  # the first failure's backoff: the interval, jittered
