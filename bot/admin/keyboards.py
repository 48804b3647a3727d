"""The inline keyboards of /tags, /subscribe and /unsubscribe (and the "exclude a tag" button of a
subscription): what each button means, and the menus.

Each button carries its meaning as an object (``MenuAction``): python-telegram-bot's
``arbitrary_callback_data`` keeps the object and sends Telegram only a key for it, and gives the
object back when the button is pressed (or ``InvalidCallbackData`` for a button it does not know,
one from before a restart or forged: "this menu has expired"). Pure: values in, text and markup out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot.admin.replies import format_tags, quote, safe_label
from bot.domain.models import Subscription
from bot.domain.rules import Rule
from bot.services.reports import TagPage

LABEL_LIMIT = 48
"""Most characters of a button label."""


@dataclass(frozen=True, slots=True)
class Choose:
    """(Un)subscribe; a missing tag or channel is asked for with a keyboard."""

    action: Literal["subscribe", "unsubscribe"]
    tag: str | None
    channel: str | None
    allow_new: bool = False
    rule: Rule | None = None
    """The rule typed with ``/subscribe`` (``bot.rule_syntax``)."""
    set_rule: bool = False
    """A rule was typed (or ``rule:none``): it replaces an existing subscription's rule."""


@dataclass(frozen=True, slots=True)
class TagsPage:
    """Show a page of tags: as text (``pick`` None) or as buttons that continue ``pick``."""

    search: str | None
    page: int
    pick: Choose | None = None


@dataclass(frozen=True, slots=True)
class SubsPage:
    """A page of existing subscriptions (of ``channel``) as buttons to unsubscribe."""

    channel: str | None
    page: int


@dataclass(frozen=True, slots=True)
class ExcludeTag:
    """Keep posts with ``excluded`` out of the subscription of ``channel`` to ``tag`` (its ``none_tags``);
    without ``excluded``: show page ``page`` of the known tags to pick one."""

    tag: str
    channel: str
    excluded: str | None = None
    page: int = 1


@dataclass(frozen=True, slots=True)
class Cancel:
    pass


@dataclass(frozen=True, slots=True)
class Retract:
    """Retract the post at ``url`` (from ``channels``; None: every channel): pressed to confirm."""

    url: str
    channels: tuple[str, ...] | None = None


MenuAction = TagsPage | Choose | SubsPage | ExcludeTag | Cancel | Retract
Menu = tuple[str, InlineKeyboardMarkup | None]
"""A reply's HTML text and its keyboard (None: no buttons)."""


def button(label: str, action: MenuAction) -> InlineKeyboardButton:
    return InlineKeyboardButton(safe_label(label, LABEL_LIMIT), callback_data=action)


def _nav(prev: MenuAction | None, nxt: MenuAction | None) -> list[InlineKeyboardButton]:
    row = []
    if prev is not None:
        row.append(button("« Prev", prev))
    if nxt is not None:
        row.append(button("Next »", nxt))
    return row


def _cancel_row() -> list[InlineKeyboardButton]:
    return [button("Cancel", Cancel())]


def tags_menu(state: TagsPage, page: TagPage) -> Menu:
    """A page of tags: as a list with paging buttons, or as buttons that continue ``state.pick``."""
    prev = TagsPage(state.search, page.page - 1, state.pick) if page.has_prev else None
    nxt = TagsPage(state.search, page.page + 1, state.pick) if page.has_next else None
    nav = _nav(prev, nxt)
    pick = state.pick
    if pick is None:
        return format_tags(page), InlineKeyboardMarkup([nav]) if nav else None
    where = f" <b>{quote(pick.channel)}</b>" if pick.channel else ""
    verb = "Subscribe" if pick.action == "subscribe" else "Unsubscribe"
    text = f"{verb}{where}: choose a tag (page {page.page})."
    if not page.items:
        text = "No tags are known yet (no source has been polled); send <code>/subscribe! &lt;tag&gt; " \
               "&lt;channel&gt;</code> to subscribe to a future tag."
    rows = [[button(f"{t.name} · {t.posts}", Choose(pick.action, t.name, pick.channel, pick.allow_new, pick.rule,
                                                    pick.set_rule))]
            for t in page.items]
    if nav:
        rows.append(nav)
    rows.append(_cancel_row())
    return text, InlineKeyboardMarkup(rows)


def channels_menu(choice: Choose, channels: Sequence[tuple[str, str]]) -> Menu:
    """Which channel to (un)subscribe ``choice.tag`` to or from; ``channels`` are (name, platform)."""
    verb = "Subscribe" if choice.action == "subscribe" else "Unsubscribe"
    prep = "to" if choice.action == "subscribe" else "from"
    buttons = [button(f"{name} ({platform})", Choose(choice.action, choice.tag, name, choice.allow_new, choice.rule,
                                                     choice.set_rule))
               for name, platform in channels]
    rows = [buttons[i:i + 2] for i in range(0, len(buttons), 2)]
    rows.append(_cancel_row())
    return f"{verb} <b>{quote(choice.tag)}</b> {prep} which channel?", InlineKeyboardMarkup(rows)


def subscriptions_menu(state: SubsPage, subs: Sequence[tuple[Subscription, str]], size: int) -> Menu:
    """A page of subscriptions (``size`` per page) as buttons that unsubscribe."""
    where = f" of <b>{quote(state.channel)}</b>" if state.channel else ""
    if not subs:
        return f"There are no subscriptions{where} to remove.", None
    pages = max(1, -(-len(subs) // size))
    number = min(max(1, state.page), pages)
    chunk = subs[(number - 1) * size: number * size]
    rows = [[button(f"{s.tag_name} → {s.channel}", Choose("unsubscribe", s.tag_name, s.channel))]
            for s, _ in chunk]
    nav = _nav(SubsPage(state.channel, number - 1) if number > 1 else None,
               SubsPage(state.channel, number + 1) if number < pages else None)
    if nav:
        rows.append(nav)
    rows.append(_cancel_row())
    return f"Unsubscribe{where}: choose a subscription (page {number}/{pages}).", InlineKeyboardMarkup(rows)


def exclude_button(tag: str, channel: str) -> InlineKeyboardMarkup:
    """Under a subscription that was made or changed: a button to keep a tag out of it."""
    return InlineKeyboardMarkup([[button("➖ Exclude a tag…", ExcludeTag(tag, channel))]])


def exclude_menu(action: ExcludeTag, page: TagPage) -> Menu:
    """A page of known tags as buttons that add the pressed one to the subscription's ``none_tags``."""
    own = {t.name for t in page.items if t.name == action.tag}
    rows = [[button(f"➖ {t.name} · {t.posts}", ExcludeTag(action.tag, action.channel, t.name))]
            for t in page.items if t.name not in own]
    nav = _nav(ExcludeTag(action.tag, action.channel, None, page.page - 1) if page.has_prev else None,
               ExcludeTag(action.tag, action.channel, None, page.page + 1) if page.has_next else None)
    if nav:
        rows.append(nav)
    rows.append(_cancel_row())
    return (f"Keep which tag out of <b>{quote(action.tag)}</b> → <b>{quote(action.channel)}</b>? "
            f"(page {page.page})", InlineKeyboardMarkup(rows))


def retract_menu(title_lines: Sequence[str], action: Retract) -> Menu:
    """Ask before a retraction: what it would do (``title_lines``, already HTML), and Retract / Cancel."""
    text = "\n".join(["<b>Retract this post?</b> Deleted messages cannot be brought back.", *title_lines])
    return text, InlineKeyboardMarkup([[button("Retract", action), button("Cancel", Cancel())]])
