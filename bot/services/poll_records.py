"""The 304 fast path's write: polls answered "not modified", buffered and written many to a transaction.

A poll answered 304 (or an unchanged file) changes nothing but its source's row: the validators, the
poll's time and the next one, the outcome, the failure count, the lease. Instead of one transaction per
such poll, the ``Poller`` hands its ``NotModifiedRecord`` to a ``RecordBuffer``, which writes every record
it holds in ONE transaction (``Store.record_not_modified_many``: the prebuilt UPDATE, executemany):

- when the poll driver starts a round, before it reads what is due (a source whose record still waits
  here would look due again and be polled twice; ``unwritten`` names the ones that end during the
  round's read, and the driver leaves them out);
- when it holds ``size`` records (``[service] not_modified_batch``);
- ``delay`` seconds after the first record came in (``[service] not_modified_delay``, a timer);
- at the end of ``burst`` (``run --once``), when the driver drains at shutdown, and when the service closes.

**Losing the buffer is harmless.** A record that was never written leaves the source's row as the poll
before this one wrote it: its ``next_poll_at`` in the past (that is why it was polled), its validators
(the ones this poll sent, or older ones), and, on PostgreSQL, this instance's lease on it, which expires
after ``[storage] lease_ttl``. So after a crash the source is simply polled again: at once by the next
start (or by another instance once the lease has expired), with those validators. The site answers 304
again, or, if it changed meanwhile, the whole document, whose new posts are found as on any poll
(detection compares with the posts stored, never with the validators). A record carries nothing about
posts, deliveries or any other source, and no record is ever written out of order with a newer one of
its source in this process (a newer record replaces a waiting one).

**A failed write is never dropped silently**: the records stay (a newer record of the same source
replaces an older one), a warning says how many and why (``poll.record_failed``), and the write is tried
again after a growing wait (``retry_delay``) or at the next trigger, whichever comes first. Only
``flush(last=True)`` (shutdown) gives up: it logs an error naming the sources, which are polled again at
the next start, as after a crash.

Sources a push can reach are not buffered (``Poller``: their observer compares push counts after the
write); the buffered UPDATE keeps a ``next_poll_at`` a push set while the record waited anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Protocol

from bot.errors import StorageError
from bot.log import event
from bot.storage.polls import NotModifiedRecord
from bot.storage.store import Store

log = logging.getLogger("tagrelay.poll")

MAX_RETRY_DELAY = 30.0
"""Longest wait before a failed write is tried again (unless a round, a full batch or a stop comes first)."""
SHOWN_SOURCES = 20
"""Sources named in the error of a final write that failed (and how many more)."""


class Handle(Protocol):
    def cancel(self) -> None: ...


Later = Callable[[float, Callable[[], None]], Handle]
"""Run a callback in so many seconds (``loop.call_later``; tests pass their own)."""


def retry_delay(delay: float, failures: int) -> float:
    """Seconds before the ``failures``-th failed write in a row is tried again: ``delay`` (at least 1 s),
    doubling, at most ``MAX_RETRY_DELAY``."""
    return min(MAX_RETRY_DELAY, max(1.0, delay) * 2.0 ** min(max(0, failures - 1), 16))


class RecordBuffer:
    """Not-modified records waiting to be written, at most one per source (see the module docstring)."""

    def __init__(self, store: Store, *, size: int, delay: float, later: Later | None = None) -> None:
        self.store = store
        self.size = max(1, size)
        self.delay = delay
        self._later = later
        self._records: dict[int, NotModifiedRecord] = {}
        self._writing: dict[int, NotModifiedRecord] = {}
        self._lock = asyncio.Lock()
        self._timer: Handle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.failures = 0
        """Writes that failed in a row (0 after one succeeds)."""
        self.writes = 0
        """Transactions written (each with one or more records)."""

    def __len__(self) -> int:
        return len(self._records) + len(self._writing)

    @property
    def unwritten(self) -> frozenset[str]:
        """The sources with a record not yet committed (waiting, or being written)."""
        if not self._records and not self._writing:
            return frozenset()
        return frozenset(r.source for r in (*self._records.values(), *self._writing.values()))

    async def add(self, record: NotModifiedRecord) -> None:
        """Keep ``record`` (replacing a waiting one of its source); write the batch when it is full. A
        failed write is kept, logged and retried: it never fails the poll that filled the batch."""
        self._records[record.source_id] = record
        if len(self._records) >= self.size:
            await self._flush_quietly()
        elif self._timer is None:
            self._timer = self._call_later(self.delay)

    def discard(self, source_id: int) -> None:
        """Forget the waiting record of a source whose newer poll writes its own record at once."""
        self._records.pop(source_id, None)

    async def flush(self, *, last: bool = False) -> None:
        """Write every waiting record in ONE transaction. On failure the records stay, a retry is scheduled
        and the error is raised (``StorageError`` when the database failed); with ``last`` (shutdown) the
        failure is logged as an error naming the sources, and nothing is raised."""
        if not self._records:
            return
        async with self._lock:
            self._cancel_timer()
            if not self._records:
                return
            batch, self._records = self._records, {}
            self._writing = batch
            try:
                await self.store.record_not_modified_many(list(batch.values()))
            except BaseException as exc:
                for key, record in batch.items():  # a newer record of the same source came in: it wins
                    self._records.setdefault(key, record)
                if not isinstance(exc, Exception):  # cancelled: kept for the next flush
                    raise
                self.failures += 1
                # a database failure's text is safe to show (``StorageError``); anything else is a bug: its type
                error = str(exc) if isinstance(exc, StorageError) else type(exc).__name__
                if last:
                    self._give_up(error)
                    return
                wait = retry_delay(self.delay, self.failures)
                event(log, logging.WARNING, "poll.record_failed", records=len(self._records), error=error,
                      attempt=self.failures, retry_in=wait,
                      note="polls answered 304 not written yet; kept and written again")
                self._timer = self._call_later(wait)
                raise
            finally:
                self._writing = {}
            if self.failures:
                event(log, logging.INFO, "poll.record_written", records=len(batch), after_failures=self.failures)
            self.failures = 0
            self.writes += 1
            if self._records and self._timer is None:  # came in while this write ran
                self._timer = self._call_later(self.delay)

    def _give_up(self, error: str) -> None:
        names = sorted(r.source for r in self._records.values())
        shown = ", ".join(names[:SHOWN_SOURCES]) + (f" and {len(names) - SHOWN_SOURCES} more"
                                                     if len(names) > SHOWN_SOURCES else "")
        event(log, logging.ERROR, "poll.record_lost", records=len(names), sources=shown, error=error,
              note="these polls answered 304 and were not written; the sources are polled again at the next start")
        self._records.clear()

    async def _flush_quietly(self) -> None:
        with contextlib.suppress(Exception):  # logged, kept and retried by flush
            await self.flush()

    def _call_later(self, seconds: float) -> Handle:
        later = self._later or asyncio.get_running_loop().call_later
        return later(seconds, self._fire)

    def _cancel_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()

    def _fire(self) -> None:
        self._timer = None
        task = asyncio.get_running_loop().create_task(self._flush_quietly(), name="poll-records")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
