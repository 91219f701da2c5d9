"""`pgsyslog tail [-f]` and the follower behind it: each new row once, in id order."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner

from helpers import send_tcp
from pgsyslog.cli import cli
from pgsyslog.storage import database
from pgsyslog.storage.filters import Filters
from pgsyslog.storage.follow import (
    HOLD,
    HOLE_TTL,
    MAX_HOLES,
    READ_ROWS,
    WINDOW,
    Follower,
    Hole,
    SeenIds,
    Tail,
)
from pgsyslog.storage.rows import StoredMessage
from stored import insert, record

NOW = datetime.now(UTC)


def row(i: int) -> StoredMessage:
    return StoredMessage(i, NOW, None, 1, 5, "h", "app", None, None, None, f"m{i}", "raw",
                         "tcp", None, None, None)


def rows(*ranges: range) -> list[StoredMessage]:
    return [row(i) for r in ranges for i in r]


def ids(messages: list[StoredMessage]) -> list[int]:
    return [m.id for m in messages]


# ---------------------------------------------------------------- the follower, without I/O

def test_a_batch_that_commits_after_a_later_one_is_waited_for() -> None:
    follower = Follower(Filters(), SeenIds(0))
    follower.take(rows(range(6, 11)), None, now=0.0)  # ids 1-5 are still being written
    assert follower.release(0.1) == []
    assert follower.due_in(0.1) == pytest.approx(HOLD - 0.1)
    follower.take(rows(range(1, 6)), None, now=0.2)  # they commit
    assert ids(follower.release(0.2)) == list(range(1, 11))
    assert (follower.seen.mark, follower.seen.holes) == (10, [])


def test_a_hole_holds_rows_back_no_longer_than_hold() -> None:
    follower = Follower(Filters(), SeenIds(0))
    follower.take(rows(range(6, 11)), None, now=0.0)
    assert ids(follower.release(HOLD)) == list(range(6, 11))
    follower.take(rows(range(1, 3)), None, now=5.0)  # part of the hole, much later
    assert ids(follower.release(5.0)) == [1, 2]  # out of order, but once
    assert follower.seen.holes == [Hole(3, 5, 0.0)]


def test_rows_between_two_holes_wait_only_for_the_lower_one() -> None:
    follower = Follower(Filters(), SeenIds(0))
    follower.take(rows(range(1, 3), range(5, 7), range(9, 10)), None, now=0.0)
    assert ids(follower.release(0.0)) == [1, 2]
    follower.take(rows(range(3, 5)), None, now=0.1)
    assert ids(follower.release(0.1)) == [3, 4, 5, 6]  # 7-8 still missing


def test_seen_ids_stay_bounded() -> None:
    seen = SeenIds(0)
    seen.record([2, 4], None, now=0.0)
    assert seen.holes == [Hole(1, 1, 0.0), Hole(3, 3, 0.0)]
    seen.record([WINDOW + 10], None, now=1.0)  # far ahead: old holes fall out of the window
    assert seen.holes == [Hole(11, WINDOW + 9, 1.0)]
    seen.record([], None, now=1.0 + HOLE_TTL)  # nothing came for a long time
    assert seen.holes == []
    seen.record(list(range(WINDOW + 12, WINDOW + 12 + 2 * (MAX_HOLES + 50), 2)), None, now=0)
    assert len(seen.holes) == MAX_HOLES
    assert seen.holes[-1].high == seen.mark - 1


def test_a_full_read_is_continued_from_its_last_id() -> None:
    follower = Follower(Filters(host="h"), SeenIds(0))
    assert follower.needs_ids  # with filters, the ids of every new row are read too
    all_ids = list(range(1, READ_ROWS + 1))
    follower.take(rows(range(1, 3)), all_ids, now=0.0)
    assert (follower.more, follower.due_in(0.0)) == (True, 0.0)  # read on at once
    assert follower.seen.mark == READ_ROWS
    assert follower.rows_statement([]) is None  # nothing new: no second query


# ------------------------------------------------------- against the database, two writers

INSERT_ONE = ("INSERT INTO syslog.messages (received_at, facility, severity, hostname, message, "
              "format, transport) VALUES (now(), 1, 5, 'h', %s, 'raw', 'tcp')")


def poll_until(tail: Tail, want: int, seconds: float = 5.0) -> list[StoredMessage]:
    got: list[StoredMessage] = []
    deadline = time.monotonic() + seconds
    while len(got) < want and time.monotonic() < deadline:
        got += tail.poll(timeout=0.2)
    return got


def test_rows_committed_out_of_id_order_come_once_and_in_order(dsn: str) -> None:
    insert(dsn, [record(f"old {i}") for i in range(5)])
    with (database.connect(dsn, autocommit=True) as conn,
          database.connect(dsn) as late):
        tail = Tail(conn, Filters())
        assert [m.message for m in tail.start(2)] == ["old 3", "old 4"]
        for i in range(3):  # a batch that takes long: lower ids, not committed yet
            late.execute(INSERT_ONE, (f"late {i}",))
        insert(dsn, [record(f"early {i}") for i in range(3)])  # commits, and NOTIFY
        assert tail.poll(timeout=2) == []  # held back: the lower ids may still come
        late.commit()  # within HOLD: nothing has been shown yet
        got = poll_until(tail, 6)
        assert [m.message for m in got] == [*(f"late {i}" for i in range(3)),
                                            *(f"early {i}" for i in range(3))]
        assert ids(got) == sorted(ids(got))

        late.execute(INSERT_ONE, ("very late",))  # this time longer than HOLD
        insert(dsn, [record("on time")])
        assert [m.message for m in poll_until(tail, 1)] == ["on time"]
        late.execute("NOTIFY syslog_messages")
        late.commit()
        assert [m.message for m in poll_until(tail, 1)] == ["very late"]
        assert tail.poll(timeout=0.5) == []  # nothing twice


def test_a_filtered_follower_reads_each_row_once(dsn: str) -> None:
    with database.connect(dsn, autocommit=True) as conn:
        tail = Tail(conn, Filters(words="wanted", severity=4))
        assert tail.start(10) == []
        insert(dsn, [record("wanted but not severe", severity=6), record("wanted", severity=3),
                     record("unrelated", severity=0)])
        assert [m.message for m in poll_until(tail, 1)] == ["wanted"]
        insert(dsn, [record("wanted again", severity=4)])
        assert [m.message for m in poll_until(tail, 1)] == ["wanted again"]


@pytest.mark.parametrize("filters", [Filters(), Filters(severity=4)])
def test_many_new_rows_come_a_read_at_a_time(dsn: str, filters: Filters) -> None:
    with database.connect(dsn, autocommit=True) as conn:
        tail = Tail(conn, filters)
        tail.start(0)
        total = int(2.5 * READ_ROWS)
        insert(dsn, [record(f"r{i}", severity=3 if i % 3 == 0 else 6) for i in range(total)])
        reads = []
        while (got := tail.poll(timeout=1)) or not reads:
            reads.append(got)
    expected = [f"r{i}" for i in range(total) if filters.empty or i % 3 == 0]
    assert [m.message for read in reads for m in read] == expected
    assert max(len(read) for read in reads) <= READ_ROWS


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
