"""What ``tagrelay status`` / ``sources list`` / ``channels list`` and the bot's /status, /sources,
/channels show, computed once: the state words (ERROR / BURST HELD / ok / not polled yet for a
source; PAUSED / budget reached / held / active for a channel) and the counts behind each row.

Pure: values in (``bot.services.admin``'s reports, the configured sources and channels), view models
out. The CLI renders them as tables (``bot.cli``), the bot as HTML (``bot.admin.replies``); neither
decides a state word itself. The problems and warnings themselves are decided by ``AdminService``
(``StatusReport.problems``); a view only carries them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

from bot import humanize
from bot.domain.budget import BudgetLine
from bot.domain.push import WebSubState, WebSubSubscription
from bot.domain.retention import PruneRecord
from bot.domain.state import ChannelCounts, SourceState
from bot.services.reports import SourceStatus, StatusReport

SourceHealth = Literal["ERROR", "BURST HELD", "ok", "not polled yet"]
ChannelState = Literal["PAUSED", "budget reached", "held", "active"]


def source_health(status: SourceStatus) -> SourceHealth:
    """A failing source is ``ERROR`` before anything else; then a held burst; then whether it was polled."""
    if status.problem:
        return "ERROR"
    if status.hold is not None:
        return "BURST HELD"
    return "ok" if status.state.last_poll_at is not None else "not polled yet"


def channel_state(counts: ChannelCounts, now: datetime, budgets: Sequence[BudgetLine] = ()) -> ChannelState:
    """``PAUSED`` (by an admin or a channel error) before a hold: ``budget reached`` when one of the
    channel's spending budgets refused a post in its window, else ``held`` (the platform's rate limit, a
    backoff; until ``hold_until``); else ``active``."""
    if counts.paused:
        return "PAUSED"
    if counts.hold_until is not None and counts.hold_until > now:
        return "budget reached" if any(b.reached for b in budgets) else "held"
    return "active"


# -- status ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SourceView:
    name: str
    health: SourceHealth
    last_poll_at: datetime | None
    last_outcome: str | None
    last_error: str | None
    next_poll_at: datetime | None
    posts: int


@dataclass(frozen=True, slots=True)
class ChannelView:
    name: str
    platform: str
    state: ChannelState
    paused_reason: str | None
    queued: int
    retrying: int
    sent: int
    sent_today: int
    dead: int
    unknown: int
    oldest_waiting: datetime | None
    resumes_at: datetime | None = None
    """When a held channel (``held``, ``budget reached``) sends again."""
    budgets: tuple[BudgetLine, ...] = ()
    """Its spending budgets in their current windows."""

    @property
    def state_text(self) -> str:
        """The state word, with when a budget hold ends: ``budget reached, resumes at 2026-01-02 00:00 UTC``."""
        if self.state == "budget reached" and self.resumes_at is not None:
            return f"budget reached, resumes at {self.resumes_at:%Y-%m-%d %H:%M} UTC"
        return self.state

    @property
    def failures(self) -> int:
        """Deliveries that need a look: dead (given up) and unknown (maybe sent)."""
        return self.dead + self.unknown


@dataclass(frozen=True, slots=True)
class StatusView:
    now: datetime
    sources: list[SourceView]
    channels: list[ChannelView]
    problems: list[str]
    warnings: list[str]
    notes: list[str] = field(default_factory=list)
    """Worth knowing about a channel, nothing to do yet (a Threads token's remaining days)."""
    database: str = ""
    """The database's size and the last prune, in words ("" when neither is known)."""

    @property
    def headline(self) -> str:
        """``OK``, ``1 problem``, ``3 problems`` (the CLI writes it in capitals)."""
        count = len(self.problems)
        return "OK" if not count else f"{count} problem{'s' if count > 1 else ''}"


def status_view(report: StatusReport) -> StatusView:
    now = report.now
    sources = [SourceView(name=s.state.name, health=source_health(s), last_poll_at=s.state.last_poll_at,
                          last_outcome=s.state.last_outcome, last_error=s.state.last_error,
                          next_poll_at=s.next_poll_at, posts=s.state.post_count) for s in report.sources]
    channels = []
    for c in report.channels:
        k = c.counts.counts
        held = c.counts.hold_until if c.counts.hold_until is not None and c.counts.hold_until > now else None
        channels.append(ChannelView(name=c.counts.channel, platform=c.counts.platform,
                                    state=channel_state(c.counts, now, c.budgets),
                                    paused_reason=c.counts.paused_reason,
                                    queued=k.get("queued", 0), retrying=k.get("failed", 0), sent=k.get("sent", 0),
                                    sent_today=c.counts.sent_today, dead=k.get("dead", 0),
                                    unknown=k.get("unknown", 0), oldest_waiting=c.counts.oldest_queued,
                                    resumes_at=held, budgets=c.budgets))
    return StatusView(now=now, sources=sources, channels=channels, problems=report.problems,
                      warnings=report.warnings, notes=report.notes,
                      database=database_text(report.database_bytes, report.last_prune, now))


def database_text(size_bytes: int | None, last: PruneRecord | None, now: datetime) -> str:
    """``12.3 MiB; last prune 2.0h ago: content 10, deliveries 3`` (the kinds it removed)."""
    parts = []
    if size_bytes is not None:
        parts.append(humanize.size(size_bytes))
    if last is not None:
        removed = ", ".join(f"{kind.replace('_', ' ')} {n}" for kind, n in last.counts.as_dict().items() if n)
        parts.append(f"last prune {humanize.ago(last.at, now)}: {removed or 'nothing to remove'}")
    return "; ".join(parts)


# -- listings -------------------------------------------------------------------------------------


class _SourceConfig(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def url(self) -> str: ...
    @property
    def interval(self) -> float: ...
    @property
    def enabled(self) -> bool: ...


class _ChannelConfig(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def platform(self) -> str: ...


@dataclass(frozen=True, slots=True)
class SourceListing:
    """One configured source with what its last poll left (``sources list``, /sources)."""

    name: str
    kind: str
    """The configured kind, with what ``auto`` resolved to: ``auto→wordpress``."""
    url: str
    interval: float
    enabled: bool
    posts: int
    last_poll_at: datetime | None
    last_outcome: str | None
    failing: str | None
    """The last error, when the last poll failed."""
    failures: int
    """Failed polls in a row."""


def push_word(hook: bool, websub: WebSubSubscription | None) -> str:
    """How pushes reach a source (``sources list``): ``hook``, ``websub <state>`` (the lease's end when
    active, the error when failed or denied), both, or ``-``."""
    words = ["hook"] if hook else []
    if websub is not None and websub.state != WebSubState.DROPPED:
        word = f"websub {websub.state.value}"
        if websub.state == WebSubState.ACTIVE and websub.expires_at is not None:
            word += f" until {websub.expires_at:%Y-%m-%d %H:%M}Z"
        elif websub.state in (WebSubState.FAILED, WebSubState.DENIED) and websub.last_error:
            word += f" ({websub.last_error})"
        words.append(word)
    return ", ".join(words) or "-"


def source_listing(configured: Sequence[_SourceConfig], states: Sequence[SourceState]) -> list[SourceListing]:
    by_name = {s.name: s for s in states}
    rows = []
    for src in configured:
        st = by_name.get(src.name)
        resolved = st.cache.resolved_kind if st is not None else None
        rows.append(SourceListing(
            name=src.name, kind=f"{src.kind}→{resolved}" if resolved else src.kind, url=src.url,
            interval=src.interval, enabled=src.enabled, posts=st.post_count if st else 0,
            last_poll_at=st.last_poll_at if st else None, last_outcome=st.last_outcome if st else None,
            failing=st.last_error if st and st.last_error and st.last_outcome == "error" else None,
            failures=st.consecutive_failures if st else 0))
    return rows


@dataclass(frozen=True, slots=True)
class ChannelListing:
    """One configured channel with its queue (``channels list``, /channels)."""

    name: str
    platform: str
    paused: bool
    paused_reason: str | None
    waiting: int
    """Queued plus retrying."""
    sent: int

    @property
    def state(self) -> Literal["PAUSED", "active"]:
        return "PAUSED" if self.paused else "active"


def channel_listing(items: Sequence[tuple[_ChannelConfig, ChannelCounts | None]]) -> list[ChannelListing]:
    rows = []
    for opts, counts in items:
        k = counts.counts if counts is not None else {}
        rows.append(ChannelListing(name=opts.name, platform=opts.platform, paused=bool(counts and counts.paused),
                                   paused_reason=counts.paused_reason if counts else None,
                                   waiting=k.get("queued", 0) + k.get("failed", 0), sent=k.get("sent", 0)))
    return rows
