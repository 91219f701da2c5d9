"""Following syslog.messages as rows arrive: the logic of ``tail -f`` and ``/api/tail``.

Every batch the writer commits registers itself in syslog.batches in its own transaction
(storage/copy.py): its rows hold the ids first_id..last_id and no other row does (one block
of BLOCK_IDS ids per batch), and its ``seq`` is handed out in commit order, so that while a
batch is visible, every batch with a lower seq is visible too. A follower is a position in
that order: the seq of the last batch it read from and, when a batch is larger than one
read, the ids of it still to read. Each read lists the batches after that seq and reads
their id ranges (with the filters), ordered by seq and then id: READ_ROWS ids, or up to
MAX_READ_IDS while reads find nothing that matches, and READ_ROWS rows at most
(tests/test_tail.py::test_a_selective_resume_reads_more_ids_while_nothing_matches). So
rows come in commit order and each exactly once, and a follower holds a few numbers
whatever the load: no list of ids seen or missing
(tests/test_tail.py::test_batches_committed_out_of_id_order_come_once_in_commit_order;
tests/test_tail_load.py::test_tail_and_sse_show_every_row_of_four_writers_once, which
also watches the memory of ``tail -f``).

Resuming after a row id (``after=``, the SSE Last-Event-ID) finds the batch whose ids hold
it (index batches_first_id) and goes on with the rest of that batch and every later seq
(tests/test_tail.py::test_resuming_after_a_row_goes_on_with_the_rest_of_its_batch).
When no batch holds it (a row inserted by hand, or a batch pruned from syslog.batches), it
goes on from the first batch, in commit order, whose ids lie above it; batches that were
being written when that row was may then be shown again or not at all
(tests/test_tail.py::test_resuming_after_a_row_of_no_batch_starts_above_it).
A follower's ``resume_after`` (the last id read of the last batch read, whether or not its
rows matched the filters) resumes exactly where it is
(tests/test_tail.py::test_resume_after_goes_on_exactly_where_a_follower_is).

Rows inserted by hand (psql INSERT with the default id) belong to no batch. Every
ORPHAN_CHECK seconds a follower looks for them above the ids it looked at before, in the
id blocks no batch registered (a few short ranges of the id index, usually one or two),
in the snapshot of its read, so that no batch's row is ever taken for one; they come after
that read's batches (tests/test_tail.py::test_rows_inserted_by_hand_are_shown_once). One
whose transaction commits after a later batch was looked at is not shown, and a resumed
stream may show again those near its resume point: exactly once is promised for the rows
the receiver writes, and doing better for the others would take a list of ids again.

Follower is pure: its steps are generators that yield the statements to run and take
their results (as psycopg's generators do), so that :class:`Tail` (sync, for the CLI) and
:class:`AsyncTail` (for the HTTP API) only run them. Each read runs in one REPEATABLE READ
transaction, so that the blocks registered and the rows found come from one snapshot;
LISTEN needs the connection idle (autocommit) between reads.
"""

from __future__ import annotations

import time
import typing
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar

import psycopg
from psycopg import IsolationLevel, sql
from psycopg.rows import tuple_row
from sqlalchemy import BigInteger, bindparam, cast, column, func, select
from sqlalchemy.dialects.postgresql import ARRAY

from pgsyslog.storage import queries
from pgsyslog.storage.copy import NEW_ROWS_CHANNEL
from pgsyslog.storage.filters import Filters
from pgsyslog.storage.queries import AnySelect
from pgsyslog.storage.rows import StoredMessage
from pgsyslog.storage.schema import BLOCK_IDS, batches, messages

# Ids per read (a batch's rows are its ids): bounds a read's memory, to READ_ROWS rows of at
# most max_frame_length each (64 MiB at the defaults, for the largest rows).
READ_ROWS = 1_000
# While reads find nothing that matches, each reads twice the ids (and lists twice the
# batches) of the one before, up to this: a selective stream resumed after a long pause
# catches up in a few reads, each still at most READ_ROWS rows (a LIMIT).
MAX_READ_IDS = 64 * READ_ROWS
MAX_BATCHES = 500  # batches listed per read of READ_ROWS ids; more by the next, at once
ORPHAN_CHECK = 5.0  # seconds between looks for rows inserted by hand (no batch)
ORPHAN_BLOCKS = 10_000  # registered blocks looked past per look; the next goes on
MAX_ID = 2**63 - 1

