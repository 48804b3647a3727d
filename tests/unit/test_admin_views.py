"""The state words shared by the CLI and the admin bot (bot.admin.views): each rule, for every input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from hypothesis import given
from hypothesis import strategies as st

from bot.admin.views import (
    channel_listing,
    channel_state,
    source_health,
    source_listing,
    status_view,
)
from bot.domain.state import ChannelCounts, HoldView, SourceState
from bot.services.reports import ChannelStatus, SourceStatus, StatusReport
from bot.sources.base import CacheState

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
outcomes = st.sampled_from([None, "baseline", "new", "unchanged", "error", "held"])
maybe_time = st.one_of(st.none(), st.integers(-7200, 7200).map(lambda s: NOW + timedelta(seconds=s)))
counts = st.dictionaries(st.sampled_from(["queued", "failed", "sent", "dead", "unknown", "sending"]),
                         st.integers(0, 10_000))


def state(name: str = "archive", *, last_poll_at: datetime | None = None, last_outcome: str | None = None,
          last_error: str | None = None, resolved: str | None = None, failures: int = 0) -> SourceState:
    return SourceState(id=1, name=name, url="https://a.example/feed/", kind="auto",
                       cache=CacheState(resolved_kind=resolved), baseline_done=True, last_poll_at=last_poll_at,
                       last_success_at=None, last_outcome=last_outcome, last_error=last_error,
                       consecutive_failures=failures, next_poll_at=None, lease_owner=None, post_count=7)


def hold(source: str = "archive") -> HoldView:
    return HoldView(source=source, posts=50, deliveries=50, since=NOW, usual_new=2.0, channels=("tg",))


def channel(*, paused: bool = False, hold_until: datetime | None = None, k: dict[str, int] | None = None,
            reason: str | None = None) -> ChannelCounts:
    return ChannelCounts(channel="tg", platform="telegram", paused=paused, paused_reason=reason,
                         hold_until=hold_until, counts=k or {}, oldest_queued=None, sent_today=3)


@given(problem=st.one_of(st.none(), st.text(min_size=1)), held=st.booleans(), polled=maybe_time)
def test_a_source_is_error_before_held_before_ok_or_not_polled(problem: str | None, held: bool,
                                                                polled: datetime | None) -> None:
    status = SourceStatus(state(last_poll_at=polled), None, problem, hold=hold() if held else None)
    expected = ("ERROR" if problem else "BURST HELD" if held else "ok" if polled is not None else "not polled yet")
    assert source_health(status) == expected


@given(paused=st.booleans(), hold_until=maybe_time, k=counts)
def test_a_channel_is_paused_before_held_before_active(paused: bool, hold_until: datetime | None,
                                                       k: dict[str, int]) -> None:
    word = channel_state(channel(paused=paused, hold_until=hold_until, k=k), NOW)
    if paused:
        assert word == "PAUSED"
    elif hold_until is not None and hold_until > NOW:
        assert word == "held"
    else:
        assert word == "active"  # a rate limit that ended (or none), whatever the queue holds


@given(k=counts, paused=st.booleans())
def test_the_status_view_carries_the_counts_and_the_problems(k: dict[str, int], paused: bool) -> None:
    report = StatusReport(now=NOW, storage="sqlite", holder=None,
                          sources=[SourceStatus(state(last_poll_at=NOW, last_outcome="error", last_error="boom",
                                                      failures=2), NOW, "2 failed poll(s) in a row: boom")],
                          channels=[ChannelStatus(channel(paused=paused, k=k, reason="maint"),
                                                  "PAUSED: maint" if paused else None)])
    view = status_view(report)
    (src,) = view.sources
    assert (src.name, src.health, src.last_error, src.posts) == ("archive", "ERROR", "boom", 7)
    (chan,) = view.channels
    assert (chan.queued, chan.retrying, chan.sent, chan.dead, chan.unknown) == tuple(
        k.get(key, 0) for key in ("queued", "failed", "sent", "dead", "unknown"))
    assert chan.failures == k.get("dead", 0) + k.get("unknown", 0) and chan.sent_today == 3
    assert chan.state == ("PAUSED" if paused else "active")
    assert view.problems == report.problems
    assert view.headline == ("2 problems" if paused else "1 problem")


def test_the_headline_is_ok_without_problems() -> None:
    report = StatusReport(now=NOW, storage="sqlite", holder=None, sources=[], channels=[])
    assert status_view(report).headline == "OK"


def test_listings_show_what_auto_resolved_to_and_only_a_current_error() -> None:
    configured = [SimpleNamespace(name="archive", kind="auto", url="https://a.example/feed/", interval=60.0,
                                  enabled=True),
                  SimpleNamespace(name="old", kind="rss", url="https://b.example/", interval=3600.0, enabled=False),
                  SimpleNamespace(name="new", kind="rss", url="https://c.example/", interval=60.0, enabled=True)]
    states = [state("archive", resolved="wordpress", last_outcome="new", last_error="earlier failure"),
              state("old", last_outcome="error", last_error="refused", failures=4)]
    archive, old, new = source_listing(configured, states)  # type: ignore[arg-type]
    assert (archive.kind, archive.failing, archive.posts) == ("auto→wordpress", None, 7)
    assert (old.kind, old.failing, old.failures, old.enabled) == ("rss", "refused", 4, False)
    assert (new.posts, new.last_poll_at, new.last_outcome) == (0, None, None)  # configured, never polled


@given(k=counts, paused=st.booleans(), known=st.booleans())
def test_a_channel_listing_waits_for_queued_and_retrying(k: dict[str, int], paused: bool, known: bool) -> None:
    opts = SimpleNamespace(name="tg", platform="telegram")
    (row,) = channel_listing([(opts, channel(paused=paused, k=k, reason="maint") if known else None)])  # type: ignore[list-item]
    if not known:  # configured, not in the database yet
        assert (row.state, row.waiting, row.sent) == ("active", 0, 0)
        return
    assert row.waiting == k.get("queued", 0) + k.get("failed", 0) and row.sent == k.get("sent", 0)
    assert row.state == ("PAUSED" if paused else "active")
    assert row.paused_reason == "maint"
