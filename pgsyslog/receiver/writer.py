"""The writer tasks: take batches off the queue and store each once, or spool it.

Each batch gets an identity (a UUID) that is committed with its rows (store.py), so that
no retry, ambiguous commit or replay writes it twice. A transient failure closes the
connection and retries the same batch with capped exponential backoff and jitter; after
SPOOL_AFTER_TRIES failed tries the batch goes to the disk spool, and while the database
stays away every new batch goes straight there (one probe per backoff interval), so that
memory stays bounded and UDP keeps being read. The spool is replayed by spooler.py's
SpoolReplayer beside live writing. Without a spool (or with a full one) the writer keeps
retrying: the queue fills and TCP senders wait.

A writer never drops a batch: an unexpected error is logged and the batch spooled (or
retried), and the batch in hand is known (``current``) so that a stop that cancels the
writer spools it.

When a batch is stored (both halves of a split, or found committed before) or spooled,
its records' receipts are settled (queue.Receipts): RELP acknowledges them then
(tests/test_relp_acks.py::test_receipts_of_a_split_batch_wait_for_both_halves).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Coroutine
from typing import Any

from pgsyslog.receiver.counters import Counters
from pgsyslog.receiver.link import DatabaseLink
from pgsyslog.receiver.queue import RecordQueue
from pgsyslog.receiver.spooler import Spooler
from pgsyslog.receiver.store import BatchStore
from pgsyslog.receiver.write_policy import Batch, backoff, describe, spool_now

log = logging.getLogger(__name__)


async def first_of(*waits: Coroutine[Any, Any, Any]) -> None:
    """Wait until one of ``waits`` is done; cancel the others."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


class BatchWriter:
    def __init__(self, queue: RecordQueue, store: BatchStore, spooler: Spooler,
                 link: DatabaseLink, counters: Counters, max_age: float) -> None:
        self.queue = queue
        self.store = store
        self.spooler = spooler
        self.link = link
        self.counters = counters
        self.max_age = max_age
        self.current: Batch | None = None  # the batch in hand, until stored or spooled
        self._closing = False

    async def run(self) -> None:
        """Write batches until close() was called and the queue is empty."""
        try:
            if self.current is not None:  # taken over from a writer that died
                await self._write_safely(self.current)
                self.queue.receipts.settle(self.current.records)
                self.current = None
            while True:
                records = await self.queue.get_batch(self.max_age)
                if not records:
                    if self._closing:
                        break
                    continue
                self.current = Batch.new(records)
                await self._write_safely(self.current)
                self.queue.receipts.settle(records)
                self.current = None
        finally:
            await self.store.disconnect()

    def close(self) -> None:
        """Finish what is queued, then stop; a failing database is no longer waited for."""
        self._closing = True
        self.queue.close()

    async def _write_safely(self, batch: Batch) -> None:
        try:
            await self.write(batch)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("unexpected error writing a batch of %d rows; spooling it",
                          len(batch.records))
            if not await self.spooler.put(batch, force=True):
                await self.write(batch)

    async def write(self, batch: Batch) -> None:
        """Store the batch, or spool it; return only when one of the two is done."""
        link = self.link
        attempt = 0
        while True:
            if link.skip_database():
                if link.may_spool() and await self.spooler.put(batch, force=self._closing):
                    return
                await self._wait_for_database()
                continue
            try:
                await self.store.write(batch)
            except Exception as e:
                attempt += 1
                pause = backoff(attempt, random.uniform(0.5, 1))
                link.went_down(pause)
                self.counters.retried += 1
                self._log_failure(e, attempt, pause)
                if spool_now(attempt, self._closing) and await self.spooler.put(
                        batch, force=self._closing):
                    return
                await asyncio.sleep(pause)
                continue
            if link.came_back():
                log.warning("database answers again")
                self.spooler.replay_wanted.set()
            return

    async def _wait_for_database(self) -> None:
        """No spool (or no room in it): wait for the next probe, or for the database."""
        link = self.link
        if not link.ready.is_set():
            waits = [link.ready.wait()]
            if self.spooler.enabled and not link.patience_over.is_set():
                waits.append(link.patience_over.wait())
            await first_of(*waits)
            return
        pause = link.probe_due_in()
        if pause > 0:
            try:
                await asyncio.wait_for(link.answered.wait(), pause)
            except TimeoutError:
                link.next_probe = 0.0  # this writer makes the probe

    @staticmethod
    def _log_failure(error: Exception, attempt: int, pause: float) -> None:
        level = logging.WARNING if attempt == 1 or attempt % 10 == 0 else logging.DEBUG
        log.log(level, "database write failed (try %d), retrying in %.1fs: %s",
                attempt, pause, describe(error))
