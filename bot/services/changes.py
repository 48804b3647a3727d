"""Sending an edit or a deletion: claimed like a post, one request, decided by ``bot.domain.amend``.

The delivery service (``bot.services.delivery.Deliverer``) claims a channel's due deliveries in order
whatever their kind; an ``edit`` or ``delete`` delivery (``DeliveryKind``) is handed to
``ChangeSender.settle``. Like a post it was committed ``sending`` before anything leaves, it is paced
(the token wait comes before the claim) and its outcome is committed right after the answer, with its
audit line (``Store.apply_change``). It names only the message its own post delivery made
(``ClaimedDelivery.target``), never another.

* **edit**: the post is rendered as the channel would render it now; when that hashes the same as what
  the message shows (``rendered_hash``) nothing is sent (``Unchanged``); else the publisher's ``edit``
  (``Edits``), and the new hash becomes what the message shows.
* **delete**: past the platform's deletion limit (``DeleteLimit``: Telegram's 48 hours) nothing is sent
  and the admins are told to delete it by hand (``TooOld``); on a channel whose deletions are billed
  (``BudgetedDeletes``: X) the price is reserved against its spending budgets first, as for a post (over
  budget: the channel waits for the window); then the publisher's ``delete``.

A publisher without the ability: ``Unsupported``. Both are safe to repeat (``bot.domain.amend``).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.domain.amend import (
    Changed,
    ChangeOutcome,
    Done,
    Gone,
    NoMessage,
    Refused,
    TooOld,
    Unchanged,
    Unsupported,
    decide_change,
    too_old,
)
from bot.domain.budget import Reservation
from bot.domain.delivery import (
    Attempt,
    Decision,
    InternalError,
    Outcome,
    Published,
    Rejected,
    RenderFailed,
)
from bot.domain.lifecycle import ChannelLifecycle
from bot.domain.models import DeliveryKind, DeliveryStatus
from bot.domain.schedule import RetryPolicy
from bot.domain.state import ClaimedDelivery, SentMessage
from bot.errors import ChangeRefusedError, MessageGoneError, PublishError
from bot.log import event
from bot.observability import Metrics
from bot.publishers.api import (
    BudgetedDeletes,
    ChangeResult,
    ChannelOptions,
    Clock,
    PublisherAbilities,
    RenderedMessage,
)
from bot.render.message import message_hash
from bot.services.notifier import Notifier
from bot.services.spending import Spender
from bot.storage.store import Store

if TYPE_CHECKING:
    from bot.services.delivery import ChannelRuntime

log = logging.getLogger("tagrelay.deliver")

Classify = Callable[[PublishError], Outcome]
"""The delivery service's mapping of an adapter's error to an outcome (``outcome_of``)."""
Wait = Callable[["ChannelRuntime"], Awaitable[float]]
"""The pacer's wait before another request to the channel."""


@dataclass(frozen=True, slots=True)
class ChangeSettled:
    """An edit or deletion done with: its new status, its error, and whether its channel is now held or paused."""

    status: DeliveryStatus
    error: str | None
    stops_channel: bool


async def announce(chan: ChannelRuntime, decision: Decision, metrics: Metrics, notifier: Notifier | None) -> None:
    """What a decision does to its channel, made known: the rate-limit, retry and budget counters, a pause
    in the log with what to do, the admins' notice (a failing admin chat is logged, never raised). The
    posts' deliveries (``bot.services.delivery``) and the edits and deletions share it."""
    if decision.reason == "rate_limited":
        metrics.rate_limited(chan.platform, chan.name)
    elif decision.reason == "retry":
        metrics.retry(chan.platform, chan.name)
    elif decision.reason == "budget":
        metrics.budget_reached(chan.platform, chan.name)
    if decision.pause is not None:
        event(log, logging.ERROR, "channel.paused", channel=chan.name, reason=decision.pause,
              action=f"fix it, then run: tagrelay channels resume {chan.name}")
    if decision.notify is not None and notifier is not None:
        try:
            await notifier.notify(decision.notify)
        except Exception:  # noqa: BLE001 - a failing admin chat must not loop
            log.warning("could not notify admins about channel %s", chan.name)

