"""The one bounded queue between the listeners and the writer.

Full-queue policy: TCP and TLS listeners check :meth:`RecordQueue.full` and pause reading
until :meth:`RecordQueue.call_when_room` calls them back (real back-pressure); UDP
cannot push back, so it uses :meth:`offer`, which drops and reports False.

The bound: the queue holds at most ``maxsize`` records and ``max_bytes`` bytes (by
:func:`record_size`), plus what one read of a connection (``tcp.READ_SIZE`` bytes) and
one datagram turn into; while it is full, a connection reads one byte at a time (see
tcp.py). tests/test_backpressure.py floods it from 1,000 connections and with 65 KB
datagrams of structured data while the writer is stalled.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections import deque
from collections.abc import Callable, Iterable
from typing import Protocol

from pgsyslog.record import Record, StructuredData

# What a queued record costs in memory besides its text: the Record object, its header
# strings (the parsers cut them to RFC 5424's 463 characters in all) and datetimes;
# tracemalloc measures about 450 bytes for a typical one, the rest is allocator slack.
RECORD_OVERHEAD = 1000
# Structured data is dicts of strings: each SD element costs a dict and its SD-ID, each
# param a name, a value and a dict slot, each further value of a repeated param a string
# and a list slot. Measured with tracemalloc (tests/test_backpressure.py checks it).
SD_ELEMENT_COST = 240
SD_PARAM_COST = 120
SD_VALUE_COST = 60


def record_size(record: Record) -> int:
    """Bytes of memory a queued record holds: an estimate that is never far below it."""
    # getsizeof, not len: a text with one character outside Latin-1 takes 2 or 4 bytes a
    # character (PEP 393), and a flood of such messages would pass a bound counted in
    # characters four times over.
    size = RECORD_OVERHEAD + sys.getsizeof(record.message)
    raw = record.raw
    if raw is not None:
        size += len(raw)
    sd = record.structured_data
    if sd is not None:
        size += structured_data_size(sd)
    return size


def structured_data_size(sd: StructuredData) -> int:
    """Bytes the parsed structured data holds (the parsers bound it to 1,024 params)."""
    size = 0
    for sd_id, params in sd.items():
        size += SD_ELEMENT_COST + len(sd_id)
        for name, value in params.items():
            size += SD_PARAM_COST + len(name)
            if isinstance(value, str):
                size += len(value)
            else:
                size += sum(SD_VALUE_COST + len(v) for v in value)
    return size


class Receipt(Protocol):
    """Told once when the record it waits for is stored (or spooled): a RELP reply."""

    def stored(self) -> None: ...


class Receipts:
    """Records whose sender waits to hear that they are stored (RELP), by record identity.

    The writers settle every batch after it is committed or spooled
    (tests/test_relp_acks.py); while nobody waits (TCP, TLS, UDP only) that costs one test
    of an empty dict per batch. An entry holds its record,
    so the identity it is filed under cannot be reused while it waits.
    """

    def __init__(self) -> None:
        self._waiting: dict[int, tuple[Record, Receipt]] = {}

    def __len__(self) -> int:
        return len(self._waiting)

    def expect(self, record: Record, receipt: Receipt) -> None:
        self._waiting[id(record)] = (record, receipt)

    def settle(self, records: Iterable[Record]) -> None:
        """These records are stored or spooled: tell whoever waits for them."""
        if not self._waiting:
            return
        pop = self._waiting.pop
        for record in records:
            entry = pop(id(record), None)
            if entry is not None:
                entry[1].stored()


class RecordQueue:
    """Bounded by a number of records and by their approximate size in bytes."""

    def __init__(self, maxsize: int, batch_rows: int, max_bytes: int = 1 << 62) -> None:
        self.maxsize = maxsize
        self.max_bytes = max_bytes
        self.batch_rows = batch_rows
        self.bytes = 0
        # Paused readers resume once the queue is back under half of both bounds, so that
        # they do not flap between paused and reading on every batch.
        self.resume_mark = maxsize // 2
        self._items: deque[Record] = deque()
        self._not_empty = asyncio.Event()
        self._batch_ready = asyncio.Event()
        self._room_callbacks: list[Callable[[], None]] = []
        self._closed = False
        self.receipts = Receipts()  # what RELP senders wait for, settled by the writers

    def __len__(self) -> int:
        return len(self._items)

    def full(self) -> bool:
        return len(self._items) >= self.maxsize or self.bytes >= self.max_bytes

    def _has_room_again(self) -> bool:
        return len(self._items) <= self.resume_mark and self.bytes <= self.max_bytes // 2

    def put(self, record: Record) -> None:
        """Add a record even past the bounds (a reader's last chunk); readers check full()."""
        items = self._items
        items.append(record)
        self.bytes += record_size(record)
        n = len(items)
        if n == 1:
            self._not_empty.set()
        if n >= self.batch_rows:
            self._batch_ready.set()

    def offer(self, record: Record) -> bool:
        if self.full():
            return False
        self.put(record)
        return True

    def hurry(self) -> None:
        """Let a writer take what is queued now, without waiting for a full batch: a RELP
        sender's window of unacknowledged messages is full, or it has no more to send."""
        if self._items:
            self._batch_ready.set()

    def call_when_room(self, callback: Callable[[], None]) -> None:
        self._room_callbacks.append(callback)

    def close(self) -> None:
        """No more waiting for records: get_batch returns at once, empty when nothing is left."""
        self._closed = True
        self._not_empty.set()
        self._batch_ready.set()

    def take_all(self) -> list[Record]:
        items, self._items = list(self._items), deque()
        self.bytes = 0
        return items

    async def get_batch(self, max_age: float) -> list[Record]:
        """Wait for a first record, then up to max_age for a full batch; return what is there."""
        await self._not_empty.wait()
        if len(self._items) < self.batch_rows and not self._closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._batch_ready.wait(), max_age)
        return self.take_batch()

    def take_batch(self) -> list[Record]:
        items = self._items
        n = min(len(items), self.batch_rows)
        batch = [items.popleft() for _ in range(n)]
        self.bytes -= sum(record_size(r) for r in batch)
        if len(items) < self.batch_rows and not self._closed:
            self._batch_ready.clear()
        if not items and not self._closed:
            self._not_empty.clear()
        if self._room_callbacks and self._has_room_again():
            callbacks, self._room_callbacks = self._room_callbacks, []
            for callback in callbacks:
                callback()
        return batch
