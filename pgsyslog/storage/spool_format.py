"""The spool's bytes on disk, without I/O: segment headers, frames, resynchronisation.

A segment file starts with one line, ``pgsyslog-spool 1 <32 hex digits>\\n`` (50 bytes): the
format version and the segment's identity, a random UUID, so that progress recorded for
an earlier file of the same name is never taken for this one's. Frames follow, one per
batch:

    4 bytes   magic, FF 50 47 46 (0xFF never occurs in UTF-8, so never inside a payload)
    4 bytes   payload length (big-endian)
    16 bytes  the batch id (a UUID)
    4 bytes   CRC-32 of the length, the batch id and the payload
    payload   JSON: a list of records

After damage (a torn write, a flipped bit) `scan` looks for the next magic whose frame
checks out and goes on from there, so one bad region costs only its own bytes.

The old format (``spool.bin``: a 4-byte length, a 4-byte CRC-32 of the payload, the payload)
is read by `legacy_frames` so that an old spool can be carried over once.
"""

from __future__ import annotations

import hashlib
import mmap
import struct
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypeAlias

Buffer: TypeAlias = bytes | mmap.mmap

SEGMENT_MAGIC = b"pgsyslog-spool 1 "
SEGMENT_HEADER_SIZE = len(SEGMENT_MAGIC) + 32 + 1
FRAME_MAGIC = b"\xffPGF"
_FRAME_HEADER = struct.Struct(">4sI16sI")  # magic, payload length, batch id, CRC-32
FRAME_HEADER_SIZE = _FRAME_HEADER.size
_LEGACY_HEADER = struct.Struct(">II")  # payload length, CRC-32 of the payload


@dataclass(frozen=True, slots=True)
class Frame:
    """An intact frame: its place in the buffer, its batch id and its payload."""

    start: int
    end: int
    batch_id: uuid.UUID
    payload: bytes


@dataclass(frozen=True, slots=True)
class Damage:
    """Bytes that belong to no intact frame."""

    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start


def segment_header(identity: uuid.UUID) -> bytes:
    return SEGMENT_MAGIC + identity.hex.encode() + b"\n"


def header_is_valid(header: bytes) -> bool:
    if len(header) != SEGMENT_HEADER_SIZE or not header.startswith(SEGMENT_MAGIC) \
            or not header.endswith(b"\n"):
        return False
    try:
        uuid.UUID(header[len(SEGMENT_MAGIC):-1].decode("ascii"))
    except ValueError:
        return False
    return True


def segment_identity(header: bytes) -> str:
    """The identity a segment's first bytes state: its UUID's hex, or a digest of them.

    A damaged header still has a stable identity (a digest of its bytes), so progress
    recorded for it stays valid, while a new file of the same name never matches.
    """
    if header_is_valid(header):
        return header[len(SEGMENT_MAGIC):-1].decode("ascii")
    return hashlib.sha256(header).hexdigest()[:32]


def frames_start(header: bytes) -> int:
    """Where frames begin: after a valid header, else at 0 (the bad header is damage)."""
    return SEGMENT_HEADER_SIZE if header_is_valid(header) else 0


def encode_frame(batch_id: uuid.UUID, payload: bytes) -> bytes:
    covered = struct.pack(">I", len(payload)) + batch_id.bytes
    crc = zlib.crc32(payload, zlib.crc32(covered))
    return _FRAME_HEADER.pack(FRAME_MAGIC, len(payload), batch_id.bytes, crc) + payload


def frame_at(buf: Buffer, pos: int, end: int) -> Frame | None:
    """The frame starting at pos if it is whole and its checksum is right, else None."""
    if end - pos < FRAME_HEADER_SIZE:
        return None
    magic, length, batch_id, crc = _FRAME_HEADER.unpack(buf[pos:pos + FRAME_HEADER_SIZE])
    payload_start = pos + FRAME_HEADER_SIZE
    if magic != FRAME_MAGIC or length > end - payload_start:
        return None
    payload = buf[payload_start:payload_start + length]
    if zlib.crc32(payload, zlib.crc32(buf[pos + 4:pos + 24])) != crc:
        return None
    return Frame(pos, payload_start + length, uuid.UUID(bytes=batch_id), payload)


def scan(buf: Buffer, start: int, end: int) -> Iterator[Frame | Damage]:
    """Every intact frame and every damaged region between start and end, in order."""
    pos = start
    while pos < end:
        frame = frame_at(buf, pos, end)
        if frame is not None:
            yield frame
            pos = frame.end
            continue
        resume = _next_intact(buf, pos + 1, end)
        yield Damage(pos, resume)
        pos = resume


def _next_intact(buf: Buffer, pos: int, end: int) -> int:
    """The start of the next intact frame at or after pos, or end when there is none."""
    while (candidate := buf.find(FRAME_MAGIC, pos, end)) >= 0:
        if frame_at(buf, candidate, end) is not None:
            return candidate
        pos = candidate + 1
    return end


def intact_end(buf: Buffer, start: int, end: int) -> int:
    """Where the last intact frame after start ends (start when there is none)."""
    last = start
    for item in scan(buf, start, end):
        if isinstance(item, Frame):
            last = item.end
    return last


def format_progress(identity: str, offset: int) -> bytes:
    """The line of a segment's progress file: its identity and how far it is replayed."""
    return f"{identity} {offset}\n".encode()


def parse_progress(text: bytes) -> tuple[str, int] | None:
    parts = text.split()
    if len(parts) != 2 or len(parts[0]) != 32 or not parts[1].isdigit():
        return None
    return parts[0].decode("ascii", "replace"), int(parts[1])


def legacy_frames(buf: Buffer, end: int) -> tuple[list[tuple[int, bytes]], int]:
    """The old format's intact frames from the start, as (start, payload), and where they end.

    The old format has no marker to resynchronise on: the first bad frame ends it.
    """
    frames: list[tuple[int, bytes]] = []
    pos = 0
    while end - pos >= _LEGACY_HEADER.size:
        length, crc = _LEGACY_HEADER.unpack(buf[pos:pos + _LEGACY_HEADER.size])
        payload_start = pos + _LEGACY_HEADER.size
        payload = buf[payload_start:payload_start + length]
        if length > end - payload_start or zlib.crc32(payload) != crc:
            break
        frames.append((pos, payload))
        pos = payload_start + length
    return frames, pos


def legacy_batch_id(start: int, payload: bytes) -> uuid.UUID:
    """A batch id for an old frame that is the same each time the old file is read.

    Carrying an old spool over twice (a crash in the middle) then gives the same ids,
    which the database already holds.
    """
    digest = hashlib.sha256(payload).hexdigest()
    return uuid.uuid5(_LEGACY_NAMESPACE, f"{start}:{digest}")


_LEGACY_NAMESPACE = uuid.UUID("5d1b3f0e-8a53-4c36-9d57-2f3a0c9e6b11")
