"""Administration use cases, shared by the CLI and the Telegram admin commands.

No logic lives in a CLI command or a bot handler: both parse arguments, call
one method here, and format the returned values. Every change is written to
the audit log with who did it and through what (``cli`` or ``telegram``).

The values it returns (``Change``, ``StatusReport``, ``PreviewItem`` …) live in
``bot.services.reports``; ``bot.admin.views`` turns them into text for both
front ends.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from bot.domain.budget import BudgetLine, budget_lines
from bot.domain.detect import churn_message
from bot.domain.explain import ChannelAnswer, explain
from bot.domain.lifecycle import ChannelLifecycle, describe_policy
from bot.domain.models import DeliveryKind, DeliveryStatus, Post, Subscription
from bot.domain.push import WebSubSubscription
from bot.domain.routing import verdict
from bot.domain.rules import PostText, Rule
from bot.domain.state import (
    ChannelCounts,
    DeliveryView,
    HoldView,
    SourceState,
    SubscriptionView,
    TagCount,
)
from bot.domain.tags import make_tag, slugify
from bot.errors import NotFoundError, UsageError
from bot.log import redact_url
from bot.publishers.api import ChannelNote, Clock, PublisherPlugin, RenderEnv, ReportsChannelNotes, spending_plans
from bot.rule_syntax import describe
from bot.services.reports import (
    Change,
    ChannelStatus,
    Explanation,
    PreviewItem,
    SourceStatus,
    StatusReport,
    TagPage,
    deliveries_problem,
)
from bot.settings import Config
from bot.storage.instance_lock import database_dir, lock_path, probe
from bot.storage.store import Store


class AdminService:
    def __init__(self, store: Store, config: Config, clock: Clock,
                 plugins: Mapping[str, PublisherPlugin] | None = None,
                 render_envs: Mapping[str, RenderEnv] | None = None,
                 lifecycle: Mapping[str, ChannelLifecycle] | None = None) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.plugins = plugins or {}
        self.render_envs = render_envs or {}
        self.lifecycle = dict(lifecycle or {})
        """Each channel's policy for edits and deletions, with what its platform can do (``retract``,
        ``status``); a channel missing here is taken to be able to delete (the delivery finds out)."""

    # -- helpers --------------------------------------------------------------------------

    def _check_channels(self, channels: Sequence[str]) -> None:
        if not channels:
            raise UsageError("name at least one channel")
        names = [c.name for c in self.config.channels]
        for chan in channels:
            if chan not in names:
                close = difflib.get_close_matches(chan, names, n=3)
                hint = f"did you mean {', '.join(close)}?" if close else f"channels: {', '.join(names) or 'none'}"
                raise NotFoundError("channel", chan, hint)

    async def _resolve_tag(self, name: str, *, allow_new: bool) -> tuple[str, str]:
        tag = make_tag(name)
        if tag is None:
            raise UsageError(f"{name!r} is not a tag name (it has no letters or digits)")
        known = await self.store.tag(tag.slug)
        if known is not None:
            return known.slug, known.name
        if allow_new:
            return tag.slug, tag.name
        all_tags = await self.store.tags()
        close = difflib.get_close_matches(tag.slug, [t.slug for t in all_tags], n=3, cutoff=0.6)
        names = [next(t.name for t in all_tags if t.slug == c) for c in close]
        hint = (f"did you mean: {'; '.join(names)}? " if names else "") + \
            "No post carries it yet; to subscribe anyway (for future posts) use --new (bot: /subscribe! ...)"
        raise NotFoundError("tag", name, hint)

    # -- subscriptions --------------------------------------------------------------------

    def _check_rule(self, rule: Rule | None) -> None:
        """The sources a rule names must be configured (``[[sources]]``)."""
        names = [src.name for src in self.config.sources]
        for source in rule.sources if rule else ():
            if source not in names:
                close = difflib.get_close_matches(source, names, n=3)
                hint = f"did you mean {', '.join(close)}?" if close else f"sources: {', '.join(names) or 'none'}"
                raise NotFoundError("source", source, hint)

    async def subscribe(self, tag: str, channels: Sequence[str], *, actor: str, via: str,
                        backfill: int = 0, allow_new: bool = False, rule: Rule | None = None,
                        set_rule: bool = False) -> list[Change]:
        """Subscribe ``channels`` to ``tag`` with ``rule``. An existing subscription keeps its rule unless
        ``set_rule`` (then ``rule`` replaces it; None removes it); one from the config file is changed there."""
        self._check_channels(channels)
        if backfill < 0 or backfill > 100:
            raise UsageError("backfill must be between 0 and 100")
        self._check_rule(rule)
        slug, name = await self._resolve_tag(tag, allow_new=allow_new)
        now = self.clock.now()
        changes = []
        added: list[str] = []
        shown = f" [{describe(rule)}]" if rule else ""
        for chan in channels:
            if await self.store.add_subscription(Subscription(slug, name, chan, backfill, rule), via, now):
                added.append(chan)
                changes.append(Change(chan, True, f"{name} → {chan}: subscribed{shown}", name))
            elif set_rule:
                changes.append(await self._replace_rule(slug, name, chan, rule, actor=actor, via=via, now=now))
            else:
                changes.append(Change(chan, False, f"{name} → {chan}: already subscribed", name))
        if added:
            await self.store.audit(actor, via, "subscribe", f"{name} → {', '.join(added)}{shown}", now)
        return changes

    async def _replace_rule(self, slug: str, name: str, channel: str, rule: Rule | None, *, actor: str, via: str,
                            now: datetime) -> Change:
        [view] = await self.store.subscription_views(channel, tag_slug=slug)
        old = view.subscription.rule
        if view.origin == "config":
            return Change(channel, False, f"{name} → {channel}: comes from the config file; change its rule there",
                          name)
        if old == rule:
            return Change(channel, False, f"{name} → {channel}: already subscribed with this rule", name)
        await self.store.set_rule(slug, channel, rule)
        detail = f"{name} → {channel}: [{describe(old) or 'no rule'}] → [{describe(rule) or 'no rule'}]"
        await self.store.audit(actor, via, "rule", detail, now)
        return Change(channel, True, f"{name} → {channel}: rule changed to [{describe(rule) or 'no rule'}]", name)

    async def exclude_tag(self, tag: str, channel: str, excluded: str, *, actor: str, via: str) -> Change:
        """Add ``excluded`` to the ``none_tags`` of the subscription of ``channel`` to ``tag`` (the admin bot's
        "exclude a tag" button)."""
        self._check_channels([channel])
        slug, excl = slugify(tag), make_tag(excluded)
        if excl is None:
            raise UsageError(f"{excluded!r} is not a tag name")
        views = await self.store.subscription_views(channel, tag_slug=slug)
        if not views:
            raise NotFoundError("subscription", f"{tag} → {channel}")
        sub = views[0].subscription
        if excl.slug == slug:
            raise UsageError("a subscription cannot exclude its own tag")
        old = sub.rule or Rule()
        if any(t.slug == excl.slug for t in old.none_tags):
            return Change(channel, False, f"{sub.tag_name} → {channel}: already excludes {excl.name}", sub.tag_name)
        rule = replace(old, none_tags=(*old.none_tags, excl))
        return await self._replace_rule(slug, sub.tag_name, channel, rule, actor=actor, via=via, now=self.clock.now())

    async def unsubscribe(self, tag: str, channels: Sequence[str], *, actor: str, via: str) -> list[Change]:
        self._check_channels(channels)
        slug = slugify(tag)
        if not slug:
            raise UsageError(f"{tag!r} is not a tag name")
        now = self.clock.now()
        changes = []
        for chan in channels:
            removed = await self.store.remove_subscription(slug, chan)
            verdict = "unsubscribed" if removed else "was not subscribed"
            changes.append(Change(chan, removed, f"{tag} → {chan}: {verdict}"))
        if any(c.done for c in changes):
            await self.store.audit(actor, via, "unsubscribe",
                                   f"{tag} → {', '.join(c.channel for c in changes if c.done)}", now)
        return changes

    async def subscriptions(self, channel: str | None = None) -> list[tuple[Subscription, str]]:
        if channel is not None:
            self._check_channels([channel])
        return await self.store.subscriptions(channel)

    async def subscription_views(self, channel: str | None = None) -> list[SubscriptionView]:
        """The subscriptions with their rules, origin and creation time."""
        if channel is not None:
            self._check_channels([channel])
        return await self.store.subscription_views(channel)

    async def tags(self, search: str | None = None, *, limit: int | None = None, offset: int = 0) -> list[TagCount]:
        return await self.store.tags(search, limit=limit, offset=offset)

    async def tags_page(self, search: str | None = None, *, page: int = 1, size: int = 10) -> TagPage:
        """Page ``page`` of the known tags matching ``search``, ``size`` per page."""
        if page < 1:
            raise UsageError("page numbers start at 1")
        if not 1 <= size <= 1000:
            raise UsageError("page size must be between 1 and 1000")
        search = search.strip() if search else None
        rows = await self.store.tags(search or None, limit=size + 1, offset=(page - 1) * size)
        return TagPage(items=rows[:size], page=page, size=size, search=search or None, has_next=len(rows) > size)

    # -- channels -------------------------------------------------------------------------

    async def channels(self) -> list[tuple[Any, ChannelCounts | None]]:
        counts = {c.channel: c for c in await self.store.channel_counts(self.clock.now())}
        return [(opts, counts.get(opts.name)) for opts in self.config.channels]

    async def pause(self, channel: str, *, actor: str, via: str, reason: str | None = None) -> Change:
        self._check_channels([channel])
        now = self.clock.now()
        why = reason or f"paused by {actor}"
        changed = await self.store.set_paused(channel, True, why, now)
        if changed:
            await self.store.audit(actor, via, "pause", channel, now)
        return Change(channel, changed, f"{channel}: " + ("paused; its queue is kept" if changed else "already paused"))

    async def resume(self, channel: str, *, actor: str, via: str) -> Change:
        self._check_channels([channel])
        now = self.clock.now()
        state = await self.store.channel(channel)
        changed = await self.store.set_paused(channel, False, None, now)
        if changed:
            await self.store.audit(actor, via, "resume", f"{channel} (was: {state.paused_reason})", now)
        counts = {c.channel: c for c in await self.store.channel_counts(now)}.get(channel)
        waiting = (counts.counts.get("queued", 0) + counts.counts.get("failed", 0)) if counts else 0
        return Change(channel, changed, f"{channel}: " + (f"resumed; {waiting} waiting deliveries go out now"
                                                           if changed else "was not paused"))

    async def retry(self, target: str, *, actor: str, via: str) -> Change:
        now = self.clock.now()
        if target.isdigit():
            count = await self.store.requeue(now, delivery_id=int(target))
            label = f"delivery {target}"
        else:
            self._check_channels([target])
            count = await self.store.requeue(now, channel=target)
            label = target
        if count:
            await self.store.audit(actor, via, "retry", f"{label}: {count}", now)
        return Change(label, bool(count), f"{label}: {count} deliveries requeued" if count
                      else f"{label}: nothing failed, dead or unknown to retry")

    # -- retraction -------------------------------------------------------------------------

    async def retract(self, url: str, channels: Sequence[str] | None = None, *, actor: str, via: str,
                      confirmed: bool = True) -> list[Change]:
        """Remove the post at ``url`` from every channel it reached (or ``channels``): each message that went
        out is deleted where the platform can, and each delivery not sent yet is cancelled; audited.
        ``confirmed=False``: only say what it would do (nothing is written)."""
        url = url.strip()
        if not url.startswith(("http://", "https://")):
            raise UsageError("name the post by its link (http:// or https://)")
        if channels:
            self._check_channels(channels)
        posts = await self.store.posts_at(url)
        if not posts:
            raise NotFoundError("post", url, "no stored post has this link (tagrelay preview URL shows what is "
                                             "known; a post is known once its source was polled)")
        policies = {c.name: self.lifecycle.get(c.name, ChannelLifecycle(can_edit=True, can_delete=True))
                    for c in self.config.channels}
        removals = await self.store.retract([post_id for post_id, _, _ in posts], policies, self.clock.now(),
                                            channels=list(channels) if channels else None, actor=actor, via=via,
                                            apply=confirmed)
        changes = []
        for removal in removals:
            acts = bool(removal.plan.delete or removal.plan.cancel)
            lead = "" if confirmed else "would be: "
            changes.append(Change(removal.url or url, acts, f"{removal.title}: {lead}{removal.text}"))
        return changes

    def lifecycle_warnings(self) -> list[str]:
        """Channels asking for what their platform cannot do (``status`` warns): edits or deletions that
        are never sent there."""
        out = []
        for opts in self.config.channels:
            policy = self.lifecycle.get(opts.name)
            if policy is None:
                continue
            if policy.on_edit and not policy.can_edit:
                out.append(f"channel {opts.name}: {opts.platform} has no edit, so edited posts are left as they "
                           "were sent there (on_edit = \"ignore\" silences this)")
            if policy.on_delete and not policy.can_delete:
                out.append(f"channel {opts.name}: {opts.platform} cannot delete, so on_delete = \"delete\" "
                           "does nothing there")
        return out

    # -- reads ----------------------------------------------------------------------------

    async def deliveries(self, *, status: str | None = None, channel: str | None = None,
                         limit: int = 50, kind: str | None = None) -> list[DeliveryView]:
        if status is not None and status not in {s.value for s in DeliveryStatus}:
            raise UsageError(f"unknown status {status!r}; use one of: "
                             + ", ".join(s.value for s in DeliveryStatus))
        if kind is not None and kind not in {k.value for k in DeliveryKind}:
            raise UsageError(f"unknown kind {kind!r}; use one of: " + ", ".join(k.value for k in DeliveryKind))
        if channel is not None:
            self._check_channels([channel])
        return await self.store.deliveries(status=status, channel=channel, limit=limit, kind=kind)

    async def sources(self) -> list[SourceState]:
        return await self.store.sources()

    async def websub_subscriptions(self) -> dict[str, WebSubSubscription]:
        """Each source's WebSub subscription, by source name (``sources list``)."""
        return {s.source: s for s in await self.store.websub_subscriptions()}

    # -- held bursts ----------------------------------------------------------------------

    def _check_source(self, source: str) -> None:
        names = [s.name for s in self.config.sources]
        if source not in names:
            close = difflib.get_close_matches(source, names, n=3)
            hint = f"did you mean {', '.join(close)}?" if close else f"sources: {', '.join(names) or 'none'}"
            raise NotFoundError("source", source, hint)

    def burst_limit(self, source: str) -> int:
        """The source's ``burst_limit``, else ``[service] burst_limit``."""
        own = next((s.burst_limit for s in self.config.sources if s.name == source), None)
        return self.config.service.burst_limit if own is None else own

    async def holds(self) -> list[HoldView]:
        """The bursts held for an admin, per source."""
        return await self.store.holds()

    async def release_hold(self, source: str, *, actor: str, via: str) -> Change:
        """Send a source's held burst: its deliveries are queued, and go out paced, oldest post first."""
        self._check_source(source)
        now = self.clock.now()
        count = await self.store.release_hold(source, now)
        if count:
            await self.store.audit(actor, via, "hold.release", f"{source}: {count} deliveries queued", now)
        return Change(source, bool(count), f"{source}: {count} held deliveries released; they go out paced, "
                                           "oldest post first" if count else f"{source}: nothing is held")

    async def drop_hold(self, source: str, *, actor: str, via: str) -> Change:
        """Never send a source's held burst: its deliveries are marked ``dropped`` (kept, visible)."""
        self._check_source(source)
        now = self.clock.now()
        count = await self.store.drop_hold(source, now)
        if count:
            await self.store.audit(actor, via, "hold.drop", f"{source}: {count} deliveries dropped", now)
        return Change(source, bool(count), f"{source}: {count} held deliveries dropped; they will never be sent "
                                           "(tagrelay deliveries --status dropped)" if count
                      else f"{source}: nothing is held")

    async def status(self, next_polls: Mapping[str, datetime | None] | None = None) -> StatusReport:
        now = self.clock.now()
        sources = []
        configured = {s.name for s in self.config.sources if s.enabled}
        holds = {h.source: h for h in await self.store.holds()}
        for state in await self.store.sources():
            if state.name not in configured:
                continue
            problem = None
            if state.last_outcome == "error":
                problem = f"{state.consecutive_failures} failed poll(s) in a row: {state.last_error}"
            elif state.last_poll_at is None:
                problem = None
            nxt = (next_polls or {}).get(state.name, state.next_poll_at)
            warning = churn_message(state.guid_churn_last, state.guid_churn_total) if state.guid_churn_last else None
            sources.append(SourceStatus(state, nxt, problem, warning=warning, hold=holds.get(state.name),
                                        burst_limit=self.burst_limit(state.name)))
        channels = []
        budgets = await self.budgets(now)
        for counts in await self.store.channel_counts(now):
            if self.config.channel(counts.channel) is None:
                continue
            problem = None
            if counts.paused:
                problem = f"PAUSED: {counts.paused_reason}"
            elif counts.counts.get("dead") or counts.counts.get("unknown"):
                problem = deliveries_problem(counts.counts.get("dead", 0), counts.counts.get("unknown", 0))
            channels.append(ChannelStatus(counts, problem, self._channel_notes(counts.channel, now),
                                          tuple(budgets.get(counts.channel, ()))))
        path = lock_path(self.config.storage.url)
        return StatusReport(now=now, storage=redact_url(self.config.storage.url),
                            holder=probe(path) if path is not None else None,
                            sources=sources, channels=channels, instances=await self.store.instances(),
                            lifecycle_notes=self.lifecycle_warnings(),
                            database_bytes=await self.store.database_size(), last_prune=await self.store.last_prune())

    def _channel_notes(self, name: str, now: datetime) -> tuple[ChannelNote, ...]:
        """The channel's plugin's notes (``ReportsChannelNotes``), from local state only."""
        opts = self.config.channel(name)
        plugin = self.plugins.get(opts.platform) if opts is not None else None
        if opts is None or not isinstance(plugin, ReportsChannelNotes):
            return ()
        return tuple(plugin.channel_notes(opts, state_dir=database_dir(self.config.storage.url), now=now))

    async def budgets(self, now: datetime | None = None) -> dict[str, list[BudgetLine]]:
        """Each budgeted channel's budgets in their current windows (spent, limit, left, when they reset)."""
        now = now or self.clock.now()
        plans = spending_plans(self.config.channels)
        if not plans:
            return {}
        wanted = {(b.key, lim.period) for plan in plans.values() for b in plan.budgets for lim in b.limits}
        spent = await self.store.spending(wanted, now)
        return {name: budget_lines(plan, spent, now) for name, plan in plans.items()}

    async def preview(self, target: str, channel: str | None = None) -> list[PreviewItem]:
        """What each channel (or ``channel``) would receive for a tag's latest post or a post URL, and whether
        it would get it at all if the post were detected now (``sent``, ``verdict``)."""
        if channel is not None:
            self._check_channels([channel])
        is_url = target.startswith(("http://", "https://"))
        if is_url:
            post = await self.store.latest_post(url=target)
            if post is None:
                raise NotFoundError("post", target, "no stored post has this link (has the source been polled?)")
        else:
            slug = slugify(target)
            post = await self.store.latest_post(tag_slug=slug) if slug else None
            if post is None:
                await self._resolve_tag(target, allow_new=False)
                raise NotFoundError("post", target, "no stored post carries this tag yet")
        names = [channel] if channel is not None else [c.name for c in self.config.channels]
        verdicts = await self._verdicts(post, names)
        items = []
        for name in names:
            opts = self.config.channel(name)
            if opts is None:
                continue
            plugin = self.plugins.get(opts.platform)
            if plugin is None:
                continue
            sent, why = verdicts[name]
            msg = plugin.render(post, opts, self.render_envs.get(name, RenderEnv()))
            items.append(PreviewItem(channel=name, platform=opts.platform, text=msg.text, format=msg.format,
                                     length=msg.length, limit=msg.limit, post_title=post.title, post_url=post.url,
                                     image_url=msg.image_url, link=msg.link,
                                     image_alt=msg.image_alt if opts.platform != "telegram" else None,
                                     sent=sent, verdict=why))
        return items

    async def _verdicts(self, post: Post, channels: Sequence[str]) -> dict[str, tuple[bool, str]]:
        """For each channel: would it get ``post`` if it were detected now, and why (not)."""
        subs = [v.subscription for v in await self.store.subscription_views()
                if v.subscription.tag_slug in post.tag_slugs]
        text = PostText(post)
        now = self.clock.now()
        out: dict[str, tuple[bool, str]] = {}
        for name in channels:
            mine = sorted((s for s in subs if s.channel == name), key=lambda s: s.tag_slug)
            opts = self.config.channel(name)
            if not mine:
                tags = ", ".join(t.name for t in post.tags) or "none"
                out[name] = (False, f"not sent: no subscribed tag (its tags: {tags})")
                continue
            decided = verdict(post, text, mine, opts.rule() if opts is not None else None, now)
            if decided.sent:
                assert decided.subscription is not None
                out[name] = (True, f"sent: subscription {decided.subscription.tag_name}")
            else:
                assert decided.miss is not None
                who = (f"subscription {decided.subscription.tag_name}" if decided.subscription is not None
                       else "the channel's own rule")
                out[name] = (False, f"not sent: {who}, {decided.miss.condition}: {decided.miss.detail}")
        return out

    async def explain(self, target: str, channel: str | None = None) -> Explanation:
        """Why the stored post at ``target`` (its link) was or was not sent to each configured channel (or
        ``channel``): routed by which subscription, kept out by which rule and condition, or no subscribed tag."""
        if channel is not None:
            self._check_channels([channel])
        if not target.startswith(("http://", "https://")):
            raise UsageError("give the post's link (http:// or https://)")
        facts = await self.store.explain_facts(target)
        if facts is None:
            raise NotFoundError("post", target, "no stored post has this link (has the source been polled?)")
        names = [channel] if channel is not None else [c.name for c in self.config.channels]
        post = facts.post
        answers = [self._with_later(a) for a in explain(facts, names)]
        return Explanation(title=post.title, url=post.url, source=post.source, tags=tuple(t.name for t in post.tags),
                           published=post.published, first_seen=facts.first_seen, channels=answers)

    def _with_later(self, answer: ChannelAnswer) -> ChannelAnswer:
        """The answer with what an edit or an unpublishing of the post does on its channel."""
        policy, opts = self.lifecycle.get(answer.channel), self.config.channel(answer.channel)
        if policy is None or opts is None:
            return answer
        return replace(answer, later=describe_policy(policy, opts.platform))

    async def audit_log(self, limit: int = 50) -> list[Any]:
        return await self.store.audit_entries(limit)
