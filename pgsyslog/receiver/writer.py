"""The writer tasks: take batches off the queue, COPY each in one transaction.

They retry only what is transient. A connection error closes the connection and retries
the same batch with capped exponential backoff and jitter; after SPOOL_AFTER_TRIES failed
tries the batch goes to the disk spool instead, and while the database stays away every
new batch goes straight there (one probe per backoff interval), so that memory stays
bounded and UDP keeps being read. The first batch written after an outage replays the
spool, in order. Without a spool (or with a full one) the writer keeps retrying: the queue
fills and TCP senders wait.

A refusal for a data reason splits the batch so that one poison row cannot sink the
others; a row with no partition for its day gets the partition made and is retried, what
still cannot be placed goes to syslog.unrouted, and a row that table refuses too goes to
the spool's rejects file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Sequence
from datetime import date
from typing import Any

import psycopg
from psycopg import errors

from pgsyslog.receiver.counters import Counters
from pgsyslog.receiver.queue import RecordQueue
from pgsyslog.record import Record
from pgsyslog.storage import database, partitions
from pgsyslog.storage.copy import copy_records, copy_unrouted, register_adapters
from pgsyslog.storage.spool import Spool

log = logging.getLogger(__name__)

BACKOFF_FIRST = 0.2  # seconds before the first retry after a connection error
BACKOFF_MAX = 10.0  # never wait longer than this between two tries
# Tries (about 0.2 + 0.4 s of waiting) before a batch is spooled: a database restart that
# takes a second costs no disk writes; a longer outage does not hold up the queue.
SPOOL_AFTER_TRIES = 3


def is_transient(exc: BaseException) -> bool:
    """Connection-level failures, worth retrying as they are; not data refusals."""
    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)


def is_missing_partition(exc: BaseException) -> bool:
    return isinstance(exc, errors.CheckViolation) and "no partition" in str(exc)


class Outage:
    """Shared by the writers: the spool, and whether the database is away."""

    def __init__(self, spool: Spool | None, on_spool_size: Callable[[int], None] | None = None
                 ) -> None:
        self.spool = spool
        self.on_spool_size = on_spool_size
        self.lock = asyncio.Lock()  # one append or replay at a time, in order
        self.down = False
        self.spooling = False  # a batch of this outage went to the spool already
        self.next_probe = 0.0  # monotonic time of the next try while down

    def went_down(self, pause: float) -> None:
        self.down = True
        self.next_probe = time.monotonic() + pause

    def skip_database(self) -> bool:
        """While down and before the next probe, batches go to the spool untried."""
        return self.down and self.spool is not None and time.monotonic() < self.next_probe

    def report_size(self) -> None:
        if self.spool is not None and self.on_spool_size is not None:
            self.on_spool_size(self.spool.pending)


class BatchWriter:
    def __init__(
        self,
        dsn: str,
        queue: RecordQueue,
        counters: Counters,
        max_age: float,
        on_batch: Callable[[int, float], None] | None = None,
        outage: Outage | None = None,
    ) -> None:
        self.dsn = dsn
        self.queue = queue
        self.counters = counters
        self.max_age = max_age
        self.on_batch = on_batch
        self.outage = outage or Outage(None)
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._closing = False
        self._give_up_at: float | None = None

    async def run(self) -> None:
        """Write batches until close() was called and the queue is empty."""
        while True:
            batch = await self._next_batch()
            if batch:
                await self.write(batch)
            elif self._closing:
                break
            elif self._spool_pending():
                await self.replay_spool()  # idle: bring the spool in, if the database is back
        if self._spool_pending() and not self.outage.down:
            await self.replay_spool()
        await self._disconnect()

    async def _next_batch(self) -> list[Record]:
        if not self._spool_pending():
            return await self.queue.get_batch(self.max_age)
        # With a spool to replay, wake up now and then even when nothing arrives.
        try:
            return await asyncio.wait_for(self.queue.get_batch(self.max_age), BACKOFF_MAX)
        except TimeoutError:
            return []

    def _spool_pending(self) -> bool:
        spool = self.outage.spool
        return spool is not None and spool.pending > 0

    def close(self, deadline: float) -> None:
        """Finish what is queued; stop retrying a failing database at ``deadline`` (monotonic)."""
        self._closing = True
        self._give_up_at = deadline
        self.queue.close()

    async def write(self, batch: Sequence[Record]) -> None:
        outage = self.outage
        attempt = 0
        while True:
            if outage.skip_database() and await self._spool(batch):
                return
            started = time.monotonic()
            try:
                await self._store(batch)
            except Exception as e:
                if not is_transient(e):
                    # Not a known condition: keep the rows and try again rather than lose
                    # them; the queue fills meanwhile and TCP senders wait.
                    log.exception("unexpected error writing a batch of %d rows", len(batch))
                attempt += 1
                pause = self._backoff(attempt)
                outage.went_down(pause)
                await self._disconnect()
                self.counters.retried += 1
                if attempt >= SPOOL_AFTER_TRIES and await self._spool(batch):
                    return
                if not await self._wait_before_retry(e, attempt, pause, batch):
                    return
                continue
            self.counters.batches += 1
            if self.on_batch is not None:
                self.on_batch(len(batch), time.monotonic() - started)
            if outage.down:
                outage.down = outage.spooling = False
                log.warning("database answers again")
            if self._spool_pending():
                await self.replay_spool()
            return

    @staticmethod
    def _backoff(attempt: int) -> float:
        return float(min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (attempt - 1))) * random.uniform(0.5, 1)

    async def _wait_before_retry(self, exc: Exception, attempt: int, pause: float,
                                 batch: Sequence[Record]) -> bool:
        if self._give_up_at is not None and time.monotonic() + pause > self._give_up_at:
            rest = [*batch, *self.queue.take_all()]
            if await self._spool(rest):
                log.warning("database unreachable at the shutdown deadline: %d rows spooled "
                            "for the next start", len(rest))
            else:
                log.error("database unreachable at the shutdown deadline and no room in a "
                          "spool: %d rows were not written: %s", len(rest), exc)
            return False
        level = logging.WARNING if attempt == 1 or attempt % 10 == 0 else logging.DEBUG
        log.log(level, "database write failed (try %d), retrying in %.1fs: %s",
                attempt, pause, exc)
        await asyncio.sleep(pause)
        return True

    async def _spool(self, batch: Sequence[Record]) -> bool:
        """Append the batch to the spool; False when there is no spool or no room in it."""
        outage = self.outage
        if outage.spool is None or not batch:
            return outage.spool is not None
        async with outage.lock:
            try:
                appended = await asyncio.to_thread(outage.spool.append, batch)
            except OSError as e:
                log.error("cannot write the spool %s: %s", outage.spool.path, e)
                return False
        if appended:
            if not outage.spooling:
                outage.spooling = True
                log.warning("database unreachable: spooling batches to %s until it answers",
                            outage.spool.path)
            self.counters.spooled += len(batch)
            outage.report_size()
        return appended

    async def replay_spool(self) -> None:
        """Write the spooled batches in order; stop at the first transient failure."""
        outage = self.outage
        spool = outage.spool
        if spool is None:
            return
        async with outage.lock:
            frames = spool.batches()
            replayed = 0
            while (frame := await asyncio.to_thread(next, frames, None)) is not None:
                offset, records = frame
                try:
                    await self._store(records)
                except Exception as e:
                    log.warning("spool replay paused after %d rows: %s", replayed, e)
                    outage.went_down(BACKOFF_MAX)
                    await self._disconnect()
                    frames.close()
                    outage.report_size()
                    return
                await asyncio.to_thread(spool.mark_replayed, offset)
                replayed += len(records)
                self.counters.replayed += len(records)
            spool.clear()
            outage.report_size()
        if replayed:
            log.warning("replayed %d rows from the spool", replayed)

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = await database.connect_async(self.dsn, autocommit=True)
            register_adapters(self._conn)
        return self._conn

    async def _disconnect(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(psycopg.Error):
                await conn.close()

    async def _store(self, batch: Sequence[Record], partitions_made: bool = False) -> None:
        """Write the batch, splitting on data errors; raise only transient errors."""
        conn = await self._connection()
        try:
            async with conn.transaction():
                await copy_records(conn, batch)
        except psycopg.Error as e:
            if is_transient(e) or conn.broken:
                raise
            if is_missing_partition(e) and not partitions_made:
                days = {r.received_at.date() for r in batch}
                try:
                    await asyncio.to_thread(self._make_partitions, days)
                except psycopg.Error as make_error:
                    log.warning("could not create partitions for %s: %s", sorted(days),
                                make_error)
                await self._store(batch, partitions_made=True)
            elif len(batch) == 1:
                await self._store_unrouted(batch, str(e).strip())
            else:
                middle = len(batch) // 2
                await self._store(batch[:middle], partitions_made)
                await self._store(batch[middle:], partitions_made)
            return
        self.counters.written += len(batch)

    def _make_partitions(self, days: set[date]) -> None:
        with database.connect(self.dsn, autocommit=True) as conn:
            for day in sorted(days):
                partitions.create_partition(conn, day)

    async def _store_unrouted(self, batch: Sequence[Record], error: str) -> None:
        conn = await self._connection()
        try:
            async with conn.transaction():
                await copy_unrouted(conn, batch, error)
        except psycopg.Error as e:
            if is_transient(e) or conn.broken:
                raise
            self.counters.rejected += len(batch)
            spool = self.outage.spool
            if spool is not None:
                spool.reject(batch[0], f"{error}; unrouted: {e}")
                log.error("row refused by syslog.messages (%s) and by syslog.unrouted (%s); "
                          "kept in %s", error, e, spool.rejects_path)
            else:
                log.error("row refused by syslog.messages (%s) and by syslog.unrouted (%s): %r",
                          error, e, batch[0])
            return
        log.warning("row stored in syslog.unrouted: %s", error)
        self.counters.unrouted += len(batch)
