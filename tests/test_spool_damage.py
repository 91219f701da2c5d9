"""The spool under damage and crashes: torn writes, flipped bytes, garbage, a crash at each
step of the cleanup, progress files that do not belong, and a writer SIGKILLed mid-append.

Every test damages real files the way a crash or a bad disk would, then opens the spool
again as a restarted receiver does.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import pytest

from pgsyslog.record import Record
from pgsyslog.storage.spool import (
    Spool,
    SpoolFrame,
    encode_records,
    progress_path,
    removal_order,
    segment_name,
)
from pgsyslog.storage.spool_format import (
    SEGMENT_HEADER_SIZE,
    encode_frame,
    format_progress,
    segment_identity,
)

BIG = 10**9


def record(i: int) -> Record:
    return Record(datetime(2026, 11, 21, 12, 0, i % 60, tzinfo=UTC), None, 4, 2, "h", "app",
                  "7", None, None, f"message {i}", "rfc5424", "tcp", "192.0.2.1", None, None)


def replay_all(spool: Spool) -> list[SpoolFrame]:
    frames = []
    for frame in spool.frames():
        frames.append(frame)
        spool.mark_replayed(frame)
    return frames


def spooled(directory: Path, batches: int, rows: int = 10) -> tuple[list[uuid.UUID], Path]:
    """A spool of batches in one segment, its ids, and the segment's path."""
    spool = Spool(directory, max_bytes=BIG)
    ids = [uuid.uuid4() for _ in range(batches)]
    for n, batch_id in enumerate(ids):
        spool.append(batch_id, [record(n * rows + i) for i in range(rows)])
    return ids, directory / segment_name(1)


def frame_bounds(directory: Path) -> list[tuple[int, int]]:
    """Where each frame of the spool starts and ends (read before any damage)."""
    frames = list(Spool(directory, max_bytes=BIG).frames())
    return [(f.start, f.end) for f in frames]


def damage_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.message for r in caplog.records if "damaged bytes" in r.message]


