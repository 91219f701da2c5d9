"""Lines to COPY data, in a worker process of its own.

Parsing and encoding are pure Python, and one process runs Python on one core at a time:
in a worker process they run beside the importer, which is left to move bytes between
the file, the worker and PostgreSQL (PostgreSQL's own work, mostly the full-text index,
takes the other core). A group crosses to the worker as its lines and comes back as one
bytes object of COPY data; the records themselves stay there.

When the worker cannot be started or dies, the importer encodes in a thread of its own
process instead (slower, same result:
test_import_encode.py::test_a_killed_worker_is_replaced_by_a_thread).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import multiprocessing
import os
import signal
from collections.abc import Iterable, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import date

from pgsyslog.importer.lines import LineOptions, Tally, convert
from pgsyslog.parent import die_with_parent
from pgsyslog.storage.copy_data import MessageRows, stream

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EncodedGroup:
    """A group of lines as COPY data, and what the importer needs to know of it."""

    parts: dict[date, tuple[bytes, int]]  # rows (ids from first_id on) and their number,
    first_id: int                          # by day of received_at
    rows: int
    tally: Tally

    @property
    def days(self) -> frozenset[date]:
        """Of the rows' received_at: their partitions (or tables being loaded) must exist."""
        return frozenset(self.parts)

    def data(self, days: Iterable[date]) -> tuple[bytes, int]:
        """COPY data of the rows of these days, and their number."""
        chosen = [self.parts[day] for day in sorted(days) if day in self.parts]
        return stream(rows for rows, _ in chosen), sum(count for _, count in chosen)


_rows: MessageRows | None = None  # one per process


def encode_group(lines: Sequence[bytes], options: LineOptions, first_id: int) -> EncodedGroup:
    """Parse the lines as ``convert`` does and encode the records for COPY."""
    global _rows
    if _rows is None:
        _rows = MessageRows()
    converted = convert(lines, options)
    records = converted.records
    converted.tally.bytes = sum(map(len, lines))
    parts = _rows.encode_by_day(records, first_id) if records else {}
    return EncodedGroup(parts, first_id, len(records), converted.tally)


def _worker_started(importer_pid: int) -> None:
    # Ctrl-C (or a SIGTERM to the process group) reaches the worker too: the importer
    # stops after the groups in flight, and this worker ends with it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    die_with_parent(importer_pid)
    from pgsyslog import collector

    collector.settle()


def _ready() -> bool:
    return True


# A group takes the worker well under a second; one that has not come back by then means
# a worker stopped (SIGSTOP, a frozen cgroup, a debugger) or stuck: the importer goes on
# without it, and a stop asked for meanwhile waits at most this long.
WORKER_WAIT = 30.0
# A worker takes about a second to start (a new interpreter importing the parsers): the
# first groups are encoded in a thread meanwhile, and a small import never waits for it.
THREAD_GROUPS = 4


class Encoder:
    """Runs encode_group in one worker process once the import has gone past
    THREAD_GROUPS groups and the worker is up; in a thread before, and for good once the
    worker failed."""

    def __init__(self) -> None:
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._warm: asyncio.Future[bool] | None = None
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
                return await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(
                    self._pool, encode_group, list(lines), options, first_id), WORKER_WAIT)
            except (BrokenProcessPool, OSError) as e:
                self._fall_back(f"stopped ({e.__class__.__name__})")
            except TimeoutError:
                self._fall_back(f"gave no answer in {WORKER_WAIT:g} s (stopped or stuck)")
        return await asyncio.to_thread(encode_group, lines, options, first_id)

    @property
    def in_worker(self) -> bool:
        """Whether groups go to the worker process now."""
        return self._pool is not None and self._warm is not None and self._warm.done() \
            and self._warm.exception() is None

    def _start(self) -> None:
        try:
            self._pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                initializer=_worker_started, initargs=(os.getpid(),))
            self._warm = asyncio.get_running_loop().run_in_executor(self._pool, _ready)
        except OSError as e:
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
        if warm is not None and not warm.done():
            warm.cancel()
        elif warm is not None and not warm.cancelled():
            warm.exception()  # seen: asyncio would log it as never retrieved
        if pool is not None:
            for child in multiprocessing.active_children():  # the worker, stuck or not
                child.kill()
            pool.shutdown(wait=False, cancel_futures=True)
