"""The Telegram admin bot: the ``admin-bot`` sidecar.

Administrators manage tag subscriptions and channels by talking to a Telegram
bot. Each command is parsed here and answered with **one** call into
``bot.services.admin.AdminService``, the same service the CLI uses; no use-case
logic lives in a handler. Changes are audited by that service with
``via="telegram"`` and the admin's Telegram id and @username.

python-telegram-bot's ``Application`` runs inside the service's event loop:
``initialize → start → updater.start_polling`` on start and the reverse on stop
(never ``run_polling``, which would own the loop). In webhook mode the updater
is not used: a small listener of our own (``_WebhookListener``) checks the
``X-Telegram-Bot-Api-Secret-Token`` header and feeds updates to the
application's queue (PTB's own webhook server needs tornado, which tagrelay
does not install).

Who may do what:

* admins are the user ids in ``[admin] admin_ids`` plus ``TAGRELAY_ADMIN_IDS``;
* commands are taken in an admin's private chat with the bot and in the one
  group ``[admin] admin_chat_id`` (if set); everything from other chats is ignored;
* anyone else gets a polite refusal, and nothing changes.

Channels paused by a channel error are announced to every admin's private chat
and the admin group (``App.notify``); a failing announcement is logged, never
retried, never raised. The ``[admin]`` table is documented in docs/admin-bot.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import html
import itertools
import json
import logging
import re
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

from telegram import (
    BotCommand,
    BotCommandScopeChat,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LinkPreviewOptions,
    Message,
    Update,
    User,
)
from telegram import error as tg
from telegram.constants import ChatType, ParseMode
from telegram.ext import (
    Application,
    ApplicationBuilder,
    ApplicationHandlerStop,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    TypeHandler,
    filters,
)
from telegram.request import HTTPXRequest

from bot import __version__
from bot import config_bounds as bounds
from bot.config_bounds import within
from bot.errors import ConfigError, NotFoundError, TagrelayError
from bot.humanize import CUT_MARK, ago, cut, visible_controls
from bot.localhttp import READ_TIMEOUT, HttpError, LocalHttpServer, read_head, write_answer
from bot.log import event, redact_text, redact_url
from bot.publishers.api import RenderEnv
from bot.publishers.http import ENV_NAME_PATTERN, HTTP_URL_PATTERN, describe_exception
from bot.services.admin import AdminService, Change, PreviewItem, StatusReport, TagPage, UsageError
from bot.validation import Field, Model, Rules, ValidationError, field_validator

if TYPE_CHECKING:
    from bot.app import App
    from bot.domain.models import Subscription
    from bot.domain.state import ChannelCounts, HoldView, SourceState
    from bot.services.delivery import ChannelRuntime

log = logging.getLogger("tagrelay.admin")

VIA = "telegram"
ADMIN_IDS_ENV = "TAGRELAY_ADMIN_IDS"
ALLOWED_UPDATES = ("message", "callback_query")
SECRET_HEADER = "x-telegram-bot-api-secret-token"  # noqa: S105 - a header name, not a secret

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
NOTIFY_TIMEOUT = 15.0
"""How long one announcement to one chat may take before it is given up (logged)."""
RETRY_DELAYS = (5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
"""Waits between attempts to reach Telegram when it was unreachable at start-up (the last one repeats)."""
_SECRET_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_COMMAND = re.compile(r"^/(?P<name>[A-Za-z0-9_]{1,64})(?:@(?P<bot>[A-Za-z0-9_]{3,64}))?(?P<bang>!?)(?:\s|$)")
_NO_PREVIEW = LinkPreviewOptions(is_disabled=True)


# -- the [admin] table --------------------------------------------------------------------------


class AdminSettings(Model):
    """The validated ``[admin]`` table (docs/admin-bot.md). ``admin_ids`` includes ``TAGRELAY_ADMIN_IDS``."""

    enabled: bool = False
    """Run the admin bot beside the service (needs the token in ``token_env``)."""
    token_env: str = Field(default="TG_BOT_TOKEN", pattern=ENV_NAME_PATTERN)
    """Environment variable holding the bot token; may be the same bot as a Telegram channel's."""
    api_base: str = Field(default="https://api.telegram.org", pattern=HTTP_URL_PATTERN)
    """Bot API server (a self-hosted telegram-bot-api server, or a test fake)."""
    admin_ids: tuple[Annotated[int, Rules(ge=bounds.TELEGRAM_USER_ID.lo, le=bounds.TELEGRAM_USER_ID.hi)], ...] = ()
    """Telegram user ids allowed to use the bot."""
    admin_chat_id: int | None = within(bounds.TELEGRAM_CHAT_ID, None)
    """One group (negative id) where admins may also give commands; announcements go there too."""
    mode: Literal["polling", "webhook"] = "polling"
    webhook_url: str | None = None
    """Public HTTPS URL Telegram posts updates to (webhook mode); its path is the path served."""
    webhook_listen: str = "127.0.0.1"
    """Address the webhook listener binds (behind a TLS-terminating reverse proxy)."""
    webhook_port: int = within(bounds.PORT, 8443)
    """Port the webhook listener binds; 0 picks a free one."""
    secret_token_env: str = Field(default="TAGRELAY_ADMIN_WEBHOOK_SECRET", pattern=ENV_NAME_PATTERN)
    """Environment variable holding the webhook secret token (required in webhook mode)."""
    page_size: int = within(bounds.ADMIN_PAGE_SIZE, 10)
    """Tags per page in /tags and in the tag keyboards."""

    @field_validator("api_base")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("admin_chat_id")
    @classmethod
    def _a_group(cls, value: int | None) -> int | None:
        if value is not None and value >= 0:
            raise ValueError("must be a group's chat id, which is negative (e.g. -1001234567890)")
        return value

    @field_validator("webhook_url")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not re.match(r"^https://[^\s/?#]+(/[^\s?#]*)?$", value):
            raise ValueError("must be an https:// URL without query or fragment (Telegram only calls HTTPS)")
        return value

    @property
    def webhook_path(self) -> str:
        return (urlsplit(self.webhook_url).path if self.webhook_url else "") or "/"


