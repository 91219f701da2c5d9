"""The import loop: groups of lines, each stored with the file's new position.

A group of ``batch_rows`` lines (import_batch_rows; GROUP_BYTES at most) becomes one
transaction: the records go in with the same
binary COPY as serve (storage.copy, batch identities in syslog.batches) and the file's
position in syslog.imported_files moves to the end of the group. Partitions of the
records' own days are made first, however old, with the lock-friendly code of
maintenance. A row the database refuses is split off, as the writer does, and kept in
syslog.unrouted; a failure of the database itself leaves this module (nothing of the
group was committed, nor of the group after it).

Groups are parsed and encoded as COPY data in worker processes (importer/encode.py),
and up to three are in flight on three connections: two COPY side by side (the
full-text index makes that the expensive part, and PostgreSQL takes one core for each)
while the one before them registers its batch, moves the position and commits. Group k+1
registers only after group k committed, and rolls back when group k did not, so groups
commit in file order and no lock is held while waiting
(test_import_pipeline.py::test_a_kill_between_copy_and_commit_loses_and_repeats_nothing,
test_import_pipeline.py::test_a_failed_commit_rolls_back_the_group_copied_after_it).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

import psycopg
from psycopg import sql

from pgsyslog.importer import ledger
from pgsyslog.importer.encode import EncodedGroup, Encoder
from pgsyslog.importer.identity import KnownFile
from pgsyslog.importer.lines import LineOptions, Tally, convert
from pgsyslog.importer.progress import ImportProgress
from pgsyslog.importer.source import LineGroup, LineReader, Source, reread_head
from pgsyslog.receiver.write_policy import Failure, classify, describe
from pgsyslog.record import Record
from pgsyslog.storage import database, partitions
from pgsyslog.storage.copy import (
    IdBlock,
    copy_data,
    copy_data_into,
    copy_records,
    copy_unrouted,
    register_adapters,
    register_batch,
    reserve_ids,
)
from pgsyslog.storage.days import is_expired
from pgsyslog.storage.schema import SCHEMA

log = logging.getLogger(__name__)

# A file's group need not wait for its WAL flush: a server crash can only lose whole
# groups together with their position, and the next import reads those lines again.
# When done with a file, one synchronous commit makes them all durable (release), so an
# import that says it is done is; standard input cannot be read again, so its groups
# wait for the flush as serve's batches do.
_NO_COMMIT_WAIT = "SET LOCAL synchronous_commit = off"
# Two groups COPY while the one before them registers and commits; more would only
# queue behind the commit order on two cores.
CONNECTIONS = 3
# Bytes of lines a group holds at most (long lines make fewer of them): three groups are
# in flight, each also as COPY data, and one more is being read.
GROUP_BYTES = 16 * 1024 * 1024
# A plain file not modified for this long is no longer being written.
SETTLED = timedelta(seconds=10)


class Stopped(Exception):
    """Stopped while waiting for another session's attach, before a group's write."""


@dataclass(frozen=True, slots=True)
class ImportSettings:
    batch_rows: int
    default_tz: tzinfo
    host: str | None = None
    retention_days: int = 0
    max_line: int = 64 * 1024  # config max_frame_length: longer lines are cut
    # Days before yesterday without a partition are loaded into a table of their own and
    # attached (their indexes built in one pass) when the import is done: see
    # partitions.create_detached. Off for --follow, whose rows must show as they come.
    load_new_days: bool = True


@dataclass
class OpenFile:
    """A source being imported: where it stands and what became of its lines."""

    source: Source
    state: ledger.FileState  # what is committed
    reader: LineReader
    tally: Tally
    submitted: int = 0  # the position the last group handed to a writer ends at
    locks: list[ledger.LockKey] = field(default_factory=list)  # held while it is read

    @property
    def cut_short_at(self) -> int | None:
        """Bytes of content before its gzip data was cut short; None when it was not."""
        return self.reader.cut_short_at


@dataclass
class InFlight:
    """A group being written: its transaction, and what to note after its commit."""

    task: asyncio.Task[int | None]
    conn: psycopg.AsyncConnection[Any]
    opened: OpenFile
    group: LineGroup
    tally: Tally
    days: frozenset[date] = frozenset()  # of its rows


class Importer:
    """Stores groups of lines of open files, three transactions at a time (see the module).

    While PostgreSQL takes two groups (the full-text index is most of its work), the next
    is parsed and encoded in the worker processes.
    """

    def __init__(self, dsn: str, settings: ImportSettings, progress: ImportProgress,
                 stop: asyncio.Event | None = None) -> None:
        self.dsn = dsn
        self.settings = settings
        self.progress = progress
        # Set by Ctrl-C or SIGTERM: reading ends after the groups in flight, and so does a
        # wait for another session's attach (but for standard input's lines).
        self.stop = stop or asyncio.Event()
        self._conns: list[psycopg.AsyncConnection[Any]] = []
        self._inflight: deque[InFlight] = deque()
        self._days: set[date] = set()  # days whose partition is known to exist
        self._loading: set[date] = set()  # days in a table of their own, to attach at finish
        self._attaching: dict[date, asyncio.Task[None]] = {}  # loaded days being attached
        # Holds the loading locks (partitions.loading_lock_key): shared while a day is
        # loaded, exclusive while it is attached. Only the import's own task uses it.
        self._lock_conn: psycopg.AsyncConnection[Any] | None = None
        self._waited: set[date] = set()  # days whose wait for another's attach was logged
        self._warned_too_old = False
        self._encoder = Encoder()
        self.unrouted = 0

    async def connect(self) -> None:
        try:
            for _ in range(CONNECTIONS):
                self._conns.append(await _connect(self.dsn))
            if self.settings.load_new_days:
                self._lock_conn = await _connect(self.dsn)
                # Idle for as long as a day loads: a server's idle_session_timeout must
                # not end it (and with it the loading locks).
                await self._lock_conn.execute("SET idle_session_timeout = 0")
        except BaseException:
            await self.close()
            raise
        self._days, left_over = await asyncio.to_thread(_partition_days, self.dsn)
        # A table an import that died was loading: taken on for its day, attached at
        # finish. Yesterday's and today's (a creation cut short) are left to partition
        # creation, which finishes them when a row needs them.
        for day in sorted(left_over - self._expired_days(left_over)):
            if self._may_load(day) and await self._share_loading(day, wait=False):
                self._loading.add(day)

    async def finish(self) -> None:
        """Attach the tables of the days loaded (building their indexes): their rows show
        in queries from here on. Call once no group is in flight."""
        assert not self._inflight, "drain() first"
        if self._loading:
            log.info("building the indexes of the %d day(s) loaded", len(self._loading))
        for day in sorted(self._loading):
            await self._attach(day)
        await self._attached(set(self._attaching))

    async def _attach_passed_days(self, days: frozenset[date]) -> None:
        """Start attaching (in the background) each loaded day older than all of ``days``,
        the rows of the group about to be written, that no group in flight has rows of:
        lines come in time order, and its index builds overlap the loading of the next."""
        if not days:
            return
        for day in sorted(self._loading):
            if day < min(days) and not any(day in item.days for item in self._inflight):
                await self._attach(day)

    async def _attach(self, day: date) -> None:
        """Attach ``day``'s table in the background, unless another import still loads
        rows into it: the last one done with it attaches it."""
        self._loading.discard(day)
        assert self._lock_conn is not None
        await _advisory(self._lock_conn, "pg_advisory_unlock_shared", day)
        if await _advisory(self._lock_conn, "pg_try_advisory_lock", day):
            self._attaching[day] = asyncio.ensure_future(asyncio.to_thread(
                _attach_loaded, self.dsn, day))

    async def _attached(self, days: Iterable[date]) -> None:
        """Wait for the attaching of these days. One that failed keeps its table, for the
        next import or maintenance run; the first failure is raised once all are done."""
        failure: BaseException | None = None
        for day in sorted(set(days) & set(self._attaching)):
            try:
                await self._attaching.pop(day)
                self._days.add(day)
            except Exception as e:
                log.error("%s.%s, loaded, could not be attached; its rows are kept in it: %s",
                          SCHEMA, partitions.partition_name(day), describe(e))
                failure = failure or e
            finally:
                if self._lock_conn is not None and not self._lock_conn.broken:
                    await _advisory(self._lock_conn, "pg_advisory_unlock", day)
        if failure is not None:
            raise failure

    async def _share_loading(self, day: date, *, wait: bool,
                             stop: asyncio.Event | None = None) -> bool:
        """Take ``day``'s loading lock shared (other imports may load the day too); while
        its table is being attached (the lock held exclusive), wait for that when
        ``wait``, unless ``stop`` is set first (Stopped). False when the day was attached
        meanwhile, or not waited for."""
        assert self._lock_conn is not None
        while not await _advisory(self._lock_conn, "pg_try_advisory_lock_shared", day):
            if not wait:
                return False
            if day not in self._waited:
                self._waited.add(day)
                log.info("waiting for %s.%s, whose indexes another session is building",
                         SCHEMA, partitions.partition_name(day))
            if stop is None:
                await asyncio.sleep(LOCK_POLL)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), LOCK_POLL)
            if stop.is_set():
                raise Stopped
        if await asyncio.to_thread(_is_attached, self.dsn, day):
            await _advisory(self._lock_conn, "pg_advisory_unlock_shared", day)
            return False
        return True

    async def close(self) -> None:
        await self._abandon()
        with contextlib.suppress(Exception):  # their tables stay, for the next import
            await self._attached(set(self._attaching))
        self._encoder.close()
        conns, self._conns = self._conns, []
        if self._lock_conn is not None:
            conns.append(self._lock_conn)
            self._lock_conn = None
        for conn in conns:
            with contextlib.suppress(psycopg.Error, OSError):
                await conn.close()

    @property
    def conn(self) -> psycopg.AsyncConnection[Any]:
        """The first connection (it holds the files' locks), for queries while no group is
        in flight."""
        assert self._conns and not self._inflight, "connect() first, then drain()"
        return self._conns[0]

    async def open(self, source: Source) -> OpenFile:
        """Start at the position reached before, when this file was imported before."""
        if source.identity is None:
            return resume(source, None, self.settings.max_line)
        return await self.open_as(source, None)

    async def open_as(self, source: Source, known: KnownFile | None) -> OpenFile:
        """Lock the file, then start where ``known`` (or, for None, the file it is
        recognised as) stopped."""
        assert source.identity is not None
        locks = await ledger.lock(self.conn, source.identity, source.location)
        try:
            if known is None:
                known = await ledger.find(self.conn, source.identity, source.location)
            opened = resume(source, known, self.settings.max_line)
        except BaseException:
            await ledger.unlock(self.conn, locks)
            raise
        opened.locks = locks
        return opened

    async def release(self, opened: OpenFile) -> None:
        """Done with this file: make its groups durable, let other imports read it."""
        identity = opened.source.identity
        if identity is None or not self._conns or self._conns[0].broken:
            return
        if opened.state.id is not None:
            # A synchronous commit flushes the WAL of the groups committed before it.
            async with self.conn.transaction():
                await ledger.touch(self.conn, opened.state.id)
        await ledger.unlock(self.conn, opened.locks)
        opened.locks = []

    async def import_all(self, opened: OpenFile) -> None:
        """Read the file to its end, group by group, or until stopped; an unterminated
        last line too, unless the file may still be written (see :func:`is_settled`)."""
        self.progress.start(opened.source.name, opened.source.disk_size)
        final = is_settled(opened.source, datetime.now(UTC))
        try:
            while not self.stop.is_set():
                group = opened.reader.group(self.settings.batch_rows, final=final,
                                            max_bytes=GROUP_BYTES)
                if group is None:
                    break
                try:
                    await self.submit(opened, group)
                except Stopped:  # nothing of this group was written, nor its position
                    break
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
        """Take a connection no group is using, have the group parsed and encoded (while
        the groups before it are written), then start its transaction."""
        options = self._options(opened.source)
        while len(self._inflight) >= len(self._conns):
            await self._settle_oldest()
        busy = {id(item.conn) for item in self._inflight}
        conn = next(c for c in self._conns if id(c) not in busy)
        # Reserved here, in file order: a file's rows get ids in the order of its lines
        # (rows split off a group the database refused take later ones). A group of
        # skipped lines leaves its block unused.
        first_id = await reserve_ids(conn) if group.lines else 0
        encoded = await self._encoder.encode(group.lines, options, first_id)
        # Rows of a day whose table is being attached wait for it: a COPY would wait
        # behind its index builds, bounded by the statement timeout.
        await self._attached(encoded.days)
        # A stop ends a wait for another session's attach, this group not written: the
        # next import reads its lines again. Those of standard input it cannot.
        stoppable = opened.source.identity is not None
        await self._ensure_days(encoded.days, stop=self.stop if stoppable else None)
        await self._attach_passed_days(encoded.days)
        loading = frozenset(encoded.days & self._loading)
        source = opened.source
        source.identity = reread_head(source)
        before = self._inflight[-1] if self._inflight else None
        task = asyncio.ensure_future(self._write(conn, before, opened, opened.submitted,
                                                 group, encoded, loading, options))
        opened.submitted = group.end
        self._inflight.append(InFlight(task, conn, opened, group, encoded.tally, encoded.days))

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

    async def _write(self, conn: psycopg.AsyncConnection[Any], before: InFlight | None,
                     opened: OpenFile, start: int, group: LineGroup, encoded: EncodedGroup,
                     loading: frozenset[date], options: LineOptions) -> int | None:
        """One transaction: the rows, then (once the group before has committed) their
        batch and the file's new position. Returns the file's id in imported_files."""
        source = opened.source
        async with conn.transaction():
            if source.identity is not None:
                await conn.execute(_NO_COMMIT_WAIT)
            ids = await self._copy_data(conn, encoded, loading) if encoded.rows else None
            file_id = await _committed(before, opened)  # raises: this group rolls back
            if ids is not None:
                await register_batch(conn, ids)
            elif encoded.rows:
                # Refused rows: the records again (the same options give the same ones),
                # split, each part registered.
                converted = await asyncio.to_thread(convert, group.lines, options)
                for table, records in _by_table(converted.records, loading):
                    await self._copy(conn, records, table=table)
            if source.identity is None:
                return None
            return await ledger.advance(conn, file_id, start, source.identity, source.location,
                                        group.end, len(group.lines))

    async def _copy_data(self, conn: psycopg.AsyncConnection[Any], encoded: EncodedGroup,
                         loading: frozenset[date]) -> IdBlock | None:
        """COPY the group's rows in a savepoint, those of days being loaded into their
        tables; None when the database refused some of them (then _copy splits them off,
        after the group before has committed)."""
        try:
            async with conn.transaction():
                for day in sorted(loading):
                    data, _ = encoded.data((day,))
                    await copy_data_into(conn, partitions.partition_name(day), data)
                data, rows = encoded.data(encoded.days - loading)
                if rows:
                    await copy_data(conn, data, encoded.first_id, rows)
                return IdBlock(encoded.first_id, encoded.last_id)
        except Exception as e:
            if classify(e) is Failure.TRANSIENT or conn.broken:
                raise
            return None

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

    async def _ensure_days(self, days: Iterable[date], *, again: bool = False,
                           stop: asyncio.Event | None = None) -> None:
        """Partitions for these days, or tables to load (load_new_days; their loading
        locks taken shared, a wait for another session's attach ended by ``stop``);
        ``again`` after rows were refused for want of a partition: attached ones, made
        anew if dropped."""
        missing = set(days) - self._loading if again else set(days) - self._days - self._loading
        to_load: set[date] = set()
        for day in sorted(missing):
            if again or not self._may_load(day):
                continue
            try:
                shared = await self._share_loading(day, wait=True, stop=stop)
            except Stopped:
                await self._settle_shared(to_load)
                raise
            if shared:
                to_load.add(day)
            else:  # attached by another session meanwhile
                missing.discard(day)
                self._days.add(day)
        if to_load:
            loading = await asyncio.to_thread(_make_detached, self.dsn, to_load)
            self._loading |= loading
            self._days |= to_load - loading
            missing -= to_load
        if missing:
            await asyncio.to_thread(_make_partitions, self.dsn, missing)
            self._days |= missing

    async def _settle_shared(self, days: set[date]) -> None:
        """Stopped with these days' loading locks taken shared, their tables not made yet:
        one another import made (and loads) is kept, for finish to attach if this import
        is the last one done with it; the others are let go."""
        assert self._lock_conn is not None
        _, tables = await asyncio.to_thread(_partition_days, self.dsn)
        self._loading |= days & tables
        for day in sorted(days - tables):
            await _advisory(self._lock_conn, "pg_advisory_unlock_shared", day)

    def _may_load(self, day: date) -> bool:
        # Yesterday and today are serve's (maintenance makes them ahead): never held back.
        return self.settings.load_new_days and day < datetime.now(UTC).date() - timedelta(days=1)

    def _expired_days(self, days: Iterable[date]) -> set[date]:
        now = datetime.now(UTC)
        return {day for day in days
                if is_expired(day, now, self.settings.retention_days)}

    async def _copy(self, conn: psycopg.AsyncConnection[Any], records: Sequence[Record], *,
                    table: str | None = None, partitions_made: bool = False) -> None:
        """COPY the records (into syslog.messages, or ``table``, a day's table being
        loaded) in a savepoint; split off rows the database refuses."""
        try:
            async with conn.transaction():
                await copy_records(conn, records, table=table)
        except Exception as e:
            failure = classify(e)
            if failure is Failure.TRANSIENT or failure is Failure.DUPLICATE or conn.broken:
                raise
            if failure is Failure.NO_PARTITION and not partitions_made:
                await self._ensure_days({r.received_at.date() for r in records},
                                        again=True)  # dropped meanwhile
                await self._copy(conn, records, table=table, partitions_made=True)
            elif len(records) == 1:
                await self._copy_unrouted(conn, records, describe(e))
            else:
                middle = len(records) // 2
                await self._copy(conn, records[:middle], table=table,
                                 partitions_made=partitions_made)
                await self._copy(conn, records[middle:], table=table,
                                 partitions_made=partitions_made)

    async def _copy_unrouted(self, conn: psycopg.AsyncConnection[Any], records: Sequence[Record],
                             error: str) -> None:
        async with conn.transaction():
            await copy_unrouted(conn, records, error)
        self.unrouted += len(records)
        log.warning("a line refused by syslog.messages is kept in syslog.unrouted: %s", error)


def _by_table(records: Sequence[Record], loading: frozenset[date]
              ) -> list[tuple[str | None, list[Record]]]:
    """The records by where they go: None for syslog.messages, or the table of a day being
    loaded; in the order of the records within each."""
    tables: dict[str | None, list[Record]] = {}
    for record in records:
        day = record.received_at.date()
        tables.setdefault(partitions.partition_name(day) if day in loading else None,
                          []).append(record)
    return list(tables.items())


def is_settled(source: Source, now: datetime) -> bool:
    """Whether the file is done with: compressed, standard input (it has ended), or not
    modified for SETTLED. Then its last line counts even without a line feed; in a file
    written just now it may be a line half written, and waits for the next import."""
    return source.mtime is None or source.compressed or now - source.mtime >= SETTLED


def resume(source: Source, known: KnownFile | None, max_line: int) -> OpenFile:
    """An open file positioned after what was imported of it before."""
    if known is None:
        state = ledger.FileState(None, 0, 0)
        return OpenFile(source, state, LineReader(source.stream, 0, max_line), Tally(), 0)
    skipped = source.seek(known.position)
    state = ledger.FileState(known.id, known.position, known.lines)
    reader = LineReader(source.stream, state.position, max_line)
    # A gzip copy that ends before the position holds only some of the lines imported.
    whole = skipped.position == known.position or skipped.lines is None
    tally = Tally(already=known.lines if whole else skipped.lines or 0)
    if skipped.cut_short:
        reader.cut_short_at = skipped.position
    return OpenFile(source, state, reader, tally, state.position)


async def _committed(before: InFlight | None, opened: OpenFile) -> int | None:
    """Wait for the group before to commit (its failure is raised); the file's id."""
    if before is None:
        return opened.state.id
    file_id = await before.task
    return file_id if before.opened is opened else opened.state.id


async def _connect(dsn: str) -> psycopg.AsyncConnection[Any]:
    conn = await database.connect_async(dsn, autocommit=True)
    register_adapters(conn)
    return conn


def _partition_days(dsn: str) -> tuple[set[date], set[date]]:
    """Days with a partition, and days of a table not attached (left over)."""
    with database.connect(dsn) as conn:
        attached = {p.day for p in partitions.list_partitions(conn)}
        left_over = {partitions.partition_day(name) for name in partitions.left_over_tables(conn)}
        return attached, {day for day in left_over if day is not None}


def _make_partitions(dsn: str, days: set[date]) -> None:
    with database.connect(dsn, autocommit=True) as conn:
        for day in sorted(days):
            # A table being loaded becomes the partition with its indexes built; else one
            # is made (each creation is logged).
            if not partitions.attach_loaded(conn, day):
                partitions.ensure_days(conn, (day,))


LOCK_POLL = 0.25  # seconds between looks while another session attaches a day


async def _advisory(conn: psycopg.AsyncConnection[Any], function: str, day: date) -> bool:
    """Call an advisory lock function (a name of PostgreSQL's) on day's loading lock."""
    async with conn.cursor() as cur:
        await cur.execute(sql.SQL("SELECT {}(%s::int4, %s::int4)").format(
            sql.Identifier(function)), partitions.loading_lock_key(day))
        return await cur.fetchone() == (True,)


def _is_attached(dsn: str, day: date) -> bool:
    with database.connect(dsn) as conn:
        return day in {p.day for p in partitions.list_partitions(conn)}


def _make_detached(dsn: str, days: set[date]) -> set[date]:
    """Tables to load for these days; returns the days that got one (the others have
    their partition)."""
    with database.connect(dsn, autocommit=True) as conn:
        return {day for day in days if partitions.create_detached(conn, day)}


# Two index builds at a time, each on its own connection (PostgreSQL builds one on one
# core): the full-text index on one, the btrees and BRIN after each other on the other.
INDEX_BUILDERS = 2


def _attach_loaded(dsn: str, day: date) -> None:
    """Build the missing indexes of the day's table side by side, then attach it."""
    with database.connect(dsn, autocommit=True) as conn:
        statements = partitions.missing_index_statements(conn, day)
    queues: list[list[str]] = [statements[:1], statements[1:]]
    with concurrent.futures.ThreadPoolExecutor(INDEX_BUILDERS) as pool:
        for done in [pool.submit(_build_indexes, dsn, queue) for queue in queues if queue]:
            done.result()
    with database.connect(dsn, autocommit=True) as conn:
        partitions.attach_loaded(conn, day)


def _build_indexes(dsn: str, statements: Sequence[str]) -> None:
    with database.connect(dsn, autocommit=True) as conn:
        conn.execute("SET statement_timeout = 0")
        conn.execute(sql.SQL("SET maintenance_work_mem = {}").format(
            sql.Literal(partitions.INDEX_MEMORY)))
        for statement in statements:
            conn.execute(statement.encode())
