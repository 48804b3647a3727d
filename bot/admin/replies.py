"""The admin bot's command table and its replies: HTML that Telegram accepts, built from values.

Pure (no python-telegram-bot): what a handler in ``bot.admin.bot`` sends is built here. Every piece
of someone else's text (an argument, a feed's tag, a stored error) goes through ``quote``: control
and bidi characters shown as escapes (``bot.humanize.visible_controls``), cut to a limit with
"… (cut)", HTML-escaped. Every reply goes through ``bounded_reply``: at most 4,096 UTF-16 code units
after entity parsing. The state words come from ``bot.admin.views``, as the CLI's do.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from bot import __version__
from bot.admin.views import ChannelListing, SourceListing, StatusView
from bot.domain.state import HoldView, SubscriptionView
from bot.errors import NotFoundError, TagrelayError
from bot.humanize import CUT_MARK, ago, cut, visible_controls
from bot.log import redact_url
from bot.rule_syntax import describe
from bot.services.reports import Change, Explanation, PreviewItem, TagPage

MAX_MESSAGE = 4096
"""Telegram's limit on a message's text after entity parsing, counted here in UTF-16 code units (the
stricter reading of the Bot API's "characters": an emoji counts 2) — see docs/admin-bot.md."""
MAX_REPLY = 3900
"""Longest reply we build, in UTF-16 code units of HTML source (never less than what Telegram counts)."""
QUOTE_LIMIT = 200
"""Most characters of one piece of someone else's text (an argument, a tag, a stored reason) in a reply."""
DETAIL_LIMIT = 300
"""Most characters of a stored error or reason quoted in /status, /sources and /channels."""
ERROR_LIMIT = 400
"""Most characters of an error message (which may quote the command's argument) in a reply."""


@dataclass(frozen=True, slots=True)
class CommandSpec:
    name: str
    args: str
    description: str

    @property
    def usage(self) -> str:
        return f"/{self.name} {self.args}".strip()


COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec("help", "", "what this bot can do"),
    CommandSpec("start", "", "welcome and the command list"),
    CommandSpec("tags", "[search]", "known tags with post counts"),
    CommandSpec("subscribe", "<tag> <channel>", "send posts with a tag to a channel"),
    CommandSpec("unsubscribe", "<tag> <channel>", "stop sending a tag to a channel"),
    CommandSpec("subscriptions", "[channel]", "list subscriptions"),
    CommandSpec("channels", "", "channels, their state and queues"),
    CommandSpec("pause", "<channel> [reason]", "pause a channel (its queue is kept)"),
    CommandSpec("resume", "<channel>", "resume a paused channel"),
    CommandSpec("preview", "<tag|post url> [channel]", "show a post as each channel would get it, and if it would"),
    CommandSpec("explain", "<post url> [channel]", "why a post was (not) sent to each channel"),
    CommandSpec("status", "", "sources, channels and problems"),
    CommandSpec("retry", "<channel|delivery id>", "requeue failed, dead or unknown deliveries"),
    CommandSpec("sources", "", "sources and their last poll"),
    CommandSpec("hold", "[release|drop <source>]", "bursts held for an admin; send or drop one"),
    CommandSpec("retract", "<post url> [channel…]", "remove a post from every channel it reached (asks first)"),
)


def split_tag_channel(text: str, channels: Sequence[str]) -> tuple[str, str | None]:
    """``"Editor’s picks news-tg"`` → ``("Editor’s picks", "news-tg")``.

    The last word is the channel when it names a configured channel; the rest
    (spaces and apostrophes included) is the tag. Otherwise everything is the
    tag and the channel is None. A lone channel name gives ``("", channel)``.
    """
    words = text.split()
    if words and words[-1] in channels:
        return " ".join(words[:-1]), words[-1]
    return " ".join(words), None


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def quote(value: object, limit: int = QUOTE_LIMIT, *, tail: int = 0) -> str:
    """Someone else's text (an admin's argument, a feed's tag, a platform's error) for an HTML reply:
    control and bidi characters shown as escapes (``\\u202e``), cut to ``limit`` characters with
    "… (cut)" (keeping the last ``tail``), HTML-escaped."""
    return esc(cut(visible_controls(str(value)), limit, tail=tail))


def safe_label(value: str, limit: int) -> str:
    """A button label: like ``quote`` but plain text (labels are not parsed as HTML)."""
    return clip(visible_controls(value), limit)


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, as Telegram counts message entities (an emoji counts 2)."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _utf16_prefix(text: str, units: int) -> str:
    """The longest prefix of ``text`` of at most ``units`` UTF-16 code units (no half surrogate pair)."""
    return text.encode("utf-16-le", "surrogatepass")[: 2 * units].decode("utf-16-le", "ignore")


_TAG = re.compile(r"<[^<>]*>")


def visible_text(reply: str) -> str:
    """What Telegram counts of an HTML reply built here: the text without tags, entities decoded."""
    return html.unescape(_TAG.sub("", reply))


