"""Rules in storage, on real SQLite and real PostgreSQL: a subscription's rule stored and read back, the
config's rules applied at start, each (post, channel) a rule kept out recorded once with its reason, rule
backfills over full posts, and what ``explain`` reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from bot.clock import FakeClock
from bot.domain.detect import normalise
from bot.domain.explain import explain
from bot.domain.models import ParsedPost, Subscription
from bot.domain.plan import plan_poll
from bot.domain.rules import Rule, RuleParts
from bot.domain.tags import slugify
from bot.sources.base import CacheState
from bot.storage import tables as t
from bot.storage.store import Store


def parsed(n: int, *tags: str, title: str | None = None, content: str = "") -> ParsedPost:
    return ParsedPost(title=title or f"Post {n}", url=f"https://a.example/{n}/", guid=f"p{n}", tags=tags,
                      published=datetime(2026, 1, n, tzinfo=UTC), content_html=content)


def sub(tag: str, channel: str, rule: Rule | None = None, backfill: int = 0) -> Subscription:
    return Subscription(slugify(tag), tag, channel, backfill, rule)


def rule(**parts: object) -> Rule:
    built = RuleParts(**parts).build()  # type: ignore[arg-type]
    assert built is not None
    return built


async def setup(store: Store, clock: FakeClock, subs: list[Subscription]) -> None:
    await store.sync_config([("archive", "https://a.example/feed/", "rss")],
                            [("tg", "telegram"), ("masto", "mastodon")], subs, clock.now())


async def poll(store: Store, clock: FakeClock, items: list[ParsedPost], *,
               channel_rules: dict[str, Rule] | None = None) -> None:
    state = await store.source("archive")
    posts = normalise("archive", items)
    facts = await store.poll_facts(state, posts, ruled_channels=(channel_rules or {}).keys())
    plan = plan_poll("archive", posts, facts, first_poll=not state.baseline_done, now=clock.now(),
                     channel_rules=channel_rules)
    await store.apply_poll(state, plan, CacheState(), clock.now(), clock.now() + timedelta(minutes=10))


async def drops(store: Store) -> list[tuple[str, str, str | None, str, str]]:
    def work(conn: object) -> list[tuple[str, str, str | None, str, str]]:
        rows = conn.execute(  # type: ignore[attr-defined]
            select(t.posts.c.key, t.channels.c.name, t.rule_drops.c.subscription, t.rule_drops.c.condition,
                   t.rule_drops.c.detail)
            .join(t.posts, t.posts.c.id == t.rule_drops.c.post_id)
            .join(t.channels, t.channels.c.id == t.rule_drops.c.channel_id).order_by(t.posts.c.key, t.channels.c.name))
        return [tuple(r) for r in rows]

    return await store._read(work)


async def deliveries(store: Store) -> list[tuple[str, str]]:
    return sorted((d.post_url or "", d.channel) for d in await store.deliveries(limit=1000))


async def test_rules_are_stored_read_back_and_applied_from_the_config(store: Store, clock: FakeClock) -> None:
    opinion = rule(none_tags=("Opinion",), patterns=("title!=(?i)^live",), max_age=3600.0,
                   include_keywords=("title:Basra", "Mosul"))
    await setup(store, clock, [sub("Iraq", "tg", opinion), sub("MEK", "tg")])
    views = {v.subscription.tag_slug: v for v in await store.subscription_views()}
    assert views["iraq"].subscription.rule == opinion and views["iraq"].origin == "config"
    assert views["mek"].subscription.rule is None and views["mek"].created_at == clock.now()

    # the file's rule changed: the next start applies it; a CLI subscription keeps its own
    assert await store.add_subscription(sub("Basra", "masto", rule(sources=("archive",))), "cli", clock.now())
    await setup(store, clock, [sub("Iraq", "tg"), sub("MEK", "tg", opinion)])
    rules = {(s.tag_slug, s.channel): s.rule for s, _ in await store.subscriptions()}
    assert rules == {("iraq", "tg"): None, ("mek", "tg"): opinion, ("basra", "masto"): rule(sources=("archive",))}
    assert await store.set_rule("basra", "masto", None) and not await store.set_rule("nope", "masto", None)
    assert (await store.subscription_views("masto"))[0].subscription.rule is None


async def test_each_post_a_rule_kept_from_a_channel_is_recorded_once_with_its_reason(store: Store,
                                                                                   clock: FakeClock) -> None:
    await setup(store, clock, [sub("Iraq", "tg", rule(none_tags=("Opinion",))), sub("MEK", "tg", rule(max_age=60.0)),
                               sub("Iraq", "masto")])
    await poll(store, clock, [parsed(1, "Iraq")])  # baseline
    clock.advance(86400 * 40)  # posts dated in January 2026 are weeks old now
    await poll(store, clock, [parsed(2, "Iraq", "Opinion", "MEK"), parsed(3, "Iraq"), parsed(4, "Sports"),
                              parsed(5, "Iraq", "Sponsored")], channel_rules={"masto": rule(none_tags=("Sponsored",))})
    assert await deliveries(store) == [("https://a.example/2/", "masto"), ("https://a.example/3/", "masto"),
                                       ("https://a.example/3/", "tg"), ("https://a.example/5/", "tg")]
    found = await drops(store)
    assert [(k, c, s, cond) for k, c, s, cond, _ in found] == [
        ("p2", "tg", "Iraq", "none_tags"), ("p5", "masto", None, "exclude_tags")]
    assert found[0][4].startswith("it is tagged Opinion; subscription MEK: max_age: it was ")
    # a later poll that sees the same posts again writes nothing twice
    await poll(store, clock, [parsed(2, "Iraq", "Opinion", "MEK"), parsed(5, "Iraq", "Sponsored")])
    assert await drops(store) == found
    count = await store._read(lambda conn: conn.execute(select(func.count()).select_from(t.rule_drops)).scalar_one())
    assert count == 2


async def test_a_backfill_under_a_rule_reads_full_posts_and_takes_the_latest_that_pass(store: Store,
                                                                                     clock: FakeClock) -> None:
    await setup(store, clock, [])
    await poll(store, clock, [parsed(n, "Iraq", content="<p>Mosul</p>" if n % 2 else "<p>Basra</p>")
                              for n in range(1, 9)])  # baseline: 8 stored posts
    await store.add_subscription(sub("Iraq", "tg", rule(include_keywords=("content:Basra",)), backfill=2), "cli",
                                 clock.now())
    await poll(store, clock, [])
    # the 2 latest that pass (6, 8), past the newer ones the rule keeps out (7)
    assert await deliveries(store) == [("https://a.example/6/", "tg"), ("https://a.example/8/", "tg")]
    assert [(k, cond) for k, _, _, cond, _ in await drops(store)] == [("p7", "include_keywords")]


async def test_explain_reads_deliveries_drops_and_subscriptions(store: Store, clock: FakeClock) -> None:
    await setup(store, clock, [sub("Iraq", "tg", rule(none_tags=("Opinion",))), sub("Iraq", "masto")])
    await poll(store, clock, [parsed(1, "Iraq")])
    clock.advance(60)
    await poll(store, clock, [parsed(2, "Iraq", "Opinion")])
    facts = await store.explain_facts("https://a.example/2/?utm_source=x")  # found by its canonical link too
    assert facts is not None and facts.post.key == "p2" and facts.first_seen == clock.now()
    assert set(facts.deliveries) == {"masto"} and set(facts.drops) == {"tg"}
    answers = {a.channel: a for a in explain(facts, ["tg", "masto"])}
    assert (answers["tg"].outcome, answers["tg"].subscription, answers["tg"].condition) == (
        "filtered", "Iraq", "none_tags")
    assert answers["masto"].outcome == "queued" and answers["masto"].reason.startswith("routed by subscription Iraq;")
    baseline = await store.explain_facts("https://a.example/1/")
    assert baseline is not None
    assert [a.outcome for a in explain(baseline, ["tg"])] == ["not routed"]
    assert await store.explain_facts("https://a.example/404/") is None

    # a channel no tag of the post reaches; then a subscription made after the post was detected
    await poll(store, clock, [parsed(3, "Basra")])
    facts = await store.explain_facts("https://a.example/3/")
    assert facts is not None
    assert [a.outcome for a in explain(facts, ["tg"])] == ["no subscribed tag"]
    clock.advance(60)
    await store.add_subscription(sub("Basra", "tg"), "cli", clock.now())
    facts = await store.explain_facts("https://a.example/3/")
    assert facts is not None
    (answer,) = explain(facts, ["tg"])
    assert answer.outcome == "not routed" and answer.reason.startswith("subscription Basra was made after the post")
