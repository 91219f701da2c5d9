"""Lines to COPY data, in worker processes of their own.

Parsing and encoding are pure Python, and one process runs Python on one core at a time:
in WORKERS worker processes they run beside the importer, which is left to move bytes
between the file, the workers and PostgreSQL. A group crosses to the workers as its
lines, each taking half, and comes back as bytes of COPY data; the records themselves
stay there. Two workers keep both cores busy while PostgreSQL has little to do (loading
a day's table without indexes, bench/import.py "history"); when it has much, they share
the cores with it.

When the worker cannot be started or dies, the importer encodes in a thread of its own
process instead (slower, same result:
test_import_encode.py::test_a_killed_worker_is_replaced_by_a_thread).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import multiprocessing
import os
import signal
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import date
from typing import Any

from pgsyslog.importer.lines import LineOptions, Tally, convert
from pgsyslog.parent import die_with_parent
from pgsyslog.storage.copy_data import MessageRows, stream

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EncodedGroup:
    """A group of lines as COPY data, and what the importer needs to know of it."""

    # By day of received_at: the rows (their encoded parts, in id order) and their number.
    parts: dict[date, tuple[tuple[bytes, ...], int]]
    first_id: int
    last_id: int  # the rows' ids lie in first_id..last_id (a half's skipped lines leave a gap)
    rows: int
    tally: Tally

    @property
    def days(self) -> frozenset[date]:
        """Of the rows' received_at: their partitions (or tables being loaded) must exist."""
        return frozenset(self.parts)

    def data(self, days: Iterable[date]) -> tuple[bytes, int]:
        """COPY data of the rows of these days, and their number."""
        chosen = [self.parts[day] for day in sorted(days) if day in self.parts]
        return (stream(chunk for chunks, _ in chosen for chunk in chunks),
                sum(count for _, count in chosen))


def joined(first: EncodedGroup, second: EncodedGroup) -> EncodedGroup:
    """One group of two halves, ``second`` the lines after ``first``'s (and its ids
    above them)."""
    parts = dict(first.parts)
    for day, (chunks, count) in second.parts.items():
        had, had_count = parts.get(day, ((), 0))
        parts[day] = (had + chunks, had_count + count)
    tally = Tally()
    tally.add(first.tally)
    tally.add(second.tally)
    last_id = second.last_id if second.rows else first.last_id
    return EncodedGroup(parts, first.first_id, last_id, first.rows + second.rows, tally)


_rows: MessageRows | None = None  # one per process


def encode_group(lines: Sequence[bytes], options: LineOptions, first_id: int) -> EncodedGroup:
    """Parse the lines as ``convert`` does and encode the records for COPY."""
    global _rows
    if _rows is None:
        _rows = MessageRows()
    converted = convert(lines, options)
    records = converted.records
    converted.tally.bytes = sum(map(len, lines))
    by_day = _rows.encode_by_day(records, first_id) if records else {}
    parts: dict[date, tuple[tuple[bytes, ...], int]] = {
        day: ((rows,), count) for day, (rows, count) in by_day.items()}
    return EncodedGroup(parts, first_id, first_id + len(records) - 1, len(records),
                        converted.tally)


# Ctrl-C (or a SIGTERM to the process group) reaches the workers too: the importer stops
# after the groups in flight, and they end with it. They are started with these blocked
# (a new interpreter inherits the mask), or one pressed while a worker still imports
# its modules would show its KeyboardInterrupt traceback; the importer gets its own
# once they are unblocked.
_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def _worker_started(importer_pid: int) -> None:
    for signum in _STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
    die_with_parent(importer_pid)
    from pgsyslog import collector

    collector.settle()


@contextlib.contextmanager
def _stop_signals_blocked() -> Iterator[None]:
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _ready() -> bool:
    return True


def _retrieve(done: asyncio.Future[Any]) -> None:
    if not done.cancelled():
        done.exception()


