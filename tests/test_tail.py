"""`pgsyslog tail [-f]` and the follower behind it: each new row once, in commit order."""

from __future__ import annotations

import asyncio
import json
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from helpers import query, send_tcp
from pgsyslog.cli import cli
from pgsyslog.record import Record
from pgsyslog.storage import database, follow
from pgsyslog.storage.copy import copy_records, register_adapters
from pgsyslog.storage.filters import Filters
from pgsyslog.storage.follow import (
    MAX_BATCHES,
    MAX_ID,
    MAX_READ_IDS,
    ORPHAN_CHECK,
    READ_ROWS,
    AsyncTail,
    Follower,
    Span,
    Tail,
    cut_after,
    looked_up_to,
    plan,
    unregistered,
)
from pgsyslog.storage.partitions import partition_name
from pgsyslog.storage.queries import compile_query
from pgsyslog.storage.rows import StoredMessage
from pgsyslog.storage.schema import BLOCK_IDS
from stored import insert, record

NOW = datetime.now(UTC)


def row(i: int) -> StoredMessage:
    return StoredMessage(i, NOW, None, 1, 5, "h", "app", None, None, None, f"m{i}", "raw",
                         "tcp", None, None, None, None)


def messages_of(rows: Sequence[StoredMessage]) -> list[str]:
    return [m.message for m in rows]


# ---------------------------------------------------------------- the follower, without I/O

def test_a_read_takes_batches_in_commit_order_and_read_rows_ids_at_most() -> None:
    listed = [Span(1, 700, 709), Span(2, 100, 104), Span(3, 400, 409)]
    spans, rest = plan(None, listed, budget=17)
    assert spans == [Span(1, 700, 709), Span(2, 100, 104), Span(3, 400, 401)]
    assert rest == Span(3, 402, 409)
    spans, rest = plan(rest, [Span(4, 300, 300)], budget=17)  # the rest comes first
    assert (spans, rest) == ([Span(3, 402, 409), Span(4, 300, 300)], None)
    big = Span(5, BLOCK_IDS, BLOCK_IDS + 12_000)
    assert plan(None, [big], READ_ROWS)[0] == [Span(5, BLOCK_IDS, BLOCK_IDS + READ_ROWS - 1)]


def test_the_blocks_no_batch_registered_are_looked_in() -> None:
    b = BLOCK_IDS
    blocks = [(b + 1, b + 10), (2 * b + 1, 2 * b + 3), (4 * b + 1, 4 * b + 1)]  # 3b+1 missing
    assert unregistered(10, blocks, complete=True) == [
        Span(0, 11, b), Span(0, 3 * b + 1, 4 * b), Span(0, 5 * b + 1, MAX_ID)]
    # With more blocks than one look takes, the look ends at the last one it has.
    assert unregistered(10, blocks, complete=False) == [Span(0, 11, b), Span(0, 3 * b + 1, 4 * b)]
    assert looked_up_to(10, blocks, False, [], full=False) == 4 * b + 1
    assert looked_up_to(10, blocks, True, [row(9 * b + 1)], full=False) == 9 * b + 1
    assert looked_up_to(10, blocks, True, [row(3 * b + 1)], full=True) == 3 * b + 1
    assert unregistered(10, [], complete=True) == [Span(0, 11, MAX_ID)]


def answer(steps: Any, *results: list[Any]) -> tuple[list[Any], Any]:
    """Run a follower's steps on canned results: the statements it asked for, its value."""
    asked = [next(steps)]
    try:
        for result in results:
            asked.append(steps.send(result))
    except StopIteration as done:
        return asked, done.value
    raise AssertionError(f"the steps want more than {len(results)} results: {asked[-1]}")


