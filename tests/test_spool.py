"""The disk spool on its own: order, batch ids, resuming, segments, the cap, appends during a
replay, fsync of the directory, the old format, rejects. Damage and crashes: test_spool_damage."""

from __future__ import annotations

import json
import logging
import os
import stat
import struct
import threading
import uuid
import zlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pgsyslog.record import Record
from pgsyslog.storage.spool import Spool, SpoolFrame, encode_records, segment_name

BIG = 10**9


def record(i: int, raw: bytes | None = None) -> Record:
    return Record(datetime(2026, 11, 21, 12, 0, i % 60, tzinfo=UTC), None, 4, 2, "h", "app",
                  "7", None, {"a@1": {"k": ["v1", "v2"]}}, f"message {i} ✓", "rfc5424", "tcp",
                  "2001:db8::1", "why" if raw else None, raw)


def spool_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("spool"))


def replay_all(spool: Spool) -> list[SpoolFrame]:
    """Iterate once, marking each frame as the writer does after its commit."""
    frames = []
    for frame in spool.frames():
        frames.append(frame)
        spool.mark_replayed(frame)
    return frames


def test_frames_come_back_in_order_whole_and_with_their_batch_ids(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=BIG)
    first, second = [record(1), record(2, raw=b"\x00\xffbytes")], [record(3)]
    ids = [uuid.uuid4(), uuid.uuid4()]
    assert spool.append(ids[0], first) and spool.append(ids[1], second)
    frames = list(spool.frames())
    assert [f.batch_id for f in frames] == ids
    assert [f.records for f in frames] == [first, second]


def test_a_replayed_spool_leaves_no_file_and_nothing_pending(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=BIG)
    for i in range(3):
        spool.append(uuid.uuid4(), [record(i)])
    assert spool.pending > 0
    assert len(replay_all(spool)) == 3
    assert spool.pending == 0 and spool_files(tmp_path) == []
    assert list(Spool(tmp_path, max_bytes=BIG).frames()) == []


def test_replay_resumes_after_the_last_marked_frame_after_a_restart(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=BIG)
    for i in range(3):
        spool.append(uuid.uuid4(), [record(i)])
    frames = spool.frames()
    spool.mark_replayed(next(frames))
    frames.close()  # the database went away again
    again = Spool(tmp_path, max_bytes=BIG)  # as after a restart
    assert [f.records[0].message for f in again.frames()] == ["message 1 ✓", "message 2 ✓"]
    assert again.pending == spool.pending


def test_frames_are_replayed_across_segments_in_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=BIG, segment_bytes=2000)
    ids = [uuid.uuid4() for _ in range(12)]
    for i, batch_id in enumerate(ids):
        spool.append(batch_id, [record(i)] * 3)
    assert len([n for n in spool_files(tmp_path) if n.endswith(".bin")]) > 3
    restarted = Spool(tmp_path, max_bytes=BIG, segment_bytes=2000)
    assert [f.batch_id for f in replay_all(restarted)] == ids
    assert spool_files(tmp_path) == []


def test_appends_during_an_iteration_come_in_the_next_one(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=BIG)
    before = [uuid.uuid4(), uuid.uuid4()]
    for batch_id in before:
        spool.append(batch_id, [record(1)])
    frames = spool.frames()
    seen = [next(frames)]
    during = uuid.uuid4()
    assert spool.append(during, [record(2)])
    seen += list(frames)
    assert [f.batch_id for f in seen] == before
    for frame in seen:
        spool.mark_replayed(frame)
    assert spool.pending > 0  # the batch appended meanwhile
    assert [f.batch_id for f in replay_all(spool)] == [during]
    assert spool.pending == 0 and spool_files(tmp_path) == []


def test_threads_appending_while_a_replay_runs_lose_and_repeat_nothing(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=BIG, fsync=False, segment_bytes=4000)
    appended: list[uuid.UUID] = []
    lock = threading.Lock()

    def append_many() -> None:
        for i in range(40):
            batch_id = uuid.uuid4()
            assert spool.append(batch_id, [record(i)])
            with lock:
                appended.append(batch_id)

    threads = [threading.Thread(target=append_many) for _ in range(4)]
    for thread in threads:
        thread.start()
    replayed: list[uuid.UUID] = []
    for _ in range(10_000):  # bounded: a broken spool fails here instead of spinning
        replayed += [f.batch_id for f in replay_all(spool)]
        if not any(t.is_alive() for t in threads) and not spool.pending:
            break
    for thread in threads:
        thread.join()
    assert len(replayed) == len(set(replayed)) == 160
    assert set(replayed) == set(appended)
    assert spool_files(tmp_path) == []


