"""Migration 0011 on a database that has history: every delivery of the revision before becomes a ``post``
delivery with its status, remote id and send order kept; a (post, channel) pair may then hold an edit and a
deletion too; existing posts have no content hash yet, so the first poll after the upgrade records it and
edits nothing. SQLite (where the table is rebuilt) and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Connection, column, insert, inspect, select, table, text

from bot.clock import FakeClock
from bot.domain.detect import normalise
from bot.domain.lifecycle import ChannelLifecycle
from bot.domain.models import ParsedPost
from bot.domain.plan import plan_poll
from bot.storage import migrate
from bot.storage import tables as t
from bot.storage.store import Store


async def test_migration_0011_keeps_every_delivery_as_a_post_delivery(db_url: str, clock: FakeClock) -> None:
    from alembic import command

    # the tables as the revision before 0011 had them (the current ``tables`` would write the new columns)
    sources = table("sources", *(column(c) for c in ("id", "name", "url", "kind", "baseline_done",
                                                      "consecutive_failures", "created_at")))
    posts = table("posts", *(column(c) for c in ("id", "source_id", "key", "title", "summary_html", "content_html",
                                                  "first_seen_at", "url", "published_at")))
    channels = table("channels", *(column(c) for c in ("id", "name", "platform", "paused", "created_at")))
    deliveries = table("deliveries", *(column(c) for c in (
        "post_id", "channel_id", "status", "attempts", "created_at", "updated_at", "sent_at", "remote_id", "post_at",
        "next_attempt_at")))

    def to_previous(conn: Connection) -> None:
        cfg = migrate.alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0012")

    now = clock.now()
    store = Store.open(db_url)
    try:
        async with store.engine.begin() as conn:
            await conn.run_sync(to_previous)
            source_id = (await conn.execute(insert(sources).values(
                name="archive", url="https://a.example/feed/", kind="rss", baseline_done=True,
                consecutive_failures=0, created_at=now).returning(sources.c.id))).scalar_one()
            chan_id = (await conn.execute(insert(channels).values(
                name="tg", platform="telegram", paused=False, created_at=now).returning(channels.c.id))).scalar_one()
            post_ids = []
            for n in (1, 2):
                post_ids.append((await conn.execute(insert(posts).values(
                    source_id=source_id, key=f"https://a.example/?p={n}", title=f"Post {n}", summary_html="",
                    content_html="", first_seen_at=now, url=f"https://a.example/{n}/", published_at=now)
                    .returning(posts.c.id))).scalar_one())
            await conn.execute(insert(deliveries), [
                {"post_id": post_ids[0], "channel_id": chan_id, "status": "sent", "attempts": 1, "created_at": now,
                 "updated_at": now, "sent_at": now, "remote_id": "41", "post_at": now, "next_attempt_at": None},
                {"post_id": post_ids[1], "channel_id": chan_id, "status": "queued", "attempts": 0, "created_at": now,
                 "updated_at": now, "sent_at": None, "remote_id": None, "post_at": now, "next_attempt_at": now}])
        assert await migrate.upgrade(store.engine) == ("0012", migrate.HEAD)

        rows = await store.deliveries()
        assert sorted((d.post_title, d.kind, d.status, d.remote_id) for d in rows) == [
            ("Post 1", "post", "sent", "41"), ("Post 2", "post", "queued", None)]
        claimed = await store.claim_next("tg", now + timedelta(seconds=1), "me")  # the send order survived
        assert claimed is not None and claimed.post.title == "Post 2"
        async with store.engine.connect() as conn:
            indexes = await conn.run_sync(lambda c: {i["name"] for i in inspect(c).get_indexes("deliveries")})
            assert {"ix_deliveries_pending", "ix_deliveries_channel_sent", "ix_deliveries_due"} <= indexes
            hashes = (await conn.execute(select(t.posts.c.content_hash))).scalars().all()
            assert hashes == [None, None]
            if store.dialect == "sqlite":  # the partial index kept its predicate through the rebuild
                sql = (await conn.execute(text("SELECT sql FROM sqlite_master WHERE name = 'ix_deliveries_pending'"))
                       ).scalar_one()
                assert "status IN ('queued', 'failed')" in sql

        # the first poll after the upgrade records the hashes and edits nothing, however the posts look now
        state = await store.source("archive")
        seen = normalise("archive", [ParsedPost(title="Post 1, retitled", url="https://a.example/1/",
                                                guid="https://a.example/?p=1", published=now)])
        plan = plan_poll("archive", seen, await store.poll_facts(state, seen), first_poll=False)
        assert plan.edited == () and [p.key for p in plan.rehashed] == ["https://a.example/?p=1"]
        record = await store.apply_poll(state, plan, state.cache, now, now, {"tg": ChannelLifecycle(can_edit=True)})
        assert (record.edited, record.edits) == (0, 0)
        assert {d.kind for d in await store.deliveries()} == {"post"}
        assert (await store.latest_post(url="https://a.example/1/")).title == "Post 1, retitled"  # type: ignore[union-attr]

        async with store.engine.connect() as conn:  # ... and the next edit does reach the channel
            sent_at = now - timedelta(minutes=5)
            await conn.execute(t.deliveries.update().where(t.deliveries.c.remote_id == "41").values(sent_at=sent_at))
            await conn.commit()
        again = normalise("archive", [ParsedPost(title="Post 1, retitled twice", url="https://a.example/1/",
                                                 guid="https://a.example/?p=1", published=now)])
        state = await store.source("archive")
        plan = plan_poll("archive", again, await store.poll_facts(state, again), first_poll=False)
        record = await store.apply_poll(state, plan, state.cache, now, now, {"tg": ChannelLifecycle(can_edit=True)})
        assert (record.edited, record.edits) == (1, 1)
        assert sorted(d.kind for d in await store.deliveries()) == ["edit", "post", "post"]
    finally:
        await store.aclose()