_KEYS = ", ".join(AdminSettings.model_fields)


def parse_admin_ids(text: str) -> tuple[int, ...]:
    """``"123, 456"`` → ``(123, 456)``; raises ``ConfigError`` naming ``TAGRELAY_ADMIN_IDS``."""
    ids: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if not (part.isascii() and part.isdigit()) or len(part) > 19 or not (  # "²".isdigit() is True too
                bounds.TELEGRAM_USER_ID.lo <= int(part) <= bounds.TELEGRAM_USER_ID.hi):
            raise ConfigError(ADMIN_IDS_ENV,
                              f"{part[:24]!r} is not a Telegram user id (comma-separated positive numbers)")
        ids.append(int(part))
    return tuple(ids)


def load_admin_settings(raw: object, env: Callable[[str], str | None] = lambda _name: None) -> AdminSettings:
    """Validate the raw ``[admin]`` table and merge ``TAGRELAY_ADMIN_IDS``.

    When ``enabled``, also checks what starting needs: the token variable is
    set, there is at least one admin, and webhook mode has its URL and secret.
    Raises ``ConfigError`` naming ``admin.<key>`` (or the variable).
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError("admin", "must be a table ([admin])")
    try:
        settings = AdminSettings.model_validate(dict(raw))
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"][:1])
        reason = f"unknown key (known: {_KEYS})" if err["type"] == "extra_forbidden" else err["msg"]
        raise ConfigError(f"admin.{key}" if key else "admin", reason) from None
    extra_ids = parse_admin_ids(env(ADMIN_IDS_ENV) or "")
    if extra_ids:
        merged = tuple(dict.fromkeys((*settings.admin_ids, *extra_ids)))
        settings = settings.model_copy(update={"admin_ids": merged})
    if not settings.enabled:
        return settings
    if not env(settings.token_env):
        raise ConfigError("admin.token_env", f"environment variable {settings.token_env} is not set "
                                             "(put the bot token from @BotFather in the environment or .env)")
    if not settings.admin_ids:
        raise ConfigError("admin.admin_ids", f"no administrators: list Telegram user ids here or in {ADMIN_IDS_ENV}")
    if settings.mode == "webhook":
        if settings.webhook_url is None:
            raise ConfigError("admin.webhook_url", 'required when mode = "webhook"')
        secret = env(settings.secret_token_env)
        if not secret:
            raise ConfigError("admin.secret_token_env", f"webhook mode needs a secret token: set "
                                                        f"{settings.secret_token_env} in the environment or .env")
        if not _SECRET_TOKEN.match(secret):
            raise ConfigError("admin.secret_token_env", f"the value of {settings.secret_token_env} must be 1-256 "
                                                        "characters of A-Z, a-z, 0-9, _ and -")
    return settings


def make_admin_bot(raw: object, env: Callable[[str], str | None]) -> AdminBot | None:
    """The admin bot sidecar for the raw ``[admin]`` table, or None when it is not enabled."""
    settings = load_admin_settings(raw, env)
    if not settings.enabled:
        return None
    token = env(settings.token_env)
    assert token is not None  # checked by load_admin_settings
    secret = env(settings.secret_token_env) if settings.mode == "webhook" else None
    return AdminBot(settings, token=token, secret_token=secret)


# -- commands -----------------------------------------------------------------------------------


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
    CommandSpec("preview", "<tag|post url> [channel]", "show a post exactly as a channel would get it"),
    CommandSpec("status", "", "sources, channels and problems"),
    CommandSpec("retry", "<channel|delivery id>", "requeue failed, dead or unknown deliveries"),
    CommandSpec("sources", "", "sources and their last poll"),
    CommandSpec("hold", "[release|drop <source>]", "bursts held for an admin; send or drop one"),
)
_SPECS = {c.name: c for c in COMMANDS}


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


def actor_of(user: User) -> str:
    """How a Telegram user appears in the audit log: ``"111 @alice"`` (or the full name without a username)."""
    who = f"@{user.username}" if user.username else f"({user.full_name})"
    return f"{user.id} {who}"[:128]


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


def format_subscriptions(subs: Sequence[tuple[Subscription, str]], channel: str | None) -> str:
    where = f" of <b>{quote(channel)}</b>" if channel else ""
    if not subs:
        return f"<b>Subscriptions</b>{where}: none."
    lines = [f"<b>Subscriptions</b>{where} ({len(subs)})"]
    lines += [f"• {quote(s.tag_name)} → <b>{esc(s.channel)}</b> <i>({esc(origin)})</i>" for s, origin in subs]
    return fit(lines)


def _waiting(counts: ChannelCounts | None) -> int:
    if counts is None:
        return 0
    return counts.counts.get("queued", 0) + counts.counts.get("failed", 0)


def format_channels(items: Sequence[tuple[Any, ChannelCounts | None]]) -> str:
    if not items:
        return "<b>Channels</b>: none configured."
    lines = ["<b>Channels</b>"]
    for opts, counts in items:
        state = f"⏸ PAUSED: {quote(counts.paused_reason or '', DETAIL_LIMIT)}" if counts and counts.paused else "active"
        sent = counts.counts.get("sent", 0) if counts else 0
        lines.append(f"• <b>{esc(opts.name)}</b> ({esc(opts.platform)}) — {state} · waiting {_waiting(counts)}"
                     f" · sent {sent}")
    return fit(lines)


def format_status(report: StatusReport) -> str:
    now = report.now
    problems = report.problems
    headline = "OK" if not problems else f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
    lines = [f"<b>tagrelay {esc(__version__)} — {headline}</b>", "", "<b>Sources</b>"]
    if not report.sources:
        lines.append("<i>none</i>")
    for s in report.sources:
        st = s.state
        health = "ERROR" if s.problem else ("BURST HELD" if s.hold else ("ok" if st.last_poll_at
                                                                          else "not polled yet"))
        lines.append(f"• <b>{esc(st.name)}</b>: {health} · last poll {ago(st.last_poll_at, now)}"
                     f" · {st.post_count} posts")
        if st.last_error:
            lines.append(f"   last error: {quote(st.last_error, DETAIL_LIMIT)}")
    lines += ["", "<b>Channels</b>"]
    if not report.channels:
        lines.append("<i>none</i>")
    for c in report.channels:
        k = c.counts.counts
        held = c.counts.hold_until is not None and c.counts.hold_until > now
        state = "PAUSED" if c.counts.paused else ("held (rate limit)" if held else "active")
        lines.append(f"• <b>{esc(c.counts.channel)}</b> ({esc(c.counts.platform)}): {state} · queue "
                     f"{k.get('queued', 0)} · retrying {k.get('failed', 0)} · sent today {c.counts.sent_today}"
                     f" · failures {k.get('dead', 0) + k.get('unknown', 0)}")
        if c.counts.paused:
            lines.append(f"   paused: {quote(c.counts.paused_reason or 'no reason given', DETAIL_LIMIT)}")
    if problems:
        lines += ["", "<b>Problems</b>"] + [f"⚠️ {quote(p, DETAIL_LIMIT)}" for p in problems]
    if report.warnings:
        lines += ["", "<b>Warnings</b>"] + [f"• {quote(w, DETAIL_LIMIT)}" for w in report.warnings]
    return fit(lines)


def format_sources(config_sources: Sequence[Any], states: Sequence[SourceState], now: datetime) -> str:
    by_name = {s.name: s for s in states}
    if not config_sources:
        return "<b>Sources</b>: none configured."
    lines = ["<b>Sources</b>"]
    for src in config_sources:
        st = by_name.get(src.name)
        kind = src.kind if not (st and st.cache.resolved_kind) else f"{src.kind}→{st.cache.resolved_kind}"
        off = "" if src.enabled else " · <i>disabled</i>"
        lines.append(f"• <b>{esc(src.name)}</b> — {esc(kind)}, every {every(src.interval)} · "
                     f"{st.post_count if st else 0} posts{off}")
        outcome = (st.last_outcome or "-") if st else "-"
        lines.append(f"   last poll {ago(st.last_poll_at if st else None, now)}: {quote(outcome)}")
        if st and st.last_error and st.last_outcome == "error":
            lines.append(f"   last error ({st.consecutive_failures}× in a row): {quote(st.last_error, DETAIL_LIMIT)}")
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
    photo = " · sent as a photo with caption" if item.image_url else ""
    return (f"Preview for <b>{esc(item.channel)}</b> ({esc(item.platform)}, {esc(item.format)}) — "
            f"{item.length}{limit} characters, {verdict}{photo}\nPost: {post}")


# -- inline keyboards ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TagsPage:
    """Show a page of tags: as text (``pick`` None) or as buttons that continue ``pick``."""

    search: str | None
    page: int
    pick: Choose | None = None


@dataclass(frozen=True, slots=True)
class Choose:
    """(Un)subscribe; a missing tag or channel is asked for with a keyboard."""

    action: Literal["subscribe", "unsubscribe"]
    tag: str | None
    channel: str | None
    allow_new: bool = False


@dataclass(frozen=True, slots=True)
class SubsPage:
    """A page of existing subscriptions (of ``channel``) as buttons to unsubscribe."""

    channel: str | None
    page: int


@dataclass(frozen=True, slots=True)
class Cancel:
    pass


MenuAction = TagsPage | Choose | SubsPage | Cancel


class Menus:
    """What each inline button means, kept here: callback data is only a short key (Telegram allows 64 bytes).

    Keys carry a per-process prefix, so buttons from before a restart answer "expired"
    instead of meaning something else. The oldest entries are forgotten beyond ``capacity``.
    """

    def __init__(self, capacity: int = 4096) -> None:
        self._prefix = secrets.token_hex(3)
        self._ids = itertools.count(1)
        self._items: OrderedDict[str, MenuAction] = OrderedDict()
        self._capacity = capacity

    def add(self, action: MenuAction) -> str:
        key = f"{self._prefix}:{next(self._ids):x}"
        self._items[key] = action
        while len(self._items) > self._capacity:
            self._items.popitem(last=False)
        return key

    def get(self, key: str) -> MenuAction | None:
        return self._items.get(key)

    def __len__(self) -> int:
        return len(self._items)


# -- webhook listener ---------------------------------------------------------------------------

MAX_BODY = 1024 * 1024


class WebhookListener(LocalHttpServer):
    """A minimal HTTP/1.1 endpoint for Telegram's webhook calls (one POST per connection).

    Answers 403 unless ``X-Telegram-Bot-Api-Secret-Token`` equals the secret
    (compared in constant time, before the body is read), 404 for other paths,
    405 for other methods; hands the JSON body to ``deliver`` and answers 200.
    """

    label = "admin webhook"

    def __init__(self, host: str, port: int, path: str, secret: str,
                 deliver: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        super().__init__()
        self.host = host
        self.port: int = port
        self.path = path
        self._secret = secret.encode()
        self._deliver = deliver

    async def start(self) -> int:
        self.port = await self.listen(self.host, self.port, config_key="admin.webhook_port")
        return self.port

    async def respond(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, text = await asyncio.wait_for(self._handle(reader), READ_TIMEOUT)
        except HttpError as exc:
            status, text = exc.status, exc.text
        except TimeoutError:
            status, text = 408, "request not received in time"
        await write_answer(writer, status, (text + "\n").encode())

    async def _handle(self, reader: asyncio.StreamReader) -> tuple[int, str]:
        method, target, headers = await read_head(reader)
        if (urlsplit(target).path or "/") != self.path:
            raise HttpError(404, "not found")
        if method != "POST":
            raise HttpError(405, "only POST")
        if not hmac.compare_digest(headers.get(SECRET_HEADER, "").encode(), self._secret):
            event(log, logging.WARNING, "admin.webhook_refused", reason="missing or wrong secret token")
            raise HttpError(403, "forbidden")
        length_text = headers.get("content-length", "")
        if not length_text.isdigit():
            raise HttpError(411, "Content-Length required")
        length = int(length_text)
        if length > MAX_BODY:
            raise HttpError(413, "body too large")
        body = await reader.readexactly(length)
        try:
            data = json.loads(body)
        except ValueError:
            raise HttpError(400, "body is not JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
            raise HttpError(400, "body is not a Telegram update")
        await self._deliver(data)
        return 200, "ok"


# -- the sidecar --------------------------------------------------------------------------------


class _LiveRenderEnvs(Mapping[str, RenderEnv]):
    """Each channel's current render limits, read from its publisher when asked (they are learnt at runtime)."""

    def __init__(self, channels: Mapping[str, ChannelRuntime]) -> None:
        self._channels = channels

    def __getitem__(self, name: str) -> RenderEnv:
        return self._channels[name].publisher.render_env

    def __iter__(self) -> Iterator[str]:
        return iter(self._channels)

    def __len__(self) -> int:
        return len(self._channels)


