"""What the publishers that upload a post's image share: fetching it without ever failing the post, and
remembering what was uploaded so that a retry does not upload it again.

``image_for`` fetches and fits the message's image for one platform (``bot.media``): on a
``MediaError`` it logs ``media.skipped`` with the reason and returns None, and the post goes out without
the image. ``UploadMemory`` keeps, per delivery idempotency key, the media id a platform returned for
an upload: when the post itself then fails (a 503, a timeout, a rate limit), the retry attaches the
same media instead of uploading again - once per delivery, not once per attempt. It lives in memory,
bounded in entries and age (a platform drops unattached media after a while: Mastodon after about a
day, X after ``expires_after_secs``); after a crash the next attempt uploads again, and the unused
upload is left for the platform to clean up (Mastodon's publisher deletes it when it can tell).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx

from bot.clock import Clock
from bot.errors import MediaError
from bot.log import event
from bot.media import DEFAULT_ACCEPT, Image, fetch_image, fit_image, fits
from bot.render.message import RenderedMessage

MEMORY_ENTRIES = 256
"""Deliveries whose upload is remembered at most (the oldest is forgotten first)."""
MEMORY_AGE = timedelta(hours=6)
"""An upload older than this is not reused (the platform may have dropped it, unattached)."""


@dataclass(frozen=True, slots=True)
class Upload:
    """A media id the platform holds for one delivery's image."""

    media_id: str
    image_url: str
    at: datetime


class UploadMemory:
    """Media ids by delivery idempotency key (see the module docstring)."""

    def __init__(self, clock: Clock, *, max_entries: int = MEMORY_ENTRIES, max_age: timedelta = MEMORY_AGE) -> None:
        self._clock = clock
        self._max_entries = max_entries
        self._max_age = max_age
        self._uploads: OrderedDict[str, Upload] = OrderedDict()

    def __len__(self) -> int:
        return len(self._uploads)

    def get(self, key: str, image_url: str) -> Upload | None:
        """The upload of ``image_url`` for delivery ``key``, if it is recent enough to reuse."""
        upload = self._uploads.get(key)
        if upload is None:
            return None
        if upload.image_url != image_url or self._clock.now() - upload.at > self._max_age:
            del self._uploads[key]
            return None
        return upload

    def remember(self, key: str, image_url: str, media_id: str) -> None:
        self._uploads[key] = Upload(media_id, image_url, self._clock.now())
        self._uploads.move_to_end(key)
        while len(self._uploads) > self._max_entries:
            self._uploads.popitem(last=False)

    def forget(self, key: str) -> Upload | None:
        """Drop the upload of a delivery whose post went out (its media is attached now)."""
        return self._uploads.pop(key, None)


async def image_for(message: RenderedMessage, http: httpx.AsyncClient, *, channel: str, log: logging.Logger,
                    max_bytes: int, max_side: int | None = None, max_pixels: int | None = None,
                    accept: frozenset[str] = DEFAULT_ACCEPT) -> Image | None:
    """The message's image fetched (once per process, ``bot.media``) and fitted to a platform in a worker
    thread, or None: no image, or one that cannot be used (the log says why). ``max_pixels`` caps
    width × height (Mastodon's ``image_matrix_limit``)."""
    url = message.image_url
    if not url:
        return None
    try:
        image = await fetch_image(http, url, alt=message.image_alt)
        side = max_side
        if max_pixels is not None and image.width * image.height > max_pixels:
            scale = (max_pixels / (image.width * image.height)) ** 0.5
            cap = max(1, int(max(image.width, image.height) * scale) - 1)
            side = cap if side is None else min(side, cap)
        if not fits(image, max_bytes=max_bytes, max_side=side, accept=accept):
            image = await asyncio.to_thread(fit_image, image, max_bytes=max_bytes, max_side=side, accept=accept)
    except MediaError as exc:
        event(log, logging.WARNING, "media.skipped", channel=channel, reason=exc.reason,
              note="the post goes out without the image")
        return None
    return image
