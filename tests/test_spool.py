"""The disk spool on its own: order, replay offset, damaged tail, size cap, rejects."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from pgsyslog.record import Record
from pgsyslog.storage.spool import Spool


def record(i: int, raw: bytes | None = None) -> Record:
    return Record(datetime(2026, 11, 21, 12, 0, i % 60, tzinfo=UTC), None, 4, 2, "h", "app",
                  "7", None, {"a@1": {"k": ["v1", "v2"]}}, f"message {i} ✓", "rfc5424", "tcp",
                  "2001:db8::1", "why" if raw else None, raw)


def test_batches_come_back_in_order_and_whole(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10**9)
    first, second = [record(1), record(2, raw=b"\x00\xffbytes")], [record(3)]
    assert spool.append(first) and spool.append(second)
    frames = list(spool.batches())
    assert [records for _, records in frames] == [first, second]
    assert frames[-1][0] == spool.size


def test_replay_resumes_after_the_last_committed_frame(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10**9)
    for i in range(3):
        spool.append([record(i)])
    offset, _ = next(spool.batches())
    spool.mark_replayed(offset)
    again = Spool(tmp_path, max_bytes=10**9)  # as after a restart
    assert [r[0].message for _, r in again.batches()] == ["message 1 ✓", "message 2 ✓"]
    assert again.pending == again.size - offset
    again.clear()
    assert again.pending == 0 and not again.path.exists()


def test_a_damaged_tail_is_skipped(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10**9)
    spool.append([record(1)])
    spool.append([record(2)])
    with open(spool.path, "r+b") as fh:  # a crash in the middle of the second append
        fh.truncate(spool.size - 5)
    assert [r[0].message for _, r in spool.batches()] == ["message 1 ✓"]


def test_the_cap_refuses_a_batch(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=600)
    assert spool.append([record(1)])
    assert not spool.append([record(2)] * 10)
    assert len(list(spool.batches())) == 1


def test_rejects_are_kept_with_their_reason(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10**9)
    spool.reject(record(5), "value out of range")
    line = json.loads(spool.rejects_path.read_text())
    assert line["error"] == "value out of range"
    assert line["record"]["message"] == "message 5 ✓"
