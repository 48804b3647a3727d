"""deliver_channel: claim → render → pace → publish → decide → record, per channel, oldest post first.

Which channels run, when and where is the delivery driver's decision (``bot.services.delivery_driver``).

Size: one delivery's whole I/O path (claim, pace, render, publish, settle an
unsure resend, apply the decision, rewrite an outcome the database refused) is
kept in one module so its crash-safety argument can be read in one place; the
decisions themselves are in ``bot.domain.delivery``.

The state machine (see ``DeliveryStatus``): the transition to ``sending`` is
committed before the request leaves (``Store.claim_next``); the outcome is
committed right after the answer. Adapters only classify errors (``outcome_of``
maps them to an ``Outcome``); what an outcome means for the delivery and its
channel (attempts, backoff, holds, pauses, the admins' notice) is decided by the
pure table ``bot.domain.delivery.decide``, and its ``Decision`` is applied by ONE
store call (``Store.apply_decision``): the outcome and the channel's hold or
pause in one transaction. On a channel without pacing that call also claims the
channel's next delivery: still committed before the next request leaves, at one
commit per delivery; a delivery claimed that way but never sent (the service
stopping) is handed back as queued, its attempt not counted. An outcome the
database cannot take (it is down, or refuses connections) is kept and written
again until it can be, before anything more is sent to that channel (``_record``).

Where the platform deduplicates a resend by itself (the publisher declares ``Deduplicates``: Mastodon, Bluesky,
X) and the channel resends interrupted sends, the commit before each send is not what keeps "nothing twice":
such a channel without pacing is sent in claimed groups instead (``bot.services.pipeline``, which states its
own crash-safety argument), every attempt still going through ``attempt`` and the same decision table.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, TypeVar

from bot.domain.delivery import (
    Again,
    Ambiguous,
    Attempt,
    BeforeResend,
    ChannelFacts,
    ChatMigrated,
    CreditsExhausted,
    Decision,
    Duplicate,
    Failed,
    Found,
    InternalError,
    KeyExpired,
    Outcome,
    Permanent,
    PlatformTraits,
    Published,
    RateLimited,
    Rejected,
    RenderFailed,
    Retryable,
    before_resend,
    decide,
    resend_when_unsure,
)
from bot.domain.lifecycle import ChannelLifecycle
from bot.domain.models import DeliveryKind, DeliveryStatus, Post
from bot.domain.pacing import parse_rate
from bot.domain.pipeline import GroupPolicy, pipelined
from bot.domain.schedule import RetryPolicy
from bot.domain.state import ClaimedDelivery
from bot.errors import (
    AmbiguousPublishError,
    ChatMigratedError,
    ContentRejectedError,
    CredentialsError,
    CreditsExhaustedError,
    DuplicateContentError,
    PermanentPublishError,
    PublishError,
    RetryablePublishError,
    RetryAfter,
    StorageError,
)
from bot.log import event
from bot.observability import Metrics
from bot.publishers.api import (
    STAGED_LIMIT,
    Clock,
    Publisher,
    PublisherAbilities,
    PublisherPlugin,
    RenderedMessage,
    abilities,
    spending_plans,
)
from bot.render.message import message_hash
from bot.services.changes import ChangeSender, announce, lifecycle_of
from bot.services.notifier import Notifier
from bot.services.pipeline import GroupSender
from bot.services.spending import Spender
from bot.settings import DeliveryConfig
from bot.storage.store import Store

log = logging.getLogger("tagrelay.deliver")


RECORD_RETRY_DELAYS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
"""Seconds between attempts to write an outcome the database refused; the last one repeats."""
_T = TypeVar("_T")

DATABASE_ERRORS = (StorageError,)
"""What a store call raises when the database is unreachable, down or refusing work (the store translates
every database error, ``OSError`` and ``TimeoutError`` included, into ``StorageError``)."""


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
    _abilities: tuple[Publisher, PublisherAbilities] | None = field(default=None, repr=False, compare=False)

    @property
    def can_move(self) -> bool:
        """Can the channel be pointed at another chat (it has a ``chat_id`` and a way to rebuild)?"""
        return self.rebuild is not None and "chat_id" in type(self.options).model_fields

    def move_to(self, chat_id: str) -> None:
        """Point the channel at another chat (a Telegram group became a supergroup): new options and a
        new publisher. The caller closes the old publisher and initializes the new one."""
        assert self.rebuild is not None and self.can_move
        self.options = self.options.model_copy(update={"chat_id": chat_id})
        self.publisher = self.rebuild(self.options)

    @property
    def abilities(self) -> PublisherAbilities:
        """The publisher's optional abilities (``bot.publishers.api.abilities``), read once per publisher."""
        known = self._abilities
        if known is None or known[0] is not self.publisher:
            known = self._abilities = (self.publisher, abilities(self.publisher))
        return known[1]

    @property
    def lifecycle(self) -> ChannelLifecycle:
        """Its policy for its posts' later life (``on_edit``, ``on_delete``, windows; can its platform edit
        and delete?)."""
        return lifecycle_of(self.options, self.abilities)

    @property
    def traits(self) -> PlatformTraits:
        """What the delivery decision needs to know of the publisher."""
        found = self.abilities
        return PlatformTraits(idempotent=bool(self.publisher.idempotent),
                              idempotency_window=found.idempotency_window, can_look_up=found.finder is not None)

    @property
    def at_least_once(self) -> bool:
        """The channel's ``at_least_once`` option (False where its platform has none)."""
        return bool(getattr(self.options, "at_least_once", False))

    def facts(self, policy: RetryPolicy) -> ChannelFacts:
        """What the delivery decision needs to know of the channel."""
        return ChannelFacts(self.name, policy, at_least_once=self.at_least_once, can_move=self.can_move)

    @property
    def resend_when_unsure(self) -> bool:
        """May a send whose outcome is unknown be sent again?"""
        return resend_when_unsure(self.at_least_once, self.traits)

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