def test_a_follower_moves_on_only_when_its_read_is_done() -> None:
    follower = Follower(Filters(), 10, orphans_above=0, resume_after=0, now=0.0)
    steps = follower.reading(now=1.0)
    next(steps)
    steps.send([(11, 700, 709), (12, 100, 104)])
    steps.close()  # the database failed before the rows came
    assert (follower.seq, follower.rest, follower.resume_after) == (10, None, 0)

    asked, rows = answer(follower.reading(now=1.0), [(11, 700, 709), (12, 100, 104)],
                         [row(700), row(100)])
    params = compile_query(asked[1].statement).params
    assert (params["seqs"], params["lows"], params["highs"]) == ([11, 12], [700, 100], [709, 104])
    assert [m.id for m in rows] == [700, 100]
    assert (follower.seq, follower.resume_after, follower.more) == (12, 104, False)

    listed = [(13 + i, 1000 + 10 * i, 1000 + 10 * i) for i in range(MAX_BATCHES)]
    answer(follower.reading(now=1.0), listed, [])
    assert (follower.seq, follower.more, follower.due_in(1.0)) == (12 + MAX_BATCHES, True, 0)


def test_a_read_cut_by_its_limit_goes_on_after_its_last_row() -> None:
    spans = [Span(1, 10, 19), Span(2, 100, 109), Span(3, 200, 204)]
    rest = Span(3, 205, 300)
    assert cut_after(spans, rest, 105) == ([Span(1, 10, 19), Span(2, 100, 105)],
                                           Span(2, 106, 109))
    assert cut_after(spans, rest, 202) == ([*spans[:2], Span(3, 200, 202)], Span(3, 203, 300))
    assert cut_after(spans, rest, 204) == (spans, rest)
    assert cut_after(spans, None, 204) == (spans, None)
    assert cut_after(spans, None, 19) == ([Span(1, 10, 19)], None)
    with pytest.raises(ValueError):
        cut_after(spans, None, 50)


def test_reads_that_find_nothing_take_twice_the_ids_up_to_a_bound() -> None:
    follower = Follower(Filters(words="rare"), 1, Span(1, 1, 10**7), orphans_above=10**7,
                        resume_after=0, now=0.0)
    highs, listings = [], []
    for _ in range(9):
        asked, _ = answer(follower.reading(now=1.0), [], [])
        listings.append(compile_query(asked[0].statement).params["param_1"])
        highs.append(compile_query(asked[1].statement).params["highs"][0])
    sizes = [high - low for high, low in zip(highs, [0, *highs], strict=False)]
    assert sizes == [READ_ROWS * 2**k for k in range(7)] + [MAX_READ_IDS] * 2
    assert listings == [size // READ_ROWS * MAX_BATCHES for size in sizes]  # batches too
    answer(follower.reading(now=1.0), [], [row(highs[-1] + 1)])  # a match: small reads again
    asked, _ = answer(follower.reading(now=1.0), [], [])
    assert compile_query(asked[1].statement).params["highs"][0] == (
        highs[-1] + MAX_READ_IDS + READ_ROWS)


def test_rows_of_no_batch_are_looked_for_every_orphan_check_seconds() -> None:
    follower = Follower(Filters(), 0, orphans_above=5, resume_after=0, now=0.0)
    assert follower.due_in(1.0) == pytest.approx(ORPHAN_CHECK - 1.0)
    asked, _ = answer(follower.reading(now=1.0), [])  # not due: the batches only
    assert len(asked) == 1
    asked, rows = answer(follower.reading(now=ORPHAN_CHECK), [], [], [row(7)])
    params = compile_query(asked[2].statement).params
    assert (params["lows"], params["highs"]) == ([6], [MAX_ID])
    assert [m.id for m in rows] == [7]
    assert (follower.orphans_above, follower.orphans_looked_at) == (7, ORPHAN_CHECK)


# ------------------------------------------------------- against the database, real batches

def poll_until(tail: Tail, want: int, seconds: float = 10.0) -> list[StoredMessage]:
    got: list[StoredMessage] = []
    deadline = time.monotonic() + seconds
    while len(got) < want and time.monotonic() < deadline:
        got += tail.poll(timeout=0.2)
    return got


async def poll_until_async(tail: AsyncTail, want: int, seconds: float = 10.0
                           ) -> list[StoredMessage]:
    got: list[StoredMessage] = []
    deadline = time.monotonic() + seconds
    while len(got) < want and time.monotonic() < deadline:
        got += await tail.poll(timeout=0.2)
    return got


async def connect(dsn: str) -> psycopg.AsyncConnection[Any]:
    conn = await database.connect_async(dsn, autocommit=True)
    register_adapters(conn)
    return conn


async def write_batch(conn: psycopg.AsyncConnection[Any], records: Sequence[Record]) -> None:
    """One batch through the writer's path: COPY and registration in one transaction."""
    async with conn.transaction():
        await copy_records(conn, records)


async def wait_for_lock(conn: psycopg.AsyncConnection[Any], pid: int) -> None:
    for _ in range(200):
        cur = await conn.execute("SELECT count(*) FROM pg_locks WHERE pid = %s AND NOT granted",
                                 (pid,))
        found = await cur.fetchone()
        if found is not None and found[0]:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"backend {pid} never waited for a lock")


