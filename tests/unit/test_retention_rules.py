"""The retention rules (``bot.domain.retention``), pure: nothing pending is ever selected, and a post's identity
is never dropped while its source's listing could still contain it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.domain.models import DeliveryStatus
from bot.domain.retention import (
    PENDING,
    RENDERED,
    PruneCounts,
    Retention,
    content_may_go,
    cutoffs,
    delivery_may_go,
    identity_may_go,
    parse_detail,
    seen_refresh,
)
from bot.errors import ConfigError
from bot.settings import build_config

NOW = datetime(2027, 6, 1, tzinfo=UTC)
MINUTE, DAY = 60.0, 86400.0

periods = st.floats(min_value=MINUTE, max_value=100 * 365 * DAY)
offsets = st.floats(min_value=-400 * DAY, max_value=400 * DAY)
statuses = st.lists(st.sampled_from(list(DeliveryStatus)), max_size=6)
retentions = st.builds(Retention, content=periods, deliveries=periods, audit=periods, identity=periods)


def at(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


@given(retentions, offsets, statuses, st.booleans())
def test_a_post_that_a_delivery_may_still_render_keeps_its_content(
        retention: Retention, seen: float, kinds: list[DeliveryStatus], pruned: bool) -> None:
    cut = cutoffs(retention, NOW)
    if content_may_go(at(seen), pruned, kinds, cut):
        assert not pruned and all(k in RENDERED for k in kinds)
        assert at(seen) < NOW - timedelta(seconds=retention.content)
        assert not any(k in PENDING or k in (DeliveryStatus.DEAD, DeliveryStatus.UNKNOWN) for k in kinds)


@given(retentions, st.sampled_from(list(DeliveryStatus)), offsets, st.floats(min_value=0, max_value=30 * DAY),
       st.booleans())
def test_a_pending_delivery_is_never_removed_and_a_sent_one_outlives_the_windows(
        retention: Retention, status: DeliveryStatus, updated: float, window: float, sibling: bool) -> None:
    cut = cutoffs(retention, NOW, longest_window=window)
    if delivery_may_go(status, at(updated), cut, sibling_pending=sibling):
        assert status not in PENDING and not sibling  # an edit or deletion still to send keeps its message
        assert NOW - at(updated) > timedelta(seconds=max(retention.deliveries, window))
    if status in PENDING:
        assert not delivery_may_go(status, at(-1e9), cut)


@given(retentions, offsets, offsets, st.sampled_from(["rss", "jsonfeed", "wordpress", "auto"]),
       st.integers(min_value=0, max_value=3))
def test_an_identity_goes_only_when_the_source_listed_without_it_for_longer_than_identity(
        retention: Retention, seen: float, listed: float, kind: str, deliveries: int) -> None:
    cut = cutoffs(retention, NOW)
    if identity_may_go(at(seen), at(listed), kind, deliveries, cut):
        assert deliveries == 0 and kind != "wordpress"
        assert at(listed) - at(seen) > timedelta(seconds=retention.identity)


@given(retentions, st.lists(offsets, min_size=1, max_size=8), st.floats(min_value=0, max_value=1))
def test_a_post_on_the_latest_listing_never_loses_its_identity(
        retention: Retention, polls: list[float], lag: float) -> None:
    """Whatever the polls' times: a poll refreshes ``last_seen_at`` only when older than ``seen_refresh``
    (``lag``: how far behind it was left), and moves ``listed_at``; the post stays."""
    refresh = seen_refresh(retention.identity)
    last_seen = at(min(polls)) - timedelta(seconds=refresh * lag)  # as stale as a refresh can leave it
    cut = cutoffs(retention, NOW)
    for poll in sorted(polls):
        when = at(poll)
        if last_seen < when - timedelta(seconds=refresh):
            last_seen = when
        assert not identity_may_go(last_seen, when, "rss", 0, cut)  # listed at ``when``, showing the post


def test_a_source_that_never_listed_or_lists_changes_only_keeps_every_identity() -> None:
    cut = cutoffs(Retention(identity=MINUTE), NOW)
    assert not identity_may_go(at(-400 * DAY), None, "rss", 0, cut)
    assert not identity_may_go(at(-400 * DAY), NOW, "wordpress", 0, cut)
    assert not identity_may_go(None, NOW, "rss", 0, cut)
    assert identity_may_go(at(-400 * DAY), NOW, "rss", 0, cut)


def test_the_refresh_is_daily_and_below_the_identity_period() -> None:
    assert seen_refresh(365 * DAY) == DAY
    assert seen_refresh(MINUTE) == MINUTE / 2


@given(st.builds(PruneCounts, content=st.integers(0, 10**9), deliveries=st.integers(0, 10**9),
                 rule_drops=st.integers(0, 10**9), audit=st.integers(0, 10**9), identities=st.integers(0, 10**9)))
def test_the_audit_line_reads_back(counts: PruneCounts) -> None:
    assert parse_detail(counts.detail()) == counts


def _config(retention: dict[str, object]) -> dict[str, object]:
    return {"storage": {"url": "sqlite+aiosqlite:///x.db", "retention": retention}}


def test_the_settings_take_the_documented_keys_and_defaults() -> None:
    default = build_config({}, {}).storage.retention
    assert (default.enabled, default.content, default.deliveries, default.audit, default.identity, default.every,
            default.batch) == (True, 30 * DAY, 180 * DAY, 365 * DAY, 365 * DAY, 3600.0, 50)
    custom = build_config(_config({"enabled": False, "content": "1m", "deliveries": "2h", "audit": "3d",
                                   "identity": "4d", "every": "10m", "batch": 10000}), {}).storage.retention
    assert (custom.enabled, custom.content, custom.deliveries, custom.audit, custom.identity, custom.every,
            custom.batch) == (False, 60.0, 7200.0, 3 * DAY, 4 * DAY, 600.0, 10000)


@pytest.mark.parametrize(("key", "value"), [("content", "30s"), ("identity", 1e12), ("every", "0s"), ("batch", 0),
                                            ("batch", 10001), ("audit", "soon"), ("deletes", "1d")])
def test_absurd_settings_are_refused_naming_the_key(key: str, value: object) -> None:
    with pytest.raises(ConfigError) as info:
        build_config(_config({key: value}), {})
    assert f"storage.retention.{key}" in str(info.value)


def test_a_secret_pasted_into_a_retention_key_is_not_echoed() -> None:
    token = "ghp_" + "A1b2C3d4" * 5
    for key in ("content", "every", "batch"):
        with pytest.raises(ConfigError) as info:
            build_config(_config({key: token}), {})
        assert token not in str(info.value) and token[:12] not in str(info.value)


def test_status_says_the_size_and_what_the_last_prune_removed() -> None:
    from bot.admin.views import database_text
    from bot.domain.retention import PruneRecord

    last = PruneRecord(at=NOW - timedelta(minutes=12), counts=PruneCounts(content=812, audit=3), actor="tagrelay")
    assert database_text(48_234_496, last, NOW) == "46.0 MiB; last prune 12m ago: content 812, audit 3"
    assert database_text(None, PruneRecord(NOW, PruneCounts(), "me@cli"), NOW) == \
        "last prune 0s ago: nothing to remove"
    assert database_text(None, None, NOW) == ""


def test_a_poll_plan_names_what_its_listing_showed_known_by_identity_or_by_link() -> None:
    from bot.domain.detect import normalise
    from bot.domain.models import ParsedPost
    from bot.domain.plan import PollFacts, plan_poll

    posts = normalise("s", [ParsedPost(title="Known", url="https://a.example/1/", guid="g1"),
                            ParsedPost(title="Churned", url="https://a.example/2/", guid="g2-new"),
                            ParsedPost(title="New", url="https://a.example/3/", guid="g3")])
    facts = PollFacts(known_keys={"g1", "g2-old"}, known_links={posts[1].link_key or ""})
    plan = plan_poll("s", posts, facts, first_poll=False)
    assert plan.seen_keys == ("g1",) and plan.seen_links == (posts[1].link_key,)
    assert [p.key for p in plan.new_posts] == ["g3"]
