"""What a Bluesky post record is made of, and its key: pure functions, no I/O.

The record key (``rkey``) of every post is chosen by tagrelay, derived from the
delivery's idempotency key (``bot.services.delivery.idempotency_key``: channel,
source, post), so every attempt of one delivery writes to the same key and the
repository can hold the post at most once. Posts use keys of type ``tid``
(lexicon ``app.bsky.feed.post``): a 64-bit number, top bit 0, 53 bits of
microseconds since the Unix epoch and a 10-bit clock id, written as 13
characters of base32-sortable (``234567abcdefghijklmnopqrstuvwxyz``). Here the
microseconds are ``TID_START`` plus 46 bits of SHA-256 of the key, and the clock
id 10 more bits of it: a valid TID, in the past (2024-01-01 to 2026-03), the same
for every attempt; two deliveries share one with a probability of about
n² / 2^57 (10^-7 for 100,000 posts on one account), and if one ever did, the
publisher sees a record it did not write under the key (``matches``) and
refuses that one delivery rather than call it sent.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

COLLECTION = "app.bsky.feed.post"
BASE32_SORTABLE = "234567abcdefghijklmnopqrstuvwxyz"
TID_PATTERN = re.compile(r"^[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}$")
"""A valid TID (atproto spec, "Timestamp Identifiers")."""
TID_START = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp()) * 1_000_000
"""Microseconds since the epoch of the earliest derived TID."""
TID_SPAN_BITS = 46
"""Derived TIDs spread over 2^46 microseconds (about 2.2 years) after ``TID_START``."""


def encode_tid(value: int) -> str:
    """A 63-bit number as a TID string (13 characters of base32-sortable, most significant first)."""
    if not 0 <= value < 1 << 63:
        raise ValueError("a TID is a 63-bit non-negative number")
    chars = []
    for _ in range(13):
        chars.append(BASE32_SORTABLE[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def decode_tid(tid: str) -> int:
    value = 0
    for ch in tid:
        value = value * 32 + BASE32_SORTABLE.index(ch)
    return value


def record_key(idempotency_key: str) -> str:
    """The TID every attempt of the delivery with this idempotency key writes its post under."""
    digest = int.from_bytes(hashlib.sha256(idempotency_key.encode("utf-8")).digest()[:8], "big")
    micros = TID_START + ((digest >> 10) & ((1 << TID_SPAN_BITS) - 1))
    return encode_tid((micros << 10) | (digest & 0x3FF))


def timestamp(now: datetime) -> str:
    """``createdAt``: ISO 8601 in UTC with milliseconds and ``Z`` (what the Bluesky app writes)."""
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.astimezone(UTC).microsecond // 1000:03d}Z"


def post_record(text: str, created_at: str, *, facets: list[dict[str, Any]] | None = None,
                langs: list[str] | None = None, card: Mapping[str, str] | None = None,
                thumb: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """An ``app.bsky.feed.post`` record: the text, its facets, the languages and the link card."""
    record: dict[str, Any] = {"$type": COLLECTION, "text": text, "createdAt": created_at}
    if facets:
        record["facets"] = facets
    if langs:
        record["langs"] = list(langs)
    if card is not None:
        external: dict[str, Any] = {"uri": card["uri"], "title": card["title"], "description": card["description"]}
        if thumb is not None:
            external["thumb"] = dict(thumb)
        record["embed"] = {"$type": "app.bsky.embed.external", "external": external}
    return record


def _links(value: Mapping[str, Any]) -> set[str]:
    found: set[str] = set()
    embed = value.get("embed")
    if isinstance(embed, Mapping):
        external = embed.get("external")
        if isinstance(external, Mapping) and isinstance(external.get("uri"), str):
            found.add(external["uri"])
    facets = value.get("facets")
    for facet in facets if isinstance(facets, list) else []:
        features = facet.get("features") if isinstance(facet, Mapping) else None
        for feature in features if isinstance(features, list) else []:
            if isinstance(feature, Mapping) and isinstance(feature.get("uri"), str):
                found.add(feature["uri"])
    return found


def matches(value: Any, *, text: str, link: str | None) -> bool:
    """Is ``value`` (a record read back under our key) the post for this message: a post carrying the
    message's link (as its card or a link facet), or, for a message without a link, its text?"""
    if not isinstance(value, Mapping) or value.get("$type") != COLLECTION:
        return False
    if link:
        return link in _links(value)
    return value.get("text") == text