class ChangeSender:
    """Sends edit and delete deliveries (see the module docstring)."""

    def __init__(self, store: Store, clock: Clock, metrics: Metrics, *, policy: RetryPolicy, rng: random.Random,
                 classify: Classify, wait: Wait, notifier: Notifier | None = None, spender: Spender | None = None
                 ) -> None:
        self.store = store
        self.clock = clock
        self.metrics = metrics
        self.policy = policy
        self.rng = rng
        self.classify = classify
        self.wait = wait
        self.notifier = notifier
        self.spender = spender
        """The spending budgets: a billed deletion (X) reserves its price first, like a post."""

    async def settle(self, chan: ChannelRuntime, claimed: ClaimedDelivery) -> ChangeSettled:
        """One attempt: check, send, decide, record (one store call), report."""
        attempt = Attempt(claimed.attempts, claimed.uncertain_since)
        facts, traits = chan.facts(self.policy), chan.traits
        editing = claimed.kind is DeliveryKind.EDIT
        plain = False
        shown: str | None = None
        while True:
            if editing:
                outcome, shown = await self._edit(chan, claimed, plain=plain)
            else:
                outcome = await self._delete(chan, claimed)
            now = self.clock.now()
            verdict = decide_change(claimed.kind, outcome, attempt, facts, traits, now=now, jitter=self.rng.random())
            if isinstance(verdict, Decision):
                break
            assert isinstance(outcome, Rejected) and not plain  # decide_change sends again only for the plain try
            plain = True
            attempt = Attempt(attempt.number, attempt.uncertain_since, plain_tried=True)
            event(log, logging.WARNING, "deliver.rejected", channel=chan.name, delivery=claimed.id,
                  kind=claimed.kind.value, error=outcome.reason, action="retrying once with the plain rendering")
            await self.wait(chan)
        made = verdict.status is DeliveryStatus.SENT and verdict.reason != "unchanged"
        # every edit and deletion made (or found made, or given up on) is audited; one found needless is not
        audit = _audit_line(chan, claimed, verdict) if verdict.status.is_final and verdict.reason != "unchanged" \
            else None
        await self.store.apply_change(claimed, verdict, now, shown_hash=shown if made and editing else None,
                                      audit=audit)
        await self._report(chan, claimed, verdict)
        return ChangeSettled(verdict.status, verdict.error, verdict.stops_channel)

    async def _edit(self, chan: ChannelRuntime, claimed: ClaimedDelivery, *, plain: bool
                    ) -> tuple[ChangeOutcome, str | None]:
        target = claimed.target
        missing = _no_message(target)
        if missing is not None:
            return missing, None
        assert target is not None and target.remote_id is not None
        editor = chan.abilities.editor
        if editor is None:
            return Unsupported(chan.platform), None
        try:
            message = chan.plugin.render(claimed.post, chan.options, chan.publisher.render_env, plain=plain)
        except Exception as exc:  # noqa: BLE001 - a render bug must not stop the channel
            return RenderFailed(str(exc), "the platform rejected the edit" if plain else None), None
        shown = message_hash(message)
        if not plain and shown == target.rendered_hash:
            return Unchanged(), shown
        return await self._call(chan, "edit", editor.edit(target.remote_id, message), message), shown

    async def _delete(self, chan: ChannelRuntime, claimed: ClaimedDelivery) -> ChangeOutcome:
        target = claimed.target
        missing = _no_message(target)
        if missing is not None:
            return missing
        assert target is not None and target.remote_id is not None
        found = chan.abilities
        if found.deleter is None:
            return Unsupported(chan.platform)
        late = too_old(target.sent_at, found.delete_max_age, self.clock.now())
        if late is not None:
            return late
        reservation: Reservation | None = None
        if self.spender is not None and isinstance(chan.options, BudgetedDeletes):
            reservation, stop = await self.spender.reserve_cost(chan.name, chan.options.delete_cost(),
                                                                self.clock.now())
            if stop is not None:
                return stop  # over budget (the channel waits for the window) or the budget cannot be read
        outcome = await self._call(chan, "delete", found.deleter.delete(target.remote_id), None)
        if self.spender is not None and reservation is not None:
            await self.spender.settle(chan.name, reservation, _billed(outcome))
        return outcome

    async def _call(self, chan: ChannelRuntime, what: str, call: Awaitable[ChangeResult],
                    message: RenderedMessage | None) -> ChangeOutcome:
        try:
            result = await call
        except MessageGoneError as exc:
            return Gone(exc.reason)
        except ChangeRefusedError as exc:
            return Refused(exc.reason)
        except PublishError as exc:
            return self.classify(exc)
        except Exception as exc:  # logged with its traceback; treated as transient (retried)
            log.exception("publisher %s raised a non-PublishError in %s", chan.platform, what)
            return InternalError(chan.platform, f"{type(exc).__name__}: {exc}")
        if not isinstance(result, ChangeResult):
            return Changed()
        return Done(result.already) if result.already else Changed()

    async def _report(self, chan: ChannelRuntime, claimed: ClaimedDelivery, decision: Decision) -> None:
        status = decision.status
        kind = claimed.kind.value
        self.metrics.change(chan.platform, chan.name, kind, status.value)
        await announce(chan, decision, self.metrics, self.notifier)
        target = claimed.target
        fields: dict[str, object] = {"channel": chan.name, "delivery": claimed.id, "kind": kind,
                                     "status": status.value, "post": claimed.post.url or claimed.post.key}
        if target is not None and target.remote_id:
            fields["remote_id"] = target.remote_id
        for name in ("reason", "error", "note"):
            value = getattr(decision, name)
            if value and not (name == "reason" and value == "retry"):
                fields[name] = value
        if decision.next_attempt_at is not None and status is not DeliveryStatus.SENT:
            fields["next_in"] = round((decision.next_attempt_at - self.clock.now()).total_seconds())
        level = logging.INFO if status is DeliveryStatus.SENT else logging.WARNING
        event(log, level, f"deliver.{kind}", **fields)