# A group takes the worker well under a second; one that has not come back by then means
# a worker stopped (SIGSTOP, a frozen cgroup, a debugger) or stuck: the importer goes on
# without it, and a stop asked for meanwhile waits at most this long.
WORKER_WAIT = 30.0
# Worker processes: the machine this is measured on has two cores (bench/import.py).
WORKERS = 2
# A group shorter than this goes to one worker whole (--follow's few lines at a time).
SPLIT_LINES = 1_000
# A worker takes a few tenths of a second to start (a new interpreter importing the
# parsers and psycopg): the first group is encoded in a thread, the workers start with the
# second, and groups go on in the thread until they are up. An import of one group never
# starts them.
THREAD_GROUPS = 1


class Encoder:
    """Runs encode_group in WORKERS worker processes, half a group each, once the import
    has gone past THREAD_GROUPS groups and the workers are up; in a thread before, and
    for good once a worker failed."""

    def __init__(self) -> None:
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._warm: asyncio.Future[list[bool]] | None = None
        self._groups = 0
        self._broken = False

    async def encode(self, lines: Sequence[bytes], options: LineOptions,
                     first_id: int) -> EncodedGroup:
        self._groups += 1
        if self._groups > THREAD_GROUPS and self._pool is None and not self._broken:
            self._start()
        if self._pool is not None and self._warm is not None and self._warm.done():
            try:
                self._warm.result()
                return await asyncio.wait_for(self._in_workers(self._pool, lines, options,
                                                               first_id), WORKER_WAIT)
            except TimeoutError:  # before OSError, of which it is a subclass
                self._fall_back(f"gave no answer in {WORKER_WAIT:g} s (stopped or stuck)")
            except (BrokenProcessPool, OSError) as e:
                self._fall_back(f"stopped ({e.__class__.__name__})")
        return await asyncio.to_thread(encode_group, lines, options, first_id)

    @staticmethod
    async def _in_workers(pool: concurrent.futures.Executor, lines: Sequence[bytes],
                          options: LineOptions, first_id: int) -> EncodedGroup:
        loop = asyncio.get_running_loop()
        if len(lines) < SPLIT_LINES:
            return await loop.run_in_executor(pool, encode_group, list(lines), options,
                                              first_id)
        # Each line is a record at most: the second half's ids start past the first's lines.
        half = len(lines) // 2
        first, second = await asyncio.gather(
            loop.run_in_executor(pool, encode_group, list(lines[:half]), options, first_id),
            loop.run_in_executor(pool, encode_group, list(lines[half:]), options,
                                 first_id + half))
        return joined(first, second)

    @property
    def in_worker(self) -> bool:
        """Whether groups go to the worker process now."""
        return self._pool is not None and self._warm is not None and self._warm.done() \
            and self._warm.exception() is None

    def _start(self) -> None:
        loop = asyncio.get_running_loop()
        calls: list[asyncio.Future[bool]] = []
        try:
            self._pool = pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=WORKERS, mp_context=multiprocessing.get_context("spawn"),
                initializer=_worker_started, initargs=(os.getpid(),))
            # One call each while none is idle: the pool starts every worker now.
            with _stop_signals_blocked():
                for _ in range(WORKERS):
                    calls.append(loop.run_in_executor(pool, _ready))
            self._warm = asyncio.gather(*calls)
        # OSError: no process or pipe (EMFILE, EAGAIN); RuntimeError: no thread for the
        # pool's manager ("can't start new thread").
        except (OSError, RuntimeError) as e:
            for call in calls:  # a worker that did start: close() kills it
                call.add_done_callback(_retrieve)
            self._fall_back(f"could not start ({e})")

    def _fall_back(self, why: str) -> None:
        if not self._broken:
            log.warning("the encoding worker process %s; encoding in the importer itself "
                        "from here on", why)
        self._broken = True
        self.close()

    def close(self) -> None:
        pool, self._pool = self._pool, None
        warm, self._warm = self._warm, None
        if warm is not None:
            # Cancelled or failed, it ends with an exception asyncio would log as never
            # retrieved (test_import.py's lost-database tests would see it on stderr).
            warm.cancel()
            warm.add_done_callback(_retrieve)
        if pool is not None:
            for child in multiprocessing.active_children():  # the worker, stuck or not
                child.kill()
            pool.shutdown(wait=False, cancel_futures=True)
