"""``ChannelOptions``: the keys every channel table accepts, below both ``bot.render`` and ``bot.publishers``.

Rendering options (``bot.render.options``) and each publisher plugin's options model subclass it, so one
channel table validates against one model. Plugins import it from ``bot.publishers.api``, which
re-exports it; this module exists so that ``render/`` need not import ``publishers/``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator

from bot import config_bounds as bounds
from bot.config_bounds import Rate, RuleKeyword, RuleTag, within
from bot.domain.lifecycle import DEFAULT_DELETE_WINDOW, DEFAULT_EDIT_WINDOW
from bot.domain.rules import Rule, parse_keywords, parse_tags
from bot.validation import Field, Model


class ChannelOptions(Model):
    """Keys every channel accepts. Plugins subclass this with their own keys."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
    platform: str
    template: str | None = None
    """Per-channel message template (sandboxed); None means the platform default."""
    hashtags: bool = False
    """Append hashtags made from the post's tags, while they fit."""
    max_hashtags: int = within(bounds.MAX_HASHTAGS, 5)
    excerpt_length: int | None = within(bounds.EXCERPT_LENGTH, None)
    """Longest excerpt in characters; None means the platform default."""
    paused: bool = False
    """Start paused (the queue is kept; ``channels resume`` starts it)."""
    rate_limit: Rate | None = None
    """Client-side pacing for this channel, e.g. "1/s" or "20/min"; None: the platform default."""
    exclude_tags: tuple[RuleTag, ...] = Field(default=(), max_length=bounds.RULE_ITEMS)
    """Channel-wide: a post with any of these tags is never sent here, whichever subscription matched."""
    exclude_keywords: tuple[RuleKeyword, ...] = Field(default=(), max_length=bounds.RULE_ITEMS)
    """Channel-wide: a post containing any of these keywords (``field:words`` for one field) is never sent here."""

    on_edit: Literal["ignore", "update"] = "update"
    """A sent post edited on the site within ``edit_window``: update the channel's message ("update",
    where the platform can edit) or leave it ("ignore"). "update" by default: a corrected headline is what
    readers should see, an edit is silent (no second notification), and it is sent only when what the
    message shows changes (docs/delivery.md, "Edits")."""
    edit_window: Annotated[float, BeforeValidator(bounds.EDIT_WINDOW)] = DEFAULT_EDIT_WINDOW
    """How long after the message went out an edit of its post still updates it (default 48 h)."""
    on_delete: Literal["ignore", "delete"] = "ignore"
    """A sent post unpublished on the site within ``delete_window``: delete the channel's message
    ("delete", where the platform can) or leave it ("ignore", the default: a deletion cannot be undone,
    so it is asked for)."""
    delete_window: Annotated[float, BeforeValidator(bounds.DELETE_WINDOW)] = DEFAULT_DELETE_WINDOW
    """How long after the message went out the unpublishing of its post still deletes it (default 48 h)."""

    def rule(self) -> Rule | None:
        """The channel's exclusions as a rule (``bot.domain.routing`` checks them first), or None."""
        if not self.exclude_tags and not self.exclude_keywords:
            return None
        return Rule(none_tags=parse_tags(self.exclude_tags, "exclude_tags"),
                    exclude_keywords=parse_keywords(self.exclude_keywords, "exclude_keywords"))
