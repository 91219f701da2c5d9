"""The one writer task: take batches off the queue, COPY each in one transaction.

It retries only what is transient. A connection error closes the connection and retries
the same batch with capped exponential backoff (the queue meanwhile fills and TCP pauses).
A refusal for a data reason splits the batch so that one poison row cannot sink the
others; a row with no partition for its day gets the partition made and is retried, and
what still cannot be placed goes to syslog.unrouted.
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

log = logging.getLogger(__name__)

BACKOFF_FIRST = 0.2  # seconds before the first retry after a connection error
BACKOFF_MAX = 10.0  # never wait longer than this between two tries


def is_transient(exc: BaseException) -> bool:
    """Connection-level failures, worth retrying as they are; not data refusals."""
    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)


def is_missing_partition(exc: BaseException) -> bool:
    return isinstance(exc, errors.CheckViolation) and "no partition" in str(exc)


class BatchWriter:
    def __init__(
        self,
        dsn: str,
        queue: RecordQueue,
        counters: Counters,
        max_age: float,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self.dsn = dsn
        self.queue = queue
        self.counters = counters
        self.max_age = max_age
        self.on_batch = on_batch
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._closing = False
        self._give_up_at: float | None = None

    async def run(self) -> None:
        """Write batches until close() was called and the queue is empty."""
        queue = self.queue
        while True:
            batch = await queue.get_batch(self.max_age)
            if batch:
                await self.write(batch)
            elif self._closing:
                break
        await self._disconnect()

    def close(self, deadline: float) -> None:
        """Finish what is queued; stop retrying a failing database at ``deadline`` (monotonic)."""
        self._closing = True
        self._give_up_at = deadline
        self.queue.close()

    async def write(self, batch: Sequence[Record]) -> None:
        attempt = 0
        while True:
            started = time.monotonic()
            try:
                await self._store(batch)
            except Exception as e:
                if not is_transient(e):
                    # Not a known condition: keep the rows and try again rather than lose
                    # them; the queue fills meanwhile and TCP senders wait.
                    log.exception("unexpected error writing a batch of %d rows", len(batch))
                attempt += 1
                if not await self._wait_before_retry(e, attempt, len(batch)):
                    return
                continue
            self.counters.batches += 1
            if self.on_batch is not None:
                self.on_batch(len(batch), time.monotonic() - started)
            return

    async def _wait_before_retry(self, exc: Exception, attempt: int, rows: int) -> bool:
        await self._disconnect()
        self.counters.retried += 1
        pause = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
        if self._give_up_at is not None and time.monotonic() + pause > self._give_up_at:
            log.error("database still unreachable at the shutdown deadline; %d rows of this "
                      "batch and %d queued rows were not written: %s",
                      rows, len(self.queue), exc)
            self.queue.take_all()
            return False
        level = logging.WARNING if attempt == 1 or attempt % 10 == 0 else logging.DEBUG
        log.log(level, "database write failed (try %d), retrying in %.1fs: %s",
                attempt, pause, exc)
        await asyncio.sleep(pause)
        return True

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
            log.error("row refused by syslog.messages (%s) and by syslog.unrouted (%s): %r",
                      error, e, batch[0])
            self.counters.rejected += len(batch)
            return
        log.warning("row stored in syslog.unrouted: %s", error)
        self.counters.unrouted += len(batch)
