"""Prometheus metrics, one registry per process (not the global one, so tests stay isolated).

Services call the small methods below; ``/metrics`` renders ``registry``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 3 * 3600, 12 * 3600, 86400, float("inf"))


class Metrics:
    """The service's counters, gauges and histograms."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.polls = Counter("tagrelay_polls", "Polls by source and outcome "
                             "(baseline, new, unchanged, not_modified, error)", ["source", "outcome"], registry=r)
        self.posts = Counter("tagrelay_new_posts", "New posts detected", ["source"], registry=r)
        self.deliveries = Counter("tagrelay_deliveries", "Delivery outcomes by platform, channel and status",
                                  ["platform", "channel", "status"], registry=r)
        self.retries = Counter("tagrelay_delivery_retries", "Deliveries scheduled for another attempt",
                               ["platform", "channel"], registry=r)
        self.rate_limits = Counter("tagrelay_rate_limited", "429 answers from platforms",
                                   ["platform", "channel"], registry=r)
        self.queue_depth = Gauge("tagrelay_queue_depth", "Deliveries waiting (queued or failed-retryable)",
                                 ["channel"], registry=r)
        self.oldest_age = Gauge("tagrelay_oldest_queued_age_seconds", "Age of the oldest waiting delivery",
                                ["channel"], registry=r)
        self.latency = Histogram("tagrelay_publication_to_delivery_seconds",
                                 "Time from a post's publication to its delivery", ["platform"],
                                 buckets=LATENCY_BUCKETS, registry=r)

    def poll(self, source: str, outcome: str) -> None:
        self.polls.labels(source, outcome).inc()

    def new_posts(self, source: str, count: int) -> None:
        if count:
            self.posts.labels(source).inc(count)

    def delivery(self, platform: str, channel: str, status: str) -> None:
        self.deliveries.labels(platform, channel, status).inc()

    def retry(self, platform: str, channel: str) -> None:
        self.retries.labels(platform, channel).inc()

    def rate_limited(self, platform: str, channel: str) -> None:
        self.rate_limits.labels(platform, channel).inc()

    def delivered_after(self, platform: str, seconds: float) -> None:
        self.latency.labels(platform).observe(max(0.0, seconds))

    def set_queue(self, channel: str, depth: int, oldest_age: float) -> None:
        self.queue_depth.labels(channel).set(depth)
        self.oldest_age.labels(channel).set(oldest_age)

    def render(self) -> bytes:
        return generate_latest(self.registry)
