"""Detection: which parsed posts are new, and what the first poll of a source does.

The first poll of a source records everything it sees as known and publishes
nothing, so a new source never floods its channels. Later polls publish posts
whose identity was never seen before. Backfill (the N latest matching posts of
a subscription) is chosen by ``pick_backfill``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from datetime import UTC, datetime

from bot.domain.identity import post_key
from bot.domain.limits import bounded, rejection
from bot.domain.models import Detection, ParsedPost, Post, Subscription
from bot.domain.routing import route
from bot.domain.tags import make_tags

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_post(source: str, parsed: ParsedPost) -> Post:
    """Normalise a parsed post: fields within their bounds (``domain.limits``), identity, tags, title whitespace."""
    parsed = bounded(parsed)
    return Post(
        key=post_key(parsed),
        source=source,
        title=" ".join(parsed.title.split()),
        url=parsed.url.strip() if parsed.url else None,
        summary_html=parsed.summary_html,
        content_html=parsed.content_html,
        tags=make_tags(list(parsed.tags)),
        published=parsed.published,
        image_url=parsed.image_url,
        author=parsed.author,
    )


def normalise(source: str, parsed: Iterable[ParsedPost]) -> tuple[Post, ...]:
    """Posts in feed order, the first occurrence of each identity kept; items ``domain.limits``
    rejects (the poll reports them) left out."""
    seen: dict[str, Post] = {}
    for item in parsed:
        if rejection(item) is not None:
            continue
        post = to_post(source, item)
        seen.setdefault(post.key, post)
    return tuple(seen.values())


def detect(
    source: str,
    parsed: Iterable[ParsedPost],
    known_keys: Collection[str],
    subscriptions: Iterable[Subscription],
    *,
    first_poll: bool,
) -> Detection:
    """Decide what a poll found. ``known_keys``: identities already stored for the source."""
    posts = normalise(source, parsed)
    new = tuple(p for p in posts if p.key not in known_keys)
    known = tuple(p for p in posts if p.key in known_keys)
    if first_poll:
        return Detection(new_posts=new, known_posts=known, intents=(), baseline=True)
    return Detection(new_posts=new, known_posts=known, intents=route(new, subscriptions))


def newest_first(posts: Iterable[Post]) -> list[Post]:
    """Order posts by publication date, newest first; undated posts last."""
    return sorted(posts, key=lambda p: p.published or _EPOCH, reverse=True)


def pick_backfill(candidates: Sequence[Post], subscription: Subscription) -> list[Post]:
    """The subscription's backfill: its N latest posts carrying its tag, oldest first."""
    if subscription.backfill <= 0:
        return []
    matching = [p for p in candidates if subscription.tag_slug in p.tag_slugs]
    chosen = newest_first(matching)[: subscription.backfill]
    chosen.reverse()
    return chosen