def test_the_cap_refuses_a_batch_and_says_so_once(tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    spool = Spool(tmp_path, max_bytes=1000)
    assert spool.append(uuid.uuid4(), [record(1)])
    with caplog.at_level(logging.ERROR):
        assert not spool.append(uuid.uuid4(), [record(2)] * 10)
        assert not spool.append(uuid.uuid4(), [record(3)] * 10)
    assert len([r for r in caplog.records if "spool is full" in r.message]) == 1
    assert len(list(spool.frames())) == 1
    assert spool.size <= 1000


def test_force_spools_past_the_cap(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1000)
    forced = uuid.uuid4()
    assert not spool.append(uuid.uuid4(), [record(2)] * 10)
    assert spool.append(forced, [record(2)] * 10, force=True)
    assert spool.size > 1000
    assert [f.batch_id for f in Spool(tmp_path, max_bytes=1000).frames()] == [forced]


def test_the_cap_warns_again_in_the_next_outage(tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    spool = Spool(tmp_path, max_bytes=1000)
    with caplog.at_level(logging.ERROR):
        spool.append(uuid.uuid4(), [record(1)])
        spool.append(uuid.uuid4(), [record(1)] * 10)
        replay_all(spool)  # the database came back: the spool drains
        spool.append(uuid.uuid4(), [record(1)])
        spool.append(uuid.uuid4(), [record(1)] * 10)
    assert len([r for r in caplog.records if "spool is full" in r.message]) == 2


class FsyncLog:
    """Calls the real os.fsync, noting whether each was on a directory."""

    def __init__(self) -> None:
        self.real = os.fsync
        self.on_directory: list[bool] = []

    def __call__(self, fd: int) -> None:
        self.on_directory.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        self.real(fd)

    def take(self) -> list[bool]:
        calls, self.on_directory = self.on_directory, []
        return calls


def test_the_directory_is_fsynced_after_creating_renaming_and_deleting(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fsyncs = FsyncLog()
    monkeypatch.setattr(os, "fsync", fsyncs)
    spool = Spool(tmp_path, max_bytes=BIG)
    spool.append(uuid.uuid4(), [record(1)])  # creates a segment by a rename
    assert True in fsyncs.take()
    spool.append(uuid.uuid4(), [record(2)])  # only the file grows
    assert fsyncs.take() == [False]
    frames = spool.frames()
    spool.mark_replayed(next(frames))  # progress file renamed into place
    assert fsyncs.take().count(True) == 1
    spool.mark_replayed(next(frames))  # progress, then the segment and its progress deleted
    assert fsyncs.take().count(True) == 3
    assert spool_files(tmp_path) == []


def test_without_fsync_nothing_is_fsynced(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    fsyncs = FsyncLog()
    monkeypatch.setattr(os, "fsync", fsyncs)
    spool = Spool(tmp_path, max_bytes=BIG, fsync=False)
    spool.append(uuid.uuid4(), [record(1)])
    replay_all(spool)
    assert fsyncs.take() == []


def old_frame(records: list[Record]) -> bytes:
    payload = encode_records(records)
    return struct.pack(">II", len(payload), zlib.crc32(payload)) + payload


def write_old_spool(directory: Path, offset: int) -> list[bytes]:
    frames = [old_frame([record(i)]) for i in range(3)]
    (directory / "spool.bin").write_bytes(b"".join(frames) + b"\x00\x00\x01\x00torn")
    (directory / "spool.offset").write_text(str(offset))
    return frames


def test_an_old_spool_is_carried_over_from_its_offset(tmp_path: Path) -> None:
    old = write_old_spool(tmp_path, offset=len(old_frame([record(0)])))
    spool = Spool(tmp_path, max_bytes=BIG)
    assert not (tmp_path / "spool.bin").exists() and not (tmp_path / "spool.offset").exists()
    assert (tmp_path / "spool.damaged").read_bytes() == b"\x00\x00\x01\x00torn"
    assert [f.records[0].message for f in replay_all(spool)] == ["message 1 ✓", "message 2 ✓"]
    assert len(old) == 3 and spool.pending == 0


def test_an_old_spool_carried_over_twice_keeps_its_batch_ids(tmp_path: Path) -> None:
    """A crash after the copy but before spool.bin is deleted copies it again: same ids."""
    write_old_spool(tmp_path, offset=0)
    Spool(tmp_path, max_bytes=BIG)
    write_old_spool(tmp_path, offset=0)
    ids = [f.batch_id for f in Spool(tmp_path, max_bytes=BIG).frames()]
    assert len(ids) == 6 and ids[:3] == ids[3:]


def test_a_stale_old_offset_replays_the_whole_old_spool(tmp_path: Path) -> None:
    """The old format deleted spool.bin before spool.offset: an offset off any frame
    boundary came from an earlier file, and must not skip this one's frames."""
    write_old_spool(tmp_path, offset=7)
    assert len(list(Spool(tmp_path, max_bytes=BIG).frames())) == 3


def test_rejects_are_kept_with_their_reason(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=BIG)
    spool.reject(record(5), "value out of range")
    line = json.loads(spool.rejects_path.read_text())
    assert line["error"] == "value out of range"
    assert line["record"]["message"] == "message 5 ✓"


def test_segment_files_are_named_in_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=BIG, segment_bytes=100)
    spool.append(uuid.uuid4(), [record(1)])
    spool.append(uuid.uuid4(), [record(2)])
    assert spool_files(tmp_path) == [segment_name(1), segment_name(2)] == \
        ["spool-000001.bin", "spool-000002.bin"]
