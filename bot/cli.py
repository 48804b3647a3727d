"""The ``tagrelay`` command: parse arguments → one service call → a table or JSON.

Exit codes: 0 done; 1 a runtime failure (database, channel check); 2 a
configuration or usage error (nothing was written); 130 interrupted.

Size: one thin function per command (each a service call and a table) plus the
parser that names them all; the state words and listings come from
``bot.admin.views`` and the use cases from ``bot.services``, so what is left here
is the command table itself, which reads best as one piece.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, is_dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from bot import __version__
from bot.admin.views import channel_listing, push_word, source_listing, status_view
from bot.allocator import limit_malloc_arenas
from bot.app import upgrade_schema
from bot.bootstrap import build_service, load_service_config, make_admin_service, make_store, open_channel
from bot.clock import SystemClock
from bot.config_bounds import MAX_AGE
from bot.domain.budget import BudgetLine, usd
from bot.domain.retention import PruneCounts
from bot.domain.rules import RuleParts, rule_dict
from bot.errors import ConfigError, NotFoundError, PluginError, RuleError, TagrelayError, UsageError
from bot.humanize import ago as _ago
from bot.humanize import json_visible_controls, size, visible_controls
from bot.log import configure_logging, event, redact_text, redact_url
from bot.publishers.x_auth import x_auth_flow
from bot.rule_syntax import describe
from bot.services.pruner import Pruner, longest_window
from bot.services.reports import StatusReport
from bot.settings import Config, EnvSettings, Secrets, StorageConfig
from bot.storage import migrate
from bot.storage.engine import make_engine

EXIT_OK, EXIT_FAIL, EXIT_CONFIG, EXIT_INTERRUPTED = 0, 1, 2, 130
DEFAULT_CONFIG = Path("config/tagrelay.toml")


# -- formatting -------------------------------------------------------------------------------
#
# Reports quote what feeds, platforms and people wrote. Every command's output goes through
# ``_emit`` (``main`` buffers it), which shows control and bidi characters as visible escapes
# (bot.humanize.visible_controls), so no command can print ESC[2J or U+202E raw. Table cells
# are escaped on their own too, newlines and tabs included, so that one row stays one line.
# JSON output is parsed by programs: it keeps the exact text (json_visible_controls only
# writes the characters json.dumps leaves raw as \uXXXX escapes).


def _emit(text: str, out: TextIO, secrets: Sequence[str]) -> None:
    """The one place a command's output is written: secrets redacted, controls made visible."""
    out.write(visible_controls(redact_text(text, secrets), multiline=True))


MAX_CELL_CHARS = 120
"""A table cell longer than this is cut, ending in "…" (``--json`` keeps the whole text)."""


def _cell(value: object) -> str:
    text = str(value)
    return text if len(text) <= MAX_CELL_CHARS else text[: MAX_CELL_CHARS - 1] + "…"


