"""What ``tagrelay explain`` reads about one post: its deliveries, the channels a rule kept it from
(``rule_drops``), the subscriptions to its tags and when the post and the channels came."""

from __future__ import annotations

from sqlalchemy import Connection, select

from bot.domain.explain import DeliveryFact, DropFact, ExplainFacts
from bot.domain.identity import link_key
from bot.domain.models import DeliveryKind, Subscription
from bot.domain.rules import rule_from_json
from bot.domain.state import SubscriptionView
from bot.storage import tables as t
from bot.storage.base import StoreBase, utc
from bot.storage.posts import load_post


def _find_post(conn: Connection, url: str) -> int | None:
    """The newest post stored with this link, else with this canonical link (tracking parameters
    and the like removed: ``bot.domain.identity.link_key``)."""
    newest = (t.posts.c.published_at.desc().nulls_last(), t.posts.c.id.desc())
    row = conn.execute(select(t.posts.c.id).where(t.posts.c.url == url).order_by(*newest).limit(1)).first()
    key = link_key(url)
    if row is None and key is not None:
        row = conn.execute(select(t.posts.c.id).where(t.posts.c.link_key == key).order_by(*newest).limit(1)).first()
    return None if row is None else int(row.id)


class ExplainMixin(StoreBase):
    async def explain_facts(self, url: str) -> ExplainFacts | None:
        """Everything ``bot.domain.explain.explain`` needs about the post at ``url``, in one read (None: no
        stored post has that link)."""

        def work(conn: Connection) -> ExplainFacts | None:
            post_id = _find_post(conn, url)
            if post_id is None:
                return None
            post = load_post(conn, post_id)
            seen = conn.execute(select(t.posts.c.first_seen_at).where(t.posts.c.id == post_id)).scalar_one()
            channels = {r.name: utc(r.created_at)
                        for r in conn.execute(select(t.channels.c.name, t.channels.c.created_at))}
            deliveries = {r.name: DeliveryFact(r.id, r.status, utc(r.created_at)) for r in conn.execute(
                select(t.deliveries.c.id, t.deliveries.c.status, t.deliveries.c.created_at, t.channels.c.name)
                .join(t.channels, t.channels.c.id == t.deliveries.c.channel_id)
                .where(t.deliveries.c.post_id == post_id, t.deliveries.c.kind == DeliveryKind.POST.value))}
            drops = {r.name: DropFact(r.subscription, r.condition, r.detail, utc(r.at)) for r in conn.execute(
                select(t.rule_drops, t.channels.c.name).join(t.channels, t.channels.c.id == t.rule_drops.c.channel_id)
                .where(t.rule_drops.c.post_id == post_id))}
            subs = tuple(
                SubscriptionView(Subscription(r.tag_slug, r.tag_name, r.name, r.backfill, rule_from_json(r.rule)),
                                 r.origin, utc(r.created_at))
                for r in conn.execute(
                    select(t.subscriptions, t.channels.c.name)
                    .join(t.channels, t.channels.c.id == t.subscriptions.c.channel_id)
                    .where(t.subscriptions.c.tag_slug.in_(sorted(post.tag_slugs)))
                    .order_by(t.subscriptions.c.tag_slug, t.channels.c.name)))
            return ExplainFacts(post=post, first_seen=utc(seen), channels=channels, deliveries=deliveries,
                                drops=drops, subscriptions=subs)

        return await self._read(work)
