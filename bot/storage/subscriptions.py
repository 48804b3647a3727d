"""Subscriptions (tag → channel, with their rules), and the config file applied to sources, channels and
subscriptions."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import Connection, delete, func, insert, select, update

from bot.domain.models import Subscription
from bot.domain.rules import Rule, rule_from_json, rule_to_json
from bot.domain.state import SubscriptionView
from bot.errors import NotFoundError
from bot.storage import tables as t
from bot.storage.base import StoreBase, chunks, utc

CONFIG_LOCK = 0x7461_6763  # "tagc": PostgreSQL advisory lock held while one instance applies the config


def read_subscriptions_for_tags(conn: Connection, slugs: Iterable[str]) -> list[Subscription]:
    """The subscriptions to any of these tags (an index lookup per tag, however many exist), by tag and
    channel."""
    wanted = sorted(set(slugs))
    out: list[Subscription] = []
    for part in chunks(wanted):
        rows = conn.execute(
            select(t.subscriptions.c.tag_slug, t.subscriptions.c.tag_name, t.subscriptions.c.backfill,
                   t.subscriptions.c.rule, t.channels.c.name.label("channel"))
            .join(t.channels, t.channels.c.id == t.subscriptions.c.channel_id)
            .where(t.subscriptions.c.tag_slug.in_(part))).all()
        out.extend(Subscription(r.tag_slug, r.tag_name, r.channel, r.backfill, rule_from_json(r.rule))
                   for r in rows)
    return sorted(out, key=lambda s: (s.tag_slug, s.channel))


class SubscriptionsMixin(StoreBase):
    async def sync_config(
        self,
        sources: Sequence[tuple[str, str, str]],
        channels: Sequence[tuple[str, str]],
        subscriptions: Sequence[Subscription],
        now: datetime,
    ) -> None:
        """Apply the config file: sources (name, url, kind), channels (name, platform), and
        the config-declared subscriptions (origin "config", with their backfill and rule). Subscriptions
        made through the CLI or the bot are kept; config ones no longer in the file are removed."""

        def work(conn: Connection) -> None:
            if self.dialect == "postgresql":  # instances starting together apply it one after the other
                conn.execute(select(func.pg_advisory_xact_lock(CONFIG_LOCK)))
            existing = {r.name: r for r in conn.execute(select(t.sources)).all()}
            for name, url, kind in sources:
                row = existing.get(name)
                if row is None:
                    conn.execute(insert(t.sources).values(
                        name=name, url=url, kind=kind, baseline_done=False, consecutive_failures=0,
                        created_at=now))
                elif row.url != url or row.kind != kind:
                    # a moved source keeps its known posts (no re-delivery) but forgets validators
                    conn.execute(update(t.sources).where(t.sources.c.id == row.id).values(
                        url=url, kind=kind, resolved_url=None, resolved_kind=None, etag=None,
                        last_modified=None, cursor=None, next_poll_at=None))
            chans = {r.name: r for r in conn.execute(select(t.channels)).all()}
            for name, platform in channels:
                crow = chans.get(name)
                if crow is None:
                    conn.execute(insert(t.channels).values(
                        name=name, platform=platform, paused=False, created_at=now))
                elif crow.platform != platform:
                    conn.execute(update(t.channels).where(t.channels.c.id == crow.id).values(
                        platform=platform, target_override=None))
            ids = {r.name: r.id for r in conn.execute(select(t.channels.c.name, t.channels.c.id)).all()}
            wanted = {(s.tag_slug, ids[s.channel]) for s in subscriptions if s.channel in ids}
            rows = conn.execute(select(t.subscriptions)).all()
            have = {(r.tag_slug, r.channel_id): r for r in rows}
            for sub in subscriptions:
                key = (sub.tag_slug, ids[sub.channel])
                rule = rule_to_json(sub.rule)
                if key in have:
                    row = have[key]
                    if row is not None and row.origin == "config" and (row.backfill, row.rule) != (sub.backfill, rule):
                        conn.execute(update(t.subscriptions).where(
                            t.subscriptions.c.id == row.id).values(backfill=sub.backfill, rule=rule))
                    continue
                conn.execute(insert(t.subscriptions).values(
                    tag_slug=sub.tag_slug, tag_name=sub.tag_name, channel_id=key[1], backfill=sub.backfill,
                    origin="config", created_at=now, rule=rule))
                have[key] = None  # type: ignore[assignment]
            for key, row in list(have.items()):
                if row is not None and row.origin == "config" and key not in wanted:
                    conn.execute(delete(t.subscriptions).where(t.subscriptions.c.id == row.id))

        await self._write(work)

    async def subscriptions(self, channel: str | None = None) -> list[tuple[Subscription, str]]:
        """Subscriptions with their origin ("config", "cli", "telegram")."""
        return [(v.subscription, v.origin) for v in await self.subscription_views(channel)]

    async def subscription_views(self, channel: str | None = None, *, tag_slug: str | None = None
                                 ) -> list[SubscriptionView]:
        """Subscriptions (of ``channel``, to ``tag_slug``) with their rule, origin and creation time."""
        query = (select(t.subscriptions, t.channels.c.name.label("channel"))
                 .join(t.channels, t.channels.c.id == t.subscriptions.c.channel_id)
                 .order_by(t.subscriptions.c.tag_slug, t.channels.c.name))
        if channel:
            query = query.where(t.channels.c.name == channel)
        if tag_slug is not None:
            query = query.where(t.subscriptions.c.tag_slug == tag_slug)
        rows = await self._read(lambda conn: conn.execute(query).all())
        return [SubscriptionView(Subscription(r.tag_slug, r.tag_name, r.channel, r.backfill, rule_from_json(r.rule)),
                                 r.origin, utc(r.created_at)) for r in rows]

    async def set_rule(self, tag_slug: str, channel: str, rule: Rule | None) -> bool:
        """Replace a subscription's rule (None: no rule). False when there is no such subscription."""

        def work(conn: Connection) -> bool:
            chan = conn.execute(select(t.channels.c.id).where(t.channels.c.name == channel)).first()
            if chan is None:
                raise NotFoundError("channel", channel)
            result = conn.execute(update(t.subscriptions).where(
                t.subscriptions.c.tag_slug == tag_slug, t.subscriptions.c.channel_id == chan.id).values(
                rule=rule_to_json(rule)))
            return bool(result.rowcount)

        return await self._write(work)

    async def add_subscription(self, sub: Subscription, origin: str, now: datetime) -> bool:
        """Returns False when it already existed (its rule is then left as it was)."""

        def work(conn: Connection) -> bool:
            chan = conn.execute(select(t.channels.c.id).where(t.channels.c.name == sub.channel)).first()
            if chan is None:
                raise NotFoundError("channel", sub.channel)
            result = conn.execute(self._insert_ignore(t.subscriptions, ["tag_slug", "channel_id"]).values(
                tag_slug=sub.tag_slug, tag_name=sub.tag_name, channel_id=chan.id, backfill=sub.backfill,
                origin=origin, created_at=now, rule=rule_to_json(sub.rule)))
            return bool(result.rowcount)

        return await self._write(work)

    async def remove_subscription(self, tag_slug: str, channel: str) -> bool:
        def work(conn: Connection) -> bool:
            chan = conn.execute(select(t.channels.c.id).where(t.channels.c.name == channel)).first()
            if chan is None:
                raise NotFoundError("channel", channel)
            result = conn.execute(delete(t.subscriptions).where(
                t.subscriptions.c.tag_slug == tag_slug, t.subscriptions.c.channel_id == chan.id))
            return bool(result.rowcount)

        return await self._write(work)
