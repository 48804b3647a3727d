"""Detection: which parsed posts are new, and what the first poll of a source does.

The first poll of a source records everything it sees as known and publishes
nothing, so a new source never floods its channels. Later polls publish posts
whose identity was never seen before. Backfill (the N latest matching posts of
a subscription) is chosen by ``pick_backfill``.

Guid churn: a post whose guid is new but whose canonical link is already known
for the source is the same post (``classify``), so a feed that changes its
guids on every request publishes nothing again. The link counts only when one
identity in the poll carries it: several items sharing one link in a feed (a
live blog's updates, items that all link to the home page) are told apart by
their guids.

Bursts: a poll with more new posts than the source's burst limit (``is_burst``)
is recorded, but its deliveries are held for an admin instead of being sent.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime

from bot.domain.identity import link_key, post_key
from bot.domain.lifecycle import content_hash
from bot.domain.limits import bounded, rejection
from bot.domain.models import Detection, ParsedPost, Post, Subscription
from bot.domain.routing import decide
from bot.domain.rules import Rule
from bot.domain.tags import make_tags
from bot.domain.urls import followable_or_none

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_post(source: str, parsed: ParsedPost) -> Post:
    """Normalise a parsed post: fields within their bounds (``domain.limits``), identity, tags, title whitespace;
    an image URL only if http(s); the hash of what a rendering can show (``domain.lifecycle.content_hash``)."""
    parsed = bounded(parsed)
    title = " ".join(parsed.title.split())
    url = parsed.url.strip() if parsed.url else None
    image_url = followable_or_none(parsed.image_url)  # fetched by a platform: never a local file
    image_alt = parsed.image_alt if parsed.image_alt and image_url else None
    return Post(
        key=post_key(parsed),
        link_key=link_key(parsed.url),
        source=source,
        title=title,
        url=url,
        summary_html=parsed.summary_html,
        content_html=parsed.content_html,
        tags=make_tags(list(parsed.tags)),
        published=parsed.published,
        image_url=image_url,
        author=parsed.author,
        image_alt=image_alt,
        content_hash=content_hash(title=title, url=url, summary_html=parsed.summary_html,
                                  content_html=parsed.content_html, image_url=image_url, image_alt=image_alt,
                                  author=parsed.author),
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


def classify(posts: Sequence[Post], known_keys: Collection[str], known_links: Collection[str] = ()
             ) -> tuple[tuple[Post, ...], tuple[Post, ...], tuple[Post, ...]]:
    """(new, known, churned) of normalised posts; ``churned`` ⊆ ``known``: a new guid for a known link.

    ``known_keys``/``known_links``: the identities and canonical links already stored for the source.
    A link counts only when exactly one post of this poll carries it (see the module docstring).
    """
    carriers = Counter(p.link_key for p in posts if p.link_key is not None)
    new: list[Post] = []
    known: list[Post] = []
    churned: list[Post] = []
    for post in posts:
        if post.key in known_keys:
            known.append(post)
        elif post.link_key is not None and carriers[post.link_key] == 1 and post.link_key in known_links:
            known.append(post)
            churned.append(post)
        else:
            new.append(post)
    return tuple(new), tuple(known), tuple(churned)


def is_burst(new_posts: int, limit: int) -> bool:
    """Is a poll with ``new_posts`` new posts a burst to hold? ``limit`` 0 never holds."""
    return limit > 0 and new_posts > limit


def hold_message(source: str, new_posts: int, usual: float | None, limit: int) -> str:
    """What ``status`` and the admins are told about a held burst of ``source``."""
    usual_text = f"usual {usual:.0f}" if usual is not None else "no usual volume yet"
    return (f"burst of {new_posts} new posts held ({usual_text}; limit {limit}); run `tagrelay hold release "
            f"{source}` or `tagrelay hold drop {source}`")


def churn_message(last_poll: int, total: int) -> str:
    """What ``status`` says about a source whose guids churn."""
    return (f"guids change between polls ({last_poll} known post(s) in the last poll, {total} in all); "
            "identity falls back to the link")


def detect(
    source: str,
    parsed: Iterable[ParsedPost],
    known_keys: Collection[str],
    subscriptions: Iterable[Subscription],
    *,
    first_poll: bool,
    known_links: Collection[str] = (),
    burst_limit: int = 0,
    now: datetime | None = None,
    channel_rules: Mapping[str, Rule] | None = None,
) -> Detection:
    """Decide what a poll found. ``known_keys``/``known_links``: identities and canonical links already
    stored for the source; ``burst_limit``: more new posts than this are a burst (0: no limit); ``now``:
    when the posts were detected (rules' ``max_age``); ``channel_rules``: each channel's exclusions."""
    return detect_posts(normalise(source, parsed), known_keys, subscriptions, first_poll=first_poll,
                        known_links=known_links, burst_limit=burst_limit, now=now, channel_rules=channel_rules)


def detect_posts(
    posts: Sequence[Post],
    known_keys: Collection[str],
    subscriptions: Iterable[Subscription],
    *,
    first_poll: bool,
    known_links: Collection[str] = (),
    burst_limit: int = 0,
    now: datetime | None = None,
    channel_rules: Mapping[str, Rule] | None = None,
) -> Detection:
    """``detect`` for posts already normalised (``normalise``)."""
    new, known, churned = classify(posts, known_keys, known_links)
    if first_poll:  # a baseline publishes nothing, so it is never a burst
        return Detection(new_posts=new, known_posts=known, intents=(), baseline=True, churned=churned)
    routing = decide(new, subscriptions, now=now, channel_rules=channel_rules)
    return Detection(new_posts=new, known_posts=known, intents=routing.intents, churned=churned,
                     burst=is_burst(len(new), burst_limit), drops=routing.drops)


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