def test_batches_committed_out_of_id_order_come_once_in_commit_order(dsn: str) -> None:
    asyncio.run(out_of_id_order(dsn))


async def out_of_id_order(dsn: str) -> None:
    tomorrow = NOW + timedelta(days=1)
    conns = [await connect(dsn) for _ in range(4)]
    follower_conn, early, late, locker = conns
    try:
        tail = AsyncTail(follower_conn, Filters())
        assert await tail.start(0) == []
        # The late batch takes its ids first, then waits for tomorrow's partition: the early
        # batch, with higher ids, commits meanwhile.
        await locker.execute("BEGIN")
        await locker.execute(f"LOCK TABLE syslog.{partition_name(tomorrow.date())} IN SHARE MODE")
        late_batch = asyncio.create_task(
            write_batch(late, [record(f"late {i}", when=tomorrow) for i in range(3)]))
        await wait_for_lock(locker, late.info.backend_pid)
        await write_batch(early, [record(f"early {i}") for i in range(3)])
        first = await poll_until_async(tail, 3)
        assert messages_of(first) == ["early 0", "early 1", "early 2"]  # at once, not held
        await locker.execute("COMMIT")
        await late_batch
        second = await poll_until_async(tail, 3)
        assert messages_of(second) == ["late 0", "late 1", "late 2"]
        assert max(m.id for m in second) < min(m.id for m in first)  # lower ids, later
        assert await tail.poll(timeout=0.5) == []  # nothing twice

        # A stream that resumes after the last early row still gets the late batch.
        again = AsyncTail(early, Filters())
        assert messages_of(await again.start(0, after=first[-1].id)) == messages_of(second)
    finally:
        for conn in conns:
            await conn.close()


def test_resuming_after_a_row_goes_on_with_the_rest_of_its_batch(dsn: str) -> None:
    insert(dsn, [record(f"a{i}") for i in range(5)])
    insert(dsn, [record(f"b{i}") for i in range(2)])
    ids = [i for (i,) in query(dsn, "SELECT id FROM syslog.messages ORDER BY id")]
    with database.connect(dsn, autocommit=True) as conn:
        tail = Tail(conn, Filters())
        assert messages_of(tail.start(0, after=ids[2])) == ["a3", "a4", "b0", "b1"]
        assert tail.resume_after == ids[-1]
        assert tail.poll(timeout=0.3) == []
    with database.connect(dsn, autocommit=True) as conn:
        assert messages_of(Tail(conn, Filters()).start(5, after=ids[-1])) == []


def test_resume_after_goes_on_exactly_where_a_follower_is(dsn: str) -> None:
    wanted = Filters(words="wanted")
    with database.connect(dsn, autocommit=True) as conn:
        tail = Tail(conn, wanted)
        tail.start(0)
        insert(dsn, [record("unrelated")])
        assert poll_until(tail, 1, seconds=1) == []  # read, nothing matched
        resume_after = tail.resume_after
    insert(dsn, [record("wanted 1"), record("unrelated")])
    insert(dsn, [record("wanted 2")])
    with database.connect(dsn, autocommit=True) as conn:
        tail = Tail(conn, wanted)
        got = tail.start(0, after=resume_after)
        got += poll_until(tail, 2 - len(got), seconds=2)
        assert messages_of(got) == ["wanted 1", "wanted 2"]


def test_a_filtered_follower_reads_each_row_once(dsn: str) -> None:
    with database.connect(dsn, autocommit=True) as conn:
        tail = Tail(conn, Filters(words="wanted", severity=4))
        assert tail.start(10) == []
        insert(dsn, [record("wanted but not severe", severity=6), record("wanted", severity=3),
                     record("unrelated", severity=0)])
        assert messages_of(poll_until(tail, 1)) == ["wanted"]
        insert(dsn, [record("wanted again", severity=4)])
        assert messages_of(poll_until(tail, 1)) == ["wanted again"]