def bounded_reply(reply: str) -> str:
    """``reply`` (HTML) as it can be sent: at most ``MAX_MESSAGE`` UTF-16 code units after entity parsing.

    Replies are built to fit (``fit`` drops whole lines, ``quote`` cuts what it quotes); this is the
    guarantee behind them. A reply whose visible text is still too long is sent as that text, cut
    and marked "… (cut)", without markup — valid HTML in any case.
    """
    if utf16_len(reply) <= MAX_MESSAGE:  # the HTML source is never shorter than its visible text
        return reply
    shown = visible_text(reply)
    if utf16_len(shown) <= MAX_MESSAGE:
        return reply
    return esc(_utf16_prefix(shown, MAX_MESSAGE - utf16_len("\n" + CUT_MARK)) + "\n" + CUT_MARK)


def format_error(exc: TagrelayError) -> str:
    """An error for a reply; what it quotes of the command's argument is cut."""
    if isinstance(exc, NotFoundError):
        text = f"unknown {esc(exc.kind)} {quote(repr(exc.name))}"
        return f"{text}; {quote(exc.hint, ERROR_LIMIT)}" if exc.hint else text
    return quote(str(exc), ERROR_LIMIT)


# -- formatting (pure) --------------------------------------------------------------------------


def every(seconds: float) -> str:
    s = round(seconds)
    if s % 3600 == 0:
        return f"{s // 3600}h"
    if s % 60 == 0:
        return f"{s // 60}m"
    return f"{s}s"


def fit(lines: Sequence[str], limit: int = MAX_REPLY) -> str:
    """Join lines, dropping the tail (with a note) beyond ``limit`` UTF-16 code units. Each line is balanced HTML."""
    out: list[str] = []
    size = 0
    for i, line in enumerate(lines):
        length = utf16_len(line)
        if size + length + 1 > limit - 40:
            out.append(f"<i>… and {len(lines) - i} more line(s)</i>")
            break
        out.append(line)
        size += length + 1
    return "\n".join(out)


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def format_help(channels: Sequence[str]) -> str:
    lines = [f"<b>tagrelay {esc(__version__)}</b> — admin commands:", ""]
    lines += [f"{esc(c.usage)} — {esc(c.description)}" for c in COMMANDS if c.name != "start"]
    lines += ["",
              "Tag names may contain spaces and apostrophes; the last word is the channel: "
              "<code>/subscribe Editor’s picks news-tg</code>.",
              "<code>/subscribe!</code> also takes a tag no post carries yet.",
              "A rule narrows a subscription: <code>/subscribe Iraq -Opinion +MEK \"title:Basra\" news-tg</code> "
              "(<code>-tag</code> none of, <code>+tag</code> all of, <code>\"keyword\"</code> any of, "
              "<code>-\"keyword\"</code> none of, <code>title=regex</code>, <code>age:1d</code>, "
              "<code>source:name</code>, <code>rule:none</code>).",
              "Without a tag, /subscribe and /unsubscribe show buttons to choose from.",
              "Channels: " + (", ".join(f"<code>{esc(c)}</code>" for c in channels) or "none configured")]
    return "\n".join(lines)


def format_changes(changes: Sequence[Change]) -> str:
    return "\n".join(f"{'✅' if c.done else '•'} {quote(c.text, QUOTE_LIMIT + 100, tail=60)}" for c in changes)


def format_tags(page: TagPage) -> str:
    match = f" matching “{quote(page.search)}”" if page.search else ""
    head = f"<b>Known tags</b>{match} · page {page.page}"
    if not page.items:
        empty = "no tags match" if page.search else "no tags yet (no source has been polled)"
        return f"{head}\n<i>{'nothing on this page' if page.page > 1 else empty}</i>"
    first = (page.page - 1) * page.size + 1
    lines = [head] + [f"{first + i}. {quote(t.name)} — {t.posts} post{'s' if t.posts != 1 else ''}"
                      for i, t in enumerate(page.items)]
    return fit(lines)


def format_subscriptions(subs: Sequence[SubscriptionView], channel: str | None) -> str:
    where = f" of <b>{quote(channel)}</b>" if channel else ""
    if not subs:
        return f"<b>Subscriptions</b>{where}: none."
    lines = [f"<b>Subscriptions</b>{where} ({len(subs)})"]
    for v in subs:
        s = v.subscription
        rule = f" <code>{quote(describe(s.rule), DETAIL_LIMIT)}</code>" if s.rule else ""
        lines.append(f"• {quote(s.tag_name)}{rule} → <b>{esc(s.channel)}</b> <i>({esc(v.origin)})</i>")
    return fit(lines)


def format_explanation(found: Explanation) -> str:
    title = quote(found.title)
    post = f'<a href="{esc(found.url)}">{title}</a>' if found.url else title
    when = found.published.strftime("%Y-%m-%d %H:%M UTC") if found.published else "undated"
    lines = [f"<b>Why (not)</b>: {post}",
             f"source {esc(found.source)} · published {when} · tags: {quote(', '.join(found.tags) or 'none')}", ""]
    marks = {"sent": "✅", "filtered": "🚫", "no subscribed tag": "•", "not routed": "•"}
    for a in found.channels:
        lines.append(f"{marks.get(a.outcome, '⏳')} <b>{esc(a.channel)}</b>: {esc(a.outcome)} — "
                     f"{quote(a.reason, DETAIL_LIMIT + 200)}")
        if a.later:
            lines.append(f"   <i>{esc(a.later)}</i>")
    return fit(lines)


