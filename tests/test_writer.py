"""The batch writer against the real database: poison rows, missing partitions."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from helpers import query
from pgsyslog.receiver.counters import Counters
from pgsyslog.receiver.queue import RecordQueue
from pgsyslog.receiver.writer import BatchWriter, Outage
from pgsyslog.record import Record
from pgsyslog.storage.spool import Spool


def record(message: str, severity: int = 5, when: datetime | None = None) -> Record:
    return Record(when or datetime.now(UTC), None, 1, severity, "h", "app", None, None, None,
                  message, "rfc5424", "tcp", "192.0.2.7", None, None)


def write(dsn: str, batch: list[Record], writer_class: type[BatchWriter] = BatchWriter,
          spool: Spool | None = None) -> Counters:
    counters = Counters()

    async def run() -> None:
        writer = writer_class(dsn, RecordQueue(100, 10), counters, 0.05, None, Outage(spool))
        await writer.write(batch)
        writer.close(0.0)
        await writer.run()

    asyncio.run(run())
    return counters


def test_one_poison_row_does_not_sink_the_batch(dsn: str, tmp_path: Path) -> None:
    batch = [record(f"good {i}") for i in range(7)]
    batch.insert(3, record("severity out of range", severity=9))
    spool = Spool(tmp_path, max_bytes=10**9)
    counters = write(dsn, batch, spool=spool)
    assert (counters.written, counters.rejected) == (7, 1)
    assert query(dsn, "SELECT count(*) FROM syslog.messages WHERE message LIKE 'good %'") == [
        (7,)]
    # refused by syslog.messages and by syslog.unrouted: kept in the rejects file
    rejected = json.loads(spool.rejects_path.read_text())
    assert rejected["record"]["message"] == "severity out of range"
    assert "severity_check" in rejected["error"]


def test_missing_partition_is_made_and_the_row_written(dsn: str) -> None:
    far = datetime.now(UTC) + timedelta(days=200)
    counters = write(dsn, [record("from a clock that jumped", when=far), record("now")])
    assert counters.written == 2
    assert query(dsn, "SELECT count(*) FROM syslog.messages") == [(2,)]


class CannotMakePartitions(BatchWriter):
    """As if every partition creation failed (a lock that never comes free)."""

    def _make_partitions(self, days: set[date]) -> None:
        return None


def test_a_row_that_still_finds_no_partition_goes_to_unrouted(dsn: str) -> None:
    far = datetime.now(UTC) + timedelta(days=200)
    counters = write(dsn, [record("lost in time", when=far), record("now")],
                     CannotMakePartitions)
    assert (counters.written, counters.unrouted) == (1, 1)
    rows = query(dsn, "SELECT message, error FROM syslog.unrouted")
    assert rows[0][0] == "lost in time"
    assert "no partition" in rows[0][1]


@pytest.mark.parametrize("rows", [1, 2_000, 4_999])
def test_batches_of_any_size(dsn: str, rows: int) -> None:
    counters = write(dsn, [record(f"m{i}") for i in range(rows)])
    assert counters.written == rows
    assert query(dsn, "SELECT count(DISTINCT message) FROM syslog.messages") == [(rows,)]