async def write_batches(dsn: str, batches: Sequence[Sequence[Record]]) -> None:
    conn = await connect(dsn)
    try:
        for batch in batches:
            await write_batch(conn, batch)
    finally:
        await conn.close()


def read_all(tail: Tail) -> list[list[StoredMessage]]:
    reads: list[list[StoredMessage]] = []
    while (got := tail.poll(timeout=1)) or not reads:
        reads.append(got)
    return reads


@pytest.mark.parametrize("filters", [Filters(), Filters(severity=4)])
def test_a_batch_larger_than_a_read_comes_a_read_at_a_time(dsn: str, filters: Filters
                                                            ) -> None:
    with database.connect(dsn, autocommit=True) as conn:
        tail = Tail(conn, filters)
        tail.start(0)
        total = int(2.5 * READ_ROWS)
        insert(dsn, [record(f"r{i}", severity=3 if i % 3 == 0 else 6) for i in range(total)])
        reads = read_all(tail)
    expected = [f"r{i}" for i in range(total) if filters.empty or i % 3 == 0]
    assert [m.message for read in reads for m in read] == expected
    assert max(len(read) for read in reads) <= READ_ROWS


def test_more_batches_than_a_read_lists_come_in_order(dsn: str) -> None:
    count = MAX_BATCHES + 100
    with database.connect(dsn, autocommit=True) as conn:
        tail = Tail(conn, Filters())
        tail.start(0)
        asyncio.run(write_batches(dsn, [[record(f"batch {i}")] for i in range(count)]))
        reads = read_all(tail)
    assert [m.message for read in reads for m in read] == [f"batch {i}" for i in range(count)]
    assert len([read for read in reads if read]) >= 2


def test_a_selective_resume_reads_more_ids_while_nothing_matches(dsn: str) -> None:
    """Resumed before 40 batches of 1,000 rows that do not match, a stream reaches the rows
    after them in a few reads (READ_ROWS ids each would take 40), each read still holding
    READ_ROWS rows at most and every row once."""
    others = [[record(f"other {b}.{i}") for i in range(READ_ROWS)] for b in range(40)]
    wanted = [record(f"wanted {i}") for i in range(int(2.5 * READ_ROWS))]
    asyncio.run(write_batches(dsn, [[record("start")], *others, wanted]))
    (start,), = query(dsn, "SELECT id FROM syslog.messages WHERE message = 'start'")
    with database.connect(dsn, autocommit=True) as conn:
        tail = Tail(conn, Filters(words="wanted"))
        reads = [tail.start(0, after=start)]
        while sum(len(read) for read in reads) < len(wanted) and len(reads) < 60:
            reads.append(tail.read())
    assert [m.message for read in reads for m in read] == [r.message for r in wanted]
    assert max(len(read) for read in reads) <= READ_ROWS
    assert len(reads) <= 10, [len(read) for read in reads]


# ------------------------------------------------------------------------ rows put by hand

INSERT_BY_HAND = ("INSERT INTO syslog.messages (received_at, facility, severity, hostname, "
                  "message, format, transport) VALUES (now(), 1, %s, 'h', %s, 'raw', 'tcp') "
                  "RETURNING id")


def insert_by_hand(dsn: str, message: str, severity: int = 5) -> int:
    with database.connect(dsn) as conn:
        found = conn.execute(INSERT_BY_HAND, (severity, message)).fetchone()
        assert found is not None
        return int(found[0])


def test_rows_inserted_by_hand_are_shown_once(dsn: str, monkeypatch: pytest.MonkeyPatch
                                             ) -> None:
    monkeypatch.setattr(follow, "ORPHAN_CHECK", 0.3)
    with database.connect(dsn, autocommit=True) as conn:
        tail = Tail(conn, Filters(severity=5))
        tail.start(0)
        insert(dsn, [record("batch 1", severity=3)])
        insert_by_hand(dsn, "by hand, between batches")
        insert_by_hand(dsn, "by hand, not severe", severity=7)
        insert(dsn, [record("batch 2", severity=3)])
        insert_by_hand(dsn, "by hand, above every batch")
        got = poll_until(tail, 4)
        got += tail.poll(timeout=1.0)  # two more looks: anything now would be twice
    assert sorted(messages_of(got)) == ["batch 1", "batch 2", "by hand, above every batch",
                                        "by hand, between batches"]
    assert messages_of(got)[:2] == ["batch 1", "batch 2"]  # batches in commit order