def format_channels(channels: Sequence[ChannelListing]) -> str:
    if not channels:
        return "<b>Channels</b>: none configured."
    lines = ["<b>Channels</b>"]
    for c in channels:
        state = f"⏸ PAUSED: {quote(c.paused_reason or '', DETAIL_LIMIT)}" if c.paused else c.state
        lines.append(f"• <b>{esc(c.name)}</b> ({esc(c.platform)}) — {state} · waiting {c.waiting} · sent {c.sent}")
    return fit(lines)


_CHANNEL_WORDS = {"held": "held (rate limit)"}
"""How a channel state word reads in a chat (the CLI's table keeps the short word)."""


def format_status(view: StatusView) -> str:
    now = view.now
    lines = [f"<b>tagrelay {esc(__version__)} — {view.headline}</b>"]
    if view.database:
        lines.append(f"database: {esc(view.database)}")
    lines += ["", "<b>Sources</b>"]
    if not view.sources:
        lines.append("<i>none</i>")
    for s in view.sources:
        lines.append(f"• <b>{esc(s.name)}</b>: {s.health} · last poll {ago(s.last_poll_at, now)} · {s.posts} posts")
        if s.last_error:
            lines.append(f"   last error: {quote(s.last_error, DETAIL_LIMIT)}")
    lines += ["", "<b>Channels</b>"]
    if not view.channels:
        lines.append("<i>none</i>")
    for c in view.channels:
        state = _CHANNEL_WORDS.get(c.state, c.state_text)
        lines.append(f"• <b>{esc(c.name)}</b> ({esc(c.platform)}): {state} · queue {c.queued} · retrying "
                     f"{c.retrying} · sent today {c.sent_today} · failures {c.failures}")
        if c.state == "PAUSED":
            lines.append(f"   paused: {quote(c.paused_reason or 'no reason given', DETAIL_LIMIT)}")
        lines += [f"   💰 {quote(b.describe(), DETAIL_LIMIT)}" for b in c.budgets]
    if view.problems:
        lines += ["", "<b>Problems</b>"] + [f"⚠️ {quote(p, DETAIL_LIMIT)}" for p in view.problems]
    if view.warnings:
        lines += ["", "<b>Warnings</b>"] + [f"• {quote(w, DETAIL_LIMIT)}" for w in view.warnings]
    if view.notes:
        lines += ["", "<b>Notes</b>"] + [f"• {quote(n, DETAIL_LIMIT)}" for n in view.notes]
    return fit(lines)


def format_sources(sources: Sequence[SourceListing], now: datetime) -> str:
    if not sources:
        return "<b>Sources</b>: none configured."
    lines = ["<b>Sources</b>"]
    for src in sources:
        off = "" if src.enabled else " · <i>disabled</i>"
        lines.append(f"• <b>{esc(src.name)}</b> — {esc(src.kind)}, every {every(src.interval)} · "
                     f"{src.posts} posts{off}")
        lines.append(f"   last poll {ago(src.last_poll_at, now)}: {quote(src.last_outcome or '-')}")
        if src.failing:
            lines.append(f"   last error ({src.failures}× in a row): {quote(src.failing, DETAIL_LIMIT)}")
        lines.append(f"   <code>{quote(redact_url(src.url), DETAIL_LIMIT)}</code>")
    return fit(lines)


def format_holds(holds: Sequence[HoldView]) -> str:
    if not holds:
        return "<b>Held bursts</b>: none."
    lines = ["<b>Held bursts</b>"]
    for h in holds:
        usual = f"usual {h.usual_new:.0f}" if h.usual_new is not None else "no usual volume yet"
        lines.append(f"• <b>{esc(h.source)}</b>: {h.posts} new posts, {h.deliveries} deliveries held ({usual}) "
                     f"for {esc(', '.join(h.channels))}")
        lines.append(f"   <code>/hold release {esc(h.source)}</code> · <code>/hold drop {esc(h.source)}</code>")
    return fit(lines)


def format_preview_head(item: PreviewItem) -> str:
    limit = f"/{item.limit}" if item.limit else ""
    verdict = "fits" if item.fits else "TOO LONG"
    title = quote(item.post_title)
    post = f'<a href="{esc(item.post_url)}">{title}</a>' if item.post_url else title
    photo = f" · {quote(item.image_note, 300)}" if item.image_note else ""
    card = f" · link {esc(item.link_note)}" if item.link_note else ""
    would = f"\n{'✅' if item.sent else '🚫'} {quote(item.verdict, DETAIL_LIMIT + 200)} (if detected now)" \
        if item.verdict else ""
    return (f"Preview for <b>{esc(item.channel)}</b> ({esc(item.platform)}, {esc(item.format)}) — "
            f"{item.length}{limit} characters, {verdict}{photo}{card}\nPost: {post}{would}")
