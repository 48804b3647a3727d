"""Spending budgets in the delivery path: reserve a paid request's price before it leaves, give it back
when the request turned out unbilled, and show what each budget has left.

The decisions are pure (``bot.domain.budget``: does it fit, is an outcome billed; ``bot.domain.delivery``:
a refusal holds the channel until the full window resets, or pauses it when a post could never fit); the
reservation is one store transaction shared by every instance (``Store.reserve_spend``). The ``Spender``
only connects them for the delivery service (``bot.services.delivery``) and ``/metrics``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from bot.domain.budget import Refusal, Reservation, SpendingPlan, budget_lines, keeps_charge, refusal_reason, usd
from bot.domain.delivery import Outcome, OverBudget, Retryable
from bot.errors import StorageError
from bot.log import event
from bot.observability import Metrics
from bot.publishers.api import Budgeted, RenderedMessage
from bot.storage.store import Store

log = logging.getLogger("tagrelay.spending")


class Spender:
    """The budgets of the channels that have one (``plans``, by channel name; see ``spending_plans``)."""

    def __init__(self, store: Store, metrics: Metrics, plans: Mapping[str, SpendingPlan]) -> None:
        self.store = store
        self.metrics = metrics
        self.plans = dict(plans)
        self._labels = {b.key: b.label for plan in self.plans.values() for b in plan.budgets}

    async def reserve(self, channel: str, options: Any, message: RenderedMessage, now: datetime
                      ) -> tuple[Reservation | None, Outcome | None]:
        """Before a paid request: reserve its price against the channel's budgets. Returns the reservation
        (None: the channel has no budget), or the outcome that stops the send: ``OverBudget`` (nothing was
        sent), or ``Retryable`` when the database cannot say (nothing is sent unchecked)."""
        if channel not in self.plans or not isinstance(options, Budgeted):
            return None, None
        return await self.reserve_cost(channel, options.cost_of(message), now)

    async def reserve_cost(self, channel: str, cost: int, now: datetime) -> tuple[Reservation | None, Outcome | None]:
        """``reserve`` for a request whose price is known (a deletion: ``BudgetedDeletes.delete_cost``)."""
        plan = self.plans.get(channel)
        if plan is None:
            return None, None
        try:
            verdict = await self.store.reserve_spend(plan.limits(), cost, now)
        except StorageError as exc:
            return None, Retryable(f"could not check the spending budget ({exc}); nothing was sent", sent=False)
        if isinstance(verdict, Reservation):
            return verdict, None
        return None, self._over_budget(channel, verdict)

    def _over_budget(self, channel: str, refusal: Refusal) -> OverBudget:
        reason = refusal_reason(refusal, self._labels)
        event(log, logging.WARNING, "budget.reached", channel=channel, cost=usd(refusal.cost),
              resumes_at=refusal.resumes_at.isoformat(), first=refusal.first,
              budgets=",".join(sorted({c.budget for c in refusal.over})),
              note="a post that could never fit pauses the channel" if refusal.never
              else "the channel waits, its posts in order, until the window resets")
        return OverBudget(reason, refusal.resumes_at, first=refusal.first, never=refusal.never)

    async def settle(self, channel: str, reservation: Reservation | None, outcome: Outcome) -> None:
        """After the request: a reservation whose request cannot have been billed (``keeps_charge``) is
        released. A release the database refuses is logged; the reservation then stays counted (the
        budget errs towards spending less, never more)."""
        if reservation is None or keeps_charge(outcome):
            return
        try:
            await self.store.release_spend(reservation)
        except StorageError as exc:
            event(log, logging.WARNING, "budget.unreleased", channel=channel, cost=usd(reservation.cost),
                  error=str(exc), note="the reservation stays counted in the budget")

    async def refresh_metrics(self, now: datetime) -> None:
        """The budget gauges (spent, limit, left per budget and window), from the database: every instance
        shows the same figures."""
        if not self.plans:
            return
        wanted = {(b.key, lim.period) for plan in self.plans.values() for b in plan.budgets for lim in b.limits}
        spent = await self.store.spending(wanted, now)
        seen: set[tuple[str, str]] = set()
        for plan in self.plans.values():
            for line in budget_lines(plan, spent, now):
                if (line.budget, line.period.value) not in seen:
                    seen.add((line.budget, line.period.value))
                    self.metrics.set_budget(line.budget, line.period.value, line.spent, line.limit)
