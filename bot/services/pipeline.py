"""GroupSender: a channel whose platform deduplicates, sent in claimed groups (pipelined delivery).

The decisions are pure, in ``bot.domain.pipeline``; which channels take this path is
``Deliverer.pipelined`` (the publisher declares ``Deduplicates``, an interrupted send is sent again on the
channel, no pacing). Each delivery's attempt is ``Deliverer.attempt`` (render, publish, the decision table
``bot.domain.delivery.decide``), exactly as on the one-at-a-time path; what differs is when it is recorded.

The crash-safety argument. A run claims up to ``GroupPolicy.size`` of the channel's oldest due deliveries
in ONE committed transaction (``Store.claim_group``: ``sending``, attempt counted), then sends them one
after the other, each as soon as the previous answer is in, every one with the key derived from its
delivery (``idempotency_key``). The decisions are held and committed together (``Store.settle_group``)
every ``commit_every`` answers, once the oldest held one is ``commit_after`` seconds old, and at the
group's end. So at any moment a row is either recorded, or ``sending`` (claimed, maybe sent, its answer
maybe held here). A kill then leaves only ``sending`` rows, which the start-up recovery puts back in the
queue on such a channel (``recover_sending``: it resends interrupted sends), marked uncertain since their
claim; the resend carries the same key, and the platform answers with the post it already has (Mastodon
within its one-hour window, ``before_resend`` checking the rest; Bluesky reading the record key back; X
refusing the duplicate), so nothing is posted twice and nothing is lost. A decision that holds or pauses
the channel is committed at once, together with the hand-back of the group's unsent deliveries (queued
again, attempt uncounted); so are a stop (``Deliverer.stopping``), a group older than ``max_age`` and a
pause or hold set from elsewhere (seen at each commit). An edit or a deletion inside a group is sent and
recorded on its own (``Deliverer.deliver_change``) after the answers held before it. An outcome the
database refuses is written again until it is taken, as on the other path, and the channel waits. A failure
mid-group (a bug, a stop during such a wait) hands back what was never tried, if the database lets it, and
leaves what was tried ``sending`` for the recovery, like a kill; a run cancelled at the end of the stop's
grace period leaves the whole group to the service's own recovery (``recover_sending`` of its claims).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from bot.domain.delivery import Decision
from bot.domain.models import DeliveryKind
from bot.domain.pipeline import GroupPolicy, Step, after_answer, before_send
from bot.domain.state import ClaimedDelivery
from bot.errors import StorageError

if TYPE_CHECKING:  # the Deliverer builds its GroupSender: no import cycle at run time
    from bot.services.delivery import ChannelRuntime, Deliverer, DeliveryOutcome

log = logging.getLogger("tagrelay.deliver")


@dataclass(frozen=True, slots=True)
class _Held:
    """An answered delivery whose decision is not committed yet."""

    claimed: ClaimedDelivery
    decision: Decision
    at: datetime
    ms: float | None


class GroupSender:
    """Sends a pipelined channel's deliveries in claimed groups (module docstring)."""

    def __init__(self, deliverer: Deliverer, policy: GroupPolicy) -> None:
        self.deliverer = deliverer
        self.policy = policy

    async def run(self, chan: ChannelRuntime) -> list[DeliveryOutcome]:
        """Groups until none is due, the channel is held or paused, or the service stops."""
        d = self.deliverer
        outcomes: list[DeliveryOutcome] = []
        while not d.stopping:
            claimed_at = d.clock.now()
            group = await d.store.claim_group(chan.name, claimed_at, d.owner, self.policy.size)
            if not group:
                break
            tried: set[int] = set()
            try:
                go_on = await self._send(chan, group, claimed_at, outcomes, tried)
            except Exception:
                # a bug or a database failure mid-group: what was never tried goes back now if the database
                # lets us; what was tried stays `sending`, for the start-up recovery to resend (same keys)
                await self._abandon(chan, [c.id for c in group if c.id not in tried])
                raise
            if not go_on:
                break
        return outcomes

    async def _send(self, chan: ChannelRuntime, group: Sequence[ClaimedDelivery], claimed_at: datetime,
                    outcomes: list[DeliveryOutcome], tried: set[int]) -> bool:
        """Send one group; False when the run ends here (held, paused, stopping). ``tried``: the deliveries
        whose request may have left."""
        d = self.deliverer
        held: list[_Held] = []
        for i, claimed in enumerate(group):
            age = (d.clock.now() - claimed_at).total_seconds()
            if not before_send(stopping=d.stopping, group_age=age, policy=self.policy):
                await self._commit(chan, held, outcomes, unsent=group[i:], hand_back=True)
                return not d.stopping  # an old group: the rest is claimed again, fresh
            if claimed.kind is not DeliveryKind.POST:  # an edit or a deletion: recorded on its own, in order
                if held and not await self._commit(chan, held, outcomes, unsent=group[i:]):
                    return False
                held = []
                tried.add(claimed.id)
                outcome, stops = await d.deliver_change(chan, claimed)
                outcomes.append(outcome)
                if stops:
                    await self._commit(chan, [], outcomes, unsent=group[i + 1:], hand_back=True)
                    return False
                continue
            tried.add(claimed.id)
            decision, at, ms = await d.attempt(chan, claimed)
            held.append(_Held(claimed, decision, at, ms))
            step = after_answer(held=len(held), held_for=(at - held[0].at).total_seconds(),
                                stops_channel=decision.stops_channel, left=len(group) - i - 1, policy=self.policy)
            if step is Step.NEXT:
                continue
            kept = await self._commit(chan, held, outcomes, unsent=group[i + 1:], hand_back=step is Step.STOP)
            held = []
            if not kept:
                return False
        return True

    async def _commit(self, chan: ChannelRuntime, held: list[_Held], outcomes: list[DeliveryOutcome], *,
                      unsent: Sequence[ClaimedDelivery], hand_back: bool = False) -> bool:
        """Record the held decisions (and hand the unsent deliveries back, if asked or if the channel is no
        longer live), then log, count and tell the admins of each. True: the unsent ones stay claimed."""
        d = self.deliverer
        decisions = [(h.claimed.id, h.decision, h.at) for h in held]
        unsent_ids = [c.id for c in unsent]
        now = d.clock.now()
        try:
            kept = await d.store.settle_group(decisions, now, channel=chan.name, owner=d.owner, unsent=unsent_ids,
                                              hand_back=hand_back)
        except StorageError as exc:
            kept = await self._record(chan, decisions, unsent_ids, hand_back, now, exc)
        for h in held:
            await d.report(chan, h.claimed, h.decision, h.at, h.ms)
            outcomes.append(d.outcome_for(chan, h.claimed, h.decision))
        return kept

    async def _record(self, chan: ChannelRuntime, decisions: list[tuple[int, Decision, datetime]],
                      unsent: list[int], hand_back: bool, now: datetime, exc: BaseException) -> bool:
        """Write a group's decisions the database just refused, again and again until it takes them (only this
        process knows the answers; see ``Deliverer._record``). The channel sends nothing meanwhile. A stop
        ends the wait: the rows are then recovered at the next start (resent with the same keys)."""
        d = self.deliverer
        statuses = ",".join(sorted({decision.status.value for _, decision, _ in decisions}))
        return await d.write_until_taken(
            chan, lambda: d.store.settle_group(decisions, now, channel=chan.name, owner=d.owner, unsent=unsent,
                                               hand_back=hand_back),
            exc, {"deliveries": len(decisions), "status": statuses})

    async def _abandon(self, chan: ChannelRuntime, left: list[int]) -> None:
        """After a failure mid-group: give back the deliveries never tried (queued, attempt uncounted), if the
        database lets us."""
        d = self.deliverer
        if not left:
            return
        try:
            await d.store.settle_group([], d.clock.now(), channel=chan.name, owner=d.owner, unsent=left,
                                       hand_back=True)
        except StorageError:
            log.warning("could not hand back %d claimed deliveries of channel %s; the next start recovers them",
                        len(left), chan.name)