def test_a_torn_last_frame_is_cut_off_at_open_and_kept_aside(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ids, segment = spooled(tmp_path, 3)
    whole = segment.read_bytes()
    last_start = frame_bounds(tmp_path)[-1][0]
    with open(segment, "r+b") as fh:  # the receiver died in the middle of the third append
        fh.truncate(len(whole) - 5)
    with caplog.at_level(logging.ERROR):
        spool = Spool(tmp_path, max_bytes=BIG)
    assert segment.stat().st_size == last_start
    assert (tmp_path / "spool.damaged").read_bytes() == whole[last_start:-5]
    assert spool.damaged_bytes == len(whole) - 5 - last_start
    assert len(damage_lines(caplog)) == 1
    later = uuid.uuid4()
    spool.append(later, [record(99)])
    assert [f.batch_id for f in replay_all(spool)] == [*ids[:2], later]
    assert spool.pending == 0


def test_a_flipped_byte_in_the_first_of_five_frames_costs_only_that_frame(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ids, segment = spooled(tmp_path, 5, rows=2000)  # 10,000 rows
    (start, end), *_ = frame_bounds(tmp_path)
    data = bytearray(segment.read_bytes())
    data[start + 100] ^= 0x01
    segment.write_bytes(data)
    with caplog.at_level(logging.ERROR):
        spool = Spool(tmp_path, max_bytes=BIG)
        frames = replay_all(spool)
    assert [f.batch_id for f in frames] == ids[1:]
    assert sum(len(f.records) for f in frames) == 8000
    assert (tmp_path / "spool.damaged").read_bytes() == data[start:end]
    assert spool.damaged_bytes == end - start
    assert len(damage_lines(caplog)) == 1
    assert spool.pending == 0 and not segment.exists()


def test_garbage_in_the_middle_is_moved_aside_and_every_frame_replays(tmp_path: Path) -> None:
    ids, segment = spooled(tmp_path, 5)
    middle = frame_bounds(tmp_path)[2][0]
    data = segment.read_bytes()
    garbage = os.urandom(3000) + b"\xffPGF" + os.urandom(40)
    segment.write_bytes(data[:middle] + garbage + data[middle:])
    spool = Spool(tmp_path, max_bytes=BIG)
    assert [f.batch_id for f in replay_all(spool)] == ids
    assert (tmp_path / "spool.damaged").read_bytes() == garbage


def test_a_damaged_region_is_moved_aside_once_when_the_replay_is_cut_short(
        tmp_path: Path) -> None:
    ids, segment = spooled(tmp_path, 3)
    data = bytearray(segment.read_bytes())
    data[frame_bounds(tmp_path)[0][0] + 50] ^= 0x10
    segment.write_bytes(data)
    spool = Spool(tmp_path, max_bytes=BIG)
    frames = spool.frames()
    assert next(frames).batch_id == ids[1]
    frames.close()  # the database failed before this frame committed
    again = Spool(tmp_path, max_bytes=BIG)  # and the receiver restarted
    assert [f.batch_id for f in replay_all(again)] == ids[1:]
    assert again.damaged_bytes == 0
    assert (tmp_path / "spool.damaged").stat().st_size == spool.damaged_bytes


def test_frames_marked_out_of_order_or_fetched_ahead_are_kept_straight(tmp_path: Path) -> None:
    """A replay may fetch the next frame before the last one committed, and commit out of
    order: damage found meanwhile is moved aside once, and nothing is replayed twice."""
    ids, segment = spooled(tmp_path, 4)
    bounds = frame_bounds(tmp_path)
    data = bytearray(segment.read_bytes())
    data[bounds[1][0] + 40] ^= 0x08  # the second frame is damaged
    segment.write_bytes(data)
    damaged = bounds[1][1] - bounds[1][0]
    spool = Spool(tmp_path, max_bytes=BIG)
    frames = spool.frames()
    first, third, fourth = next(frames), next(frames), next(frames)
    frames.close()
    assert [first.batch_id, third.batch_id, fourth.batch_id] == [ids[0], *ids[2:]]
    spool.mark_replayed(fourth)
    again = spool.frames()
    assert [next(again).batch_id, next(again).batch_id] == [ids[0], ids[2]]
    assert list(again) == []  # the fourth was committed: not given again
    assert spool.damaged_bytes == damaged  # moved aside once, not once per iteration
    spool.mark_replayed(third)
    assert spool.pending > 0
    spool.mark_replayed(first)
    assert spool.pending == 0 and not segment.exists()


def test_a_damaged_segment_header_loses_no_frame(tmp_path: Path) -> None:
    ids, segment = spooled(tmp_path, 3)
    data = bytearray(segment.read_bytes())
    data[5] ^= 0x40
    segment.write_bytes(data)
    spool = Spool(tmp_path, max_bytes=BIG)
    assert [f.batch_id for f in replay_all(spool)] == ids
    assert (tmp_path / "spool.damaged").read_bytes() == data[:SEGMENT_HEADER_SIZE]
    assert not segment.exists()


def test_a_frame_that_checks_out_but_holds_no_records_is_moved_aside(tmp_path: Path) -> None:
    ids, segment = spooled(tmp_path, 2)
    strange = encode_frame(uuid.uuid4(), b'{"not": "a list of records"}')
    data = segment.read_bytes()
    middle = frame_bounds(tmp_path)[1][0]
    segment.write_bytes(data[:middle] + strange + data[middle:])
    spool = Spool(tmp_path, max_bytes=BIG)
    assert [f.batch_id for f in replay_all(spool)] == ids
    assert (tmp_path / "spool.damaged").read_bytes() == strange


def test_a_segment_full_of_garbage_is_moved_aside_and_the_next_replays(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=BIG, segment_bytes=100)
    ids = [uuid.uuid4() for _ in range(3)]
    for batch_id in ids:
        spool.append(batch_id, [record(1)])
    second = tmp_path / segment_name(2)
    second.write_bytes(b"\x00" * second.stat().st_size)
    again = Spool(tmp_path, max_bytes=BIG, segment_bytes=100)
    assert [f.batch_id for f in replay_all(again)] == [ids[0], ids[2]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spool.damaged"]


# -- crashes in the cleanup of a replayed segment


def replayed_but_for_cleanup(directory: Path) -> tuple[Path, bytes]:
    """One segment whose every frame is committed: the state just before its progress
    file is updated for the last frame. Returns the segment and the progress line that
    the update writes."""
    _, segment = spooled(directory, 3)
    spool = Spool(directory, max_bytes=BIG)
    frames = list(spool.frames())
    for frame in frames[:-1]:
        spool.mark_replayed(frame)
    identity = segment_identity(segment.read_bytes()[:SEGMENT_HEADER_SIZE])
    return segment, format_progress(identity, frames[-1].end)


# Each step a crash can come after, in the order mark_replayed takes them.
CLEANUP_STEPS = ["nothing yet", "progress written aside", "progress renamed into place",
                 "data file deleted", "progress file deleted"]


@pytest.mark.parametrize("crash_after", range(len(CLEANUP_STEPS)), ids=CLEANUP_STEPS)
def test_a_crash_at_any_step_of_cleanup_loses_and_hides_nothing(
        tmp_path: Path, crash_after: int) -> None:
    segment, line = replayed_but_for_cleanup(tmp_path)
    last_frame = list(Spool(tmp_path, max_bytes=BIG).frames())[-1].batch_id
    progress = progress_path(segment)
    written_aside = progress.with_name(progress.name + ".tmp")
    steps: list[Callable[[], object]] = [
        partial(written_aside.write_bytes, line),
        partial(written_aside.replace, progress),
        *[path.unlink for path in removal_order(segment)],
    ]
    for step in steps[:crash_after]:
        step()
    spool = Spool(tmp_path, max_bytes=BIG)  # the restart after the crash
    new = uuid.uuid4()
    spool.append(new, [record(7)])
    replayed = [f.batch_id for f in replay_all(spool)]
    # The last old frame is replayed again only while its progress was not recorded
    # (harmless: the database knows its batch id); the new batch always comes.
    assert replayed == ([last_frame, new] if crash_after < 2 else [new])
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_progress_of_an_earlier_file_of_the_same_name_is_ignored(tmp_path: Path) -> None:
    """The old spool's bug: a stale offset hid every frame of the next spool."""
    spool = Spool(tmp_path, max_bytes=BIG)
    spool.append(uuid.uuid4(), [record(1)] * 50)
    replay_all(spool)
    stale = format_progress(uuid.uuid4().hex, 10**6)
    ids, segment = spooled(tmp_path, 3)
    progress_path(segment).write_bytes(stale)
    assert [f.batch_id for f in replay_all(Spool(tmp_path, max_bytes=BIG))] == ids


def test_progress_past_the_end_of_its_own_segment_replays_all_of_it(tmp_path: Path) -> None:
    """A number past the end is damage (a flipped leading digit), not a shortened file:
    every frame comes again, and the database skips the batches it has."""
    ids, segment = spooled(tmp_path, 3)
    identity = segment_identity(segment.read_bytes()[:SEGMENT_HEADER_SIZE])
    progress_path(segment).write_bytes(format_progress(identity, 10**6))
    assert [f.batch_id for f in replay_all(Spool(tmp_path, max_bytes=BIG))] == ids


def test_a_damaged_progress_number_hides_no_frame(tmp_path: Path) -> None:
    ids, segment = spooled(tmp_path, 5)
    bounds = frame_bounds(tmp_path)
    identity = segment_identity(segment.read_bytes()[:SEGMENT_HEADER_SIZE])
    # Two frames replayed, then one digit of the recorded offset changed: it now points
    # into the middle of the fourth frame.
    progress_path(segment).write_bytes(format_progress(identity, bounds[3][0] + 7))
    again = [f.batch_id for f in replay_all(Spool(tmp_path, max_bytes=BIG))]
    assert again == ids
    # The same progress number on a frame boundary is taken as it is.
    _, segment = spooled(tmp_path / "b", 5)
    bounds = frame_bounds(tmp_path / "b")
    identity = segment_identity(segment.read_bytes()[:SEGMENT_HEADER_SIZE])
    progress_path(segment).write_bytes(format_progress(identity, bounds[2][0]))
    assert len(replay_all(Spool(tmp_path / "b", max_bytes=BIG))) == 3


def test_garbage_progress_replays_the_segment_and_is_said(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ids, segment = spooled(tmp_path, 2)
    progress_path(segment).write_bytes(b"\x00\x17garbage")
    with caplog.at_level(logging.WARNING):
        spool = Spool(tmp_path, max_bytes=BIG)
    assert [f.batch_id for f in replay_all(spool)] == ids
    assert any("does not belong" in r.message for r in caplog.records)


def test_leftovers_of_a_crash_while_writing_aside_are_removed(tmp_path: Path) -> None:
    ids, _ = spooled(tmp_path, 2)
    (tmp_path / (segment_name(2) + ".tmp")).write_bytes(b"half a new segm")
    (tmp_path / "spool-000001.offset.tmp").write_bytes(b"half")
    spool = Spool(tmp_path, max_bytes=BIG)
    assert not list(tmp_path.glob("*.tmp"))
    assert [f.batch_id for f in replay_all(spool)] == ids


# -- a real crash: SIGKILL in the middle of appending

APPENDER = """
import sys, uuid
from datetime import UTC, datetime
from pathlib import Path
from pgsyslog.record import Record
from pgsyslog.storage.spool import Spool

spool = Spool(Path(sys.argv[1]), max_bytes=10**12, fsync=False, segment_bytes=400_000)
rows = [Record(datetime(2026, 1, 1, tzinfo=UTC), None, 1, 5, "h", "a", None, None, None,
               "x" * 1000, "raw", "tcp", None, None, None)] * 60
while True:
    batch_id = uuid.uuid4()
    spool.append(batch_id, rows)
    print(batch_id, flush=True)
"""


def append_until_killed(directory: Path, acknowledged: int) -> list[uuid.UUID]:
    """Run an appender, SIGKILL it after it acknowledged that many batches; their ids."""
    proc = subprocess.Popen([sys.executable, "-c", APPENDER, str(directory)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    ids: list[uuid.UUID] = []
    deadline = time.monotonic() + 60
    while len(ids) < acknowledged and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        ids.append(uuid.UUID(line.strip()))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    return ids


def test_a_writer_killed_while_appending_loses_no_acknowledged_batch(tmp_path: Path) -> None:
    acknowledged: list[uuid.UUID] = []
    for round_ in range(3):
        acknowledged += append_until_killed(tmp_path, 15 + 10 * round_)
    assert len(acknowledged) == 15 + 25 + 35
    spool = Spool(tmp_path, max_bytes=BIG)
    replayed = [f.batch_id for f in replay_all(spool)]
    assert len(replayed) == len(set(replayed))
    assert set(acknowledged) <= set(replayed)
    # Batches appended after the last id the test read (the appender runs on until the
    # kill lands) may come on top, each whole and once (checked above): they are not lost.
    assert [b for b in replayed if b in set(acknowledged)] == acknowledged
    assert spool.pending == 0


# -- a real refused write: a file size limit makes write() stop half-way with EFBIG

SIZE_LIMITED = """
import resource, signal, sys, uuid
from datetime import UTC, datetime
from pathlib import Path
from pgsyslog.record import Record
from pgsyslog.storage.spool import Spool

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() fails with EFBIG instead
spool = Spool(Path(sys.argv[1]), max_bytes=10**12)
resource.setrlimit(resource.RLIMIT_FSIZE, (150_000, 150_000))
row = Record(datetime(2026, 1, 1, tzinfo=UTC), None, 1, 5, "h", "a", None, None, None,
             "x" * 1000, "raw", "tcp", None, None, None)
for size in [40] * 5 + [1] * 3:
    batch_id = uuid.uuid4()
    try:
        spool.append(batch_id, [row] * size)
    except OSError as e:
        print("refused", e.errno, flush=True)
    else:
        print(batch_id, flush=True)
"""


def test_a_write_the_disk_refuses_half_way_is_cut_off_and_the_spool_goes_on(
        tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", SIZE_LIMITED, str(tmp_path)],
                          capture_output=True, text=True, timeout=60, check=True)
    lines = done.stdout.split()
    refused = [line for line in lines if line == "refused"]
    acknowledged = [uuid.UUID(line) for line in lines if len(line) == 36]
    assert refused and len(acknowledged) >= 5, done.stdout  # big ones refused, small ones not
    spool = Spool(tmp_path, max_bytes=BIG)
    assert spool.damaged_bytes == 0  # the half-written frames were cut off at once
    assert [f.batch_id for f in replay_all(spool)] == acknowledged


def test_records_survive_the_round_trip_through_a_frame(tmp_path: Path) -> None:
    rows = [record(i) for i in range(5)]
    spool = Spool(tmp_path, max_bytes=BIG)
    spool.append(uuid.uuid4(), rows)
    assert next(spool.frames()).records == rows
    assert encode_records(rows) in (tmp_path / segment_name(1)).read_bytes()
