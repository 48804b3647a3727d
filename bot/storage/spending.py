"""Spending budgets, persisted: what each budget reserved in its current UTC window, shared by every instance.

``reserve_spend`` is one transaction: it locks the rows of the budgets a request counts against (in one
order, so two transactions never deadlock), asks the pure ``bot.domain.budget.check`` whether the cost
fits all of them, and either adds it to each or marks the first refusal of the window. On PostgreSQL the
rows are locked ``FOR UPDATE`` (a second instance's reservation waits, then reads what the first one
wrote); SQLite has one writer. So instances sharing the database can never reserve more than a budget
together.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, Connection, and_, case, or_, select, update

from bot.domain.budget import Counter, Limit, Period, Refusal, Reservation, check, window, window_key
from bot.storage import tables as t
from bot.storage.base import StoreBase, utc

_S = t.spending.c


def _row(budget: str, period: Period, start: str) -> list[ColumnElement[bool]]:
    return [_S.budget == budget, _S.period == period.value, _S.window_start == start]


class SpendingMixin(StoreBase):
    async def reserve_spend(self, limits: Sequence[tuple[str, Limit]], cost: int, now: datetime
                            ) -> Reservation | Refusal:
        """Reserve ``cost`` micro-dollars against every (budget key, limit) in the window holding ``now``, or
        refuse: a ``Reservation`` (to release if the request never reached the platform), or the ``Refusal``
        (``first``: no request had been refused in its window before). One transaction."""
        ordered = sorted(limits, key=lambda item: (item[0], item[1].period.value))

        def work(conn: Connection) -> Reservation | Refusal:
            counters: list[Counter] = []
            for budget, lim in ordered:
                start = window_key(lim.period, now)
                conn.execute(self._insert_ignore(t.spending, ["budget", "period", "window_start"]).values(
                    budget=budget, period=lim.period.value, window_start=start, spent=0))
                query = select(_S.spent, _S.reached_at).where(*_row(budget, lim.period, start))
                if self.dialect == "postgresql":
                    query = query.with_for_update()
                row = conn.execute(query).one()
                counters.append(Counter(budget, lim, start, int(row.spent), window(lim.period, now)[1],
                                        utc(row.reached_at)))
            refusal = check(counters, cost)
            if refusal is None:
                for c in counters:
                    conn.execute(update(t.spending).where(*_row(c.budget, c.limit.period, c.window))
                                 .values(spent=_S.spent + cost))
                return Reservation(cost, tuple((c.budget, c.limit.period, c.window) for c in counters))
            first = False
            for c in refusal.over:
                marked = conn.execute(update(t.spending).where(*_row(c.budget, c.limit.period, c.window),
                                                               _S.reached_at.is_(None)).values(reached_at=now))
                first = first or bool(marked.rowcount)
            return Refusal(refusal.cost, refusal.over, refusal.resumes_at, refusal.never, first)

        return await self._write(work)

    async def release_spend(self, reservation: Reservation) -> None:
        """Give a reservation back (its request never reached the platform, or was turned away unbilled):
        each of its windows' spending goes down by its cost, never below zero."""
        cost = reservation.cost

        def work(conn: Connection) -> None:
            for budget, period, start in sorted(reservation.rows, key=lambda r: (r[0], r[1].value)):
                conn.execute(update(t.spending).where(*_row(budget, period, start)).values(
                    spent=case((_S.spent > cost, _S.spent - cost), else_=0)))

        if cost and reservation.rows:
            await self._write(work)

    async def spending(self, budgets: Iterable[tuple[str, Period]], now: datetime
                       ) -> dict[tuple[str, Period], tuple[int, datetime | None]]:
        """(budget key, period) → (micro-dollars spent, first refusal) in the window holding ``now``; a
        budget without a row there has spent nothing yet and is left out."""
        keys = {(budget, period, window_key(period, now)) for budget, period in budgets}
        if not keys:
            return {}
        query = select(_S.budget, _S.period, _S.spent, _S.reached_at).where(
            or_(*(and_(*_row(b, p, w)) for b, p, w in sorted(keys, key=lambda k: (k[0], k[1].value)))))
        rows = await self._read(lambda conn: conn.execute(query).all())
        return {(r.budget, Period(r.period)): (int(r.spent), utc(r.reached_at)) for r in rows}