_LISTEN = sql.SQL("LISTEN {}").format(sql.Identifier(NEW_ROWS_CHANNEL))
_id = messages.c.id
_b = batches.c

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Fetch:
    """A statement for the caller to run; ``stored`` rows come back as StoredMessage."""

    statement: AnySelect
    stored: bool = False


Steps: TypeAlias = Generator[Fetch, list[Any], T]


@dataclass(frozen=True, slots=True)
class Span:
    """The ids low..high of the batch ``seq``: all of it or a part."""

    seq: int
    low: int
    high: int

    @property
    def size(self) -> int:
        return self.high - self.low + 1

    def split(self, ids: int) -> tuple[Span, Span | None]:
        """The first ``ids`` ids, and the rest if any."""
        if self.size <= ids:
            return self, None
        cut = self.low + ids
        return Span(self.seq, self.low, cut - 1), Span(self.seq, cut, self.high)


def plan(rest: Span | None, listed: Sequence[Span], budget: int
         ) -> tuple[list[Span], Span | None]:
    """What to read now, in commit order and ``budget`` ids at most: ``rest`` (the part of
    a batch left by the last read), then the ``listed`` batches; and what is left of the
    last batch taken."""
    spans: list[Span] = []
    for span in ([rest] if rest is not None else []) + list(listed):
        if budget <= 0:
            break
        now, left = span.split(budget)
        spans.append(now)
        budget -= now.size
        if left is not None:
            return spans, left
    return spans, None


def unregistered(above: int, blocks: Sequence[tuple[int, int]], complete: bool) -> list[Span]:
    """The id ranges above ``above`` that no registered block covers.

    ``blocks`` are (first_id, last_id) of the batches above, ascending by first_id; each
    covers BLOCK_IDS ids from first_id, and at least its rows. ``complete``: no block lies
    above the last of them, so the range above it is unregistered too (else it is left for
    the next look).
    """
    gaps = []
    low = above + 1
    for first_id, last_id in blocks:
        if first_id > low:
            gaps.append(Span(0, low, first_id - 1))
        low = max(low, first_id + BLOCK_IDS, last_id + 1)
    if complete:
        gaps.append(Span(0, low, MAX_ID))
    return gaps


def looked_up_to(above: int, blocks: Sequence[tuple[int, int]], complete: bool,
                 found: Sequence[StoredMessage], full: bool) -> int:
    """Where the next look for rows of no batch starts. ``found``: the rows shown (ascending
    ids); ``full``: they were cut at READ_ROWS, so the next look goes on after the last."""
    if full:
        return found[-1].id
    if not complete:
        return blocks[-1][1]
    return max([above, *(last_id for _, last_id in blocks), *(m.id for m in found)])


def cut_after(spans: Sequence[Span], rest: Span | None, last_id: int
              ) -> tuple[list[Span], Span | None]:
    """``spans`` read only up to the row ``last_id`` (a read cut by its LIMIT), and what is
    left of that row's batch; the batches after it are listed again by the next read."""
    index = next((i for i, span in enumerate(spans) if span.low <= last_id <= span.high), None)
    if index is None:
        raise ValueError(f"row {last_id} lies in none of the spans read")
    span = spans[index]
    end = rest.high if rest is not None and index == len(spans) - 1 else span.high
    left = Span(span.seq, last_id + 1, end) if last_id < end else None
    return [*spans[:index], Span(span.seq, span.low, last_id)], left


def _ids(name: str, values: Sequence[int]) -> Any:
    return cast(bindparam(name, list(values)), ARRAY(BigInteger))