def test_resuming_after_a_row_of_no_batch_starts_above_it(dsn: str) -> None:
    insert(dsn, [record("below")])
    by_hand = insert_by_hand(dsn, "by hand")
    insert(dsn, [record("above")])
    with database.connect(dsn, autocommit=True) as conn:
        tail = Tail(conn, Filters())
        assert messages_of(tail.start(0, after=by_hand)) == ["above"]
        assert tail.poll(timeout=0.3) == []


# ------------------------------------------------------------------------------ the command

def test_tail_shows_the_newest_rows_oldest_first(dsn: str) -> None:
    insert(dsn, [record(f"line {i}", when=NOW - timedelta(seconds=10 - i)) for i in range(10)])
    result = CliRunner().invoke(cli, ["tail", "--dsn", dsn, "-n", "3"])
    assert result.exit_code == 0, result.output
    assert [line.split()[-1] for line in result.output.splitlines()[1:]] == ["7", "8", "9"]
    result = CliRunner().invoke(cli, ["tail", "--dsn", dsn, "-n", "2", "-o", "raw", "line"])
    assert [line.split()[-1] for line in result.output.splitlines()] == ["8", "9"]


class Lines:
    """The stdout lines of a process, read by a thread, waited for with a timeout."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.queue: queue.Queue[str | None] = queue.Queue()
        self.thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.thread.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.queue.put(line)
        self.queue.put(None)

    def take(self, n: int, timeout: float) -> list[str]:
        got: list[str] = []
        deadline = time.monotonic() + timeout
        while len(got) < n:
            line = self.queue.get(timeout=max(0.01, deadline - time.monotonic()))
            if line is None:
                break
            got.append(line)
        return got

    def rest(self) -> Iterator[str]:
        self.thread.join(10)
        while (line := self.queue.get_nowait()) is not None:
            yield line


def test_tail_follow_shows_every_new_row_once_and_ends_on_ctrl_c(serve: Any, dsn: str
                                                                 ) -> None:
    # Two writers and small batches: many batches in flight, some committing out of order.
    server = serve("--tcp", "127.0.0.1:0", "--writers", "2", "--batch-rows", "5",
                   "--batch-age-ms", "10")
    insert(dsn, [record(f"before {i}") for i in range(3)])
    proc = subprocess.Popen([sys.executable, "-m", "pgsyslog", "tail", "--dsn", dsn, "-n", "2",
                             "-f", "-o", "json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = Lines(proc)
    try:
        first = [json.loads(line)["message"] for line in lines.take(2, timeout=30)]
        assert first == ["before 1", "before 2"]  # the stream is open from here on

        def sender(n: int) -> None:
            payload = b"".join(f"<14>1 - h app - - - c{n} m{i}\n".encode() for i in range(50))
            send_tcp(server.port("tcp"), payload)

        threads = [threading.Thread(target=sender, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        got = [json.loads(line) for line in lines.take(200, timeout=20)]
        proc.send_signal(signal.SIGINT)
        status = proc.wait(10)
        got += [json.loads(line) for line in lines.rest()]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        lines.thread.join(10)
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        errors = proc.stderr.read()
        proc.stderr.close()
    assert status == 0, errors
    assert "Traceback" not in errors, errors
    messages = [r["message"] for r in got]
    assert sorted(messages) == sorted(f"c{n} m{i}" for n in range(4) for i in range(50))
    assert len({r["id"] for r in got}) == 200
    in_commit_order = query(dsn, "SELECT m.id FROM syslog.messages m JOIN syslog.batches b "
                                 "ON m.id BETWEEN b.first_id AND b.last_id "
                                 "WHERE m.message NOT LIKE 'before%' ORDER BY b.seq, m.id")
    assert [r["id"] for r in got] == [i for (i,) in in_commit_order]
