"""Posts and tags: which identities a source has stored, the posts themselves, their tags."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, func, or_, select

from bot.domain.models import Post, Tag
from bot.domain.state import KnownIdentities, TagCount
from bot.storage import tables as t
from bot.storage.base import StoreBase, chunks, insert_ignore, utc

# built once: every claimed delivery loads its post
_POST = (select(t.posts, t.sources.c.name.label("source_name"))
         .join(t.sources, t.sources.c.id == t.posts.c.source_id)
         .where(t.posts.c.id == bindparam("load_post_id", type_=t.ID)))
_POST_TAGS = (select(t.post_tags.c.post_id, t.tags.c.slug, t.tags.c.name)
              .join(t.tags, t.tags.c.id == t.post_tags.c.tag_id)
              .where(t.post_tags.c.post_id == bindparam("load_post_id", type_=t.ID)).order_by(t.tags.c.id))


def load_post(conn: Connection, post_id: int) -> Post:
    """A stored post with its tags."""
    r = conn.execute(_POST, {"load_post_id": post_id}).one()
    tags = tuple(Tag(tr.slug, tr.name) for tr in conn.execute(_POST_TAGS, {"load_post_id": post_id}))
    return Post(key=r.key, source=r.source_name, title=r.title, url=r.url, summary_html=r.summary_html or "",
                content_html=r.content_html or "", tags=tags, published=utc(r.published_at),
                image_url=r.image_url, author=r.author, id=r.id, image_alt=r.image_alt, content_hash=r.content_hash,
                link_key=r.link_key)


def load_posts(conn: Connection, ids: Sequence[int]) -> tuple[Post, ...]:
    """Stored posts with their tags, in the order of ``ids``: two reads per ``CHUNK`` of them."""
    rows: dict[int, Any] = {}
    tags: dict[int, list[Tag]] = {i: [] for i in ids}
    for part in chunks(list(ids)):
        for r in conn.execute(select(t.posts, t.sources.c.name.label("source_name"))
                              .join(t.sources, t.sources.c.id == t.posts.c.source_id).where(t.posts.c.id.in_(part))):
            rows[r.id] = r
        for tr in conn.execute(select(t.post_tags.c.post_id, t.tags.c.slug, t.tags.c.name)
                               .join(t.tags, t.tags.c.id == t.post_tags.c.tag_id)
                               .where(t.post_tags.c.post_id.in_(part)).order_by(t.tags.c.id)):
            tags[tr.post_id].append(Tag(tr.slug, tr.name))
    return tuple(_post(rows[i], tuple(tags[i])) for i in ids if i in rows)


def _post(r: Any, tags: tuple[Tag, ...]) -> Post:
    return Post(key=r.key, source=r.source_name, title=r.title, url=r.url, summary_html=r.summary_html or "",
                content_html=r.content_html or "", tags=tags, published=utc(r.published_at),
                image_url=r.image_url, author=r.author, id=r.id, link_key=r.link_key, image_alt=r.image_alt)


def read_known(conn: Connection, source_id: int, posts: Sequence[Post]) -> KnownIdentities:
    """Which of the posts' keys and canonical links are stored for the source: index lookups
    (``source_id, key`` and ``ix_posts_source_link``), cost ∝ len(posts), not history."""
    keys = list(dict.fromkeys(p.key for p in posts))
    links = list(dict.fromkeys(p.link_key for p in posts if p.link_key is not None))
    found = KnownIdentities(set(), set())
    for part in chunks(keys):
        for r in conn.execute(select(t.posts.c.key, t.posts.c.content_hash).where(
                t.posts.c.source_id == source_id, t.posts.c.key.in_(part))):
            found.keys.add(r.key)
            found.hashes[r.key] = r.content_hash
    for part in chunks(links):
        found.links.update(r.link_key for r in conn.execute(select(t.posts.c.link_key).where(
            t.posts.c.source_id == source_id, t.posts.c.link_key.in_(part)).distinct()))
    return found


def tag_ids(conn: Connection, dialect: str, tags: Iterable[Tag]) -> dict[str, int]:
    """The ids of these tags, inserting those not stored yet."""
    unique = {tag.slug: tag for tag in tags}
    if not unique:
        return {}
    # in slug order: tags are shared by every source, and two polls inserting the same new tags
    # in different orders wait on each other's unique-index entries (a deadlock on PostgreSQL)
    conn.execute(insert_ignore(dialect, t.tags, ["slug"]),
                 [{"slug": s, "name": unique[s].name[:255]} for s in sorted(unique)])
    ids: dict[str, int] = {}
    for part in chunks(list(unique)):
        rows = conn.execute(select(t.tags.c.slug, t.tags.c.id).where(t.tags.c.slug.in_(part)))
        ids.update({r.slug: r.id for r in rows})
    return ids


def insert_posts(conn: Connection, dialect: str, source_id: int, posts: Sequence[Post],
                 now: datetime) -> dict[str, int]:
    """Store the posts (in their order) with their tags; returns their ids by key."""
    if not posts:
        return {}
    conn.execute(insert_ignore(dialect, t.posts, ["source_id", "key"]), [
        {"source_id": source_id, "key": p.key, "url": p.url, "title": p.title,
         "summary_html": p.summary_html, "content_html": p.content_html, "image_url": p.image_url,
         "author": p.author, "image_alt": p.image_alt, "published_at": p.published, "first_seen_at": now,
         "last_seen_at": now, "link_key": p.link_key, "content_hash": p.content_hash}
        for p in posts])
    ids: dict[str, int] = {}
    for part in chunks([p.key for p in posts]):
        rows = conn.execute(select(t.posts.c.key, t.posts.c.id).where(
            t.posts.c.source_id == source_id, t.posts.c.key.in_(part)))
        ids.update({r.key: r.id for r in rows})
    by_slug = tag_ids(conn, dialect, (tag for p in posts for tag in p.tags))
    links = [{"post_id": ids[p.key], "tag_id": by_slug[tag.slug]} for p in posts for tag in p.tags]
    if links:
        conn.execute(insert_ignore(dialect, t.post_tags, ["post_id", "tag_id"]), links)
    return ids


class PostsMixin(StoreBase):
    async def known_keys(self, source_id: int, keys: Sequence[str]) -> set[str]:
        """Which of ``keys`` are already stored for the source (cost ∝ len(keys), not history)."""

        def work(conn: Connection) -> set[str]:
            found: set[str] = set()
            for part in chunks(list(keys)):
                rows = conn.execute(select(t.posts.c.key).where(
                    t.posts.c.source_id == source_id, t.posts.c.key.in_(part)))
                found.update(r.key for r in rows)
            return found

        return await self._read(work)

    async def tags(self, search: str | None = None, limit: int | None = None, offset: int = 0) -> list[TagCount]:
        query = (select(t.tags.c.slug, t.tags.c.name, func.count(t.post_tags.c.post_id).label("n"))
                 .outerjoin(t.post_tags, t.post_tags.c.tag_id == t.tags.c.id)
                 .group_by(t.tags.c.id, t.tags.c.slug, t.tags.c.name)
                 .order_by(func.count(t.post_tags.c.post_id).desc(), t.tags.c.slug).offset(offset))
        if search:
            pattern = f"%{search.lower()}%"
            query = query.where(or_(func.lower(t.tags.c.name).like(pattern), t.tags.c.slug.like(pattern)))
        if limit is not None:
            query = query.limit(limit)
        rows = await self._read(lambda conn: conn.execute(query).all())
        return [TagCount(r.slug, r.name, r.n) for r in rows]

    async def tag(self, slug: str) -> TagCount | None:
        query = (select(t.tags.c.slug, t.tags.c.name, func.count(t.post_tags.c.post_id).label("n"))
                 .outerjoin(t.post_tags, t.post_tags.c.tag_id == t.tags.c.id)
                 .where(t.tags.c.slug == slug).group_by(t.tags.c.id, t.tags.c.slug, t.tags.c.name))
        row = await self._read(lambda conn: conn.execute(query).first())
        return TagCount(row.slug, row.name, row.n) if row else None

    async def latest_post(self, *, tag_slug: str | None = None, url: str | None = None) -> Post | None:
        """The newest post with a tag, or the post at a URL (for ``preview``)."""
        query = select(t.posts.c.id).order_by(t.posts.c.published_at.desc().nulls_last(), t.posts.c.id.desc())
        if tag_slug is not None:
            query = (query.join(t.post_tags, t.post_tags.c.post_id == t.posts.c.id)
                     .join(t.tags, t.tags.c.id == t.post_tags.c.tag_id).where(t.tags.c.slug == tag_slug))
        if url is not None:
            query = query.where(t.posts.c.url == url)

        def work(conn: Connection) -> Post | None:
            row = conn.execute(query.limit(1)).first()
            if row is None:
                return None
            return load_post(conn, row.id)

        return await self._read(work)