@dataclass(frozen=True, slots=True)
class Request:
    """One admin command: who sent it, its raw argument text, and where to answer."""

    update: Update
    message: Message
    user: User
    args: str
    bang: bool

    @property
    def actor(self) -> str:
        return actor_of(self.user)


Verdict = Literal["ok", "refuse", "ignore"]
AnyApplication = Application[Any, Any, Any, Any, Any, Any]
Handler = Callable[[Request], Awaitable[None]]


class AdminBot:
    """The ``admin-bot`` sidecar (see the module docstring). ``webhook_port`` is known after ``start``."""

    name = "admin-bot"

    def __init__(self, settings: AdminSettings, *, token: str, secret_token: str | None = None) -> None:
        if settings.mode == "webhook" and not secret_token:
            raise ConfigError("admin.secret_token_env", "webhook mode needs a secret token")
        self.settings = settings
        self._token = token
        self._secret = secret_token
        self.admins = frozenset(settings.admin_ids)
        self.menus = Menus()
        self._app: App | None = None
        self._service: AdminService | None = None
        self._application: AnyApplication | None = None
        self._requests: tuple[HTTPXRequest, HTTPXRequest] | None = None
        self._webhook: WebhookListener | None = None
        self._retry: asyncio.Task[None] | None = None
        self._commands_missing: set[int] = set()
        self._handlers: dict[str, Handler] = {
            "help": self._help, "start": self._help, "tags": self._tags, "subscribe": self._subscribe,
            "unsubscribe": self._unsubscribe, "subscriptions": self._subscriptions, "channels": self._channels,
            "pause": self._pause, "resume": self._resume, "preview": self._preview, "status": self._status,
            "retry": self._retry_cmd, "sources": self._sources, "hold": self._hold,
        }
        self.up = False
        """True while updates are being received."""
        self.retry_delays: tuple[float, ...] = RETRY_DELAYS
        """Waits between connection attempts when Telegram was unreachable at start (the last repeats)."""

    def __repr__(self) -> str:  # never show the token
        return f"AdminBot(mode={self.settings.mode!r}, admins={len(self.admins)})"

    @property
    def webhook_port(self) -> int | None:
        return self._webhook.port if self._webhook is not None else None

    @property
    def application(self) -> AnyApplication:
        assert self._application is not None, "AdminBot.start was not called"
        return self._application

    @property
    def service(self) -> AdminService:
        assert self._service is not None, "AdminBot.start was not called"
        return self._service

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self, app: App) -> None:
        """Connect to the Bot API and start receiving updates; set ``app.notify``.

        A rejected token (or a webhook port that is taken) raises ``ConfigError``
        and nothing keeps running. An unreachable Telegram only logs a warning:
        the bot keeps trying in the background while the service runs.
        """
        self._app = app
        self._service = AdminService(app.store, app.config, app.clock, app.parts.plugins,
                                     _LiveRenderEnvs(app.parts.channels))
        self._application = self._build_application()
        try:
            await self._bring_up()
        except tg.InvalidToken:
            await self._teardown()
            raise ConfigError("admin.token_env", f"Telegram rejected the bot token in {self.settings.token_env} "
                                                 "(getMe: Unauthorized); get a new one from @BotFather") from None
        except ConfigError:
            await self._teardown()
            raise
        except (tg.TelegramError, OSError) as exc:
            event(log, logging.WARNING, "admin.unreachable", error=self._scrub(describe_exception(exc)),
                  note="the service runs; the admin bot keeps trying to connect")
            self._retry = asyncio.create_task(self._keep_trying(), name="admin-bot-connect")
        app.notify = self.announce

    async def stop(self) -> None:
        """Stop receiving updates, let handlers in progress finish, close the connections."""
        app = self._app
        if app is not None and app.notify == self.announce:
            app.notify = None
        retry, self._retry = self._retry, None
        if retry is not None:
            retry.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await retry
        await self._teardown()

    def _build_application(self) -> AnyApplication:
        base = self.settings.api_base
        self._requests = (HTTPXRequest(connection_pool_size=8), HTTPXRequest(connection_pool_size=1))
        builder = (ApplicationBuilder().token(self._token).base_url(f"{base}/bot")
                   .base_file_url(f"{base}/file/bot").request(self._requests[0])
                   .get_updates_request(self._requests[1]).job_queue(None))
        if self.settings.mode == "webhook":
            builder = builder.updater(None)
        application: AnyApplication = builder.build()
        message = filters.UpdateType.MESSAGE
        application.add_handler(TypeHandler(Update, self._gate), group=-1)
        application.add_handler(CommandHandler([c.name for c in COMMANDS], self._on_command, filters=message))
        application.add_handler(CallbackQueryHandler(self._on_callback))
        application.add_handler(MessageHandler(message & filters.COMMAND, self._on_unknown))
        application.add_handler(MessageHandler(message & filters.ChatType.PRIVATE & filters.TEXT, self._on_chatter))
        application.add_error_handler(self._on_error)
        return application

    async def _bring_up(self) -> None:
        application = self.application
        await application.initialize()  # getMe; idempotent once it succeeded
        await self._register_commands()
        if not application.running:
            await application.start()
        if self.settings.mode == "webhook":
            if self._webhook is None:
                assert self._secret is not None
                listener = WebhookListener(self.settings.webhook_listen, self.settings.webhook_port,
                                           self.settings.webhook_path, self._secret, self._from_webhook)
                await listener.start()
                self._webhook = listener
            await application.bot.set_webhook(url=str(self.settings.webhook_url), secret_token=self._secret,
                                              allowed_updates=list(ALLOWED_UPDATES))
        else:
            updater = application.updater
            assert updater is not None
            if not updater.running:
                await updater.start_polling(allowed_updates=list(ALLOWED_UPDATES), error_callback=self._poll_error)
        self.up = True
        event(log, logging.INFO, "admin.started", mode=self.settings.mode, bot=f"@{application.bot.username}",
              admins=len(self.admins), admin_chat=self.settings.admin_chat_id or "-",
              listen=f"{self.settings.webhook_listen}:{self.webhook_port}" if self._webhook else "-")

    async def _keep_trying(self) -> None:
        for attempt in itertools.count():
            await asyncio.sleep(self.retry_delays[min(attempt, len(self.retry_delays) - 1)])
            try:
                await self._bring_up()
                return
            except tg.InvalidToken:
                event(log, logging.ERROR, "admin.token_rejected", token_env=self.settings.token_env,
                      note="the admin bot stays off; fix the token and restart")
                return
            except ConfigError as exc:
                event(log, logging.ERROR, "admin.cannot_start", error=str(exc))
                return
            except (tg.TelegramError, OSError) as exc:
                event(log, logging.WARNING, "admin.unreachable", error=self._scrub(describe_exception(exc)),
                      attempt=attempt + 2)

    async def _teardown(self) -> None:
        self.up = False
        application = self._application
        if application is not None:
            updater = application.updater
            if updater is not None and updater.running:
                with contextlib.suppress(Exception):
                    await updater.stop()
            if application.running:
                with contextlib.suppress(Exception):
                    await application.stop()
            with contextlib.suppress(Exception):
                await application.shutdown()
        if self._webhook is not None:
            await self._webhook.stop()
            self._webhook = None
        for request in self._requests or ():  # Bot.shutdown skips them when initialize() failed
            with contextlib.suppress(Exception):
                await request.shutdown()

    async def _register_commands(self, chats: Sequence[int] | None = None) -> None:
        """setMyCommands for each admin's private chat and the admin group; a failure is logged, not fatal."""
        commands = [BotCommand(c.name, c.description) for c in COMMANDS]
        targets = list(chats) if chats is not None else [*self.settings.admin_ids, *self._group()]
        for chat_id in targets:
            try:
                await self.application.bot.set_my_commands(commands, scope=BotCommandScopeChat(chat_id))
                self._commands_missing.discard(chat_id)
            except tg.InvalidToken:
                raise
            except tg.TelegramError as exc:
                self._commands_missing.add(chat_id)
                event(log, logging.WARNING, "admin.commands_not_set", chat_id=chat_id,
                      error=self._scrub(describe_exception(exc)),
                      note="an admin must open a private chat with the bot first; retried on their next message")

    def _group(self) -> list[int]:
        return [self.settings.admin_chat_id] if self.settings.admin_chat_id is not None else []

    async def _from_webhook(self, data: dict[str, Any]) -> None:
        try:
            update = Update.de_json(data, self.application.bot)
        except Exception as exc:  # noqa: BLE001 - a malformed update is the sender's problem
            raise HttpError(400, f"not a Telegram update ({type(exc).__name__})") from None
        await self.application.update_queue.put(update)

    def _poll_error(self, exc: tg.TelegramError) -> None:
        event(log, logging.WARNING, "admin.poll_failed", error=self._scrub(describe_exception(exc)),
              note="retrying" + (" (is another process polling with this token?)" if isinstance(exc, tg.Conflict)
                                 else ""))

    def _scrub(self, text: str) -> str:
        return redact_text(text, [self._token, self._secret or ""])

    # -- announcements --------------------------------------------------------------------------

    async def announce(self, text: str) -> None:
        """Send ``text`` (plain) to every admin's private chat and the admin group. Never raises."""
        if self._application is None or not self.up:
            event(log, logging.WARNING, "admin.announcement_dropped", reason="the admin bot is not connected",
                  text=text)
            return
        body = bounded_reply(f"⚠️ {quote(text, MAX_REPLY)}")
        # all chats at once: the delivery service waits for this, so it takes one timeout at most
        await asyncio.gather(*(self._announce_to(chat_id, body) for chat_id in
                               dict.fromkeys([*self.settings.admin_ids, *self._group()])))

    async def _announce_to(self, chat_id: int, body: str) -> None:
        try:
            await asyncio.wait_for(self.application.bot.send_message(
                chat_id, body, parse_mode=ParseMode.HTML, link_preview_options=_NO_PREVIEW), NOTIFY_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - one unreachable admin must not stop the others
            event(log, logging.WARNING, "admin.announce_failed", chat_id=chat_id,
                  error=self._scrub(describe_exception(exc)))

    # -- who may talk to the bot ----------------------------------------------------------------

    def authorise(self, update: Update) -> Verdict:
        """``ok`` for an admin in a private chat or the admin group; ``refuse`` for someone else's
        command there (or anything in a private chat); ``ignore`` for every other chat."""
        user, chat = update.effective_user, update.effective_chat
        if user is None or chat is None:
            return "ignore"
        private = chat.type == ChatType.PRIVATE
        if not private and chat.id != self.settings.admin_chat_id:
            return "ignore"
        if user.id in self.admins:
            return "ok"
        if update.callback_query is not None or private:
            return "refuse"
        message = update.message
        text = message.text if message is not None else None
        match = _COMMAND.match(text or "")
        if match and self._for_us(match["bot"]):
            return "refuse"
        return "ignore"

    def _for_us(self, bot_name: str | None) -> bool:
        if not bot_name or self._application is None:
            return True
        try:
            return bot_name.lower() == (self._application.bot.username or "").lower()
        except RuntimeError:  # not initialised yet
            return True

    async def _gate(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Runs before every handler (group -1): lets admins through, refuses or ignores the rest."""
        verdict = self.authorise(update)
        user, chat = update.effective_user, update.effective_chat
        if verdict == "ok":
            if chat is not None and chat.id in self._commands_missing:
                await self._register_commands([chat.id])
            return
        if verdict == "refuse" and user is not None and chat is not None:
            event(log, logging.WARNING, "admin.refused", user_id=user.id, username=user.username or "-",
                  chat_id=chat.id)
            query = update.callback_query
            if query is not None:
                with contextlib.suppress(tg.TelegramError):
                    await query.answer("Sorry, only administrators of this bot can use these buttons.",
                                       show_alert=True)
            elif update.message is not None:
                await self._send(update.message,
                                 "Sorry, only the administrators of this tagrelay instance can use this bot, "
                                 "and nothing was changed.\n"
                                 f"Your Telegram user id is <code>{user.id}</code>; an administrator can add it "
                                 "to <code>[admin] admin_ids</code>.")
        raise ApplicationHandlerStop

    # -- handlers -------------------------------------------------------------------------------

    async def _on_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message, user = update.message, update.effective_user
        if message is None or user is None or not message.text:
            return
        match = _COMMAND.match(message.text)
        if match is None:
            return
        name = match["name"].lower()
        spec, handler = _SPECS.get(name), self._handlers.get(name)
        if spec is None or handler is None:
            return
        parts = message.text.split(maxsplit=1)
        args = " ".join(parts[1].split()) if len(parts) > 1 else ""
        request = Request(update=update, message=message, user=user, args=args, bang=bool(match["bang"]))
        try:
            await handler(request)
        except (UsageError, NotFoundError) as exc:
            await self._send(message, f"⚠️ {format_error(exc)}\nUsage: <code>{esc(spec.usage)}</code>")
        except TagrelayError as exc:
            await self._send(message, f"⚠️ /{esc(name)} failed: {quote(self._scrub(str(exc)), ERROR_LIMIT)}")

    async def _on_unknown(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.message
        match = _COMMAND.match(message.text or "") if message is not None else None
        if message is None or match is None or not self._for_us(match["bot"]):
            return  # a command for another bot in the admin group
        await self._send(message, f"Unknown command <code>/{esc(match['name'])}</code>. "
                                  "Send /help for the list of commands.")

    async def _on_chatter(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if update.message is not None:
            await self._send(update.message, "I only understand commands. Send /help for the list.")

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        exc = context.error
        log.error("admin bot handler failed: %s", self._scrub(describe_exception(exc)) if exc else "unknown",
                  exc_info=exc)
        if isinstance(update, Update) and update.effective_message is not None and update.callback_query is None:
            with contextlib.suppress(Exception):
                await self._send(update.effective_message, "⚠️ Something went wrong; the error was logged.")

    async def _send(self, message: Message, text: str, markup: InlineKeyboardMarkup | None = None) -> None:
        """Every reply goes out here (edits through ``_edit``): bounded to what Telegram accepts."""
        await message.reply_text(bounded_reply(text), parse_mode=ParseMode.HTML, reply_markup=markup,
                                 link_preview_options=_NO_PREVIEW)

    def _channel_names(self) -> list[str]:
        assert self._app is not None
        return [c.name for c in self._app.config.channels]

    # -- commands (one service call each) -------------------------------------------------------

    async def _help(self, req: Request) -> None:
        await self._send(req.message, format_help(self._channel_names()))

    async def _tags(self, req: Request) -> None:
        page = await self.service.tags_page(req.args or None, page=1, size=self.settings.page_size)
        await self._send(req.message, *self._tags_view(TagsPage(page.search, 1), page))

    async def _subscribe(self, req: Request) -> None:
        await self._choose(req, Choose("subscribe", None, None, allow_new=req.bang))

    async def _unsubscribe(self, req: Request) -> None:
        await self._choose(req, Choose("unsubscribe", None, None))

    async def _choose(self, req: Request, base: Choose) -> None:
        tag, channel = split_tag_channel(req.args, self._channel_names())
        choice = Choose(base.action, tag or None, channel, base.allow_new)
        if choice.action == "unsubscribe" and choice.tag is None:
            text, markup = await self._run(SubsPage(channel, 1), req.actor)
        else:
            text, markup = await self._run(choice, req.actor)
        await self._send(req.message, text, markup)

    async def _subscriptions(self, req: Request) -> None:
        words = req.args.split()
        if len(words) > 1:
            raise UsageError("name at most one channel")
        channel = words[0] if words else None
        await self._send(req.message, format_subscriptions(await self.service.subscriptions(channel), channel))

    async def _channels(self, req: Request) -> None:
        await self._send(req.message, format_channels(await self.service.channels()))

    async def _pause(self, req: Request) -> None:
        channel, _, reason = req.args.partition(" ")
        if not channel:
            raise UsageError("name the channel to pause")
        change = await self.service.pause(channel, actor=req.actor, via=VIA, reason=reason.strip() or None)
        await self._send(req.message, format_changes([change]))

    async def _resume(self, req: Request) -> None:
        words = req.args.split()
        if len(words) != 1:
            raise UsageError("name the one channel to resume")
        change = await self.service.resume(words[0], actor=req.actor, via=VIA)
        await self._send(req.message, format_changes([change]))

    async def _retry_cmd(self, req: Request) -> None:
        words = req.args.split()
        if len(words) != 1:
            raise UsageError("name one channel or one delivery id")
        change = await self.service.retry(words[0], actor=req.actor, via=VIA)
        await self._send(req.message, format_changes([change]))

    async def _status(self, req: Request) -> None:
        await self._send(req.message, format_status(await self.service.status()))

    async def _sources(self, req: Request) -> None:
        assert self._app is not None
        states = await self.service.sources()
        await self._send(req.message, format_sources(self._app.config.sources, states, self._app.clock.now()))

    async def _hold(self, req: Request) -> None:
        words = req.args.split()
        if not words:
            await self._send(req.message, format_holds(await self.service.holds()))
            return
        if len(words) != 2 or words[0] not in ("release", "drop"):
            raise UsageError("/hold lists held bursts; /hold release <source> sends one, /hold drop <source> "
                             "never sends it")
        action = self.service.release_hold if words[0] == "release" else self.service.drop_hold
        await self._send(req.message, format_changes([await action(words[1], actor=req.actor, via=VIA)]))

    async def _preview(self, req: Request) -> None:
        target, channel = split_tag_channel(req.args, self._channel_names())
        if not target:
            raise UsageError("name a tag or a post URL")
        items = await self.service.preview(target, channel)
        if not items:
            await self._send(req.message, "Nothing to preview: no configured channel can render this post.")
            return
        for item in items:
            await self._send_preview(req.message, item)

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

    # -- inline keyboards -----------------------------------------------------------------------

    async def _on_callback(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query, user = update.callback_query, update.effective_user
        if query is None or user is None:
            return
        action = self.menus.get(query.data or "")
        if action is None:
            await query.answer("This menu has expired; send the command again.", show_alert=True)
            return
        try:
            text, markup = await self._run(action, actor_of(user))
            note = ""
        except (UsageError, NotFoundError) as exc:
            text, markup, note = f"⚠️ {format_error(exc)}", None, "Not done"
        except TagrelayError as exc:
            text, markup, note = f"⚠️ Failed: {quote(self._scrub(str(exc)), ERROR_LIMIT)}", None, "Failed"
        await query.answer(note or None)
        await self._edit(query, text, markup)

    async def _edit(self, query: CallbackQuery, text: str, markup: InlineKeyboardMarkup | None) -> None:
        try:
            await query.edit_message_text(bounded_reply(text), parse_mode=ParseMode.HTML, reply_markup=markup,
                                          link_preview_options=_NO_PREVIEW)
        except tg.BadRequest as exc:
            if "not modified" not in exc.message.lower():
                raise

    async def _run(self, action: MenuAction, actor: str) -> tuple[str, InlineKeyboardMarkup | None]:
        """What a command or a button press shows next: one service call, then a view."""
        size = self.settings.page_size
        if isinstance(action, Cancel):
            return "Cancelled; nothing changed.", None
        if isinstance(action, TagsPage):
            page = await self.service.tags_page(action.search, page=action.page, size=size)
            return self._tags_view(action, page)
        if isinstance(action, SubsPage):
            subs = await self.service.subscriptions(action.channel)
            return self._subs_view(action, subs)
        if action.tag is not None and action.channel is not None:
            if action.action == "subscribe":
                changes = await self.service.subscribe(action.tag, [action.channel], actor=actor, via=VIA,
                                                       allow_new=action.allow_new)
            else:
                changes = await self.service.unsubscribe(action.tag, [action.channel], actor=actor, via=VIA)
            return format_changes(changes), None
        if action.tag is not None:
            return self._channels_view(action, await self.service.channels())
        page = await self.service.tags_page(None, page=1, size=size)
        return self._tags_view(TagsPage(None, 1, pick=action), page)

    def _button(self, label: str, action: MenuAction) -> InlineKeyboardButton:
        return InlineKeyboardButton(safe_label(label, 48), callback_data=self.menus.add(action))

    def _nav(self, prev: MenuAction | None, nxt: MenuAction | None) -> list[InlineKeyboardButton]:
        row = []
        if prev is not None:
            row.append(self._button("« Prev", prev))
        if nxt is not None:
            row.append(self._button("Next »", nxt))
        return row

    def _tags_view(self, state: TagsPage, page: TagPage) -> tuple[str, InlineKeyboardMarkup | None]:
        prev = TagsPage(state.search, page.page - 1, state.pick) if page.has_prev else None
        nxt = TagsPage(state.search, page.page + 1, state.pick) if page.has_next else None
        nav = self._nav(prev, nxt)
        pick = state.pick
        if pick is None:
            return format_tags(page), InlineKeyboardMarkup([nav]) if nav else None
        where = f" <b>{quote(pick.channel)}</b>" if pick.channel else ""
        verb = "Subscribe" if pick.action == "subscribe" else "Unsubscribe"
        text = f"{verb}{where}: choose a tag (page {page.page})."
        if not page.items:
            text = "No tags are known yet (no source has been polled); send <code>/subscribe! &lt;tag&gt; " \
                   "&lt;channel&gt;</code> to subscribe to a future tag."
        rows = [[self._button(f"{t.name} · {t.posts}", Choose(pick.action, t.name, pick.channel, pick.allow_new))]
                for t in page.items]
        if nav:
            rows.append(nav)
        rows.append([self._button("Cancel", Cancel())])
        return text, InlineKeyboardMarkup(rows)

    def _channels_view(self, choice: Choose, channels: Sequence[tuple[Any, ChannelCounts | None]]
                       ) -> tuple[str, InlineKeyboardMarkup]:
        verb = "Subscribe" if choice.action == "subscribe" else "Unsubscribe"
        prep = "to" if choice.action == "subscribe" else "from"
        buttons = [self._button(f"{opts.name} ({opts.platform})", Choose(choice.action, choice.tag, opts.name,
                                                                          choice.allow_new))
                   for opts, _ in channels]
        rows = [buttons[i:i + 2] for i in range(0, len(buttons), 2)]
        rows.append([self._button("Cancel", Cancel())])
        return f"{verb} <b>{quote(choice.tag)}</b> {prep} which channel?", InlineKeyboardMarkup(rows)

    def _subs_view(self, state: SubsPage, subs: Sequence[tuple[Subscription, str]]
                   ) -> tuple[str, InlineKeyboardMarkup | None]:
        where = f" of <b>{quote(state.channel)}</b>" if state.channel else ""
        if not subs:
            return f"There are no subscriptions{where} to remove.", None
        size = self.settings.page_size
        pages = max(1, -(-len(subs) // size))
        number = min(max(1, state.page), pages)
        chunk = subs[(number - 1) * size: number * size]
        rows = [[self._button(f"{s.tag_name} → {s.channel}", Choose("unsubscribe", s.tag_name, s.channel))]
                for s, _ in chunk]
        nav = self._nav(SubsPage(state.channel, number - 1) if number > 1 else None,
                        SubsPage(state.channel, number + 1) if number < pages else None)
        if nav:
            rows.append(nav)
        rows.append([self._button("Cancel", Cancel())])
        return f"Unsubscribe{where}: choose a subscription (page {number}/{pages}).", InlineKeyboardMarkup(rows)
