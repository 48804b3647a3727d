"""The admin commands: each parses its argument text, makes **one** ``AdminService`` call and answers.

No use-case logic lives here: ``bot.services.admin.AdminService`` (the same as the CLI's) decides, and
``bot.admin.replies`` / ``bot.admin.keyboards`` build the answer. ``bot.admin.bot`` registers one
``CommandHandler`` per entry of ``Commands.table`` and routes button presses to ``Commands.run``.
A ``UsageError`` or ``NotFoundError`` raised here is answered with the command's usage there.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from telegram import InlineKeyboardMarkup, LinkPreviewOptions, Message, User
from telegram import error as tg
from telegram.constants import ParseMode

from bot.admin.keyboards import (
    Cancel,
    Choose,
    ExcludeTag,
    Menu,
    MenuAction,
    Retract,
    SubsPage,
    TagsPage,
    channels_menu,
    exclude_button,
    exclude_menu,
    retract_menu,
    subscriptions_menu,
    tags_menu,
)
from bot.admin.replies import (
    ERROR_LIMIT,
    MAX_REPLY,
    QUOTE_LIMIT,
    esc,
    format_changes,
    format_channels,
    format_explanation,
    format_help,
    format_holds,
    format_preview_head,
    format_sources,
    format_status,
    format_subscriptions,
    quote,
    split_tag_channel,
)
from bot.admin.views import channel_listing, source_listing, status_view
from bot.errors import RuleError, UsageError
from bot.humanize import cut, visible_controls
from bot.publishers.api import Clock
from bot.rule_syntax import parse
from bot.services.admin import AdminService
from bot.services.reports import PreviewItem
from bot.settings import Config

VIA = "telegram"
"""How changes made here are audited (``via``)."""


def actor_of(user: User) -> str:
    """How a Telegram user appears in the audit log: ``"111 @alice"`` (or the full name without a username)."""
    who = f"@{user.username}" if user.username else f"({user.full_name})"
    return f"{user.id} {who}"[:128]


@dataclass(frozen=True, slots=True)
class Request:
    """One admin command: who sent it, its argument text (whitespace collapsed), and where to answer."""

    message: Message
    user: User
    args: str
    bang: bool
    """``/subscribe!``: also a tag no post carries yet."""

    @property
    def actor(self) -> str:
        return actor_of(self.user)


Command = Callable[[Request], Awaitable[None]]
Send = Callable[[Message, str, InlineKeyboardMarkup | None], Awaitable[None]]
"""Sends one reply (HTML) to the chat of a message, with an optional keyboard."""


class Commands:
    """The commands of ``bot.admin.replies.COMMANDS`` over one ``AdminService``."""

    def __init__(self, service: AdminService, config: Config, clock: Clock, *, page_size: int, send: Send,
                 scrub: Callable[[str], str]) -> None:
        self.service = service
        self.config = config
        self.clock = clock
        self.page_size = page_size
        self._send_reply = send
        self._scrub = scrub
        self.table: dict[str, Command] = {
            "help": self.help, "start": self.help, "tags": self.tags, "subscribe": self.subscribe,
            "unsubscribe": self.unsubscribe, "subscriptions": self.subscriptions, "channels": self.channels,
            "pause": self.pause, "resume": self.resume, "preview": self.preview, "status": self.status,
            "retry": self.retry, "sources": self.sources, "hold": self.hold, "explain": self.explain,
            "retract": self.retract,
        }
        """What each command does (``CommandHandler`` callbacks are built from it)."""

    async def _send(self, message: Message, text: str, markup: InlineKeyboardMarkup | None = None) -> None:
        await self._send_reply(message, text, markup)

    def _channel_names(self) -> list[str]:
        return [c.name for c in self.config.channels]

    async def help(self, req: Request) -> None:
        await self._send(req.message, format_help(self._channel_names()))

    async def tags(self, req: Request) -> None:
        page = await self.service.tags_page(req.args or None, page=1, size=self.page_size)
        await self._send(req.message, *tags_menu(TagsPage(page.search, 1), page))

    async def subscribe(self, req: Request) -> None:
        await self._choose(req, "subscribe", allow_new=req.bang)

    async def unsubscribe(self, req: Request) -> None:
        await self._choose(req, "unsubscribe", allow_new=False)

    async def _choose(self, req: Request, action: Literal["subscribe", "unsubscribe"], *, allow_new: bool) -> None:
        if action == "subscribe":
            try:
                parsed = parse(req.args, self._channel_names())
            except RuleError as exc:
                raise UsageError(str(exc)) from None
            choice = Choose(action, parsed.tag or None, parsed.channel, allow_new, parsed.rule, parsed.given)
            channel = parsed.channel
        else:
            tag, channel = split_tag_channel(req.args, self._channel_names())
            choice = Choose(action, tag or None, channel, allow_new)
        if choice.action == "unsubscribe" and choice.tag is None:
            text, markup = await self.run(SubsPage(channel, 1), req.actor)
        else:
            text, markup = await self.run(choice, req.actor)
        await self._send(req.message, text, markup)

    async def subscriptions(self, req: Request) -> None:
        words = req.args.split()
        if len(words) > 1:
            raise UsageError("name at most one channel")
        channel = words[0] if words else None
        await self._send(req.message, format_subscriptions(await self.service.subscription_views(channel), channel))

    async def channels(self, req: Request) -> None:
        await self._send(req.message, format_channels(channel_listing(await self.service.channels())))

    async def pause(self, req: Request) -> None:
        channel, _, reason = req.args.partition(" ")
        if not channel:
            raise UsageError("name the channel to pause")
        change = await self.service.pause(channel, actor=req.actor, via=VIA, reason=reason.strip() or None)
        await self._send(req.message, format_changes([change]))

    async def resume(self, req: Request) -> None:
        words = req.args.split()
        if len(words) != 1:
            raise UsageError("name the one channel to resume")
        change = await self.service.resume(words[0], actor=req.actor, via=VIA)
        await self._send(req.message, format_changes([change]))

    async def retry(self, req: Request) -> None:
        words = req.args.split()
        if len(words) != 1:
            raise UsageError("name one channel or one delivery id")
        change = await self.service.retry(words[0], actor=req.actor, via=VIA)
        await self._send(req.message, format_changes([change]))

    async def status(self, req: Request) -> None:
        await self._send(req.message, format_status(status_view(await self.service.status())))

    async def sources(self, req: Request) -> None:
        listing = source_listing(self.config.sources, await self.service.sources())
        await self._send(req.message, format_sources(listing, self.clock.now()))

    async def hold(self, req: Request) -> None:
        words = req.args.split()
        if not words:
            await self._send(req.message, format_holds(await self.service.holds()))
            return
        if len(words) != 2 or words[0] not in ("release", "drop"):
            raise UsageError("/hold lists held bursts; /hold release <source> sends one, /hold drop <source> "
                             "never sends it")
        action = self.service.release_hold if words[0] == "release" else self.service.drop_hold
        await self._send(req.message, format_changes([await action(words[1], actor=req.actor, via=VIA)]))

    async def retract(self, req: Request) -> None:
        """``/retract <url> [channel…]``: says what it would do and asks; the Retract button does it."""
        words = req.args.split()
        if not words:
            raise UsageError("name the post by its link, and optionally the channels to retract it from")
        url, channels = words[0], tuple(words[1:]) or None
        preview = await self.service.retract(url, channels, actor=req.actor, via=VIA, confirmed=False)
        if not any(c.done for c in preview):
            await self._send(req.message, format_changes(preview))
            return
        lines = [f"• {quote(c.text, QUOTE_LIMIT + 100, tail=60)}" for c in preview]
        await self._send(req.message, *retract_menu(lines, Retract(url, channels)))

    async def preview(self, req: Request) -> None:
        target, channel = split_tag_channel(req.args, self._channel_names())
        if not target:
            raise UsageError("name a tag or a post URL")
        items = await self.service.preview(target, channel)
        if not items:
            await self._send(req.message, "Nothing to preview: no configured channel can render this post.")
            return
        for item in items:
            if item.sent or channel is not None:
                await self._send_preview(req.message, item)
            else:  # a channel that would not get it: only why (name it to see the message anyway)
                await self._send(req.message, format_preview_head(item))

    async def explain(self, req: Request) -> None:
        words = req.args.split()
        if not words or len(words) > 2:
            raise UsageError("give the post's link, and a channel if you like")
        channel = words[1] if len(words) == 2 else None
        await self._send(req.message, format_explanation(await self.service.explain(words[0], channel)))

    async def _send_preview(self, message: Message, item: PreviewItem) -> None:
        head = format_preview_head(item)
        if item.platform != "telegram":
            body = cut(visible_controls(item.text, multiline=True), MAX_REPLY - 600)
            await self._send(message, f"{head}\n<pre>{esc(body)}</pre>")
            return
        await self._send(message, head)
        parse_mode = ParseMode.HTML if item.format == "html" else None
        preview = LinkPreviewOptions(url=item.link) if item.link else None
        try:  # the message exactly as the channel gets it: same text, same parse mode
            if item.image_url:
                await message.reply_photo(item.image_url, caption=item.text, parse_mode=parse_mode)
            else:
                await message.reply_text(item.text, parse_mode=parse_mode, link_preview_options=preview)
        except tg.BadRequest as exc:
            await self._send(message, f"⚠️ Telegram refused this message, so {esc(item.channel)} would not "
                                      f"get it either: {quote(self._scrub(exc.message), ERROR_LIMIT)}")

    async def run(self, action: MenuAction, actor: str) -> Menu:
        """What a command or a button press shows next: one service call, then a menu or a reply."""
        size = self.page_size
        if isinstance(action, Cancel):
            return "Cancelled; nothing changed.", None
        if isinstance(action, Retract):
            changes = await self.service.retract(action.url, action.channels, actor=actor, via=VIA)
            return format_changes(changes), None
        if isinstance(action, TagsPage):
            page = await self.service.tags_page(action.search, page=action.page, size=size)
            return tags_menu(action, page)
        if isinstance(action, SubsPage):
            return subscriptions_menu(action, await self.service.subscriptions(action.channel), size)
        if isinstance(action, ExcludeTag):
            if action.excluded is None:
                return exclude_menu(action, await self.service.tags_page(None, page=action.page, size=size))
            change = await self.service.exclude_tag(action.tag, action.channel, action.excluded, actor=actor, via=VIA)
            return format_changes([change]), exclude_button(action.tag, action.channel) if change.done else None
        if action.tag is not None and action.channel is not None:
            if action.action == "subscribe":
                changes = await self.service.subscribe(action.tag, [action.channel], actor=actor, via=VIA,
                                                       allow_new=action.allow_new, rule=action.rule,
                                                       set_rule=action.set_rule)
                [change] = changes
                markup = exclude_button(change.tag, action.channel) if change.done and change.tag else None
                return format_changes(changes), markup
            changes = await self.service.unsubscribe(action.tag, [action.channel], actor=actor, via=VIA)
            return format_changes(changes), None
        if action.tag is not None:
            channels = [(opts.name, opts.platform) for opts, _ in await self.service.channels()]
            return channels_menu(action, channels)
        page = await self.service.tags_page(None, page=1, size=size)
        return tags_menu(TagsPage(None, 1, pick=action), page)