def _internal_error(chan: ChannelRuntime, exc: Exception, call: str) -> InternalError:
    """A publisher broke its contract (raised something not a ``PublishError``): log the traceback;
    the decision treats it as transient, so the delivery is retried rather than lost."""
    log.exception("publisher %s raised a non-PublishError in %s", chan.platform, call)
    return InternalError(chan.platform, f"{type(exc).__name__}: {exc}")


def outcome_of(exc: PublishError, *, publishing: bool = True) -> Outcome:
    """The outcome an adapter's error stands for (the tree in ``bot.errors``). ``publishing=False``: it
    came from a look-up (``find_published``), where a rejection, a duplicate or a chat move says nothing
    about the post: final (``Failed``), like any other error outside the tree's classes."""
    if publishing:
        if isinstance(exc, ContentRejectedError):
            return Rejected(exc.reason)
        if isinstance(exc, ChatMigratedError):
            return ChatMigrated(exc.reason, exc.new_chat_id)
        if isinstance(exc, DuplicateContentError):
            return Duplicate(exc.reason)
    if isinstance(exc, RetryAfter):
        return RateLimited(exc.reason, exc.delay)
    if isinstance(exc, CreditsExhaustedError):
        return CreditsExhausted(exc.reason)
    if isinstance(exc, PermanentPublishError):
        return Permanent(exc.reason, credentials=isinstance(exc, CredentialsError), sent=not exc.nothing_sent)
    if isinstance(exc, AmbiguousPublishError):
        return Ambiguous(exc.reason)
    if isinstance(exc, RetryablePublishError) or type(exc) is PublishError:
        return Retryable(exc.reason, sent=not exc.nothing_sent)
    return Failed(exc.reason)


@dataclass(slots=True)
class _Staging:
    """A delivery's staged id (``PublishesStaged``) as this attempt knows it: ``stage`` commits a new one to
    the delivery's record before the publisher sends the request that publishes it."""

    store: Store
    delivery_id: int
    channel: str
    owner: str
    value: str | None

    async def stage(self, value: str) -> None:
        if not value or len(value) > STAGED_LIMIT:
            raise RetryablePublishError(self.channel, f"the publisher staged a value of {len(value)} characters "
                                                      f"(1-{STAGED_LIMIT} allowed); nothing was published")
        try:
            taken = await self.store.stage(self.delivery_id, value, owner=self.owner)
        except DATABASE_ERRORS as exc:
            raise RetryablePublishError(self.channel, f"could not record the staged post before publishing it "
                                                      f"({exc}); nothing was published") from exc
        if not taken:
            raise RetryablePublishError(self.channel, "the delivery is no longer claimed by this instance; "
                                                      "nothing was published")
        self.value = value


@dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    delivery_id: int
    channel: str
    status: DeliveryStatus
    error: str | None = None


_CHAINED = (DeliveryStatus.SENT, DeliveryStatus.DEAD)
"""Outcomes recorded together with the claim of the channel's next delivery (unpaced channels)."""


def outcome_of_decision(chan: ChannelRuntime, claimed: ClaimedDelivery, decision: Decision) -> DeliveryOutcome:
    """What a run reports of a recorded decision."""
    status = decision.status
    return DeliveryOutcome(claimed.id, chan.name, status, decision.error if status is not DeliveryStatus.SENT else None)


@dataclass(frozen=True, slots=True)
class _Settled:
    """A delivery done with: its outcome, whether its channel is now held or paused, and the channel's
    next delivery when it was claimed in the same transaction."""

    outcome: DeliveryOutcome
    stops_channel: bool
    ahead: ClaimedDelivery | None


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
        notifier: Notifier | None = None,
        pacer: Pacer | None = None,
        rng: random.Random | None = None,
        groups: GroupPolicy | None = None,
    ) -> None:
        self.store = store
        self.channels = dict(channels)
        self.clock = clock
        self.config = config
        self.metrics = metrics
        self.owner = owner
        self.notifier = notifier
        self.pacer = pacer or Pacer(config, store, clock)
        self.policy = RetryPolicy(base=config.retry_base, cap=config.retry_cap, max_attempts=config.max_attempts)
        self.rng = rng or random.Random()
        self._locks: dict[str, asyncio.Lock] = {}
        self.stopping = False
        self.record_retry_delays: tuple[float, ...] = RECORD_RETRY_DELAYS
        self.spender = Spender(store, metrics, spending_plans([c.options for c in self.channels.values()]))
        """Spending budgets (``bot.services.spending``): a paid request's price is reserved before it leaves."""
        self.changes = ChangeSender(store, clock, metrics, policy=self.policy, rng=self.rng, classify=outcome_of,
                                    wait=self.pacer.wait, notifier=notifier, spender=self.spender)
        """Sends the edit and delete deliveries (``bot.services.changes``)."""
        self.groups = GroupSender(self, groups or GroupPolicy())
        """Sends a channel whose platform deduplicates in claimed groups (``bot.services.pipeline``)."""

    @staticmethod
    def outcome_for(chan: ChannelRuntime, claimed: ClaimedDelivery, decision: Decision) -> DeliveryOutcome:
        """What a run reports of a recorded decision."""
        return outcome_of_decision(chan, claimed, decision)

    def pipelined(self, chan: ChannelRuntime) -> bool:
        """Does the channel send in claimed groups (``bot.domain.pipeline.pipelined``)?"""
        return pipelined(deduplicates=chan.abilities.deduplicates, resend_when_unsure=chan.resend_when_unsure,
                         paced=self.pacer.active(chan))

    async def deliver_channel(self, name: str) -> list[DeliveryOutcome]:
        """Send the channel's due deliveries one by one, oldest post first, until none is due, the
        channel is held or paused, or the service is stopping. One run per channel at a time (a second
        call meanwhile returns at once, empty). Where the platform deduplicates, in claimed groups."""
        lock = self._locks.setdefault(name, asyncio.Lock())
        if lock.locked():
            return []
        outcomes: list[DeliveryOutcome] = []
        async with lock:
            chan = self.channels[name]
            if self.pipelined(chan):
                return await self.groups.run(chan)
            # Unpaced, the next delivery is claimed in the transaction that records an outcome
            # (one commit per delivery instead of two); paced, the token wait must come first.
            chain = not self.pacer.active(chan)
            ahead: ClaimedDelivery | None = None  # the next delivery, claimed together with the last outcome
            try:
                while not self.stopping:
                    claimed, ahead = ahead, None
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
                    settled = await self._deliver(chan, claimed, chain=chain)
                    outcomes.append(settled.outcome)
                    ahead = settled.ahead
                    if settled.stops_channel:
                        break  # held (rate limit, backoff) or paused: stop this channel for now
            finally:
                if ahead is not None:  # claimed with the last outcome, but stopping: give it back untouched
                    await self.store.finish(ahead.id, DeliveryStatus.QUEUED, self.clock.now(), attempts_delta=-1)
        return outcomes

    async def _deliver(self, chan: ChannelRuntime, claimed: ClaimedDelivery, *, chain: bool) -> _Settled:
        """One delivery: render → (check an unsure resend) → publish → decide (``attempt``) → apply.
        An edit or a deletion goes to ``ChangeSender`` (never chained with the next claim)."""
        if claimed.kind is not DeliveryKind.POST:
            done = await self.changes.settle(chan, claimed)
            return _Settled(DeliveryOutcome(claimed.id, chan.name, done.status, done.error), done.stops_channel, None)
        decision, now, ms = await self.attempt(chan, claimed)
        return await self._apply(chan, claimed, decision, now, chain=chain, ms=ms)

    async def deliver_change(self, chan: ChannelRuntime, claimed: ClaimedDelivery) -> tuple[DeliveryOutcome, bool]:
        """An edit or a deletion, sent and recorded (``ChangeSender``): its outcome, and whether it stops the
        channel."""
        settled = await self._deliver(chan, claimed, chain=False)
        return settled.outcome, settled.stops_channel

    async def attempt(self, chan: ChannelRuntime, claimed: ClaimedDelivery
                      ) -> tuple[Decision, datetime, float | None]:
        """A post delivery's attempt, nothing recorded: render → (check an unsure resend) → publish → decide.
        A decision to send again at once (the plain rendering, the chat's new id) loops here, in the same
        attempt. Returns the decision, when it was made, and how long the platform took to answer (ms)."""
        attempt = Attempt(claimed.attempts, claimed.uncertain_since)
        facts, traits = chan.facts(self.policy), chan.traits
        key = idempotency_key(chan.name, claimed.post)
        staging = _Staging(self.store, claimed.id, chan.name, self.owner, claimed.staged)
        message, outcome = self._render(chan, claimed)
        if message is not None and attempt.uncertain_since is not None:
            outcome = await self._before_resend(chan, claimed, attempt, traits, message)
        if outcome is None and message is not None and message.extra.get("template_fallback"):
            event(log, logging.WARNING, "render.template_fallback", channel=chan.name, delivery=claimed.id,
                  reason=message.extra["template_fallback"], note="the channel's default template was used")
        ms: float | None = None
        sends = 0
        while True:
            if outcome is None:
                assert message is not None  # a failed rendering is an outcome
                if sends:
                    await self.pacer.wait(chan)  # the plain / migrated retry is another request
                sends += 1
                reservation, outcome = await self.spender.reserve(chan.name, chan.options, message, self.clock.now())
                if outcome is None:  # within budget (or none): send, then give back what was not billed
                    outcome, ms = await self._publish(chan, message, key, staging)
                    await self.spender.settle(chan.name, reservation, outcome)
            now = self.clock.now()
            verdict = decide(outcome, attempt, facts, traits, now=now, jitter=self.rng.random())
            if isinstance(verdict, Decision):
                if verdict.status is DeliveryStatus.SENT and message is not None:
                    verdict = replace(verdict, rendered_hash=message_hash(message))  # what an edit compares with
                return verdict, now, ms
            if verdict.how is Again.PLAIN:
                assert isinstance(outcome, Rejected)
                attempt = replace(attempt, plain_tried=True)
                event(log, logging.WARNING, "deliver.rejected", channel=chan.name, delivery=claimed.id,
                      error=outcome.reason, action="retrying once with the plain rendering")
                message, outcome = self._render(chan, claimed, rejected=outcome.reason)
            else:
                assert isinstance(outcome, ChatMigrated)
                attempt = replace(attempt, moved=True)
                await self._move(chan, outcome.new_chat_id)
                facts, traits = chan.facts(self.policy), chan.traits  # a new publisher
                outcome = None

    @staticmethod
    def _render(chan: ChannelRuntime, claimed: ClaimedDelivery, *, rejected: str | None = None
                ) -> tuple[RenderedMessage | None, Outcome | None]:
        """The message, or the outcome of a rendering that failed. ``rejected``: the platform's reason
        for refusing the rich rendering; the plain one is asked for."""
        try:
            if rejected is None:
                message = chan.plugin.render(claimed.post, chan.options, chan.publisher.render_env)
            else:
                message = chan.plugin.render(claimed.post, chan.options, chan.publisher.render_env, plain=True)
        except Exception as exc:  # noqa: BLE001 - a render bug must not stop the channel
            return None, RenderFailed(str(exc), rejected)
        return message, None

    async def _publish(self, chan: ChannelRuntime, message: RenderedMessage, key: str, staging: _Staging
                       ) -> tuple[Outcome, float | None]:
        """Send the message: the outcome, and how long the platform took to answer (ms) when it did. A
        two-step publisher (``PublishesStaged``) gets the delivery's staged id and the way to record one."""
        started = time.perf_counter()
        stager = chan.abilities.stager
        try:
            if stager is not None:
                result = await stager.publish_staged(message, idempotency_key=key, staged=staging.value,
                                                     stage=staging.stage)
            else:
                result = await chan.publisher.publish(message, idempotency_key=key)
        except PublishError as exc:
            return outcome_of(exc), None
        except Exception as exc:  # noqa: BLE001 - logged with its traceback by _internal_error
            return _internal_error(chan, exc, "publish"), None
        return Published(result.remote_id, result.url), round((time.perf_counter() - started) * 1000, 1)

    async def _move(self, chan: ChannelRuntime, new_chat_id: int) -> None:
        """Point the channel at the chat's new id (kept in the database: it survives restarts)."""
        await self.store.set_target_override(chan.name, str(new_chat_id))
        old = chan.publisher
        chan.move_to(str(new_chat_id))
        await old.aclose()
        await chan.publisher.initialize()
        event(log, logging.WARNING, "channel.migrated", channel=chan.name, new_chat_id=new_chat_id,
              action="retrying once")

    async def _before_resend(self, chan: ChannelRuntime, claimed: ClaimedDelivery, attempt: Attempt,
                             traits: PlatformTraits, message: RenderedMessage) -> Outcome | None:
        """Before resending a delivery an earlier attempt of which may have reached the platform: if the
        publisher's idempotency key has expired by now (``idempotency_window``), a resend could post
        twice (``before_resend``). Ask the platform (``find_published``): already there → ``Found``; not
        there → None (send it). A publisher that cannot tell → ``KeyExpired``. None too when the key
        still holds (the resend is safe) or nothing was ever unsure."""
        check = before_resend(attempt, traits, self.clock.now())
        since = attempt.uncertain_since
        if check is BeforeResend.SEND or since is None:
            return None
        finder = chan.abilities.finder
        if check is BeforeResend.GIVE_UP or finder is None:
            return KeyExpired()
        try:
            found = await finder.find_published(message, since=since)
        except PublishError as exc:
            return outcome_of(exc, publishing=False)
        except Exception as exc:  # noqa: BLE001 - logged with its traceback by _internal_error
            return _internal_error(chan, exc, "find_published")
        if found is None:
            event(log, logging.INFO, "deliver.reconciled", channel=chan.name, delivery=claimed.id,
                  note="not on the platform after an unconfirmed attempt: sending it")
            return None
        return Found(found.remote_id, found.url)

    async def _apply(self, chan: ChannelRuntime, claimed: ClaimedDelivery, decision: Decision, now: datetime, *,
                     chain: bool, ms: float | None = None) -> _Settled:
        """Record the decision (one store call: the outcome, the channel's hold or pause, and on an unpaced
        channel the claim of its next delivery), then log, count and tell the admins."""
        claim = chain and decision.status in _CHAINED and not self.stopping
        ahead: ClaimedDelivery | None = None
        try:
            ahead = await self.store.apply_decision(claimed.id, decision, now, channel=chan.name,
                                                    claim_for=self.owner if claim else None)
        except DATABASE_ERRORS as exc:
            # the next claim is not retried with it: had the commit gone through unacknowledged, a
            # second claim would leave the first one stranded in `sending`
            await self._record(chan, claimed, decision, now, exc)
        await self.report(chan, claimed, decision, now, ms)
        return _Settled(outcome_of_decision(chan, claimed, decision), decision.stops_channel, ahead)

    async def report(self, chan: ChannelRuntime, claimed: ClaimedDelivery, decision: Decision, now: datetime,
                      ms: float | None) -> None:
        status = decision.status
        await announce(chan, decision, self.metrics, self.notifier)
        self.metrics.delivery(chan.platform, chan.name, status.value)
        if status is DeliveryStatus.SENT and claimed.post.published is not None:
            self.metrics.delivered_after(chan.platform, (now - claimed.post.published).total_seconds())
        level = logging.INFO if status is DeliveryStatus.SENT else logging.WARNING
        fields: dict[str, Any] = {"channel": chan.name, "delivery": claimed.id, "status": status.value,
                                  "attempt": claimed.attempts, "post": claimed.post.url or claimed.post.key}
        if decision.remote_id:
            fields["remote_id"] = decision.remote_id
        if decision.error:
            fields["error"] = decision.error
        if decision.reason and decision.reason != "retry":
            fields["reason"] = decision.reason
        if decision.next_attempt_at is not None and status is not DeliveryStatus.SENT:
            fields["next_in"] = round((decision.next_attempt_at - now).total_seconds())
        if decision.note:
            fields["note"] = decision.note
        if ms is not None:
            fields["ms"] = ms
        event(log, level, "deliver", **fields)

    async def _record(self, chan: ChannelRuntime, claimed: ClaimedDelivery, decision: Decision, now: datetime,
                      exc: BaseException) -> None:
        """Write a decision the database just refused, again and again until it takes it.

        Only this process knows the outcome (the platform has answered): given up on, the delivery
        would stay ``sending`` until a restart recovers it as unsure, and a Telegram post that is
        live would become ``unknown``. The channel sends nothing meanwhile (it waits here), so its
        order holds. A stop ends the wait; the row is then recovered at the next start."""
        await self.write_until_taken(
            chan, lambda: self.store.apply_decision(claimed.id, decision, now, channel=chan.name), exc,
            {"delivery": claimed.id, "status": decision.status.value})

    async def write_until_taken(self, chan: ChannelRuntime, write: Callable[[], Awaitable[_T]], exc: BaseException,
                                fields: Mapping[str, object]) -> _T:
        """Run ``write``, an outcome the database just refused (``exc``), again after each of
        ``record_retry_delays`` (then every last one) until the database takes it; returns what it returns.
        Logged as ``deliver.unrecorded`` per try and ``deliver.recorded`` at last, with ``fields`` (which
        delivery or group, which statuses). A stop ends the wait by raising ``exc``. One delivery's
        outcome (``_record``) and a group's (``bot.services.pipeline``) share it."""
        delays = iter(self.record_retry_delays)
        last = self.record_retry_delays[-1] if self.record_retry_delays else 1.0
        while True:
            if self.stopping:
                raise exc
            delay = next(delays, last)
            event(log, logging.ERROR, "deliver.unrecorded", channel=chan.name, **fields, error=str(exc),
                  retry_in=delay, note="the database refused the outcome; it is kept and written again, and "
                                       "this channel waits until then")
            await asyncio.sleep(delay)
            try:
                result = await write()
            except DATABASE_ERRORS as again:
                exc = again
                continue
            event(log, logging.WARNING, "deliver.recorded", channel=chan.name, **fields,
                  note="the database took the outcome; the channel goes on")
            return result

    async def refresh_queue_metrics(self) -> None:
        now = self.clock.now()
        for channel, (depth, oldest) in (await self.store.queue_depths()).items():  # ∝ waiting rows, not history
            age = (now - oldest).total_seconds() if oldest else 0.0
            self.metrics.set_queue(channel, depth, age)
        await self.spender.refresh_metrics(now)
