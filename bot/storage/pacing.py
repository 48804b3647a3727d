"""Pacing buckets, persisted: the token buckets every instance sharing the database draws from."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, insert, select, update

from bot.domain.pacing import bucket_shape, reserve, take_if_free
from bot.storage import tables as t
from bot.storage.base import StoreBase


class PacingMixin(StoreBase):
    async def reserve_tokens(self, buckets: Sequence[tuple[str, float, float]], now: float) -> float:
        """Take one token from each bucket (key, capacity, period in seconds), persisted.

        Returns how long the caller must wait before sending (0: now). Reservations
        queue up (tokens may go negative), so concurrent callers, in this process or
        in another instance sharing the database, never get the same slot. Row locks
        (PostgreSQL) or SQLite's single writer serialise the read-modify-write.
        """
        if not buckets:
            return 0.0

        def work(conn: Connection) -> float:
            wait = 0.0
            for key, capacity, per in sorted(buckets):
                query = select(t.rate_buckets).where(t.rate_buckets.c.key == key)
                if self.dialect == "postgresql":
                    conn.execute(self._insert_ignore(t.rate_buckets, ["key"]).values(
                        key=key, tokens=bucket_shape(capacity, per)[0], stamp=now))
                    query = query.with_for_update()
                row = conn.execute(query).first()
                if row is None:
                    tokens, stamp = bucket_shape(capacity, per)[0], now
                    conn.execute(insert(t.rate_buckets).values(key=key, tokens=tokens, stamp=stamp))
                else:
                    tokens, stamp = float(row.tokens), float(row.stamp)
                burst, rate = bucket_shape(capacity, per)
                tokens, stamp, delay = reserve(min(tokens, burst), stamp, now, burst, rate)
                conn.execute(update(t.rate_buckets).where(t.rate_buckets.c.key == key).values(
                    tokens=tokens, stamp=stamp))
                wait = max(wait, delay)
            return wait

        return await self._write(work)

    async def take_token(self, key: str, count: float, per: float, now: float) -> float:
        """Take one token from bucket ``key`` (at most ``count`` in any window of ``per`` seconds) only if
        one is there now, persisted: 0 when taken, else the seconds until one is (nothing taken).

        The bucket lives in ``rate_buckets`` beside the pacing buckets (a number and a time, nothing
        else), so a limit on attempts holds across restarts and across instances sharing the database.
        """

        def work(conn: Connection) -> float:
            burst, rate = bucket_shape(count, per)
            query = select(t.rate_buckets).where(t.rate_buckets.c.key == key)
            if self.dialect == "postgresql":
                conn.execute(self._insert_ignore(t.rate_buckets, ["key"]).values(key=key, tokens=burst, stamp=now))
                query = query.with_for_update()
            row = conn.execute(query).first()
            if row is None:
                conn.execute(insert(t.rate_buckets).values(key=key, tokens=burst, stamp=now))
                tokens, stamp = burst, now
            else:
                tokens, stamp = min(float(row.tokens), burst), float(row.stamp)
            tokens, stamp, wait = take_if_free(tokens, stamp, now, burst, rate)
            conn.execute(update(t.rate_buckets).where(t.rate_buckets.c.key == key).values(tokens=tokens,
                                                                                             stamp=stamp))
            return wait

        return await self._write(work)