def rows_statement(filters: Filters, spans: Sequence[Span], limit: int | None = None
                   ) -> AnySelect:
    """The matching rows in ``spans``, by seq and then id: one index range per span."""
    ranges = func.unnest(
        _ids("seqs", [s.seq for s in spans]), _ids("lows", [s.low for s in spans]),
        _ids("highs", [s.high for s in spans]),
    ).table_valued(column("seq", BigInteger), column("low", BigInteger),
                   column("high", BigInteger)).render_derived(name="spans")
    stmt = (select(*(messages.c[name] for name in queries.COLUMNS))
            .select_from(ranges)
            .join(messages, _id.between(ranges.c.low, ranges.c.high))
            .where(*queries.conditions(filters))
            .order_by(ranges.c.seq, _id))
    return stmt if limit is None else stmt.limit(limit)


def batches_after_statement(seq: int, limit: int = MAX_BATCHES) -> AnySelect:
    """The next batches with rows, in commit order."""
    return (select(_b.seq, _b.first_id, _b.last_id)
            .where(_b.seq > seq, _b.last_id >= _b.first_id)
            .order_by(_b.seq).limit(limit))


def blocks_above_statement(above: int) -> AnySelect:
    return (select(_b.first_id, _b.last_id).where(_b.first_id > above)
            .order_by(_b.first_id).limit(ORPHAN_BLOCKS))


def head_statement() -> AnySelect:
    """The newest seq; where to resume from there (the last id of the newest batch with
    rows, or without one the newest row id); the newest row id."""
    newest_seq = select(func.max(_b.seq)).scalar_subquery()
    last_batch = (select(_b.last_id).where(_b.last_id >= _b.first_id)
                  .order_by(_b.seq.desc()).limit(1).scalar_subquery())
    newest_id = select(func.max(_id)).scalar_subquery()
    return select(func.coalesce(newest_seq, 0), func.coalesce(last_batch, newest_id, 0),
                  func.coalesce(newest_id, 0))


def holding_statement(row_id: int) -> AnySelect:
    """The batch whose block may hold ``row_id`` (it does if row_id <= last_id)."""
    return (select(_b.seq, _b.first_id, _b.last_id).where(_b.first_id <= row_id)
            .order_by(_b.first_id.desc()).limit(1))


def start_above_statement(row_id: int) -> AnySelect:
    """The seq after which the batches above ``row_id`` begin (or the newest seq)."""
    first_above = select(func.min(_b.seq) - 1).where(_b.first_id > row_id).scalar_subquery()
    newest_seq = select(func.max(_b.seq)).scalar_subquery()
    return select(func.coalesce(first_above, newest_seq, 0))


