"""The import loop: groups of lines, each stored with the file's new position.

A group of ``batch_rows`` lines becomes one transaction: the records go in with the same
binary COPY as serve (storage.copy.copy_records, batch identities in syslog.batches) and
the file's position in syslog.imported_files moves to the end of the group. Partitions of
the records' own days are made first, however old, with the lock-friendly code of
maintenance. A row the database refuses is split off, as the writer does, and kept in
syslog.unrouted; a failure of the database itself leaves this module (nothing of the
group was committed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

import psycopg

from pgsyslog.importer import ledger
from pgsyslog.importer.identity import KnownFile
from pgsyslog.importer.lines import LineOptions, Tally, convert
from pgsyslog.importer.progress import ImportProgress
from pgsyslog.importer.source import LineGroup, LineReader, Source, reread_head
from pgsyslog.receiver.write_policy import Failure, classify, describe
from pgsyslog.record import Record
from pgsyslog.storage import database, partitions
from pgsyslog.storage.copy import copy_records, copy_unrouted, register_adapters

log = logging.getLogger(__name__)

# The full-text (GIN) index takes most of PostgreSQL's time: a larger pending list for
# this session's inserts merges them into the index in fewer, larger steps.
GIN_PENDING_LIST = "32MB"
# A file's group need not wait for its WAL flush: a server crash can only lose whole
# groups together with their position, and the next import reads those lines again.
# When done with a file, one synchronous commit makes them all durable (release), so an
# import that says it is done is; standard input cannot be read again, so its groups
# wait for the flush as serve's batches do.
_NO_COMMIT_WAIT = "SET LOCAL synchronous_commit = off"
# A plain file not modified for this long is no longer being written.
SETTLED = timedelta(seconds=10)


@dataclass(frozen=True, slots=True)
class ImportSettings:
    batch_rows: int
    default_tz: tzinfo
    host: str | None = None
    retention_days: int = 0
    max_line: int = 64 * 1024  # config max_frame_length: longer lines are cut


@dataclass
class OpenFile:
    """A source being imported: where it stands and what became of its lines."""

    source: Source
    state: ledger.FileState  # what is committed
    reader: LineReader
    tally: Tally
    submitted: int = 0  # the position the last group handed to a writer ends at


@dataclass
class InFlight:
    """A group being written: its transaction, and what to note after its commit."""

    task: asyncio.Task[int | None]
    conn: psycopg.AsyncConnection[Any]
    opened: OpenFile
    group: LineGroup
    tally: Tally


class Importer:
    """Stores groups of lines of open files, one transaction at a time.

    While PostgreSQL takes one group (the full-text index is most of its work), the next
    is parsed in a thread. One transaction at a time, because copy_records registers each
    batch under the commit-order lock while groups of a file must commit in order; two
    writers would wait for each other.
    """

    def __init__(self, dsn: str, settings: ImportSettings, progress: ImportProgress) -> None:
        self.dsn = dsn
        self.settings = settings
        self.progress = progress
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._inflight: deque[InFlight] = deque()
        self._days: set[date] = set()  # days whose partition is known to exist
        self._warned_too_old = False
        self.unrouted = 0

    async def connect(self) -> None:
        self._conn = await database.connect_async(self.dsn, autocommit=True)
        register_adapters(self._conn)
        await self._conn.execute(f"SET gin_pending_list_limit = '{GIN_PENDING_LIST}'")
        self._days = await asyncio.to_thread(_partition_days, self.dsn)

    async def close(self) -> None:
        await self._abandon()
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(psycopg.Error, OSError):
                await conn.close()

    @property
    def conn(self) -> psycopg.AsyncConnection[Any]:
        """The connection, for queries while no group is in flight."""
        assert self._conn is not None and not self._inflight, "connect() first, then drain()"
        return self._conn

    async def open(self, source: Source) -> OpenFile:
        """Start at the position reached before, when this file was imported before."""
        if source.identity is None:
            return resume(source, None, self.settings.max_line)
        await ledger.lock(self.conn, source.identity, source.location)
        return resume(source, await ledger.find(self.conn, source.identity),
                      self.settings.max_line)

    async def release(self, opened: OpenFile) -> None:
        """Done with this file: make its groups durable, let other imports read it."""
        identity = opened.source.identity
        if identity is None or self._conn is None or self._conn.broken:
            return
        if opened.state.id is not None:
            # A synchronous commit flushes the WAL of the groups committed before it.
            async with self.conn.transaction():
                await ledger.touch(self.conn, opened.state.id)
        await ledger.unlock(self.conn, identity)

    async def import_all(self, opened: OpenFile, stop: asyncio.Event) -> None:
        """Read the file to its end, group by group; an unterminated last line too, unless
        the file may still be written (see :func:`is_settled`)."""
        self.progress.start(opened.source.name, opened.source.disk_size)
        final = is_settled(opened.source, datetime.now(UTC))
        try:
            while not stop.is_set():
                group = opened.reader.group(self.settings.batch_rows, final=final)
                if group is None:
                    break
                await self.submit(opened, group)
            await self.drain()
        finally:
            await self._abandon()
        await self.release(opened)
        self.progress.finish()

    async def store_group(self, opened: OpenFile, group: LineGroup) -> None:
        """Store one group and the file's new position, and wait for the commit."""
        try:
            await self.submit(opened, group)
            await self.drain()
        finally:
            await self._abandon()

    async def submit(self, opened: OpenFile, group: LineGroup) -> None:
        """Parse the group (while the group before it is written), then start its
        transaction."""
        options = self._options(opened.source)
        converted = await asyncio.to_thread(convert, group.lines, options)
        converted.tally.bytes = sum(map(len, group.lines))
        await self.drain()
        await self._ensure_days(converted.records)
        source = opened.source
        source.identity = reread_head(source)
        conn = self.conn
        task = asyncio.ensure_future(self._write(conn, opened.state.id, opened.state.position,
                                                 source, group, converted.records))
        self._inflight.append(InFlight(task, conn, opened, group, converted.tally))

    async def drain(self) -> None:
        """Wait for every group in flight to commit (the first failure is raised)."""
        while self._inflight:
            await self._settle_oldest()

    async def _settle_oldest(self) -> None:
        item = self._inflight[0]
        try:
            file_id = await item.task
        finally:
            self._inflight.popleft()
        state = item.opened.state
        state.id = state.id if file_id is None else file_id
        state.position, state.lines = item.group.end, state.lines + len(item.group.lines)
        self._note(item.tally)
        item.opened.tally.add(item.tally)
        self.progress.update(item.opened.tally.lines,
                             item.opened.source.disk_position(item.group.end))

    async def _abandon(self) -> None:
        """After a failure: end the transactions still in flight (each commits whole or not
        at all, with its position)."""
        while self._inflight:
            item = self._inflight.popleft()
            item.task.cancel()
            with contextlib.suppress(BaseException):
                await item.task

    async def _write(self, conn: psycopg.AsyncConnection[Any], file_id: int | None, start: int,
                     source: Source, group: LineGroup, records: Sequence[Record]
                     ) -> int | None:
        """One transaction: the rows and the file's new position."""
        async with conn.transaction():
            if source.identity is not None:
                await conn.execute(_NO_COMMIT_WAIT)
            if records:
                await self._copy(conn, records)
            if source.identity is None:
                return None
            return await ledger.advance(conn, file_id, start, source.identity, source.location,
                                        group.end, len(group.lines))

    def _options(self, source: Source) -> LineOptions:
        now = datetime.now(UTC)
        return LineOptions(reference=source.mtime or now, now=now,
                           default_tz=self.settings.default_tz, host=self.settings.host,
                           retention_days=self.settings.retention_days,
                           max_line=self.settings.max_line)

    def _note(self, tally: Tally) -> None:
        if tally.too_old and not self._warned_too_old:
            self._warned_too_old = True
            log.warning("lines older than retention_days (%d) are skipped: their partitions "
                        "would be dropped at once; the summary counts them",
                        self.settings.retention_days)

    async def _ensure_days(self, records: Sequence[Record], *, again: bool = False) -> None:
        days = {r.received_at.date() for r in records}
        missing = days if again else days - self._days
        if missing:
            await asyncio.to_thread(_make_partitions, self.dsn, missing)
            self._days |= missing

    async def _copy(self, conn: psycopg.AsyncConnection[Any], records: Sequence[Record], *,
                    partitions_made: bool = False) -> None:
        """COPY the records in a savepoint; split off rows the database refuses."""
        try:
            async with conn.transaction():
                await copy_records(conn, records)
        except Exception as e:
            failure = classify(e)
            if failure is Failure.TRANSIENT or failure is Failure.DUPLICATE or conn.broken:
                raise
            if failure is Failure.NO_PARTITION and not partitions_made:
                await self._ensure_days(records, again=True)  # dropped meanwhile
                await self._copy(conn, records, partitions_made=True)
            elif len(records) == 1:
                await self._copy_unrouted(conn, records, describe(e))
            else:
                middle = len(records) // 2
                await self._copy(conn, records[:middle], partitions_made=partitions_made)
                await self._copy(conn, records[middle:], partitions_made=partitions_made)

    async def _copy_unrouted(self, conn: psycopg.AsyncConnection[Any], records: Sequence[Record],
                             error: str) -> None:
        async with conn.transaction():
            await copy_unrouted(conn, records, error)
        self.unrouted += len(records)
        log.warning("a line refused by syslog.messages is kept in syslog.unrouted: %s", error)


def is_settled(source: Source, now: datetime) -> bool:
    """Whether the file is done with: compressed, standard input (it has ended), or not
    modified for SETTLED. Then its last line counts even without a line feed; in a file
    written just now it may be a line half written, and waits for the next import."""
    return source.mtime is None or source.compressed or now - source.mtime >= SETTLED


def resume(source: Source, known: KnownFile | None, max_line: int) -> OpenFile:
    """An open file positioned after what was imported of it before."""
    if known is None:
        state, tally = ledger.FileState(None, 0, 0), Tally()
    else:
        source.seek(known.position)
        state = ledger.FileState(known.id, known.position, known.lines)
        tally = Tally(already=known.lines)
    return OpenFile(source, state, LineReader(source.stream, state.position, max_line), tally,
                    state.position)


def _partition_days(dsn: str) -> set[date]:
    with database.connect(dsn) as conn:
        return {p.day for p in partitions.list_partitions(conn)}


def _make_partitions(dsn: str, days: set[date]) -> None:
    with database.connect(dsn, autocommit=True) as conn:
        partitions.ensure_days(conn, days)  # each creation is logged
