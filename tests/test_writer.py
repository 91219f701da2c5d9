"""Storing batches against the real database: poison rows, missing partitions, identities."""

from __future__ import annotations

import asyncio
import json
import random
import string
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from helpers import query
from pgsyslog.receiver.counters import Counters
from pgsyslog.receiver.link import DatabaseLink
from pgsyslog.receiver.store import BatchStore
from pgsyslog.receiver.write_policy import Batch
from pgsyslog.record import Record
from pgsyslog.storage.database import Timeouts
from pgsyslog.storage.spool import Spool


def record(message: str, severity: int = 5, when: datetime | None = None,
           hostname: str = "h") -> Record:
    return Record(when or datetime.now(UTC), None, 1, severity, hostname, "app", None, None,
                  None, message, "rfc5424", "tcp", "192.0.2.7", None, None)


def store_batches(dsn: str, *batches: Batch, store_class: type[BatchStore] = BatchStore,
                  spool: Spool | None = None) -> Counters:
    counters = Counters()

    async def run() -> None:
        link = DatabaseLink(Timeouts())
        link.make_ready(dsn)
        store = store_class(link, counters, spool.reject if spool else None)
        for batch in batches:
            await store.write(batch)
        await store.disconnect()

    asyncio.run(run())
    return counters


def write(dsn: str, records: list[Record], **kwargs: object) -> Counters:
    return store_batches(dsn, Batch.new(records), **kwargs)  # type: ignore[arg-type]


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
    assert rejected["error"].startswith("23514")


def test_a_row_too_big_for_an_index_is_split_off_and_kept_in_unrouted(dsn: str) -> None:
    # SQLSTATE 54000: PostgreSQL refuses a btree entry over a third of a page. Before the
    # writer told errors apart by SQLSTATE, this wedged ingestion as an "outage".
    hostile = "".join(random.choices(string.ascii_letters + string.digits, k=3000))
    batch = [record(f"good {i}") for i in range(50)]
    batch.insert(20, record("hostile", hostname=hostile))
    counters = write(dsn, batch)
    assert (counters.written, counters.unrouted, counters.retried) == (50, 1, 0)
    assert query(dsn, "SELECT message, left(error, 5) FROM syslog.unrouted") == [
        ("hostile", "54000")]


def test_missing_partition_is_made_and_the_row_written(dsn: str) -> None:
    far = datetime.now(UTC) + timedelta(days=200)
    counters = write(dsn, [record("from a clock that jumped", when=far), record("now")])
    assert counters.written == 2
    assert query(dsn, "SELECT count(*) FROM syslog.messages") == [(2,)]


class CannotMakePartitions(BatchStore):
    """As if every partition creation failed (a lock that never comes free)."""

    async def _make_partitions(self, days: object) -> None:
        return None


def test_a_row_that_still_finds_no_partition_goes_to_unrouted(dsn: str) -> None:
    far = datetime.now(UTC) + timedelta(days=200)
    counters = write(dsn, [record("lost in time", when=far), record("now")],
                     store_class=CannotMakePartitions)
    assert (counters.written, counters.unrouted) == (1, 1)
    rows = query(dsn, "SELECT message, error FROM syslog.unrouted")
    assert rows[0][0] == "lost in time"
    assert rows[0][1].startswith("23514")


@pytest.mark.parametrize("rows", [1, 2_000, 4_999])
def test_batches_of_any_size(dsn: str, rows: int) -> None:
    counters = write(dsn, [record(f"m{i}") for i in range(rows)])
    assert counters.written == rows
    assert query(dsn, "SELECT count(DISTINCT message) FROM syslog.messages") == [(rows,)]


def test_a_batch_written_again_is_recognised_and_skipped(dsn: str) -> None:
    batch = Batch.new([record(f"once {i}") for i in range(100)])
    counters = store_batches(dsn, batch, batch)
    assert (counters.written, counters.duplicates_skipped) == (100, 100)
    assert query(dsn, "SELECT count(*), count(DISTINCT message) FROM syslog.messages") == [
        (100, 100)]
    assert query(dsn, "SELECT count(*) FROM syslog.batches") == [(1,)]


def test_a_split_half_that_committed_before_is_not_written_again(dsn: str) -> None:
    records = [record(f"row {i}") for i in range(10)]
    records[7] = record("poison", severity=9)
    batch = Batch.new(records)
    first_half, _ = batch.halves()
    # As if a try had split the batch, committed its first half, then lost the connection.
    store_batches(dsn, first_half)
    counters = store_batches(dsn, batch)
    assert counters.duplicates_skipped == 5
    assert query(dsn, "SELECT count(*), count(DISTINCT message) FROM syslog.messages") == [
        (9, 9)]


def test_each_batch_has_one_contiguous_id_range_in_commit_order(dsn: str) -> None:
    batches = [Batch.new([record(f"b{b} r{i}") for i in range(30)]) for b in range(3)]
    store_batches(dsn, *batches)
    ranges = query(dsn, "SELECT first_id, last_id FROM syslog.batches ORDER BY seq")
    assert [last - first + 1 for first, last in ranges] == [30, 30, 30]
    for (first, last), batch in zip(ranges, batches, strict=True):
        stored = [m for (m,) in query(dsn, "SELECT message FROM syslog.messages WHERE id "
                                           "BETWEEN %s AND %s ORDER BY id", (first, last))]
        assert stored == [r.message for r in batch.records]
