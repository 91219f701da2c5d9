"""The disk spool: batches that could not be written while the database was away.

The spool is a directory of segment files, ``spool-000001.bin``, ``spool-000002.bin``...,
each a header line and frames in arrival order, one frame per batch with its batch id
and a checksum (the byte layout is in `spool_format`). Appends go to the newest segment,
the active one; it is sealed when it passes `SEGMENT_BYTES` and when a replay reaches it,
so a replay reads only sealed files while appends go on into a new one: the lock is held
for one append or one bookkeeping step, never for a whole replay.

A frame is fsynced before `append` returns (``fsync`` may be turned off; then a power loss,
not a crash of the process, can lose or repeat batches). Replay progress of a segment is
kept in ``spool-000001.offset``: the segment's identity (a UUID from its header) and how far
it is replayed, written to a temporary file, fsynced and renamed. A fully replayed segment
is deleted data file first, progress file second, so a crash in between leaves a progress
file without data (garbage, removed at the next start), never one that could hide a later
file's frames; progress whose identity does not match its segment is ignored.

Damage (a torn write, a flipped bit) costs only its own bytes: replay resynchronises on
the next intact frame, and the bad bytes are appended to ``spool.damaged``, counted and
logged. A batch that was being written when the receiver died is cut off the newest
segment at the next start the same way. A crash right after a region was moved aside can
copy it there a second time: ``spool.damaged`` is for a person to look at, never replayed.
Replaying a batch twice (a crash between its commit and its progress) is harmless because
the database keeps each batch id once.

An old spool (``spool.bin`` and ``spool.offset``, frames without batch ids) found at start
is carried over once into a segment, with batch ids derived from its bytes.

Rows that the database refuses for good go to ``rejects.jsonl``, one JSON object per line.

Reading a segment by hand (frames start after the 50-byte header line)::

    import json, struct, sys, uuid
    data = open(sys.argv[1], "rb").read()
    pos = 50
    while pos + 28 <= len(data):
        magic, length, batch, crc = struct.unpack_from(">4sI16sI", data, pos)
        print(uuid.UUID(bytes=batch), json.loads(data[pos + 28:pos + 28 + length]))
        pos += 28 + length
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import mmap
import os
import re
import threading
import uuid
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pgsyslog.record import Record, record_fields
from pgsyslog.storage.spool_format import (
    FRAME_HEADER_SIZE,
    SEGMENT_HEADER_SIZE,
    Buffer,
    Damage,
    Frame,
    encode_frame,
    format_progress,
    frame_at,
    frames_start,
    intact_end,
    legacy_batch_id,
    legacy_frames,
    parse_progress,
    scan,
    segment_header,
    segment_identity,
)

log = logging.getLogger(__name__)

MIB = 1024 * 1024
# Large enough that a long outage makes few files, small enough that a replayed segment
# frees its disk space soon and that scanning the newest one at start takes well under
# a second.
SEGMENT_BYTES = 64 * MIB

_SEGMENT_NAME = re.compile(r"spool-(\d{6,})\.bin")
_PROGRESS_NAME = re.compile(r"spool-(\d{6,})\.offset")


def record_to_json(record: Record) -> dict[str, Any]:
    """Every field of the record, JSON-ready (raw in base64)."""
    return {
        **record_fields(record),
        "transport": record.transport,
        "source_ip": record.source_ip,
        "raw": None if record.raw is None else base64.b64encode(record.raw).decode(),
        "peer_name": record.peer_name,
    }


def record_from_json(obj: dict[str, Any]) -> Record:
    event_time = obj["event_time"]
    raw = obj["raw"]
    return Record(
        received_at=datetime.fromisoformat(obj["received_at"]),
        event_time=None if event_time is None else datetime.fromisoformat(event_time),
        facility=obj["facility"], severity=obj["severity"], hostname=obj["hostname"],
        app_name=obj["app_name"], procid=obj["procid"], msgid=obj["msgid"],
        structured_data=obj["structured_data"], message=obj["message"], format=obj["format"],
        transport=obj["transport"], source_ip=obj["source_ip"],
        parse_error=obj["parse_error"], raw=None if raw is None else base64.b64decode(raw),
        peer_name=obj.get("peer_name"),  # absent in frames spooled before 0.3
    )


def encode_records(records: Sequence[Record]) -> bytes:
    return json.dumps([record_to_json(r) for r in records],
                      ensure_ascii=False, separators=(",", ":")).encode()


def decode_records(payload: bytes) -> list[Record] | None:
    """The records of a payload, or None when it is not a list of records."""
    try:
        return [record_from_json(obj) for obj in json.loads(payload)]
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def segment_name(number: int) -> str:
    return f"spool-{number:06d}.bin"


def progress_path(segment: Path) -> Path:
    return segment.with_suffix(".offset")


def removal_order(segment: Path) -> tuple[Path, Path]:
    """The files of a replayed segment in the order they are deleted: data, then progress."""
    return segment, progress_path(segment)


@dataclass(frozen=True)
class SpoolFrame:
    """One spooled batch, and where it is, for `Spool.mark_replayed`."""

    batch_id: uuid.UUID
    records: list[Record] = field(repr=False)
    segment: int
    start: int
    end: int


@dataclass
class _Segment:
    number: int
    path: Path
    identity: str
    size: int
    replayed: int  # every byte before this is in the database or in spool.damaged
    done: dict[int, int] = field(default_factory=dict)  # finished past `replayed`: start -> end
    sealed: bool = True

    @property
    def pending(self) -> int:
        return self.size - self.replayed


class Spool:
    """The spool directory. Thread-safe: appends may run while a replay iterates."""

    def __init__(self, directory: Path, max_bytes: int, fsync: bool = True, *,
                 segment_bytes: int = SEGMENT_BYTES) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.fsync = fsync
        self.segment_bytes = segment_bytes
        self.rejects_path = directory / "rejects.jsonl"
        self.damaged_path = directory / "spool.damaged"
        self._lock = threading.Lock()
        self._segments: dict[int, _Segment] = {}
        self._active: _Segment | None = None
        self._active_fd = -1
        self._next_number = 1
        # Read without the lock (an int read is atomic), so that the event loop never
        # waits for an fsync in another thread to learn the spool's size.
        self._size = 0
        self._pending = 0
        self._damaged_bytes = 0
        self._warned_full = False
        self._unreadable: set[int] = set()
        directory.mkdir(parents=True, exist_ok=True)
        self._recover()

    @property
    def path(self) -> Path:
        """Where the spool lives, for messages: its directory."""
        return self.directory

    @property
    def size(self) -> int:
        """Bytes in segment files, replayed or not: what max_bytes caps."""
        return self._size

    @property
    def pending(self) -> int:
        """Bytes not replayed yet."""
        return self._pending

    @property
    def damaged_bytes(self) -> int:
        """Bytes this process moved to spool.damaged."""
        return self._damaged_bytes

    def append(self, batch_id: uuid.UUID, records: Sequence[Record], *,
               force: bool = False) -> bool:
        """Add one batch; False (one log line until the spool drains) past max_bytes.

        force=True ignores max_bytes (a stopping receiver spools everything). Raises
        OSError when the disk refuses; the spool stays usable and loses nothing else.
        """
        frame = encode_frame(batch_id, encode_records(records))
        with self._lock:
            new_segment = self._needs_new_segment(len(frame))
            needed = len(frame) + (SEGMENT_HEADER_SIZE if new_segment else 0)
            if not force and self._size + needed > self.max_bytes:
                self._refuse()
                return False
            if new_segment:
                self._seal_active()
                self._open_active()
            self._write_frame(frame)
        return True

    def frames(self) -> Generator[SpoolFrame, None, None]:
        """Every frame not replayed yet, oldest first; damage on the way is moved aside.

        The segments are those that exist when the iteration starts; reaching the active
        one seals it, so frames appended from then on wait for the next iteration, and a
        replay that stops early (the database failed again) makes no new file. Two
        iterations at once would give the same frames twice. close() it when stopping
        early: it holds the segment open.
        """
        with self._lock:
            numbers = sorted(self._segments)
        for number in numbers:
            with self._lock:
                if self._active is not None and self._active.number == number:
                    self._seal_active()
            yield from self._segment_frames(number)

    def mark_replayed(self, frame: SpoolFrame) -> None:
        """That frame's rows are committed: record it; delete a segment once all of it is.

        Never raises for I/O: progress that cannot be saved costs at most a repeat after
        a crash, and the database keeps each batch id once.
        """
        with self._lock:
            segment = self._segments.get(frame.segment)
            if segment is not None:
                self._finish(segment, frame.start, frame.end)

    def reject(self, record: Record, error: str) -> None:
        """Keep a row that no table takes, with the reason, for a person to look at."""
        line = json.dumps({"error": error, "record": record_to_json(record)}, ensure_ascii=False)
        with open(self.rejects_path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")

    # -- appending

    def _needs_new_segment(self, frame_length: int) -> bool:
        active = self._active
        if active is None:
            return True
        has_frames = active.size > SEGMENT_HEADER_SIZE
        return has_frames and active.size + frame_length > self.segment_bytes

    def _refuse(self) -> None:
        if not self._warned_full:
            log.error("spool is full (%d bytes, spool_max_bytes %d): batches are no longer "
                      "spooled; the writer waits for the database, so TCP senders block "
                      "and UDP datagrams are dropped when the queue fills",
                      self._size, self.max_bytes)
            self._warned_full = True

    def _open_active(self) -> None:
        number = self._next_number
        self._next_number += 1
        segment, fd = self._create_segment(number, ())
        segment.sealed = False
        self._register(segment)
        self._active, self._active_fd = segment, fd

    def _write_frame(self, frame: bytes) -> None:
        segment = self._active
        assert segment is not None
        try:
            _write_all(self._active_fd, frame)
            if self.fsync:
                os.fsync(self._active_fd)
        except OSError:
            self._undo_partial_write(segment)
            raise
        self._grow(segment, len(frame))

    def _undo_partial_write(self, segment: _Segment) -> None:
        """Cut a failed append off; if even that fails, leave it to replay as damage."""
        try:
            os.ftruncate(self._active_fd, segment.size)
        except OSError:
            with contextlib.suppress(OSError):
                self._grow(segment, os.fstat(self._active_fd).st_size - segment.size)
            self._seal_active()

    def _grow(self, segment: _Segment, length: int) -> None:
        segment.size += length
        self._size += length
        self._pending += length

    def _seal_active(self) -> None:
        segment = self._active
        if segment is None:
            return
        with contextlib.suppress(OSError):  # written and fsynced already: nothing to lose
            os.close(self._active_fd)
        self._active, self._active_fd = None, -1
        segment.sealed = True
        if segment.pending == 0:
            self._remove(segment)

    def _create_segment(self, number: int, frames: Iterable[bytes]) -> tuple[_Segment, int]:
        """A new segment file holding frames, complete or absent: written aside, renamed."""
        path = self.directory / segment_name(number)
        tmp = path.with_name(path.name + ".tmp")
        identity = uuid.uuid4()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o666)
        try:
            size = _write_all(fd, segment_header(identity))
            for frame in frames:
                size += _write_all(fd, frame)
            if self.fsync:
                os.fsync(fd)
            os.replace(tmp, path)
            self._sync_directory()
        except OSError:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        return _Segment(number, path, identity.hex, size, SEGMENT_HEADER_SIZE), fd

    def _register(self, segment: _Segment) -> None:
        self._segments[segment.number] = segment
        self._size += segment.size
        self._pending += segment.pending

    # -- replaying

    def _segment_frames(self, number: int) -> Generator[SpoolFrame, None, None]:
        with self._lock:
            segment = self._segments.get(number)
            if segment is None:
                return
            start, end = segment.replayed, segment.size
        with contextlib.ExitStack() as stack:
            try:
                buf = stack.enter_context(_mapped(segment.path, end))
            except (OSError, ValueError) as e:  # ValueError: shorter than it was
                self._cannot_read(segment, e)
                return
            for item in scan(buf, start, end):
                with self._lock:
                    finished = item.start < segment.replayed or item.start in segment.done
                if finished:
                    continue
                records = decode_records(item.payload) if isinstance(item, Frame) else None
                if isinstance(item, Frame) and records is not None:
                    yield SpoolFrame(item.batch_id, records, number, item.start, item.end)
                    continue
                with self._lock:
                    self._set_aside(segment, buf, Damage(item.start, item.end))

    def _set_aside(self, segment: _Segment, buf: Buffer, damage: Damage) -> None:
        try:
            self._move_aside(segment.path, buf, damage)
        except OSError as e:  # the bytes stay where they are; the next replay tries again
            log.error("cannot move damaged spool bytes to %s: %s", self.damaged_path, e)
            return
        self._finish(segment, damage.start, damage.end)

    def _cannot_read(self, segment: _Segment, error: Exception) -> None:
        if segment.number not in self._unreadable:
            self._unreadable.add(segment.number)
            log.error("cannot read spool segment %s, its batches wait: %s", segment.path, error)

    def _finish(self, segment: _Segment, start: int, end: int) -> None:
        """Bytes start..end are replayed (or moved aside); move the segment's progress on."""
        if start < segment.replayed:
            return
        segment.done[start] = end
        before = segment.replayed
        while segment.replayed in segment.done:
            segment.replayed = segment.done.pop(segment.replayed)
        if segment.replayed == before:
            return
        self._pending -= segment.replayed - before
        if self._pending == 0:
            self._warned_full = False
        self._save_progress(segment)
        if segment.sealed and segment.pending <= 0:
            self._remove(segment)

    def _save_progress(self, segment: _Segment) -> None:
        path = progress_path(segment.path)
        tmp = path.with_name(path.name + ".tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(format_progress(segment.identity, segment.replayed))
                fh.flush()
                if self.fsync:
                    os.fsync(fh.fileno())
            os.replace(tmp, path)
            self._sync_directory()
        except OSError as e:
            log.warning("cannot record spool progress in %s (after a crash some batches "
                        "would be replayed again, and skipped by the database): %s", path, e)

    def _remove(self, segment: _Segment) -> None:
        try:
            for path in removal_order(segment.path):
                path.unlink(missing_ok=True)
                self._sync_directory()
        except OSError as e:
            log.error("cannot delete the replayed spool segment %s: %s", segment.path, e)
            return
        del self._segments[segment.number]
        self._size -= segment.size
        self._pending -= segment.pending

    def _move_aside(self, source: Path, buf: Buffer, damage: Damage,
                    cause: str = "a torn write or a disk error") -> None:
        """Append damaged bytes to spool.damaged (durably), count and log them."""
        created = not self.damaged_path.exists()
        with open(self.damaged_path, "ab") as fh:
            at = fh.tell()
            fh.write(buf[damage.start:damage.end])
            fh.flush()
            if self.fsync:
                os.fsync(fh.fileno())
        if created:
            self._sync_directory()
        self._damaged_bytes += damage.length
        log.error("spool %s: %d damaged bytes at byte %d (%s) moved to %s at byte %d; "
                  "the intact batches around them are replayed",
                  source, damage.length, damage.start, cause, self.damaged_path, at)

    # -- starting

    def _recover(self) -> None:
        """Bring the directory to a known state after whatever stopped the last process."""
        self._remove_garbage()
        self._carry_over_legacy()
        for number, path in _numbered(self.directory, _SEGMENT_NAME):
            self._load_segment(number, path)
        if self._segments:
            self._next_number = max(self._segments) + 1
            self._cut_torn_tail(self._segments[self._next_number - 1])
        for segment in list(self._segments.values()):
            if segment.pending <= 0:
                self._remove(segment)

    def _remove_garbage(self) -> None:
        """Temporary files, and progress files whose segment is gone (a cut-short cleanup)."""
        segments = {number for number, _ in _numbered(self.directory, _SEGMENT_NAME)}
        garbage = [path for path in self.directory.glob("spool-*.tmp")]
        garbage += [path for number, path in _numbered(self.directory, _PROGRESS_NAME)
                    if number not in segments]
        for path in garbage:
            path.unlink(missing_ok=True)
        if garbage:
            self._sync_directory()

    def _load_segment(self, number: int, path: Path) -> None:
        with open(path, "rb") as fh:
            header = fh.read(SEGMENT_HEADER_SIZE)
            size = os.fstat(fh.fileno()).st_size
        identity = segment_identity(header)
        segment = _Segment(number, path, identity, size, frames_start(header))
        replayed = self._read_progress(segment)
        if replayed is not None and _frame_boundary(path, replayed, size):
            segment.replayed = max(segment.replayed, replayed)
        elif replayed is not None:
            # A damaged progress file must not hide frames: replay the whole segment
            # (the database skips the batches it has already).
            log.error("spool progress of %s says %d, which is no frame boundary; the whole "
                      "segment is replayed again", path, replayed)
        self._register(segment)

    def _read_progress(self, segment: _Segment) -> int | None:
        path = progress_path(segment.path)
        try:
            progress = parse_progress(path.read_bytes())
        except FileNotFoundError:
            return None
        if progress is None or progress[0] != segment.identity:
            log.warning("spool progress file %s does not belong to %s; replaying all of it",
                        path, segment.path.name)
            return None
        return progress[1]

    def _cut_torn_tail(self, segment: _Segment) -> None:
        """Cut off what follows the newest segment's last intact frame: a torn append."""
        if segment.pending <= 0:
            return
        with _mapped(segment.path, segment.size) as buf:
            end = intact_end(buf, segment.replayed, segment.size)
            if end == segment.size:
                return
            self._move_aside(segment.path, buf, Damage(end, segment.size),
                             "a batch being written when the receiver stopped")
        with open(segment.path, "r+b") as fh:
            fh.truncate(end)
            if self.fsync:
                os.fsync(fh.fileno())
        cut = segment.size - end
        segment.size = end
        self._size -= cut
        self._pending -= cut

    def _carry_over_legacy(self) -> None:
        """Copy an old spool.bin's unreplayed frames into a segment, then delete it."""
        legacy = self.directory / "spool.bin"
        legacy_progress = self.directory / "spool.offset"
        if legacy.exists():
            with _mapped(legacy, legacy.stat().st_size) as buf:
                frames, intact = legacy_frames(buf, len(buf))
                replayed = _legacy_replayed(legacy_progress, [s for s, _ in frames], intact)
                kept = [(s, p) for s, p in frames if s >= replayed]
                if intact < len(buf):
                    self._move_aside(legacy, buf, Damage(intact, len(buf)),
                                     "the end of the old spool file")
            if kept:
                number = 1 + max((n for n, _ in _numbered(self.directory, _SEGMENT_NAME)),
                                 default=0)
                _, fd = self._create_segment(number, (encode_frame(legacy_batch_id(s, p), p)
                                                      for s, p in kept))
                os.close(fd)
                log.warning("carried %d spooled batches over from %s into %s", len(kept),
                            legacy, segment_name(number))
        for path in (legacy, legacy_progress):
            if path.exists():
                path.unlink()
                self._sync_directory()

    def _sync_directory(self) -> None:
        """Make creates, renames and deletes in the directory durable."""
        if not self.fsync:
            return
        fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _legacy_replayed(progress: Path, starts: list[int], intact: int) -> int:
    """Where the old spool's replay stood; 0 when its offset is not at a frame boundary."""
    try:
        offset = int(progress.read_text().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0
    return offset if offset in starts or offset == intact else 0


def _frame_boundary(path: Path, offset: int, size: int) -> bool:
    """Whether replay progress ``offset`` is the end of the segment or the start of an
    intact frame in it.

    tests/test_spool_damage.py::test_a_damaged_progress_number_hides_no_frame
    """
    if offset == size:
        return True
    if not 0 <= offset < size:
        return False
    with open(path, "rb") as fh:
        fh.seek(offset)
        head = fh.read(FRAME_HEADER_SIZE)
        if len(head) < FRAME_HEADER_SIZE:
            return False
        length = int.from_bytes(head[4:8], "big")
        if length > size - offset - FRAME_HEADER_SIZE:
            return False
        data = head + fh.read(length)
    return frame_at(data, 0, len(data)) is not None


def _numbered(directory: Path, pattern: re.Pattern[str]) -> list[tuple[int, Path]]:
    found = [(int(m[1]), path) for path in directory.iterdir()
             if (m := pattern.fullmatch(path.name))]
    return sorted(found)


def _write_all(fd: int, data: bytes) -> int:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    return len(data)


@contextlib.contextmanager
def _mapped(path: Path, length: int) -> Iterator[Buffer]:
    """The first length bytes of a file, read-only, without reading them all in."""
    if length == 0:
        yield b""
        return
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), length, access=mmap.ACCESS_READ) as buf:
        yield buf
