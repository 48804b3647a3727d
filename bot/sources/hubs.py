"""The WebSub hub a fetched feed advertises (W3C WebSub §4, discovery), and the topic to subscribe to.

Looked for in this order: the response's ``Link`` headers (``rel="hub"``, ``rel="self"``), then the
feed itself: RSS and Atom declare them among the channel's or feed's own elements, before the first
item (``<atom:link rel="hub" href="…"/>``, ``<link rel="hub" href="…"/>``), and a JSON Feed in
``hubs`` (``{"type": "WebSub", "url": …}``) and ``feed_url``. Without a ``self`` link the topic is the
URL the feed was fetched from.

Everything here came from the network: the hub and the topic must pass the URL policy
(``bot.domain.urls``: http/https only, no credentials, bounded), else the feed counts as advertising
no hub (the topic is sent to the hub, so not even the feed URL's own credentials). Only the head of
an XML feed is read (``HEAD_BYTES``), with linear patterns.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from urllib.parse import urljoin

from bot.domain.push import HubLink
from bot.domain.urls import url_refusal
from bot.sources.discover import link_targets

HEAD_BYTES = 64 * 1024
"""How much of an XML feed is searched for the feed's own links (they come before the first item)."""

_FIRST_ITEM = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?(?:item|entry)[\s>/]")
# a link element with a namespace prefix or none; its attributes end at the first "<" or ">"
_LINK_TAG = re.compile(r"<(?:[A-Za-z_][\w.-]*:)?link\b([^<>]*)>")
# a name starts only where no name character precedes it: else a long run of them ("aaaa…" without
# "=") would be rescanned from each of its positions (quadratic)
_ATTRIBUTE = re.compile(r"""(?<![\w:.-])([A-Za-z_:][\w:.-]*)\s*=\s*(?:"([^"]*)"|'([^']*)')""")


def xml_links(body: bytes) -> tuple[list[str], str | None]:
    """The hub URLs and the ``self`` URL an RSS/Atom feed declares before its first item (as written)."""
    head = body[:HEAD_BYTES]
    first = _FIRST_ITEM.search(head)
    if first is not None:
        head = head[:first.start()]
    hubs: list[str] = []
    self_url: str | None = None
    for tag in _LINK_TAG.finditer(head.decode("utf-8", errors="replace")):
        attrs = {m.group(1).lower(): html.unescape(m.group(2) if m.group(2) is not None else m.group(3) or "")
                 for m in _ATTRIBUTE.finditer(tag.group(1))}
        rels = attrs.get("rel", "").lower().split()
        href = attrs.get("href", "").strip()
        if not href:
            continue
        if "hub" in rels:
            hubs.append(href)
        if "self" in rels and self_url is None:
            self_url = href
    return hubs, self_url


def jsonfeed_links(data: Mapping[str, object]) -> tuple[list[str], str | None]:
    """The WebSub hubs (``hubs``) and ``feed_url`` of a parsed JSON Feed."""
    hubs: list[str] = []
    listed = data.get("hubs")
    if isinstance(listed, list):
        for hub in listed[:20]:
            if isinstance(hub, dict) and str(hub.get("type", "")).lower() == "websub" \
                    and isinstance(hub.get("url"), str):
                hubs.append(hub["url"].strip())
    feed_url = data.get("feed_url")
    return hubs, feed_url.strip() if isinstance(feed_url, str) and feed_url.strip() else None


def find_hub(headers: Mapping[str, str], hubs: Sequence[str], self_url: str | None, fetched_url: str) -> HubLink | None:
    """The hub to subscribe to and its topic: the ``Link`` headers first, then what the document declared
    (``hubs``, ``self_url``); the first hub the URL policy allows. None when the feed advertises none."""
    header_hubs: list[str] = []
    header_self: list[str] = []
    for key, value in headers.items():
        if key.lower() == "link":
            header_hubs += link_targets(value, "hub", fetched_url)
            header_self += link_targets(value, "self", fetched_url)
    candidates = header_hubs or [_join(fetched_url, h) for h in hubs]
    topic = header_self[0] if header_self else (_join(fetched_url, self_url) if self_url else fetched_url)
    if url_refusal(topic) is not None:
        topic = fetched_url
    if url_refusal(topic) is not None:  # a local file, or a feed behind credentials: no hub can serve it
        return None
    for hub in candidates:
        if url_refusal(hub) is None:
            return HubLink(hub=hub, topic=topic)
    return None


def _join(base: str, href: str) -> str:
    try:
        return urljoin(base, href)
    except ValueError:
        return href