class Follower:
    """A position in commit order, and what to read next; the I/O is the caller's."""

    def __init__(self, filters: Filters, seq: int, rest: Span | None = None, *,
                 orphans_above: int, resume_after: int, now: float) -> None:
        self.filters = filters
        self.seq = seq  # every batch up to this seq was read, but for ``rest``
        self.rest = rest  # the ids of batch ``seq`` still to read
        self.resume_after = resume_after  # Tail.resume_after
        self.orphans_above = orphans_above  # rows of no batch are looked for above this id
        self.orphans_looked_at = now  # time.monotonic() of the last look
        self.more_batches = False  # the last read was cut short: read on at once
        self.more_orphans = False  # the last look was cut short: look on with the next read
        self.read_ids = READ_ROWS  # ids the next read takes at most (see MAX_READ_IDS)

    @property
    def more(self) -> bool:
        return self.more_batches or self.more_orphans

    def reading(self, now: float) -> Steps[list[StoredMessage]]:
        """One read: the rows due, in commit order. The position moves at the end only, so
        that a read that fails half way leaves it where it was."""
        budget = self.read_ids
        listing = MAX_BATCHES * budget // READ_ROWS
        listed = [Span(*row) for row in (yield Fetch(batches_after_statement(self.seq, listing)))]
        spans, rest = plan(self.rest, listed, budget)
        rows: list[StoredMessage] = (yield Fetch(rows_statement(
            self.filters, spans, READ_ROWS), stored=True)) if spans else []
        if len(rows) >= READ_ROWS:
            spans, rest = cut_after(spans, rest, rows[-1].id)
        look = self.more_orphans or now - self.orphans_looked_at >= ORPHAN_CHECK
        if look:
            found, orphans_above, more_orphans = yield from self._orphans()
            rows += found
            self.orphans_above, self.more_orphans = orphans_above, more_orphans
            self.orphans_looked_at = now
        self.more_batches = (rest is not None or len(listed) == listing
                             or (bool(listed) and spans[-1].seq != listed[-1].seq))
        if spans:
            self.seq, self.rest, self.resume_after = spans[-1].seq, rest, spans[-1].high
        self.read_ids = READ_ROWS if rows else min(2 * budget, MAX_READ_IDS)
        return rows

    def _orphans(self) -> Steps[tuple[list[StoredMessage], int, bool]]:
        """The matching rows of no batch above orphans_above, where the next look starts,
        and whether it should come at once."""
        above = self.orphans_above
        blocks = [(int(first_id), int(last_id)) for first_id, last_id in
                  (yield Fetch(blocks_above_statement(above)))]
        complete = len(blocks) < ORPHAN_BLOCKS
        found: list[StoredMessage] = yield Fetch(
            rows_statement(self.filters, unregistered(above, blocks, complete), READ_ROWS),
            stored=True)
        full = len(found) >= READ_ROWS
        return found, looked_up_to(above, blocks, complete, found, full), full or not complete

    def due_in(self, now: float) -> float:
        """Seconds until a read is due even without a notification."""
        if self.more:
            return 0.0
        return max(0.0, self.orphans_looked_at + ORPHAN_CHECK - now)


def starting(filters: Filters, backlog: int, now: float
             ) -> Steps[tuple[Follower, list[StoredMessage]]]:
    """The newest ``backlog`` matching rows (oldest first), and a follower placed after
    everything of the same snapshot."""
    rows: list[StoredMessage] = []
    if backlog > 0:
        rows = yield Fetch(queries.search_statement(filters, backlog), stored=True)
    ((seq, last_id, newest_id),) = yield Fetch(head_statement())
    follower = Follower(filters, int(seq), orphans_above=int(newest_id),
                        resume_after=int(last_id), now=now)
    return follower, rows[::-1]


def resuming(filters: Filters, after: int, now: float) -> Steps[Follower]:
    """A follower placed after the row ``after`` (see the module's docstring)."""
    holding = yield Fetch(holding_statement(after))
    if holding and holding[0][2] >= after:
        seq, _, last_id = (int(v) for v in holding[0])
        rest = Span(seq, after + 1, last_id) if after < last_id else None
        return Follower(filters, seq, rest, orphans_above=last_id, resume_after=after,
                        now=now)
    ((seq,),) = yield Fetch(start_above_statement(after))
    return Follower(filters, int(seq), orphans_above=after, resume_after=after, now=now)


def _wait_time(follower: Follower, timeout: float | None) -> float:
    due = follower.due_in(time.monotonic())
    return due if timeout is None else min(timeout, due)


