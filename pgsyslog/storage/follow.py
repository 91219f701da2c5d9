"""Following syslog.messages as rows arrive: the logic of ``tail -f`` and ``/api/tail``.

The writer sends ``NOTIFY syslog_messages`` in the transaction of each batch; a follower
LISTENs and, on each notification, reads the rows it has not seen yet. "The ids above the
last one shown" would miss rows: with several writer connections, a batch holding lower
ids can commit after a batch holding higher ones. So a follower keeps track of the ids it
has *seen* (read, whether or not they matched its filters): a mark, above which every id
is unseen, and the holes below it, ids not seen yet that may belong to a batch still being
written. Each read asks for the ids above the mark or inside a hole: a few short ranges
of the id index, never a scan of the table, and a row is read once at most, by
construction. A hole is forgotten once it lies more than WINDOW ids below the mark, after
HOLE_TTL, or beyond MAX_HOLES: ids taken by a failed batch or by syslog.unrouted never
come, and a writer's batch commits within seconds.

Rows above a hole younger than HOLD wait for it, so that rows come out in id order unless
a batch commits more than HOLD after a later one; a row never waits longer than HOLD.

SeenIds and Follower are pure (they build statements and take results, no I/O), so that
:class:`Tail` (sync, for the CLI) and :class:`AsyncTail` (for the HTTP API) are thin.
Reads run in REPEATABLE READ transactions, so that the ids seen and the rows returned
come from one snapshot; LISTEN needs the connection idle (autocommit) between them.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import IsolationLevel, sql
from sqlalchemy import ColumnElement, func, or_, select

from pgsyslog.storage import queries
from pgsyslog.storage.copy import NEW_ROWS_CHANNEL
from pgsyslog.storage.filters import Filters
from pgsyslog.storage.queries import AnySelect
from pgsyslog.storage.rows import StoredMessage
from pgsyslog.storage.schema import messages

# Ids below the mark that are still watched: well above writers × batch_rows (2 × 2,000
# by default), the most ids that can be in flight while later ones commit.
WINDOW = 50_000
HOLD = 0.5  # seconds rows wait for a hole below them to fill (keeps id order)
HOLE_TTL = 300.0  # seconds a hole is watched at most; a batch commits well within that
MAX_HOLES = 100  # holes watched at most (each is one range in every read)
READ_ROWS = 5_000  # rows per read (bounds memory); a full read is followed by another at once
IDLE_READ = 10.0  # seconds between reads without a notification (rows added by hand)

_LISTEN = sql.SQL("LISTEN {}").format(sql.Identifier(NEW_ROWS_CHANNEL))
_id = messages.c.id


@dataclass(slots=True)
class Hole:
    low: int
    high: int
    noticed: float  # time.monotonic() when the follower first found it


class SeenIds:
    """The ids a follower has read: everything up to ``mark`` except the ``holes``."""

    def __init__(self, mark: int) -> None:
        self.mark = mark
        self.holes: list[Hole] = []  # ascending, disjoint, all below the mark

    def unseen(self) -> ColumnElement[bool]:
        return or_(_id > self.mark, *(_id.between(h.low, h.high) for h in self.holes))

    def record(self, ids: Sequence[int], upto: int | None, now: float) -> None:
        """Take the result of a read: every unseen id up to ``upto`` (None: all), ascending."""
        holes: list[Hole] = []
        for hole in self.holes:
            examined = hole.high if upto is None else min(hole.high, upto)
            found = ids[bisect.bisect_left(ids, hole.low):bisect.bisect_right(ids, examined)]
            holes.extend(_gaps(hole.low, hole.high, found, hole.noticed))
        above = ids[bisect.bisect_right(ids, self.mark):]
        if above:
            holes.extend(_gaps(self.mark + 1, above[-1], above, now))
            self.mark = above[-1]
        self.holes = self._bounded(holes, now)

    def _bounded(self, holes: list[Hole], now: float) -> list[Hole]:
        floor = self.mark - WINDOW
        kept = [h for h in holes if h.high > floor and now - h.noticed < HOLE_TTL]
        if kept and kept[0].low <= floor:
            kept[0].low = floor + 1
        return kept[-MAX_HOLES:]

    def first_young_hole(self, now: float) -> Hole | None:
        return next((h for h in self.holes if now - h.noticed < HOLD), None)


def _gaps(low: int, high: int, found: Sequence[int], noticed: float) -> list[Hole]:
    """The ranges of low..high that are not in ``found`` (ascending, within the range)."""
    gaps = []
    start = low
    for i in found:
        if i > start:
            gaps.append(Hole(start, i - 1, noticed))
        start = i + 1
    if start <= high:
        gaps.append(Hole(start, high, noticed))
    return gaps


class Follower:
    """What to read next and which rows are due; the I/O is the caller's."""

    def __init__(self, filters: Filters, seen: SeenIds) -> None:
        self.filters = filters
        self.seen = seen
        self.pending: list[StoredMessage] = []  # read, waiting for a hole below them
        self.more = False  # the last read was full: read again without waiting

    @property
    def needs_ids(self) -> bool:
        """With filters, the ids of every new row are read too, to know what was seen."""
        return not self.filters.empty

    def ids_statement(self) -> AnySelect:
        return select(_id).where(self.seen.unseen()).order_by(_id).limit(READ_ROWS)

    def rows_statement(self, ids: Sequence[int] | None) -> AnySelect | None:
        """The matching rows among the unseen, up to the last of ``ids`` if that read was full."""
        stmt = queries.search_statement(self.filters, READ_ROWS, newest_first=False)
        stmt = stmt.where(self.seen.unseen())
        if ids is not None:
            if not ids:
                return None
            if len(ids) >= READ_ROWS:
                stmt = stmt.where(_id <= ids[-1])
        return stmt

    def take(self, rows: Sequence[StoredMessage], ids: Sequence[int] | None, now: float
             ) -> None:
        """Record a read: ``rows`` matched, ``ids`` were seen (None: the ids of ``rows``)."""
        if ids is None:
            ids = [r.id for r in rows]
        self.more = len(ids) >= READ_ROWS
        self.seen.record(ids, ids[-1] if self.more else None, now)
        if rows:
            self.pending.extend(rows)
            self.pending.sort(key=lambda r: r.id)

    def release(self, now: float) -> list[StoredMessage]:
        """The pending rows below every young hole, in id order."""
        hole = self.seen.first_young_hole(now)
        if hole is None:
            due, self.pending = self.pending, []
            return due
        cut = bisect.bisect_left([r.id for r in self.pending], hole.low)
        due, self.pending = self.pending[:cut], self.pending[cut:]
        return due

    def due_in(self, now: float) -> float | None:
        """Seconds until the next read is due whatever happens, or None: at once after a
        full read, else when held rows stop waiting."""
        if self.more:
            return 0.0
        hole = self.seen.first_young_hole(now)
        if not self.pending or hole is None:
            return None
        return max(0.0, hole.noticed + HOLD - now)


