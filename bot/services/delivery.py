"""deliver_channel: claim → render → pace → publish → record, per channel, oldest post first.

Which channels run, when and where is the delivery driver's decision (``bot.services.delivery_driver``).

The state machine (see ``DeliveryStatus``): the transition to ``sending`` is
committed before the request leaves (``Store.claim_next``); the outcome is
committed right after the answer. On a channel without pacing the outcome and
the next delivery's claim are one transaction (``Store.finish_and_claim_next``):
still committed before the next request leaves, at one commit per delivery; a
delivery claimed that way but never sent (the service stopping) is handed back
as queued, its attempt not counted. An outcome the database cannot take (it is
down, or refuses connections) is kept and written again until it can be, before
anything more is sent to that channel (``_record``). Adapters only classify errors; every decision
about attempts, backoff, holds and pauses is made here, in ``_on_error``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy.exc import SQLAlchemyError

from bot.domain.models import DeliveryStatus, Post
from bot.domain.pacing import parse_rate
from bot.domain.schedule import RetryPolicy
from bot.errors import (
    AmbiguousPublishError,
    ChatMigratedError,
    ContentRejectedError,
    CredentialsError,
    DuplicateContentError,
    PermanentPublishError,
    PublishError,
    RetryablePublishError,
    RetryAfter,
)
from bot.log import event
from bot.observability import Metrics
from bot.publishers.api import Clock, Publisher, PublisherPlugin, RenderedMessage
from bot.settings import DeliveryConfig
from bot.storage.store import ClaimedDelivery, Store

log = logging.getLogger("tagrelay.deliver")

IDEMPOTENCY_MARGIN = 300.0
"""Seconds before the end of a platform's idempotency window from which a resend is treated as
unsafe (clocks differ, and the key's TTL starts when the platform saw the request)."""

Notify = Callable[[str], Awaitable[None]]
T = TypeVar("T")

RECORD_RETRY_DELAYS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
"""Seconds between attempts to write an outcome the database refused; the last one repeats."""
DATABASE_ERRORS = (SQLAlchemyError, OSError, TimeoutError)
"""What a store call raises when the database is unreachable, down or refusing work."""


def idempotency_key(channel: str, post: Post) -> str:
    """The key every attempt of one delivery carries (Mastodon's ``Idempotency-Key``).

    It names the post and the channel, not the database row: a database restored
    from a backup, or a second installation posting to the same account, numbers
    its deliveries again, and a row-number key would make the platform answer a
    NEW post with an OLD one (and the new post would be lost while recorded as sent).
    """
    digest = hashlib.sha256(f"{channel}\0{post.source}\0{post.key}".encode()).hexdigest()
    return f"tagrelay-{digest[:40]}"


@dataclass(slots=True)
class ChannelRuntime:
    """A configured channel with its plugin and live publisher."""

    name: str
    platform: str
    plugin: PublisherPlugin
    options: Any
    publisher: Publisher
    rebuild: Callable[[Any], Publisher] | None = None

    @property
    def can_move(self) -> bool:
        """Can the channel be pointed at another chat (it has a ``chat_id`` and a way to rebuild)?"""
        return self.rebuild is not None and "chat_id" in self.options.model_fields

    def move_to(self, chat_id: str) -> None:
        """Point the channel at another chat (a Telegram group became a supergroup): new options and a
        new publisher. The caller closes the old publisher and initializes the new one."""
        assert self.rebuild is not None and self.can_move
        self.options = self.options.model_copy(update={"chat_id": chat_id})
        self.publisher = self.rebuild(self.options)

    @property
    def resend_when_unsure(self) -> bool:
        """May a send whose outcome is unknown be sent again?"""
        return bool(self.publisher.idempotent or getattr(self.options, "at_least_once", False))

    @property
    def account_key(self) -> str:
        opts = self.options
        for attr in ("token_env", "access_token_env", "bearer_token_env"):
            value = getattr(opts, attr, None)
            if attr == "access_token_env" and getattr(opts, "bearer_token_env", None):
                continue
            if value:
                base = getattr(opts, "instance", "") or getattr(opts, "api_base", "")
                return f"{self.platform}:{base}:{value}"
        return f"{self.platform}:{self.name}"


class Pacer:
    """Client-side rate limits: token buckets per channel and per platform account.

    The bucket state lives in the database (``Store.reserve_tokens``), so it holds
    across restarts and across instances sharing a PostgreSQL database: the channel,
    not the process, is the unit of pacing. ``wait`` reserves a slot in every bucket
    of the channel and sleeps until the latest one; it is called BEFORE a delivery
    is claimed, so a kill during the wait leaves nothing half-sent.
    """

    def __init__(self, config: DeliveryConfig, store: Store | None, clock: Clock,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.sleep = sleep

    def buckets(self, chan: ChannelRuntime) -> list[tuple[str, float, float]]:
        out: list[tuple[str, float, float]] = []
        rate = getattr(chan.options, "rate_limit", None) or self.config.channel_limits.get(chan.platform)
        if rate:
            out.append((f"channel:{chan.name}", *parse_rate(rate)))
        acct = self.config.account_limits.get(chan.platform)
        if acct:
            out.append((f"account:{chan.account_key}", *parse_rate(acct)))
        return out

    def active(self, chan: ChannelRuntime) -> bool:
        """Does ``wait`` reserve anything for this channel?"""
        return bool(self.config.pacing and self.store is not None and self.buckets(chan))

    async def wait(self, chan: ChannelRuntime) -> float:
        if not self.config.pacing or self.store is None:
            return 0.0
        buckets = self.buckets(chan)
        if not buckets:
            return 0.0
        delay = await self.store.reserve_tokens(buckets, self.clock.now().timestamp())
        if delay > 0:
            await self.sleep(delay)
        return delay


def _internal_error(chan: ChannelRuntime, exc: Exception, call: str) -> RetryablePublishError:
    """A publisher broke its contract (raised something not a ``PublishError``): log the traceback,
    and treat it as transient, so the delivery is retried rather than lost."""
    log.exception("publisher %s raised a non-PublishError in %s", chan.platform, call)
    return RetryablePublishError(
        chan.name, f"internal error in the {chan.platform} publisher: {type(exc).__name__}: {exc}")


@dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    delivery_id: int
    channel: str
    status: DeliveryStatus
    error: str | None = None


class Deliverer:
    """Delivers due deliveries. One task per channel at a time; channels run concurrently."""

    def __init__(
        self,
        store: Store,
        channels: Mapping[str, ChannelRuntime],
        clock: Clock,
        config: DeliveryConfig,
        metrics: Metrics,
        *,
        owner: str,
        notify: Notify | None = None,
        pacer: Pacer | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.channels = dict(channels)
        self.clock = clock
        self.config = config
        self.metrics = metrics
        self.owner = owner
        self.notify = notify
        self.pacer = pacer or Pacer(config, store, clock)
        self.policy = RetryPolicy(base=config.retry_base, cap=config.retry_cap, max_attempts=config.max_attempts)
        self.rng = rng or random.Random()
        self._locks: dict[str, asyncio.Lock] = {}
        self.stopping = False
        self.record_retry_delays: tuple[float, ...] = RECORD_RETRY_DELAYS
        self._chaining: set[str] = set()
        """Channels whose next delivery may be claimed in the same transaction as an outcome (not paced)."""
        self._ahead: dict[str, ClaimedDelivery] = {}
        """A channel's next delivery, claimed together with the previous outcome (``finish_and_claim_next``)."""

    async def deliver_channel(self, name: str) -> list[DeliveryOutcome]:
        """Send the channel's due deliveries one by one, oldest post first, until none is due, the
        channel is held or paused, or the service is stopping. One run per channel at a time (a second
        call meanwhile returns at once, empty)."""
        lock = self._locks.setdefault(name, asyncio.Lock())
        if lock.locked():
            return []
        outcomes: list[DeliveryOutcome] = []
        async with lock:
            chan = self.channels[name]
            # Unpaced, the next delivery is claimed in the transaction that records an outcome
            # (one commit per delivery instead of two); paced, the token wait must come first.
            chain = not self.pacer.active(chan)
            try:
                while not self.stopping:
                    claimed = self._ahead.pop(name, None)
                    if claimed is None:
                        # has_due guards the token reservation; without pacing, claim_next alone says "nothing due"
                        if not chain and not await self.store.has_due(name, self.clock.now()):
                            break
                        await self.pacer.wait(chan)
                        if self.stopping:
                            break
                        claimed = await self.store.claim_next(name, self.clock.now(), self.owner)
                        if claimed is None:
                            break
                    if chain:
                        self._chaining.add(name)
                    try:
                        outcome = await self._deliver(chan, claimed)
                    finally:
                        self._chaining.discard(name)
                    outcomes.append(outcome)
                    if outcome.status in (DeliveryStatus.QUEUED, DeliveryStatus.FAILED) and outcome.error:
                        break  # held (rate limit, backoff) or paused: stop this channel for now
            finally:
                ahead = self._ahead.pop(name, None)
                if ahead is not None:  # claimed with the last outcome, but stopping: give it back untouched
                    await self.store.finish(ahead.id, DeliveryStatus.QUEUED, self.clock.now(), attempts_delta=-1)
        return outcomes

    async def _deliver(self, chan: ChannelRuntime, claimed: ClaimedDelivery) -> DeliveryOutcome:
        key = idempotency_key(chan.name, claimed.post)
        try:
            message = chan.plugin.render(claimed.post, chan.options, chan.publisher.render_env)
        except Exception as exc:  # noqa: BLE001 - a render bug must not stop the channel
            return await self._finish(chan, claimed, DeliveryStatus.DEAD, error=f"cannot render: {exc}",
                                      reason="render")
        settled = await self._settle_if_unsure(chan, claimed, message)
        if settled is not None:
            return settled
        if message.extra.get("template_fallback"):
            event(log, logging.WARNING, "render.template_fallback", channel=chan.name, delivery=claimed.id,
                  reason=message.extra["template_fallback"], note="the channel's default template was used")
        plain_tried = False
        migrated = False
        first = True
        while True:
            if not first:
                await self.pacer.wait(chan)  # the plain / migrated retry is another request
            first = False
            started = time.perf_counter()
            try:
                result = await chan.publisher.publish(message, idempotency_key=key)
            except ContentRejectedError as exc:
                if not plain_tried:
                    plain_tried = True
                    event(log, logging.WARNING, "deliver.rejected", channel=chan.name, delivery=claimed.id,
                          error=exc.reason, action="retrying once with the plain rendering")
                    try:
                        message = chan.plugin.render(claimed.post, chan.options, chan.publisher.render_env,
                                                     plain=True)
                    except Exception as render_exc:  # noqa: BLE001 - no plain form: give up on this post
                        return await self._finish(chan, claimed, DeliveryStatus.DEAD,
                                                  error=f"{exc.reason}; no plain fallback: {render_exc}",
                                                  reason="rejected")
                    continue
                return await self._finish(chan, claimed, DeliveryStatus.DEAD, error=exc.reason,
                                          reason="rejected")
            except ChatMigratedError as exc:
                if migrated or not chan.can_move:
                    return await self._on_error(chan, claimed, exc)
                migrated = True
                await self.store.set_target_override(chan.name, str(exc.new_chat_id))
                old = chan.publisher
                chan.move_to(str(exc.new_chat_id))
                await old.aclose()
                await chan.publisher.initialize()
                event(log, logging.WARNING, "channel.migrated", channel=chan.name,
                      new_chat_id=exc.new_chat_id, action="retrying once")
                continue
            except DuplicateContentError as exc:
                return await self._finish(chan, claimed, DeliveryStatus.SENT, error=None, reason="duplicate",
                                          note=exc.reason)
            except PublishError as exc:
                return await self._on_error(chan, claimed, exc)
            except Exception as exc:  # noqa: BLE001 - logged with its traceback by _internal_error
                return await self._on_error(chan, claimed, _internal_error(chan, exc, "publish"))
            ms = round((time.perf_counter() - started) * 1000, 1)
            return await self._finish(chan, claimed, DeliveryStatus.SENT, remote_id=result.remote_id,
                                      remote_url=result.url, ms=ms, message=message)

    async def _settle_if_unsure(self, chan: ChannelRuntime, claimed: ClaimedDelivery,
                                message: RenderedMessage) -> DeliveryOutcome | None:
        """Before resending a delivery an earlier attempt of which may have reached the platform: if
        the publisher's idempotency key has expired by now (``idempotency_window``), a resend could
        post twice. Ask the platform (``find_published``): already there → recorded as sent; not
        there → None (send it). A publisher that cannot tell → ``unknown``, for an operator.
        None too when the key still holds (the resend is safe) or nothing was ever unsure."""
        window = getattr(chan.publisher, "idempotency_window", None)
        if claimed.uncertain_since is None or not chan.publisher.idempotent or window is None:
            return None
        now = self.clock.now()
        age = (now - claimed.uncertain_since).total_seconds()
        if age < float(window) - IDEMPOTENCY_MARGIN:
            return None
        finder = getattr(chan.publisher, "find_published", None)
        if finder is None:
            return await self._finish(
                chan, claimed, DeliveryStatus.UNKNOWN, reason="ambiguous",
                error=f"an attempt {round(age / 60)} min ago may have been posted, and the platform's "
                      "idempotency key has expired; check the channel, then `tagrelay retry` if it is missing")
        try:
            found = await finder(message, since=claimed.uncertain_since)
        except PublishError as exc:
            return await self._on_error(chan, claimed, exc)
        except Exception as exc:  # noqa: BLE001 - logged with its traceback by _internal_error
            return await self._on_error(chan, claimed, _internal_error(chan, exc, "find_published"))
        if found is None:
            event(log, logging.INFO, "deliver.reconciled", channel=chan.name, delivery=claimed.id,
                  note="not on the platform after an unconfirmed attempt: sending it")
            return None
        return await self._finish(chan, claimed, DeliveryStatus.SENT, remote_id=found.remote_id,
                                  remote_url=found.url, reason="reconciled",
                                  note="an earlier unconfirmed attempt had posted it: found on the platform")

    async def _on_error(self, chan: ChannelRuntime, claimed: ClaimedDelivery, exc: PublishError
                        ) -> DeliveryOutcome:
        now = self.clock.now()
        if isinstance(exc, RetryAfter):
            until = now + timedelta(seconds=exc.delay)
            await self.store.set_hold(chan.name, until)
            self.metrics.rate_limited(chan.platform, chan.name)
            return await self._finish(chan, claimed, DeliveryStatus.QUEUED, error=exc.reason, next_at=until,
                                      reason="rate_limited", attempts_delta=-1)
        if isinstance(exc, PermanentPublishError):
            reason = exc.reason
            await self.store.set_paused(chan.name, True, reason, now)
            event(log, logging.ERROR, "channel.paused", channel=chan.name, reason=reason,
                  action=f"fix it, then run: tagrelay channels resume {chan.name}")
            if self.notify is not None:
                kind = "credentials" if isinstance(exc, CredentialsError) else "channel error"
                try:
                    await self.notify(f"Channel {chan.name} paused ({kind}): {reason}. "
                                      f"Its queue is kept; resume with /resume {chan.name}.")
                except Exception:  # noqa: BLE001 - a failing admin chat must not loop
                    log.warning("could not notify admins about channel %s", chan.name)
            return await self._finish(chan, claimed, DeliveryStatus.QUEUED, error=reason, next_at=now,
                                      reason="paused", attempts_delta=-1)
        if isinstance(exc, AmbiguousPublishError) and not chan.resend_when_unsure:
            return await self._finish(chan, claimed, DeliveryStatus.UNKNOWN, error=exc.reason, reason="ambiguous",
                                      uncertain=True)
        if isinstance(exc, RetryablePublishError | AmbiguousPublishError) or type(exc) is PublishError:
            unsure = isinstance(exc, AmbiguousPublishError)
            if self.policy.exhausted(claimed.attempts):
                return await self._finish(chan, claimed, DeliveryStatus.DEAD,
                                          error=f"{exc.reason} (gave up after {claimed.attempts} attempts)",
                                          reason="exhausted", uncertain=unsure)
            delay = self.policy.delay(claimed.attempts, self.rng)
            self.metrics.retry(chan.platform, chan.name)
            # hold the whole channel: the platform is failing, and the oldest post must go first
            await self.store.set_hold(chan.name, now + timedelta(seconds=delay))
            return await self._finish(chan, claimed, DeliveryStatus.FAILED, error=exc.reason,
                                      next_at=now + timedelta(seconds=delay), reason="retry", uncertain=unsure)
        return await self._finish(chan, claimed, DeliveryStatus.DEAD, error=exc.reason, reason="error")

    async def _finish(self, chan: ChannelRuntime, claimed: ClaimedDelivery, status: DeliveryStatus, *,
                      error: str | None = None, next_at: datetime | None = None, reason: str | None = None,
                      remote_id: str | None = None, remote_url: str | None = None, attempts_delta: int = 0,
                      note: str | None = None, ms: float | None = None,
                      message: RenderedMessage | None = None, uncertain: bool = False) -> DeliveryOutcome:
        now = self.clock.now()
        values: dict[str, Any] = {"remote_id": remote_id, "remote_url": remote_url, "error": error,
                                  "next_attempt_at": next_at, "reason": reason, "attempts_delta": attempts_delta,
                                  "uncertain": uncertain}

        async def chained() -> ClaimedDelivery | None:
            return await self.store.finish_and_claim_next(claimed.id, status, now, channel=chan.name,
                                                          owner=self.owner, **values)

        async def alone() -> None:
            await self.store.finish(claimed.id, status, now, **values)

        if chan.name in self._chaining and status in (DeliveryStatus.SENT, DeliveryStatus.DEAD) and not self.stopping:
            try:
                ahead = await chained()
            except DATABASE_ERRORS as exc:
                # the next claim is not retried with it: had the commit gone through unacknowledged, a
                # second claim would leave the first one stranded in `sending`
                await self._record(chan, claimed, status, exc, alone)
            else:
                if ahead is not None:
                    self._ahead[chan.name] = ahead
        else:
            try:
                await alone()
            except DATABASE_ERRORS as exc:
                await self._record(chan, claimed, status, exc, alone)
        self.metrics.delivery(chan.platform, chan.name, status.value)
        if status is DeliveryStatus.SENT and claimed.post.published is not None:
            self.metrics.delivered_after(chan.platform, (now - claimed.post.published).total_seconds())
        level = logging.INFO if status is DeliveryStatus.SENT else logging.WARNING
        fields: dict[str, Any] = {"channel": chan.name, "delivery": claimed.id, "status": status.value,
                                  "attempt": claimed.attempts, "post": claimed.post.url or claimed.post.key}
        if remote_id:
            fields["remote_id"] = remote_id
        if error:
            fields["error"] = error
        if reason and reason not in ("retry",):
            fields["reason"] = reason
        if next_at is not None and status is not DeliveryStatus.SENT:
            fields["next_in"] = round((next_at - now).total_seconds())
        if note:
            fields["note"] = note
        if ms is not None:
            fields["ms"] = ms
        event(log, level, "deliver", **fields)
        return DeliveryOutcome(claimed.id, chan.name, status, error if status is not DeliveryStatus.SENT else None)

    async def _record(self, chan: ChannelRuntime, claimed: ClaimedDelivery, status: DeliveryStatus,
                      exc: BaseException, write: Callable[[], Awaitable[T]]) -> T:
        """Write an outcome the database just refused, again and again until it takes it.

        Only this process knows the outcome (the platform has answered): given up on, the delivery
        would stay ``sending`` until a restart recovers it as unsure, and a Telegram post that is
        live would become ``unknown``. The channel sends nothing meanwhile (it waits here), so its
        order holds. A stop ends the wait; the row is then recovered at the next start."""
        delays = iter(self.record_retry_delays)
        last = self.record_retry_delays[-1] if self.record_retry_delays else 1.0
        while True:
            if self.stopping:
                raise exc
            delay = next(delays, last)
            event(log, logging.ERROR, "deliver.unrecorded", channel=chan.name, delivery=claimed.id,
                  status=status.value, error=_database_error(exc), retry_in=delay,
                  note="the database refused the outcome; it is kept and written again, and this channel "
                       "waits until then")
            await asyncio.sleep(delay)
            try:
                result = await write()
            except DATABASE_ERRORS as again:
                exc = again
                continue
            event(log, logging.WARNING, "deliver.recorded", channel=chan.name, delivery=claimed.id,
                  status=status.value, note="the database took the outcome; the channel goes on")
            return result

    async def refresh_queue_metrics(self) -> None:
        now = self.clock.now()
        for channel, (depth, oldest) in (await self.store.queue_depths()).items():  # ∝ waiting rows, not history
            age = (now - oldest).total_seconds() if oldest else 0.0
            self.metrics.set_queue(channel, depth, age)


def _database_error(exc: BaseException) -> str:
    """``Type: first line`` of a database error, short (the SQL and its parameters are left out)."""
    orig = getattr(exc, "orig", None)
    shown = orig if isinstance(orig, BaseException) else exc
    first = (str(shown).strip().splitlines() or [""])[0]
    return f"{type(shown).__name__}: {first[:200]}" if first else type(shown).__name__
