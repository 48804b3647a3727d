"""What the administration use cases return (``bot.services.admin``): a change made, a preview, an
explanation, a page of tags, and the status report with its problems, warnings and notes.

Plain values, shared by the CLI and the admin bot; ``bot.admin.views`` turns them into text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from bot.domain.budget import BudgetLine, usd
from bot.domain.detect import hold_message
from bot.domain.explain import ChannelAnswer
from bot.domain.retention import PruneRecord
from bot.domain.state import (
    ChannelCounts,
    HoldView,
    InstanceInfo,
    SourceState,
    TagCount,
)
from bot.publishers.api import ChannelNote
from bot.storage.instance_lock import Holder


def deliveries_problem(dead: int, unknown: int) -> str:
    """A channel's problem line for its dead and unknown deliveries, with the command that lists each kind
    (``deliveries --status`` takes one status: a hint naming only ``dead`` would list no ``unknown`` one)."""
    hints = "; ".join(f"tagrelay deliveries --status {status}"
                      for status, count in (("dead", dead), ("unknown", unknown)) if count)
    return f"{dead} dead, {unknown} unknown deliveries need a look ({hints})"


@dataclass(frozen=True, slots=True)
class Change:
    """One line of "what changed" for replies."""

    channel: str
    done: bool
    text: str
    tag: str | None = None
    """The subscription's tag as it is known (subscribe, rule changes)."""


@dataclass(frozen=True, slots=True)
class PreviewItem:
    channel: str
    platform: str
    text: str
    format: str
    length: int
    limit: int | None
    post_title: str
    post_url: str | None
    image_url: str | None = None
    """The featured image the channel sends (Telegram: as a photo with ``text`` as its caption)."""
    link: str | None = None
    """The post link the platform previews (Telegram's link preview card)."""
    sent: bool | None = None
    """Would the channel get the post if it were detected now (None: not asked)."""
    verdict: str = ""
    """Why (not): the subscription that sends it, or the condition (or the missing subscription) that
    keeps it out."""
    image_alt: str | None = None
    """The image's alt text as the platform gets it (Telegram has none)."""

    @property
    def fits(self) -> bool:
        return self.limit is None or self.length <= self.limit

    @property
    def image_note(self) -> str | None:
        """How the image goes out, in words; None without one."""
        if not self.image_url:
            return None
        if self.platform == "telegram":
            return "sent as a photo with caption (Telegram has no alt text)"
        return f"with the featured image, alt text: {self.image_alt}" if self.image_alt else \
            "with the featured image, no alt text"

    @property
    def link_note(self) -> str | None:
        """Where the post link is when the text leaves it out (a Bluesky link card); None when the text has it."""
        if self.platform == "bluesky" and self.link and self.link not in self.text:
            return "on the link card, not in the text"
        return None


@dataclass(frozen=True, slots=True)
class Explanation:
    """``tagrelay explain``: a stored post and, for each channel, why it was (not) sent there."""

    title: str
    url: str | None
    source: str
    tags: tuple[str, ...]
    published: datetime | None
    first_seen: datetime | None
    channels: list[ChannelAnswer]


@dataclass(frozen=True, slots=True)
class TagPage:
    """One page of known tags (most posts first); ``page`` counts from 1."""

    items: list[TagCount]
    page: int
    size: int
    search: str | None
    has_next: bool

    @property
    def has_prev(self) -> bool:
        return self.page > 1


@dataclass(frozen=True, slots=True)
class SourceStatus:
    state: SourceState
    next_poll_at: datetime | None
    problem: str | None
    warning: str | None = None
    """Worth knowing, nothing to do (guid churn)."""
    hold: HoldView | None = None
    """A burst held for an admin (also one of ``problems``)."""
    burst_limit: int = 0

    @property
    def hold_problem(self) -> str | None:
        if self.hold is None:
            return None
        return hold_message(self.state.name, self.hold.posts, self.hold.usual_new, self.burst_limit)


@dataclass(frozen=True, slots=True)
class ChannelStatus:
    counts: ChannelCounts
    problem: str | None
    notes: tuple[ChannelNote, ...] = ()
    """What the channel's plugin says besides the queue (``ReportsChannelNotes``: a Threads token's expiry)."""
    budgets: tuple[BudgetLine, ...] = ()
    """The channel's spending budgets in their current windows (X channels with ``budget`` or an account
    ``account_budget``)."""

    @property
    def budget_warning(self) -> str | None:
        """A budget reached in its window while the channel waits for it (worth knowing, nothing to do)."""
        reached = [b for b in self.budgets if b.reached]
        until = self.counts.hold_until
        if not reached or self.counts.paused or until is None:
            return None
        full = "; ".join(f"{b.label} {usd(b.limit)} USD/{b.period.value}, {usd(b.spent)} spent" for b in reached)
        return f"budget reached ({full}), resumes at {until:%Y-%m-%d %H:%M} UTC"


@dataclass(frozen=True, slots=True)
class StatusReport:
    now: datetime
    storage: str
    holder: Holder | None
    """SQLite file: the instance holding the database's instance lock (None: none running)."""
    sources: list[SourceStatus]
    channels: list[ChannelStatus]
    instances: list[InstanceInfo] = field(default_factory=list)
    """Shared mode (PostgreSQL): every registered instance and the sources/channels it holds."""
    lifecycle_notes: list[str] = field(default_factory=list)
    """Channels asking for an edit or a deletion their platform cannot make (``AdminService.lifecycle_warnings``)."""
    database_bytes: int | None = None
    """The database's size (``Store.database_size``; None: in memory)."""
    last_prune: PruneRecord | None = None
    """The last prune pass that was recorded (``Store.last_prune``)."""

    @property
    def problems(self) -> list[str]:
        out = [f"source {s.state.name}: {s.problem}" for s in self.sources if s.problem]
        out += [f"source {s.state.name}: {s.hold_problem}" for s in self.sources if s.hold_problem]
        out += [f"channel {c.counts.channel}: {c.problem}" for c in self.channels if c.problem]
        out += [f"channel {c.counts.channel}: {n.text}" for c in self.channels for n in c.notes if n.problem]
        return out

    @property
    def warnings(self) -> list[str]:
        out = [f"source {s.state.name}: {s.warning}" for s in self.sources if s.warning]
        out += [f"channel {c.counts.channel}: {c.budget_warning}" for c in self.channels
                if c.budget_warning and c.counts.hold_until and c.counts.hold_until > self.now]
        return out

    @property
    def notes(self) -> list[str]:
        """Worth knowing about a channel, nothing to do yet (a Threads token's remaining days; an edit or a
        deletion its platform cannot make)."""
        return [f"channel {c.counts.channel}: {n.text}" for c in self.channels for n in c.notes
                if not n.problem] + self.lifecycle_notes