def _table(rows: Sequence[Sequence[str]], headers: Sequence[str], out: TextIO) -> None:
    if not rows:
        out.write("(none)\n")
        return
    rows = [[visible_controls(_cell(c)) for c in row] for row in rows]  # a database may hold megabyte titles
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
    out.write("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip() + "\n")
    for row in rows:
        out.write("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


def _jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {k: _jsonable(v) for k, v in asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    return value


def _print_json(data: Any, out: TextIO) -> None:
    out.write(json_visible_controls(json.dumps(_jsonable(data), ensure_ascii=False, indent=2)) + "\n")


# -- context ----------------------------------------------------------------------------------


class Context:
    """What every command gets: the validated config, the environment, output streams."""

    def __init__(self, args: argparse.Namespace, out: TextIO, err: TextIO) -> None:
        self.args = args
        self.out = out
        self.err = err
        self.env = EnvSettings.load()
        self.secrets = Secrets(self.env.env_file)
        path = args.config or self.env.config or DEFAULT_CONFIG
        # deliberately lazy, like every composition-root import here: `--help` and usage errors need none of it

        # every command validates the same way, `config check` included: each table, each bound, the secrets
        self.config: Config = load_service_config(Path(path), env=self.env, secrets=self.secrets,
                                                  credentials=getattr(args, "credentials", True))

    def admin(self, store: Any) -> Any:

        return make_admin_service(self.config, store)

    async def with_store(self, fn: Callable[[Any], Awaitable[int]]) -> int:

        store = make_store(self.config)
        try:
            await upgrade_schema(store, isolated=False)  # a short command: no child process needed
            return await fn(store)
        finally:
            await store.aclose()

    def secret_values(self) -> list[str]:
        """Values to redact from logs: secret-named variables plus every channel's ``*_env`` variable and
        the push secrets (a source's ``push_secret_env``, ``[push] websub_secret_env``)."""
        names = {value for opts in self.config.channels for key, value in opts.model_dump().items()
                 if key.endswith("_env") and isinstance(value, str)}
        if self.config.admin is not None:  # the admin bot's token_env and secret_token_env
            names |= {self.config.admin.token_env, self.config.admin.secret_token_env}
        names |= {s.push_secret_env for s in self.config.sources if s.push_secret_env is not None}
        if self.config.push.websub_on:
            names.add(self.config.push.websub_secret_env)
        extra = [v for v in (self.secrets.get(n) for n in sorted(names)) if v]
        return [*self.secrets.values(), *extra]

    def actor(self) -> str:
        user = os.environ.get("USER") or os.environ.get("USERNAME") or "unknown"
        return f"{user}@cli"


# -- commands ---------------------------------------------------------------------------------


async def cmd_run(ctx: Context) -> int:
    limit_malloc_arenas()  # before any thread starts: the poll workers' arenas held ~20 MiB (bot/allocator.py)
    configure_logging(ctx.env.log_level, ctx.args.log_format or ctx.env.log_format, ctx.secret_values())
    app = build_service(ctx.config, ctx.secrets)
    if not ctx.args.once:
        # before start-up, not after: a SIGTERM/SIGINT while starting (e.g. waiting for a platform) then ends
        # in a clean stop (in-flight work recovered, the instance unregistered), instead of a death
        app.install_signal_handlers()
    async with app:
        if ctx.args.once:
            report = await app.run_once()
            errors = [p for p in report.polls if p.outcome == "error"]
            sent = sum(1 for d in report.deliveries if d.status.value == "sent")
            event(logging.getLogger("tagrelay"), logging.INFO, "once", polled=len(report.polls),
                  failed=len(errors), deliveries=len(report.deliveries), sent=sent)
            return EXIT_OK
        if not app.stop_event.is_set():  # stopped while starting: nothing to run
            await app.run_forever()
    return EXIT_OK


async def cmd_sources(ctx: Context) -> int:
    async def go(store: Any) -> int:

        now = SystemClock().now()
        states = await ctx.admin(store).sources()
        websub = await ctx.admin(store).websub_subscriptions()
        hooks = {s.name for s in ctx.config.sources if s.push_secret_env is not None}
        if ctx.args.json:
            by_name = {s.name: s for s in states}
            _print_json([{"name": s.name, "url": s.url, "kind": s.kind, "interval": s.interval,
                          "state": by_name.get(s.name), "push": {"hook": s.name in hooks,
                                                                "websub": websub.get(s.name)}}
                         for s in ctx.config.sources], ctx.out)
            return EXIT_OK
        rows = [[s.name, s.kind, f"{s.interval:.0f}s", str(s.posts), _ago(s.last_poll_at, now),
                 push_word(s.name in hooks, websub.get(s.name)), s.url]
                for s in source_listing(ctx.config.sources, states)]
        _table(rows, ["name", "kind", "interval", "posts", "last poll", "push", "url"], ctx.out)
        return EXIT_OK

    return await ctx.with_store(go)


async def cmd_channels_list(ctx: Context) -> int:
    async def go(store: Any) -> int:
        items = await ctx.admin(store).channels()
        if ctx.args.json:
            _print_json([{"name": o.name, "platform": o.platform, "counts": c} for o, c in items], ctx.out)
            return EXIT_OK
        rows = [[c.name, c.platform, f"{c.state}: {c.paused_reason or ''}" if c.paused else c.state,
                 str(c.waiting), str(c.sent)] for c in channel_listing(items)]
        _table(rows, ["name", "platform", "state", "waiting", "sent"], ctx.out)
        return EXIT_OK

    return await ctx.with_store(go)


async def cmd_channels_test(ctx: Context) -> int:
    name = ctx.args.name
    opts = ctx.config.channel(name)
    if opts is None:
        raise NotFoundError("channel", name, "channels: " + ", ".join(c.name for c in ctx.config.channels))

    async def go(store: Any) -> int:
        # with the database: a platform login (Bluesky) counts against the same persisted limit as the service's
        async with open_channel(ctx.config, name, ctx.secrets, store=store) as chan:
            info = await chan.publisher.check()
        ctx.out.write(f"{name} ({opts.platform}): OK, posts as {info.display}\n")
        for key, value in info.detail.items():
            ctx.out.write(f"  {key}: {value}\n")
        return EXIT_OK

    return await ctx.with_store(go)


async def cmd_channels_pause_resume(ctx: Context) -> int:
    async def go(store: Any) -> int:
        admin = ctx.admin(store)
        if ctx.args.channels_cmd == "pause":
            change = await admin.pause(ctx.args.name, actor=ctx.actor(), via="cli", reason=ctx.args.reason)
        else:
            change = await admin.resume(ctx.args.name, actor=ctx.actor(), via="cli")
        ctx.out.write(change.text + "\n")
        return EXIT_OK

    return await ctx.with_store(go)


_RULE_FLAGS = {"all_tags": "--all-tags", "none_tags": "--exclude-tags", "include_keywords": "--include-keywords",
               "exclude_keywords": "--exclude-keywords", "patterns": "--pattern", "sources": "--source"}


def _rule_args(args: argparse.Namespace) -> tuple[Any, bool]:
    """The rule the ``subscribe`` flags give (None: none), and whether any rule flag was given at all."""
    max_age = None
    if args.max_age is not None:
        try:
            max_age = MAX_AGE(args.max_age)
        except ValueError as exc:
            raise RuleError("--max-age", str(exc)) from None
    parts = RuleParts(all_tags=tuple(args.all_tags), none_tags=tuple(args.exclude_tags),
                      include_keywords=tuple(args.include_keywords), exclude_keywords=tuple(args.exclude_keywords),
                      patterns=tuple(args.pattern), max_age=max_age, sources=tuple(args.source), names=_RULE_FLAGS)
    rule = parts.build()
    if args.no_rule and rule is not None:
        raise RuleError("--no-rule", "removes the rule: give no other rule flag with it")
    return rule, args.no_rule or rule is not None


async def cmd_subscribe(ctx: Context) -> int:
    rule, given = _rule_args(ctx.args) if ctx.args.command == "subscribe" else (None, False)

    async def go(store: Any) -> int:
        admin = ctx.admin(store)
        if ctx.args.command == "subscribe":
            changes = await admin.subscribe(ctx.args.tag, ctx.args.channels, actor=ctx.actor(), via="cli",
                                            backfill=ctx.args.backfill, allow_new=ctx.args.new, rule=rule,
                                            set_rule=given)
        else:
            changes = await admin.unsubscribe(ctx.args.tag, ctx.args.channels, actor=ctx.actor(), via="cli")
        for change in changes:
            ctx.out.write(change.text + "\n")
        return EXIT_OK

    return await ctx.with_store(go)


async def cmd_subscriptions(ctx: Context) -> int:
    async def go(store: Any) -> int:
        views = await ctx.admin(store).subscription_views(ctx.args.channel)
        if ctx.args.json:
            _print_json([{"tag": v.subscription.tag_name, "slug": v.subscription.tag_slug,
                          "channel": v.subscription.channel, "backfill": v.subscription.backfill,
                          "origin": v.origin, "created_at": v.created_at, "rule": rule_dict(v.subscription.rule)}
                         for v in views], ctx.out)
            return EXIT_OK
        _table([[v.subscription.tag_name, v.subscription.channel, describe(v.subscription.rule) or "-", v.origin]
                for v in views], ["tag", "channel", "rule", "from"], ctx.out)
        return EXIT_OK

    return await ctx.with_store(go)


async def cmd_tags(ctx: Context) -> int:
    async def go(store: Any) -> int:
        more = ""
        if ctx.args.page is not None:  # the same pages as the bot's /tags
            page = await ctx.admin(store).tags_page(ctx.args.search, page=ctx.args.page, size=ctx.args.limit or 10)
            tags = page.items
            if page.has_next:
                more = f"page {page.page}; next: --page {page.page + 1}\n"
        else:
            tags = await ctx.admin(store).tags(ctx.args.search, limit=ctx.args.limit)
        if ctx.args.json:
            _print_json([{"name": t.name, "slug": t.slug, "posts": t.posts} for t in tags], ctx.out)
            return EXIT_OK
        _table([[t.name, t.slug, str(t.posts)] for t in tags], ["tag", "slug", "posts"], ctx.out)
        ctx.out.write(more)
        return EXIT_OK

    return await ctx.with_store(go)


async def cmd_status(ctx: Context) -> int:
    async def go(store: Any) -> int:
        report = await ctx.admin(store).status()
        if ctx.args.json:
            last = report.last_prune
            _print_json({"now": report.now, "storage": report.storage, "holder": report.holder,
                         "database": {"bytes": report.database_bytes, "last_prune": None if last is None else {
                             "at": last.at, "by": last.actor, "removed": last.counts.as_dict()}},
                         "instances": report.instances, "problems": report.problems,
                         "warnings": report.warnings, "notes": report.notes,
                         "sources": [{"name": s.state.name, "last_poll": s.state.last_poll_at,
                                      "last_outcome": s.state.last_outcome, "last_error": s.state.last_error,
                                      "failures": s.state.consecutive_failures, "next_poll": s.next_poll_at,
                                      "posts": s.state.post_count,
                                      "guid_churn": {"last_poll": s.state.guid_churn_last,
                                                     "total": s.state.guid_churn_total,
                                                     "last_seen": s.state.guid_churn_at},
                                      "warning": s.warning,
                                      "held": None if s.hold is None else {
                                          "posts": s.hold.posts, "deliveries": s.hold.deliveries,
                                          "since": s.hold.since, "usual_new": s.hold.usual_new,
                                          "burst_limit": s.burst_limit, "channels": s.hold.channels}}
                                     for s in report.sources],
                         "channels": [{"name": c.counts.channel, "platform": c.counts.platform,
                                       "paused": c.counts.paused, "paused_reason": c.counts.paused_reason,
                                       "hold_until": c.counts.hold_until, "counts": c.counts.counts,
                                       "sent_today": c.counts.sent_today,
                                       "oldest_waiting": c.counts.oldest_queued,
                                       "budgets": [_budget_json(b) for b in c.budgets]} for c in report.channels]},
                        ctx.out)
            return EXIT_OK
        write_status(report, ctx.out)
        return EXIT_OK

    return await ctx.with_store(go)


def _budget_json(line: BudgetLine) -> dict[str, Any]:
    """A budget line for ``status --json``: amounts as decimal text in US dollars (no float rounding)."""
    return {"budget": line.budget, "label": line.label, "period": line.period.value, "spent_usd": usd(line.spent),
            "limit_usd": usd(line.limit), "left_usd": usd(line.left), "resets_at": line.resets_at,
            "reached": line.reached}


def write_status(report: StatusReport, out: TextIO) -> None:
    now = report.now
    view = status_view(report)
    out.write(f"tagrelay {__version__} — {view.headline.upper()}\n")
    out.write(f"storage: {report.storage}\n")
    if view.database:
        out.write(f"database: {view.database}\n")
    if report.holder:  # SQLite: whoever holds the instance lock is running (the OS drops it when it dies)
        holder = report.holder
        since = f", started {_ago(holder.since, now)}" if holder.since else ""
        where = f" (pid {holder.pid} on {holder.host})" if holder.pid is not None else ""
        out.write(f"instance: {holder.owner or 'unknown (just starting)'} — running{since}{where}\n")
    elif report.instances:  # shared mode: several instances on one PostgreSQL database
        for inst in report.instances:
            alive = "running" if inst.expires_at > now else "not running (heartbeat expired; being taken over)"
            holds = [f"polling {', '.join(inst.sources)}" if inst.sources else "",
                     f"sending to {', '.join(inst.channels)}" if inst.channels else ""]
            held = "; ".join(h for h in holds if h) or "idle"
            out.write(f"instance: {inst.owner} — {alive}, heartbeat {_ago(inst.heartbeat_at, now)}; {held}\n")
    else:
        out.write("instance: none running\n")
    out.write("\nSOURCES\n")
    rows = [[s.name, s.health, _ago(s.last_poll_at, now), s.last_outcome or "-",
             _ago(s.next_poll_at, now) if s.next_poll_at else "-", str(s.posts), s.last_error or ""]
            for s in view.sources]
    _table(rows, ["source", "health", "last poll", "outcome", "next poll", "posts", "last error"], out)
    out.write("\nCHANNELS\n")
    rows = [[c.name, c.platform, c.state_text, str(c.queued), str(c.retrying), str(c.sent), str(c.sent_today),
             str(c.dead), str(c.unknown), _ago(c.oldest_waiting, now) if c.oldest_waiting else "-"]
            for c in view.channels]
    _table(rows, ["channel", "platform", "state", "queued", "retrying", "sent", "today", "dead", "unknown",
                  "oldest waiting"], out)
    budgets = [(c.name, b) for c in view.channels for b in c.budgets]
    if budgets:
        out.write("\nBUDGETS (USD)\n")
        _table([[name, b.label, b.period.value, usd(b.spent), usd(b.limit), usd(b.left),
                 b.resets_at.strftime("%Y-%m-%d %H:%M"), "reached" if b.reached else ""] for name, b in budgets],
               ["channel", "budget", "window", "spent", "limit", "left", "resets (UTC)", ""], out)
    if view.problems:
        out.write("\nPROBLEMS\n")
        for p in view.problems:
            out.write(f"  ! {p}\n")
    if view.warnings:
        out.write("\nWARNINGS\n")
        for w in view.warnings:
            out.write(f"  ~ {w}\n")
    if view.notes:
        out.write("\nNOTES\n")
        for n in view.notes:
            out.write(f"  - {n}\n")


async def cmd_hold(ctx: Context) -> int:
    async def go(store: Any) -> int:
        admin = ctx.admin(store)
        if ctx.args.hold_cmd == "list":
            holds = await admin.holds()
            if ctx.args.json:
                _print_json(holds, ctx.out)
                return EXIT_OK
            _table([[h.source, str(h.posts), str(h.deliveries), ", ".join(h.channels),
                     f"{h.usual_new:.0f}" if h.usual_new is not None else "-", str(admin.burst_limit(h.source)),
                     h.since.strftime("%Y-%m-%d %H:%M:%S") if h.since else "-"] for h in holds],
                   ["source", "posts", "deliveries", "channels", "usual", "limit", "held since (UTC)"], ctx.out)
            return EXIT_OK
        action = admin.release_hold if ctx.args.hold_cmd == "release" else admin.drop_hold
        change = await action(ctx.args.source, actor=ctx.actor(), via="cli")
        ctx.out.write(change.text + "\n")
        return EXIT_OK

    return await ctx.with_store(go)


async def cmd_deliveries(ctx: Context) -> int:
    async def go(store: Any) -> int:
        rows = await ctx.admin(store).deliveries(status=ctx.args.status, channel=ctx.args.channel,
                                                 limit=ctx.args.limit, kind=ctx.args.kind)
        if ctx.args.json:
            _print_json(rows, ctx.out)
            return EXIT_OK
        _table([[str(d.id), d.channel, d.kind, d.status, str(d.attempts), d.post_title[:50],
                 d.remote_url or d.remote_id or "", (d.last_error or d.reason or "")[:60]] for d in rows],
               ["id", "channel", "kind", "status", "tries", "post", "remote", "last error / reason"], ctx.out)
        return EXIT_OK

    return await ctx.with_store(go)


async def cmd_retry(ctx: Context) -> int:
    async def go(store: Any) -> int:
        change = await ctx.admin(store).retry(ctx.args.target, actor=ctx.actor(), via="cli")
        ctx.out.write(change.text + "\n")
        return EXIT_OK

    return await ctx.with_store(go)


async def cmd_retract(ctx: Context) -> int:
    async def go(store: Any) -> int:
        changes = await ctx.admin(store).retract(ctx.args.url, ctx.args.channel or None, actor=ctx.actor(),
                                                 via="cli", confirmed=not ctx.args.dry_run)
        for change in changes:
            ctx.out.write(change.text + "\n")
        if not ctx.args.dry_run and any(c.done for c in changes):
            ctx.out.write("the running service sends the deletions (tagrelay deliveries --kind delete)\n")
        return EXIT_OK

    return await ctx.with_store(go)


async def cmd_preview(ctx: Context) -> int:
    async def go(store: Any) -> int:
        items = await ctx.admin(store).preview(ctx.args.target, ctx.args.channel)
        if ctx.args.json:
            _print_json(items, ctx.out)
            return EXIT_OK
        for item in items:
            limit = f"/{item.limit}" if item.limit else ""
            verdict = "fits" if item.fits else "TOO LONG"
            image = f"image: {item.image_url} ({item.image_note})\n" if item.image_note else ""
            link = f"link: {item.link} ({item.link_note})\n" if item.link_note else ""
            ctx.out.write(f"── {item.channel} ({item.platform}, {item.format}) — {item.length}{limit} "
                          f"characters, {verdict}\n   {item.verdict} (if detected now)\n")
            # the message itself where the channel would get it, or where it was asked for by name
            ctx.out.write(f"{item.text}\n{image}{link}\n" if item.sent or ctx.args.channel else "\n")
        return EXIT_OK

    return await ctx.with_store(go)


async def cmd_explain(ctx: Context) -> int:
    async def go(store: Any) -> int:
        found = await ctx.admin(store).explain(ctx.args.url, ctx.args.channel)
        if ctx.args.json:
            _print_json(found, ctx.out)
            return EXIT_OK
        when = found.published.strftime("%Y-%m-%d %H:%M UTC") if found.published else "undated"
        seen = found.first_seen.strftime("%Y-%m-%d %H:%M UTC") if found.first_seen else "?"
        ctx.out.write(f"{_cell(found.title)}\n{found.url}\nsource {found.source}; published {when}; detected {seen}\n"
                      f"tags: {_cell(', '.join(found.tags) or '(none)')}\n\n")
        _table([[a.channel, a.outcome, a.reason, a.later or ""] for a in found.channels],
               ["channel", "outcome", "why", "edits / unpublishing"], ctx.out)
        return EXIT_OK

    return await ctx.with_store(go)


async def cmd_audit(ctx: Context) -> int:
    async def go(store: Any) -> int:
        entries = await ctx.admin(store).audit_log(ctx.args.limit)
        if ctx.args.json:
            _print_json(entries, ctx.out)
            return EXIT_OK
        _table([[e.at.strftime("%Y-%m-%d %H:%M:%S"), e.actor, e.via, e.action, e.detail] for e in entries],
               ["when (UTC)", "who", "via", "action", "detail"], ctx.out)
        return EXIT_OK

    return await ctx.with_store(go)


async def cmd_db(ctx: Context) -> int:

    store = make_store(ctx.config)
    try:
        if ctx.args.db_cmd == "upgrade":
            before, after = await migrate.upgrade(store.engine)
            ctx.out.write(f"database at revision {after}" + (f" (was {before or 'empty'})" if before != after
                                                              else " (already up to date)") + "\n")
        else:
            current = await migrate.current_revision(store.engine)
            head = migrate.head_revision()
            ctx.out.write(f"database revision: {current or 'empty'}; this version expects: {head}\n")
    finally:
        await store.aclose()
    return EXIT_OK


PRUNE_KINDS = {"content": "post content", "deliveries": "delivery records", "rule_drops": "rule drops",
               "audit": "audit entries", "identities": "post identities"}


PRUNE_PROGRESS_EVERY = 20
"""``db prune`` writes a progress line to stderr every this many batches."""


async def cmd_db_prune(ctx: Context) -> int:
    """One prune pass now (``--dry-run``: count only), whatever ``[storage.retention] enabled`` says."""
    args = ctx.args

    def progress(counts: PruneCounts, batches: int) -> None:
        if batches % PRUNE_PROGRESS_EVERY == 0:
            ctx.err.write(f"  pruning: {counts.total} removed in {batches} batches so far\n")

    async def go(store: Any) -> int:
        pruner = Pruner(store, SystemClock(), ctx.config.storage.retention, window=longest_window(ctx.config))
        report = await pruner.prune(dry_run=args.dry_run, vacuum=args.vacuum and not args.dry_run, progress=progress,
                                    record=not args.dry_run, actor=ctx.actor(), via="cli")
        if args.json:
            _print_json({"dry_run": report.dry_run, "counts": report.counts.as_dict(), "total": report.counts.total,
                         "size_before": report.size_before, "size_after": report.size_after,
                         "pages_released": report.pages_released, "vacuumed": report.vacuumed,
                         "batches": report.batches}, ctx.out)
            return EXIT_OK
        verb = "would remove" if report.dry_run else "removed"
        _table([[label, str(report.counts.as_dict()[kind])] for kind, label in PRUNE_KINDS.items()], ["kind", verb],
               ctx.out)
        sizes = " → ".join(size(n) for n in (report.size_before, report.size_after) if n is not None)
        if report.dry_run:
            now = size(report.size_before) if report.size_before is not None else "in memory"
            ctx.out.write(f"dry run: nothing was changed; database {now}\n")
        else:
            vacuumed = " (vacuumed)" if report.vacuumed else ""
            ctx.out.write(f"database {sizes or 'in memory'}{vacuumed}\n")
        return EXIT_OK

    return await ctx.with_store(go)


async def cmd_db_copy(ctx: Context) -> int:
    # deliberately lazy: the copy needs SQLAlchemy's asyncio extension and the ORM it pulls in (~8 MiB),
    # which no other command loads
    from bot.storage.copy import copy_database

    try:
        target_url = StorageConfig.model_validate({"url": ctx.args.to}).url
    except ValueError as exc:
        raise ConfigError("--to", "must start with sqlite+aiosqlite:// or postgresql+asyncpg://") from exc
    source = make_engine(ctx.config.storage.url, create_dirs=False)
    target = make_engine(target_url)
    try:
        ctx.out.write(f"copying {redact_url(ctx.config.storage.url)} → {redact_url(target_url)}\n")
        report = await copy_database(source, target, now=SystemClock().now(),
                                     progress=lambda name, n: ctx.err.write(f"  {name}: {n} rows\n"))
    finally:
        await source.dispose()
        await target.dispose()
    _table([[name, str(n)] for name, n in report.counts.items()], ["table", "rows"], ctx.out)
    ctx.out.write(f"OK: {sum(report.counts.values())} rows copied; every table's row count matches the source.\n"
                  f"Now point storage.url (or TAGRELAY_STORAGE_URL) at {redact_url(target_url)} and start "
                  "tagrelay there.\n")
    return EXIT_OK


async def cmd_config_check(ctx: Context) -> int:
    cfg = ctx.config
    ctx.out.write(f"{cfg.path}: OK — {len(cfg.sources)} source(s), {len(cfg.channels)} channel(s), "
                  f"{len(cfg.subscriptions)} subscription(s)\n")
    return EXIT_OK


def cmd_x_auth(ctx: Context) -> int:

    key = ctx.secrets.get(ctx.args.consumer_key_env)
    secret = ctx.secrets.get(ctx.args.consumer_secret_env)
    if not key or not secret:
        raise ConfigError(ctx.args.consumer_key_env if not key else ctx.args.consumer_secret_env,
                          "set your X app's consumer key and secret in the environment or .env first")
    token, token_secret = x_auth_flow(key, secret, ask=input, say=lambda s: ctx.out.write(s + "\n"))
    ctx.out.write("Add these to your .env (never to the TOML file):\n"
                  f"X_ACCESS_TOKEN={token}\nX_ACCESS_TOKEN_SECRET={token_secret}\n")
    return EXIT_OK


# -- parser -----------------------------------------------------------------------------------

SUBSCRIBE_EXAMPLES = """\
examples:
  tagrelay subscribe Iraq news-tg --exclude-tags Opinion
      everything tagged Iraq, except Opinion pieces
  tagrelay subscribe Iraq news-tg --all-tags MEK
      posts tagged both Iraq and MEK
  tagrelay subscribe Iraq news-tg --include-keywords title:Basra
      Iraq posts with Basra in the title
  tagrelay subscribe Iraq news-tg --exclude-keywords sponsored "paid content" --max-age 1d
      no sponsored posts, nothing older than a day when it is found
  tagrelay subscribe "Editor’s picks" news-x --pattern 'title!=(?i)^live:' --source archive
      only from the archive source, no live blogs
  tagrelay subscribe Iraq news-tg --no-rule
      remove the rule of an existing subscription

Keywords match like tags: case, accents, apostrophes and Arabic/Persian diacritics do not matter,
and they match whole words. Given to an existing subscription, the rule flags replace its rule.
A rule applies to posts detected after it is set; `tagrelay explain POST_URL` says why a post
was (not) sent.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tagrelay", description="Publish new archive posts, per tag, to channels.")
    p.add_argument("--config", "-c", type=Path, help="TOML config file (default: $TAGRELAY_CONFIG, "
                   f"else {DEFAULT_CONFIG})")
    p.add_argument("--version", action="version", version=f"tagrelay {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the service (or one cycle with --once)")
    run.add_argument("--once", action="store_true", help="one full poll-and-deliver cycle, then exit")
    run.add_argument("--log-format", choices=["text", "json"], help="log format (default: text)")
    run.set_defaults(func=cmd_run)

    sources = sub.add_parser("sources", help="configured sources")
    ssub = sources.add_subparsers(dest="sources_cmd", required=True, metavar="ACTION")
    sl = ssub.add_parser("list", help="list sources with their state")
    sl.add_argument("--json", action="store_true")
    sl.set_defaults(func=cmd_sources)

    channels = sub.add_parser("channels", help="configured channels")
    csub = channels.add_subparsers(dest="channels_cmd", required=True, metavar="ACTION")
    cl = csub.add_parser("list", help="list channels with queue counts")
    cl.add_argument("--json", action="store_true")
    cl.set_defaults(func=cmd_channels_list)
    ct = csub.add_parser("test", help="check a channel's credentials without posting")
    ct.add_argument("name")
    ct.set_defaults(func=cmd_channels_test)
    cp = csub.add_parser("pause", help="pause a channel (its queue is kept)")
    cp.add_argument("name")
    cp.add_argument("--reason")
    cp.set_defaults(func=cmd_channels_pause_resume)
    cr = csub.add_parser("resume", help="resume a paused channel")
    cr.add_argument("name")
    cr.set_defaults(func=cmd_channels_pause_resume)

    for name, helptext in (("subscribe", "send posts with TAG to CHANNELs (optionally under a rule)"),
                           ("unsubscribe", "stop sending posts with TAG to CHANNELs")):
        extra = {"epilog": SUBSCRIBE_EXAMPLES, "formatter_class": argparse.RawDescriptionHelpFormatter} \
            if name == "subscribe" else {}
        sp = sub.add_parser(name, help=helptext, description=helptext, **extra)  # type: ignore[arg-type]
        sp.add_argument("tag", help="tag name (quote it if it has spaces)")
        sp.add_argument("channels", nargs="+", metavar="CHANNEL")
        if name == "subscribe":
            sp.add_argument("--backfill", type=int, default=0, help="also send the N latest matching posts")
            sp.add_argument("--new", action="store_true", help="allow a tag no post carries yet")
            rule = sp.add_argument_group("rule (a post with TAG must also meet every condition given)")
            rule.add_argument("--all-tags", nargs="+", action="extend", default=[], metavar="T",
                              help="it also carries every one of these tags")
            rule.add_argument("--exclude-tags", nargs="+", action="extend", default=[], metavar="T",
                              help="it carries none of these tags")
            rule.add_argument("--include-keywords", nargs="+", action="extend", default=[], metavar="W",
                              help="at least one of these keywords is in its title, excerpt or content "
                                   "(FIELD:W for one field: title, excerpt, content, author)")
            rule.add_argument("--exclude-keywords", nargs="+", action="extend", default=[], metavar="W",
                              help="none of these keywords is in it (FIELD:W as above)")
            rule.add_argument("--pattern", action="append", default=[], metavar="FIELD=RE",
                              help="FIELD matches the regular expression RE (RE2 syntax); FIELD!=RE: it does not. "
                                   "Repeat for more (all must hold)")
            rule.add_argument("--max-age", metavar="D", help="at most this old when detected, e.g. 12h, 1d")
            rule.add_argument("--source", nargs="+", action="extend", default=[], metavar="S",
                              help="only posts from these sources")
            rule.add_argument("--no-rule", action="store_true",
                              help="remove the rule of an existing subscription (rule flags replace it)")
        sp.set_defaults(func=cmd_subscribe)

    subs = sub.add_parser("subscriptions", help="list subscriptions")
    subs.add_argument("--channel")
    subs.add_argument("--json", action="store_true")
    subs.set_defaults(func=cmd_subscriptions)

    tags = sub.add_parser("tags", help="known tags with post counts")
    tags.add_argument("search", nargs="?")
    tags.add_argument("--limit", type=int, help="at most this many (with --page: per page, default 10)")
    tags.add_argument("--page", type=int, help="show page N (1 = most posts), like the bot's /tags")
    tags.add_argument("--json", action="store_true")
    tags.set_defaults(func=cmd_tags)

    status = sub.add_parser("status", help="what is running, what is wrong")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)

    deliveries = sub.add_parser("deliveries", help="recent deliveries")
    deliveries.add_argument("--status")
    deliveries.add_argument("--channel")
    deliveries.add_argument("--kind", choices=["post", "edit", "delete"])
    deliveries.add_argument("--limit", type=int, default=50)
    deliveries.add_argument("--json", action="store_true")
    deliveries.set_defaults(func=cmd_deliveries)

    hold = sub.add_parser("hold", help="bursts held for an admin: list, release (send) or drop (never send)")
    hsub = hold.add_subparsers(dest="hold_cmd", required=True, metavar="ACTION")
    hl = hsub.add_parser("list", help="held bursts per source")
    hl.add_argument("--json", action="store_true")
    hl.set_defaults(func=cmd_hold)
    for name, helptext in (("release", "send a source's held burst (paced, oldest post first)"),
                           ("drop", "never send a source's held burst (its deliveries are marked dropped)")):
        hp = hsub.add_parser(name, help=helptext)
        hp.add_argument("source")
        hp.set_defaults(func=cmd_hold)

    retry = sub.add_parser("retry", help="requeue failed/dead/unknown deliveries of a channel, or one by id")
    retry.add_argument("target", metavar="CHANNEL|DELIVERY_ID")
    retry.set_defaults(func=cmd_retry)

    retract = sub.add_parser("retract", help="remove a post from every channel it reached (deleted where the "
                                             "platform can; what has not gone out is cancelled)")
    retract.add_argument("url", metavar="POST_URL")
    retract.add_argument("--channel", action="append", metavar="C", help="only this channel (repeatable)")
    retract.add_argument("--dry-run", action="store_true", help="say what it would do, change nothing")
    retract.set_defaults(func=cmd_retract)

    preview = sub.add_parser("preview", help="show what channels would receive for a tag or a post URL, and "
                                             "whether each would get it")
    preview.add_argument("target", metavar="TAG|POST_URL")
    preview.add_argument("--channel")
    preview.add_argument("--json", action="store_true")
    preview.set_defaults(func=cmd_preview)

    explain = sub.add_parser("explain", help="why a post was (not) sent to each channel")
    explain.add_argument("url", metavar="POST_URL")
    explain.add_argument("--channel")
    explain.add_argument("--json", action="store_true")
    explain.set_defaults(func=cmd_explain)

    audit = sub.add_parser("audit", help="who changed what, when")
    audit.add_argument("--limit", type=int, default=50)
    audit.add_argument("--json", action="store_true")
    audit.set_defaults(func=cmd_audit)

    db = sub.add_parser("db", help="database schema")
    dsub = db.add_subparsers(dest="db_cmd", required=True, metavar="ACTION")
    dsub.add_parser("upgrade", help="apply migrations").set_defaults(func=cmd_db)
    dsub.add_parser("current", help="show the schema revision").set_defaults(func=cmd_db)
    dp = dsub.add_parser("prune", help="remove what retention allows now ([storage.retention]); a summary")
    dp.add_argument("--dry-run", action="store_true", help="only count what would be removed")
    dp.add_argument("--vacuum", action="store_true", help="rewrite the database afterwards (shrinks the file)")
    dp.add_argument("--json", action="store_true")
    dp.set_defaults(func=cmd_db_prune)
    dc = dsub.add_parser("copy", help="copy this database (e.g. SQLite) into a new, empty one (e.g. PostgreSQL)")
    dc.add_argument("--to", required=True, metavar="URL", help="target, e.g. postgresql+asyncpg://user@host/db")
    dc.set_defaults(func=cmd_db_copy)

    config = sub.add_parser("config", help="configuration")
    cfsub = config.add_subparsers(dest="config_cmd", required=True, metavar="ACTION")
    cfsub.add_parser("check", help="validate the config file").set_defaults(func=cmd_config_check)

    xa = sub.add_parser("x-auth", help="get X user tokens for a channel (interactive)")
    xa.add_argument("--consumer-key-env", default="X_CONSUMER_KEY")
    xa.add_argument("--consumer-secret-env", default="X_CONSUMER_SECRET")
    xa.set_defaults(func=cmd_x_auth, credentials=False)  # it is how the X channel's tokens are obtained
    return p


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) if isinstance(exc.code, int) else EXIT_CONFIG
    secrets: list[str] = []
    # Reports can quote stored errors and URLs: buffer them and print them redacted. `run` logs
    # (redacted by its handler) and `x-auth` must show the tokens it obtained, so they stream.
    buffer = None if args.func in (cmd_run, cmd_x_auth) else io.StringIO()
    try:
        ctx = Context(args, out if buffer is None else buffer, err)
        secrets = ctx.secret_values()
        result = args.func(ctx)
        if asyncio.iscoroutine(result):
            return int(asyncio.run(result))
        return int(result)
    except ConfigError as exc:
        _emit(f"tagrelay: config error: {exc}\n", err, secrets)
        return EXIT_CONFIG
    except (UsageError, NotFoundError, PluginError, RuleError) as exc:
        _emit(f"tagrelay: {exc}\n", err, secrets)
        return EXIT_CONFIG
    except TagrelayError as exc:
        _emit(f"tagrelay: {exc}\n", err, secrets)
        return EXIT_FAIL
    except KeyboardInterrupt:
        err.write("tagrelay: interrupted\n")
        return EXIT_INTERRUPTED
    finally:
        if buffer is not None:
            _emit(buffer.getvalue(), out, secrets)
