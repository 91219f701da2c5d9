"""The writers' side of the spool: a batch is appended once, whatever cancels its writer."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path

from pgsyslog.receiver.counters import Counters
from pgsyslog.receiver.spooler import Spooler
from pgsyslog.receiver.write_policy import Batch
from pgsyslog.record import Record
from pgsyslog.storage.spool import Spool
from stored import record

BIG = 1 << 30


class SlowSpool(Spool):
    """A real spool whose appends wait for ``go``: a disk that takes its time to fsync."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory, max_bytes=BIG)
        self.go = threading.Event()
        self.started = threading.Event()

    def append(self, batch_id: uuid.UUID, records: Sequence[Record], *,
               force: bool = False) -> bool:
        self.started.set()
        self.go.wait(10)
        return super().append(batch_id, records, force=force)


def test_a_batch_is_appended_once_when_its_writer_is_cancelled(tmp_path: Path) -> None:
    """The stop cancels a writer in the middle of its append, then spools the batch the
    writer held: the batch ends up in the spool once, and counted once."""
    spool = SlowSpool(tmp_path)
    counters = Counters()
    spooler = Spooler(spool, counters)
    batch = Batch.new([record(f"m{i}") for i in range(3)])

    async def scenario() -> bool:
        writer = asyncio.ensure_future(spooler.put(batch))
        await asyncio.to_thread(spool.started.wait, 10)
        writer.cancel()  # the append goes on in its thread
        stop = asyncio.ensure_future(spooler.put(batch, force=True))
        await asyncio.sleep(0.05)
        spool.go.set()
        return await stop

    assert asyncio.run(scenario())
    frames = list(Spool(tmp_path, max_bytes=BIG).frames())
    assert [(f.batch_id, len(f.records)) for f in frames] == [(batch.id, 3)]
    assert counters.spooled == 3


def test_a_batch_appended_before_is_not_appended_again(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=BIG)
    spooler = Spooler(spool, Counters())
    batch = Batch.new([record("once")])

    async def twice() -> tuple[bool, bool]:
        return await spooler.put(batch), await spooler.put(batch, force=True)

    assert asyncio.run(twice()) == (True, True)
    assert [f.batch_id for f in Spool(tmp_path, max_bytes=BIG).frames()] == [batch.id]


def test_a_batch_refused_for_room_is_appended_when_forced(tmp_path: Path) -> None:
    """No room while running (the writer keeps the batch); the stop forces it in."""
    spool = Spool(tmp_path, max_bytes=1)
    spooler = Spooler(spool, Counters())
    batch = Batch.new([record("at the stop")])

    async def refused_then_forced() -> tuple[bool, bool]:
        return await spooler.put(batch), await spooler.put(batch, force=True)

    assert asyncio.run(refused_then_forced()) == (False, True)
    assert [f.batch_id for f in Spool(tmp_path, max_bytes=1).frames()] == [batch.id]
