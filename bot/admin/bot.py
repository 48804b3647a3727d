"""The Telegram admin bot: the ``admin-bot`` sidecar, and the service's ``Notifier`` when enabled.

Administrators manage tag subscriptions and channels by talking to a Telegram bot. Each command
is one python-telegram-bot ``CommandHandler`` whose callback (``bot.admin.commands``) makes **one**
call into ``bot.services.admin.AdminService`` (the same service the CLI uses, built by the
composition root, ``bot.bootstrap``) and answers with a reply from ``bot.admin.replies``. Changes are audited by that
service with ``via="telegram"`` and the admin's Telegram id and @username.

PTB's ``Application`` runs inside the service's event loop: ``initialize → start →
updater.start_polling`` on start and the reverse on stop (never ``run_polling``, which would own
the loop). Its ``Bot`` talks to ``[admin] api_base`` (a self-hosted Bot API server, or the test
fake) over PTB's own httpx request class. In webhook mode the updater is not used: updates come
from ``bot.admin.webhook`` into the application's queue.

Who may do what (PTB filters on every message handler):

* admins are ``filters.User`` of ``[admin] admin_ids`` plus ``TAGRELAY_ADMIN_IDS``;
* commands are taken in an admin's private chat with the bot (``filters.ChatType.PRIVATE``) and in
  the one group ``[admin] admin_chat_id`` (``filters.Chat``); everything from other chats is ignored;
* anyone else gets a polite refusal (a private message, or a command for this bot in the admin
  group; a button press gets an alert), and nothing changes.

Inline keyboards use ``arbitrary_callback_data`` (``bot.admin.keyboards``); a button PTB does not
know answers "this menu has expired". Channels paused by a channel error and bursts held for an
admin are announced to every admin's private chat and the admin group through ``notify`` (the
``Notifier`` the composition root injects); a failing announcement is logged, never retried, never
raised. The ``[admin]`` table is documented in docs/admin-bot.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any

from telegram import (
    BotCommand,
    BotCommandScopeChat,
    CallbackQuery,
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
    InvalidCallbackData,
    MessageHandler,
    TypeHandler,
    filters,
)
from telegram.request import HTTPXRequest

from bot.admin.commands import Commands, Request, actor_of
from bot.admin.keyboards import Cancel, Choose, ExcludeTag, Retract, SubsPage, TagsPage
from bot.admin.replies import COMMANDS, ERROR_LIMIT, MAX_REPLY, CommandSpec, bounded_reply, esc, format_error, quote
from bot.admin.settings import AdminSettings
from bot.admin.webhook import RejectedUpdate, WebhookListener
from bot.errors import ConfigError, NotFoundError, TagrelayError, UsageError
from bot.log import event, redact_text
from bot.publishers.http import describe_exception
from bot.services.admin import AdminService

if TYPE_CHECKING:
    from bot.app import App

log = logging.getLogger("tagrelay.admin")

ALLOWED_UPDATES = ("message", "callback_query")
NOTIFY_TIMEOUT = 15.0
"""How long one announcement to one chat may take before it is given up (logged)."""
RETRY_DELAYS = (5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
"""Waits between attempts to reach Telegram when it was unreachable at start-up (the last one repeats)."""
MENUS_KEPT = 1024
"""Keyboards whose buttons PTB remembers (``arbitrary_callback_data``); older ones answer "expired"."""
_COMMAND = re.compile(r"^/(?P<name>[A-Za-z0-9_]{1,64})(?:@(?P<bot>[A-Za-z0-9_]{3,64}))?(?P<bang>!?)(?:\s|$)")
_NO_PREVIEW = LinkPreviewOptions(is_disabled=True)
_REFUSAL = ("Sorry, only the administrators of this tagrelay instance can use this bot, and nothing was changed.\n"
            "Your Telegram user id is <code>{id}</code>; an administrator can add it to "
            "<code>[admin] admin_ids</code>.")

AnyApplication = Application[Any, Any, Any, Any, Any, Any]


class _ForThisBot(filters.MessageFilter):
    """A command addressed to no bot in particular (``/status``) or to this one (``/status@this_bot``),
    not to another bot in the same group."""

    def filter(self, message: Message) -> bool:
        match = _COMMAND.match(message.text or "")
        if match is None:
            return False
        target = match["bot"]
        return not target or target.lower() == (message.get_bot().username or "").lower()


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
        self._service: AdminService | None = None
        self._application: AnyApplication | None = None
        self._requests: tuple[HTTPXRequest, HTTPXRequest] | None = None
        self._webhook: WebhookListener | None = None
        self._retry: asyncio.Task[None] | None = None
        self._commands_missing: set[int] = set()
        self._commands: Commands | None = None
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
        """Connect to the Bot API and start receiving updates.

        A rejected token (or a webhook port that is taken) raises ``ConfigError`` and nothing keeps
        running. An unreachable Telegram only logs a warning: the bot keeps trying in the background
        while the service runs (announcements meanwhile are logged and dropped).
        """
        assert app.parts.admin is not None, "the composition root (bot.bootstrap.build_app) builds the AdminService"
        self._service = app.parts.admin
        self._commands = Commands(app.parts.admin, app.config, app.clock, page_size=self.settings.page_size,
                                  send=self._send, scrub=self._scrub)
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

    async def stop(self) -> None:
        """Stop receiving updates, let handlers in progress finish, close the connections."""
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
                   .get_updates_request(self._requests[1]).job_queue(None)
                   .arbitrary_callback_data(MENUS_KEPT))
        if self.settings.mode == "webhook":
            builder = builder.updater(None)
        application: AnyApplication = builder.build()
        self._add_handlers(application)
        return application

    def _add_handlers(self, application: AnyApplication) -> None:
        admins = filters.User(user_id=self.admins)
        private = filters.ChatType.PRIVATE
        here = private | filters.Chat(chat_id=self._group()) if self._group() else private
        message = filters.UpdateType.MESSAGE
        for_us = _ForThisBot()
        asked = message & admins & here
        # before everything (group -1): buttons are checked here (PTB has no filters for them), and an
        # admin whose command menu could not be set is retried on their next message
        application.add_handler(TypeHandler(Update, self._before), group=-1)
        for spec in COMMANDS:
            application.add_handler(CommandHandler(spec.name, self._command(spec), filters=asked))
        application.add_handler(MessageHandler(asked & filters.COMMAND & for_us, self._on_unknown))
        application.add_handler(MessageHandler(asked & private & filters.TEXT, self._on_chatter))
        application.add_handler(MessageHandler(message & ~admins & (private | (here & filters.COMMAND & for_us)),
                                               self._refuse))
        application.add_handler(CallbackQueryHandler(self._on_expired, pattern=InvalidCallbackData))
        application.add_handler(CallbackQueryHandler(self._on_callback))
        application.add_error_handler(self._on_error)

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
            raise RejectedUpdate(type(exc).__name__) from None
        self.application.bot.insert_callback_data(update)  # buttons: the key Telegram sent → our MenuAction
        await self.application.update_queue.put(update)

    def _poll_error(self, exc: tg.TelegramError) -> None:
        event(log, logging.WARNING, "admin.poll_failed", error=self._scrub(describe_exception(exc)),
              note="retrying" + (" (is another process polling with this token?)" if isinstance(exc, tg.Conflict)
                                 else ""))

    def _scrub(self, text: str) -> str:
        return redact_text(text, [self._token, self._secret or ""])

    # -- announcements (the Notifier) -----------------------------------------------------------

    async def notify(self, text: str) -> None:
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

    def _admin_here(self, user: User | None, chat_id: int | None, chat_type: str | None) -> bool | None:
        """True for an admin in a private chat or the admin group, False for someone else there, None
        for every other chat (ignored)."""
        if user is None or chat_id is None:
            return None
        if chat_type != ChatType.PRIVATE and chat_id != self.settings.admin_chat_id:
            return None
        return user.id in self.admins

    async def _before(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Group -1, before every handler: refuses or ignores buttons pressed by anyone but an admin
        where admins talk; retries setting the command menu of an admin's chat."""
        chat = update.effective_chat
        allowed = self._admin_here(update.effective_user, chat.id if chat else None, chat.type if chat else None)
        query = update.callback_query
        if query is not None and not allowed:
            if allowed is False:
                self._log_refusal(update)
                with contextlib.suppress(tg.TelegramError):
                    await query.answer("Sorry, only administrators of this bot can use these buttons.",
                                       show_alert=True)
            raise ApplicationHandlerStop
        if allowed and chat is not None and chat.id in self._commands_missing:
            await self._register_commands([chat.id])

    def _log_refusal(self, update: Update) -> None:
        user, chat = update.effective_user, update.effective_chat
        if user is not None and chat is not None:
            event(log, logging.WARNING, "admin.refused", user_id=user.id, username=user.username or "-",
                  chat_id=chat.id)

    async def _refuse(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        self._log_refusal(update)
        if update.message is not None and update.effective_user is not None:
            await self._send(update.message, _REFUSAL.format(id=update.effective_user.id))

    # -- handlers -------------------------------------------------------------------------------

    def _command(self, spec: CommandSpec) -> Callable[[Update, ContextTypes.DEFAULT_TYPE], Coroutine[Any, Any, None]]:
        """The ``CommandHandler`` callback of ``spec``: parse, one service call, one reply; a usage or
        not-found error is answered with the command's usage, any other failure with what failed."""
        assert self._commands is not None
        run = self._commands.table[spec.name]

        async def handle(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
            message, user = update.message, update.effective_user
            if message is None or user is None or not message.text:
                return
            match = _COMMAND.match(message.text)
            if match is None:  # "/subscribe!x": not a command as this bot reads them
                return
            parts = message.text.split(maxsplit=1)
            args = " ".join(parts[1].split()) if len(parts) > 1 else ""
            try:
                await run(Request(message=message, user=user, args=args, bang=bool(match["bang"])))
            except (UsageError, NotFoundError) as exc:
                await self._send(message, f"⚠️ {format_error(exc)}\nUsage: <code>{esc(spec.usage)}</code>")
            except TagrelayError as exc:
                await self._send(message, f"⚠️ /{esc(spec.name)} failed: {quote(self._scrub(str(exc)), ERROR_LIMIT)}")

        return handle

    async def _on_unknown(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.message
        match = _COMMAND.match(message.text or "") if message is not None else None
        if message is None or match is None:
            return
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

    # -- commands (one service call each) -------------------------------------------------------

    # -- inline keyboards -----------------------------------------------------------------------

    async def _on_expired(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A button PTB does not know (``InvalidCallbackData``): from before a restart, too old, or forged."""
        if update.callback_query is not None:
            await update.callback_query.answer("This menu has expired; send the command again.", show_alert=True)

    async def _on_callback(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query, user = update.callback_query, update.effective_user
        if query is None or user is None:
            return
        action = query.data
        if not isinstance(action, TagsPage | Choose | SubsPage | ExcludeTag | Cancel | Retract):  # not one of ours
            await query.answer("This menu has expired; send the command again.", show_alert=True)
            return
        try:
            assert self._commands is not None
            text, markup = await self._commands.run(action, actor_of(user))
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