def lifecycle_of(options: ChannelOptions, found: PublisherAbilities) -> ChannelLifecycle:
    """A channel's policy for its posts' later life: its options, and what its publisher can do."""
    return ChannelLifecycle(on_edit=options.on_edit == "update", edit_window=options.edit_window,
                            can_edit=found.editor is not None, on_delete=options.on_delete == "delete",
                            delete_window=options.delete_window, can_delete=found.deleter is not None)


def _billed(outcome: ChangeOutcome) -> Outcome:
    """A deletion's outcome as the budget reads it (``bot.domain.budget.keeps_charge``): one that reached
    the platform stays charged, one turned away unbilled (a rate limit, a request that never left) not."""
    if isinstance(outcome, Changed | Done | Gone | Refused | Unchanged | Unsupported | NoMessage | TooOld):
        return Published(None, None)  # the platform answered: the request reached it
    return outcome


def _no_message(target: SentMessage | None) -> NoMessage | None:
    """Why there is no message to change (None: there is one)."""
    if target is None:
        return NoMessage("the post has no delivery on this channel")
    if target.status is not DeliveryStatus.SENT:
        return NoMessage(f"the post's delivery is {target.status.value}, not sent")
    if target.remote_id is None:
        return NoMessage("the platform gave no id for the message")
    return None


def _audit_line(chan: ChannelRuntime, claimed: ClaimedDelivery, decision: Decision) -> str:
    post = claimed.post
    target = claimed.target
    where = f"{chan.name} message {target.remote_id}" if target is not None and target.remote_id else chan.name
    verb = "edited" if claimed.kind is DeliveryKind.EDIT else "deleted"
    if decision.status is DeliveryStatus.SENT:
        done = f"{verb} already" if decision.reason == "already" else verb
        text = f"{where}: {done}"
    else:
        text = f"{where}: not {verb} ({decision.reason}: {decision.error})"
    return f"{text} — {post.title} ({post.url or post.key})"
