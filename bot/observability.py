"""Prometheus metrics, one registry per process (not the global one, so tests stay isolated).

Services call the small methods below; the health server's ``/metrics`` renders
``registry`` in the Prometheus text format 0.0.4 (``CONTENT_TYPE``).

Exported series (counters get the ``_total`` suffix on the wire)::

    tagrelay_info{version}                                    1, carries the version
    tagrelay_polls_total{source, outcome}                      baseline|new|held|unchanged|not_modified|error
    tagrelay_source_last_poll_timestamp_seconds{source}        any outcome
    tagrelay_source_last_success_timestamp_seconds{source}     any outcome but error
    tagrelay_new_posts_total{source}
    tagrelay_deliveries_total{platform, channel, status}       sent|queued|failed|dead|unknown
    tagrelay_delivery_retries_total{platform, channel}
    tagrelay_changes_total{platform, channel, kind, status}    edits and deletions: sent|failed|dead|queued
    tagrelay_rate_limited_total{platform, channel}             429 answers
    tagrelay_queue_depth{channel}                              refreshed on every scrape
    tagrelay_oldest_queued_age_seconds{channel}                refreshed on every scrape
    tagrelay_publication_to_delivery_seconds{platform}         histogram
    tagrelay_budget_spent_usd{budget, period}                  spending budgets: reserved in the current window
    tagrelay_budget_limit_usd{budget, period}                  the budget of the window
    tagrelay_budget_remaining_usd{budget, period}              what is left (refreshed on every scrape)
    tagrelay_budget_held_total{platform, channel}              posts held because a budget was reached
    tagrelay_push_total{via, outcome}                          hook|websub|follow_up ×
                                                               queued|due|held (a poll requested) or why refused
    process_*                                                  CPU, memory, open fds, start time

The share of conditional GETs answered 304 is derived, not stored (a stored
ratio cannot be aggregated over time or sources)::

    sum by (source) (rate(tagrelay_polls_total{outcome="not_modified"}[1h]))
      / sum by (source) (rate(tagrelay_polls_total{outcome!="error"}[1h]))

``docs/operations.md`` lists more queries and alert rules.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from bot import __version__

LATENCY_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 3 * 3600, 12 * 3600, 86400, float("inf"))

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
"""``text/plain; version=0.0.4; charset=utf-8``: what ``render`` produces."""

POLL_OUTCOMES = ("baseline", "new", "held", "unchanged", "not_modified", "error")


class Metrics:
    """The service's counters, gauges and histograms.

    ``wall_clock`` feeds the ``*_timestamp_seconds`` gauges (Unix seconds); tests
    may pass a fixed one.
    """

    def __init__(self, *, wall_clock: Callable[[], float] = time.time) -> None:
        self._wall_clock = wall_clock
        self._poll_series: dict[tuple[str, str], tuple[Counter, Gauge, Gauge | None]] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        ProcessCollector(registry=r)
        self.info = Gauge("tagrelay_info", "Always 1; the labels describe this tagrelay", ["version"], registry=r)
        self.info.labels(__version__).set(1)
        self.polls = Counter("tagrelay_polls", "Polls by source and outcome "
                             "(baseline, new, held, unchanged, not_modified, error)", ["source", "outcome"], registry=r)
        self.last_poll = Gauge("tagrelay_source_last_poll_timestamp_seconds",
                               "Unix time of the source's last poll, whatever its outcome", ["source"], registry=r)
        self.last_success = Gauge("tagrelay_source_last_success_timestamp_seconds",
                                  "Unix time of the source's last poll that did not fail", ["source"], registry=r)
        self.posts = Counter("tagrelay_new_posts", "New posts detected", ["source"], registry=r)
        self.deliveries = Counter("tagrelay_deliveries", "Delivery outcomes by platform, channel and status",
                                  ["platform", "channel", "status"], registry=r)
        self.changes = Counter("tagrelay_changes", "Edit and deletion outcomes by platform, channel, kind "
                               "(edit, delete) and status", ["platform", "channel", "kind", "status"], registry=r)
        self.retries = Counter("tagrelay_delivery_retries", "Deliveries scheduled for another attempt",
                               ["platform", "channel"], registry=r)
        self.rate_limits = Counter("tagrelay_rate_limited", "429 answers from platforms",
                                   ["platform", "channel"], registry=r)
        self.queue_depth = Gauge("tagrelay_queue_depth", "Deliveries waiting (queued or failed-retryable)",
                                 ["channel"], registry=r)
        self.oldest_age = Gauge("tagrelay_oldest_queued_age_seconds", "Age of the oldest waiting delivery",
                                ["channel"], registry=r)
        self.budget_spent = Gauge("tagrelay_budget_spent_usd", "US dollars reserved or charged in the budget's "
                                  "current window (budget: channel:NAME or account:ACCOUNT; period: day, month)",
                                  ["budget", "period"], registry=r)
        self.budget_limit = Gauge("tagrelay_budget_limit_usd", "The budget of the window in US dollars",
                                  ["budget", "period"], registry=r)
        self.budget_left = Gauge("tagrelay_budget_remaining_usd", "US dollars left in the budget's current window",
                                 ["budget", "period"], registry=r)
        self.budget_held = Counter("tagrelay_budget_held", "Posts held because a spending budget was reached",
                                   ["platform", "channel"], registry=r)
        self.pushes = Counter("tagrelay_push", "Pushes (hook calls, WebSub notifications, follow-up polls) by "
                              "what came of them: queued, due, held, or why they were refused", ["via", "outcome"],
                              registry=r)
        self.latency = Histogram("tagrelay_publication_to_delivery_seconds",
                                 "Time from a post's publication to its delivery", ["platform"],
                                 buckets=LATENCY_BUCKETS, registry=r)

    def source_configured(self, source: str) -> None:
        """Create the source's poll series at zero, so ratios and ``increase()`` work from the first poll."""
        for outcome in POLL_OUTCOMES:
            self.polls.labels(source, outcome)
        self.posts.labels(source)

    def poll(self, source: str, outcome: str) -> None:
        # the series of a (source, outcome) are looked up once: a poll answered 304 is counted thousands of
        # times a minute at scale, and ``labels()`` takes a lock and builds its key three times a poll
        series = self._poll_series.get((source, outcome))
        if series is None:
            series = self._poll_series[(source, outcome)] = (
                self.polls.labels(source, outcome), self.last_poll.labels(source),
                None if outcome == "error" else self.last_success.labels(source))
        count, last_poll, last_success = series
        count.inc()
        now = self._wall_clock()
        last_poll.set(now)
        if last_success is not None:
            last_success.set(now)

    def new_posts(self, source: str, count: int) -> None:
        if count:
            self.posts.labels(source).inc(count)

    def delivery(self, platform: str, channel: str, status: str) -> None:
        self.deliveries.labels(platform, channel, status).inc()

    def change(self, platform: str, channel: str, kind: str, status: str) -> None:
        self.changes.labels(platform, channel, kind, status).inc()

    def retry(self, platform: str, channel: str) -> None:
        self.retries.labels(platform, channel).inc()

    def rate_limited(self, platform: str, channel: str) -> None:
        self.rate_limits.labels(platform, channel).inc()

    def delivered_after(self, platform: str, seconds: float) -> None:
        self.latency.labels(platform).observe(max(0.0, seconds))

    def push(self, via: str, outcome: str) -> None:
        self.pushes.labels(via, outcome).inc()

    def set_queue(self, channel: str, depth: int, oldest_age: float) -> None:
        self.queue_depth.labels(channel).set(depth)
        self.oldest_age.labels(channel).set(oldest_age)

    def set_budget(self, budget: str, period: str, spent: int, limit: int) -> None:
        """A budget's window, in micro-dollars (shown in dollars)."""
        self.budget_spent.labels(budget, period).set(spent / 1_000_000)
        self.budget_limit.labels(budget, period).set(limit / 1_000_000)
        self.budget_left.labels(budget, period).set(max(0, limit - spent) / 1_000_000)

    def budget_reached(self, platform: str, channel: str) -> None:
        self.budget_held.labels(platform, channel).inc()

    def render(self) -> bytes:
        """The exposition in the text format 0.0.4 (serve it with ``CONTENT_TYPE``)."""
        return generate_latest(self.registry)