def baseline_statement() -> AnySelect:
    """The ids of the last WINDOW: where a new follower starts (holes among them included)."""
    newest = select(func.max(_id)).scalar_subquery()
    return select(_id).where(_id > newest - WINDOW).order_by(_id)


def start_follower(filters: Filters, baseline: Sequence[int], now: float) -> Follower:
    seen = SeenIds(max(0, baseline[-1] - WINDOW) if baseline else 0)
    seen.record(baseline, None, now)
    return Follower(filters, seen)


def _wait_time(follower: Follower, timeout: float | None) -> float:
    waits = [IDLE_READ, *(t for t in (timeout, follower.due_in(time.monotonic()))
                          if t is not None)]
    return min(waits)


def _prepare(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> None:
    if not conn.autocommit:
        raise ValueError("a follower needs an autocommit connection (LISTEN between reads)")
    conn.prepare_threshold = None  # custom plans: the holes change from read to read


def _oldest_first(rows: list[StoredMessage]) -> list[StoredMessage]:
    return rows[::-1]


class Tail:
    """Follow on a sync connection (the CLI). The connection must be autocommit."""

    def __init__(self, conn: psycopg.Connection[Any], filters: Filters) -> None:
        _prepare(conn)
        self.conn = conn
        self.filters = filters
        self.follower = Follower(filters, SeenIds(0))

    def start(self, backlog: int, after: int | None = None) -> list[StoredMessage]:
        """LISTEN, then the last ``backlog`` matching rows, oldest first; or, with
        ``after`` (a resumed stream), the rows with a higher id."""
        conn = self.conn
        conn.isolation_level = IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        conn.execute(_LISTEN)
        if after is not None:
            self.follower = Follower(self.filters, SeenIds(after))
            return self.read()
        with conn.transaction():
            ids = queries.fetch_ids(conn, baseline_statement())
            rows = (queries.fetch_messages(conn, queries.search_statement(self.filters, backlog))
                    if backlog > 0 else [])
        self.follower = start_follower(self.filters, ids, time.monotonic())
        return _oldest_first(rows)

    def poll(self, timeout: float | None = None) -> list[StoredMessage]:
        """Wait for new rows (at most ``timeout`` seconds) and return those due, in order."""
        self.wait(timeout)
        return self.read()

    def wait(self, timeout: float | None = None) -> None:
        """Wait for a notification, for held rows to be due, or ``timeout`` seconds.

        No query runs meanwhile: an interruption here leaves the connection usable."""
        for _ in self.conn.notifies(timeout=_wait_time(self.follower, timeout), stop_after=1):
            pass

    def read(self) -> list[StoredMessage]:
        """Read what is new (up to READ_ROWS) and return the rows that are due, in order."""
        conn, follower = self.conn, self.follower
        ids = None
        with conn.transaction():
            if follower.needs_ids:
                ids = queries.fetch_ids(conn, follower.ids_statement())
            stmt = follower.rows_statement(ids)
            rows = queries.fetch_messages(conn, stmt) if stmt is not None else []
        follower.take(rows, ids, time.monotonic())
        return follower.release(time.monotonic())


class AsyncTail:
    """Follow on an async connection (the HTTP API). The connection must be autocommit."""

    def __init__(self, conn: psycopg.AsyncConnection[Any], filters: Filters) -> None:
        _prepare(conn)
        self.conn = conn
        self.filters = filters
        self.follower = Follower(filters, SeenIds(0))

    async def start(self, backlog: int, after: int | None = None) -> list[StoredMessage]:
        """As :meth:`Tail.start`."""
        conn = self.conn
        await conn.set_isolation_level(IsolationLevel.REPEATABLE_READ)
        await conn.set_read_only(True)
        await conn.execute(_LISTEN)
        if after is not None:
            self.follower = Follower(self.filters, SeenIds(after))
            return await self.read()
        async with conn.transaction():
            ids = await queries.fetch_ids_async(conn, baseline_statement())
            rows = (await queries.fetch_messages_async(
                conn, queries.search_statement(self.filters, backlog)) if backlog > 0 else [])
        self.follower = start_follower(self.filters, ids, time.monotonic())
        return _oldest_first(rows)

    async def poll(self, timeout: float | None = None) -> list[StoredMessage]:
        """As :meth:`Tail.poll`."""
        async for _ in self.conn.notifies(timeout=_wait_time(self.follower, timeout),
                                          stop_after=1):
            pass
        return await self.read()

    async def read(self) -> list[StoredMessage]:
        """As :meth:`Tail.read`."""
        conn, follower = self.conn, self.follower
        ids = None
        async with conn.transaction():
            if follower.needs_ids:
                ids = await queries.fetch_ids_async(conn, follower.ids_statement())
            stmt = follower.rows_statement(ids)
            rows = await queries.fetch_messages_async(conn, stmt) if stmt is not None else []
        follower.take(rows, ids, time.monotonic())
        return follower.release(time.monotonic())