def _prepare(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> None:
    if not conn.autocommit:
        raise ValueError("a follower needs an autocommit connection (LISTEN between reads)")


def _not_started() -> RuntimeError:
    return RuntimeError("call start() before reading")


class Tail:
    """Follow on a sync connection (the CLI). The connection must be autocommit."""

    def __init__(self, conn: psycopg.Connection[Any], filters: Filters) -> None:
        _prepare(conn)
        self.conn = conn
        self.filters = filters
        self.follower: Follower | None = None

    @property
    def resume_after(self) -> int | None:
        """The id to give a new Tail as ``after`` to go on exactly from here: the last id
        read of the last batch read (None before start)."""
        return None if self.follower is None else self.follower.resume_after

    def start(self, backlog: int, after: int | None = None) -> list[StoredMessage]:
        """LISTEN, then the last ``backlog`` matching rows, oldest first; or, with
        ``after`` (a resumed stream), the first rows after that one."""
        conn = self.conn
        conn.isolation_level = IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        conn.execute(_LISTEN)
        if after is not None:
            self.follower = self._run(resuming(self.filters, after, time.monotonic()))
            return self.read()
        self.follower, rows = self._run(starting(self.filters, backlog, time.monotonic()))
        return rows

    def poll(self, timeout: float | None = None) -> list[StoredMessage]:
        """Wait for new rows (at most ``timeout`` seconds) and return them, in order."""
        self.wait(timeout)
        return self.read()

    def wait(self, timeout: float | None = None) -> None:
        """Wait for a notification, for a read to be due, or ``timeout`` seconds.

        No query runs meanwhile: an interruption here leaves the connection usable."""
        if self.follower is None:
            raise _not_started()
        for _ in self.conn.notifies(timeout=_wait_time(self.follower, timeout),
                                    stop_after=1):
            pass
        for _ in self.conn.notifies(timeout=0):  # those that came with it: one read for all
            pass

    def read(self) -> list[StoredMessage]:
        """Read what is new (READ_ROWS ids at most) and return it, in commit order."""
        if self.follower is None:
            raise _not_started()
        return self._run(self.follower.reading(time.monotonic()))

    def _run(self, steps: Steps[T]) -> T:
        with self.conn.transaction():
            try:
                fetch = next(steps)
                while True:
                    fetch = steps.send(self._fetch(fetch))
            except StopIteration as done:
                return typing.cast(T, done.value)

    def _fetch(self, fetch: Fetch) -> list[Any]:
        if fetch.stored:
            return queries.fetch_messages(self.conn, fetch.statement)
        query = queries.compile_query(fetch.statement)
        with self.conn.cursor(row_factory=tuple_row) as cur:
            return cur.execute(query.sql, query.params).fetchall()


class AsyncTail:
    """Follow on an async connection (the HTTP API). The connection must be autocommit."""

    def __init__(self, conn: psycopg.AsyncConnection[Any], filters: Filters) -> None:
        _prepare(conn)
        self.conn = conn
        self.filters = filters
        self.follower: Follower | None = None

    @property
    def resume_after(self) -> int | None:
        """As :attr:`Tail.resume_after`."""
        return None if self.follower is None else self.follower.resume_after

    async def start(self, backlog: int, after: int | None = None) -> list[StoredMessage]:
        """As :meth:`Tail.start`."""
        conn = self.conn
        await conn.set_isolation_level(IsolationLevel.REPEATABLE_READ)
        await conn.set_read_only(True)
        await conn.execute(_LISTEN)
        if after is not None:
            self.follower = await self._run(resuming(self.filters, after, time.monotonic()))
            return await self.read()
        self.follower, rows = await self._run(
            starting(self.filters, backlog, time.monotonic()))
        return rows

    async def poll(self, timeout: float | None = None) -> list[StoredMessage]:
        """As :meth:`Tail.poll`."""
        await self.wait(timeout)
        return await self.read()

    async def wait(self, timeout: float | None = None) -> None:
        """As :meth:`Tail.wait`."""
        if self.follower is None:
            raise _not_started()
        async for _ in self.conn.notifies(timeout=_wait_time(self.follower, timeout),
                                          stop_after=1):
            pass
        async for _ in self.conn.notifies(timeout=0):
            pass

    async def read(self) -> list[StoredMessage]:
        """As :meth:`Tail.read`."""
        if self.follower is None:
            raise _not_started()
        return await self._run(self.follower.reading(time.monotonic()))

    async def _run(self, steps: Steps[T]) -> T:
        async with self.conn.transaction():
            try:
                fetch = next(steps)
                while True:
                    fetch = steps.send(await self._fetch(fetch))
            except StopIteration as done:
                return typing.cast(T, done.value)

    async def _fetch(self, fetch: Fetch) -> list[Any]:
        if fetch.stored:
            return await queries.fetch_messages_async(self.conn, fetch.statement)
        query = queries.compile_query(fetch.statement)
        async with self.conn.cursor(row_factory=tuple_row) as cur:
            await cur.execute(query.sql, query.params)
            return await cur.fetchall()
