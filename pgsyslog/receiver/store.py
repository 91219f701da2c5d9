"""Writing one batch on one connection: split on data errors, skip what committed before.

Used by the writers (batches from the queue) and by the spool replay (frames from disk).
Only transient failures leave :meth:`BatchStore.write`; the write_policy module decides
what each failure means.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import date
from typing import Any

import psycopg

from pgsyslog.receiver.counters import Counters
from pgsyslog.receiver.link import DatabaseLink
from pgsyslog.receiver.write_policy import Batch, Failure, classify, describe
from pgsyslog.record import Record
from pgsyslog.storage import database, partitions
from pgsyslog.storage.copy import copy_records, copy_unrouted, register_adapters

log = logging.getLogger(__name__)

Rejects = Callable[[Record, str], None]  # keeps a row no table takes (the spool's file)
BatchObserver = Callable[[int, float], None]


class DatabaseTimeout(TimeoutError):
    """The database did not finish a batch within the link's batch_timeout."""


class BatchStore:
    def __init__(self, link: DatabaseLink, counters: Counters, rejects: Rejects | None = None,
                 on_batch: BatchObserver | None = None) -> None:
        self.link = link
        self.counters = counters
        self.rejects = rejects
        self.on_batch = on_batch
        self._conn: psycopg.AsyncConnection[Any] | None = None

    async def write(self, batch: Batch) -> None:
        """Store the batch once, within the link's batch_timeout; raise only what is
        transient (the connection is closed then, and the batch may have committed: the
        next try finds out)."""
        started = time.monotonic()
        task = asyncio.ensure_future(self._store(batch))
        try:
            done, _ = await asyncio.wait({task}, timeout=self.link.batch_timeout)
        except asyncio.CancelledError:
            await self._abandon(task)
            raise
        if not done:
            await self._abandon(task)
            raise DatabaseTimeout(f"the database did not answer within "
                                  f"{self.link.batch_timeout:.0f}s")
        try:
            task.result()
        except BaseException:
            await self.disconnect()
            raise
        self.counters.batches += 1
        if self.on_batch is not None:
            self.on_batch(len(batch.records), time.monotonic() - started)

    async def _abandon(self, task: asyncio.Future[None]) -> None:
        # Closing the socket first makes every wait inside the task (a rollback on a
        # server that does not answer, say) fail at once, so that cancelling ends it.
        await self.disconnect()
        task.cancel()
        with contextlib.suppress(BaseException):
            await task

    async def disconnect(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(psycopg.Error, OSError):
                await conn.close()

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            dsn = self.link.dsn
            if dsn is None:
                raise psycopg.OperationalError("the database is not ready yet")
            self._conn = await database.connect_async(dsn, autocommit=True)
            register_adapters(self._conn)
        return self._conn

    async def _store(self, batch: Batch, partitions_made: bool = False) -> None:
        conn = await self._connection()
        try:
            async with conn.transaction():
                await copy_records(conn, batch.records, batch.id)
        except Exception as e:
            failure = classify(e)
            if failure is Failure.TRANSIENT or conn.broken:
                raise
            await self._refused(batch, e, failure, partitions_made)
            return
        self.counters.written += len(batch.records)

    async def _refused(self, batch: Batch, error: Exception, failure: Failure,
                       partitions_made: bool) -> None:
        if failure is Failure.DUPLICATE:
            self.counters.duplicates_skipped += len(batch.records)
            log.info("batch %s (%d rows) was committed before; not written again", batch.id,
                     len(batch.records))
        elif failure is Failure.NO_PARTITION and not partitions_made:
            await self._make_partitions({r.received_at.date() for r in batch.records})
            await self._store(batch, partitions_made=True)
        elif len(batch.records) == 1:
            await self._store_unrouted(batch, describe(error))
        else:
            for half in batch.halves():
                await self._store(half, partitions_made)

    async def _make_partitions(self, days: set[date]) -> None:
        dsn = self.link.dsn
        assert dsn is not None
        try:
            await asyncio.to_thread(_make_partitions, dsn, days)
        except psycopg.Error as e:
            log.warning("could not create partitions for %s: %s", sorted(days), describe(e))

    async def _store_unrouted(self, batch: Batch, error: str) -> None:
        conn = await self._connection()
        try:
            async with conn.transaction():
                await copy_unrouted(conn, batch.records, error, batch.id)
        except Exception as e:
            failure = classify(e)
            if failure is Failure.TRANSIENT or conn.broken:
                raise
            if failure is Failure.DUPLICATE:
                self.counters.duplicates_skipped += len(batch.records)
                return
            self._reject(batch.records[0], error, describe(e))
            return
        log.warning("row stored in syslog.unrouted: %s", error)
        self.counters.unrouted += len(batch.records)

    def _reject(self, record: Record, error: str, unrouted_error: str) -> None:
        self.counters.rejected += 1
        if self.rejects is not None:
            self.rejects(record, f"{error}; unrouted: {unrouted_error}")
            log.error("row refused by syslog.messages (%s) and by syslog.unrouted (%s); "
                      "kept in the spool's rejects file", error, unrouted_error)
        else:
            log.error("row refused by syslog.messages (%s) and by syslog.unrouted (%s): %r",
                      error, unrouted_error, record)


def _make_partitions(dsn: str, days: set[date]) -> None:
    with database.connect(dsn, autocommit=True) as conn:
        for day in sorted(days):
            partitions.create_partition(conn, day)
