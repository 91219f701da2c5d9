"""The acknowledgement path: real writers tell a RELP message's receipt only once its batch
is committed in PostgreSQL (both halves of a split too) or spooled."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

from helpers import query
from pgsyslog.receiver.counters import Counters
from pgsyslog.receiver.link import DatabaseLink
from pgsyslog.receiver.queue import RecordQueue
from pgsyslog.receiver.spooler import Spooler
from pgsyslog.receiver.store import BatchStore
from pgsyslog.receiver.writer import BatchWriter
from pgsyslog.record import Record
from pgsyslog.storage.database import Timeouts
from pgsyslog.storage.spool import Spool


def record(message: str, severity: int = 5) -> Record:
    return Record(datetime.now(UTC), None, 1, severity, "h", "app", None, None, None,
                  message, "rfc5424", "relp", "192.0.2.7", None, None)


class Witness:
    """A receipt that notes, when it is told, what a user would find at that moment."""

    def __init__(self, look: str, message: str, dsn: str | None = None,
                 spool: Spool | None = None) -> None:
        self.look, self.message, self.dsn, self.spool = look, message, dsn, spool
        self.told: list[object] = []

    def stored(self) -> None:
        if self.look == "table":
            assert self.dsn is not None
            self.told.append(query(self.dsn, "SELECT count(*) FROM syslog.messages WHERE "
                                             "message = %s", (self.message,))[0][0])
        elif self.look == "rejects":
            assert self.spool is not None
            self.told.append(self.message in self.spool.rejects_path.read_text())
        else:
            assert self.spool is not None
            self.told.append(self.spool.pending > 0)


def write_all(queue: RecordQueue, link: DatabaseLink, spool: Spool | None,
              witnesses: list[Witness]) -> Counters:
    """Run one writer until every witness was told (10 s at most), then stop it."""
    counters = Counters()

    async def run() -> None:
        store = BatchStore(link, counters, spool.reject if spool else None)
        writer = BatchWriter(queue, store, Spooler(spool, counters), link, counters, 0.05)
        task = asyncio.create_task(writer.run())
        for _ in range(1000):
            if all(w.told for w in witnesses):
                break
            await asyncio.sleep(0.01)
        writer.close()
        await task

    asyncio.run(run())
    return counters


def queued(witnesses: list[tuple[Record, Witness]]) -> RecordQueue:
    queue = RecordQueue(1000, 100)
    for rec, witness in witnesses:
        queue.receipts.expect(rec, witness)
        queue.put(rec)
    return queue


def ready_link(dsn: str) -> DatabaseLink:
    link = DatabaseLink(Timeouts())
    link.make_ready(dsn)
    return link


def test_a_receipt_is_told_once_its_row_is_committed(dsn: str) -> None:
    witnesses = [Witness("table", f"acked {i}", dsn) for i in range(30)]
    queue = queued([(record(w.message), w) for w in witnesses])
    counters = write_all(queue, ready_link(dsn), None, witnesses)
    assert [w.told for w in witnesses] == [[1]] * 30  # told once, the row already there
    assert counters.written == 30 and len(queue.receipts) == 0


def test_receipts_of_a_split_batch_wait_for_both_halves(dsn: str, tmp_path: Path) -> None:
    spool = Spool(tmp_path, 10**9)
    good = [Witness("table", f"good {i}", dsn) for i in range(7)]
    poison = Witness("rejects", "severity out of range", spool=spool)
    pairs = [(record(w.message), w) for w in good]
    pairs.insert(3, (record(poison.message, severity=9), poison))
    counters = write_all(queued(pairs), ready_link(dsn), spool, [*good, poison])
    assert [w.told for w in good] == [[1]] * 7
    assert poison.told == [True]  # kept in the rejects file before it was acknowledged
    assert counters.rejected == 1
    assert json.loads(spool.rejects_path.read_text())["record"]["message"] == poison.message


def test_a_receipt_is_told_once_its_batch_is_spooled(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 10**9)
    witnesses = [Witness("spool", f"spooled {i}", spool=spool) for i in range(5)]
    link = DatabaseLink(Timeouts())  # never ready: the database is away
    link.patience_over.set()
    counters = write_all(queued([(record(w.message), w) for w in witnesses]), link, spool,
                         witnesses)
    assert [w.told for w in witnesses] == [[True]] * 5
    assert counters.spooled == 5
    assert [len(f.records) for f in spool.frames()] == [5]
