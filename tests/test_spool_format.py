"""The spool's byte format on its own: frames, checksums, resynchronisation, progress lines."""

from __future__ import annotations

import struct
import uuid
import zlib

import pytest

from pgsyslog.storage.spool_format import (
    FRAME_HEADER_SIZE,
    FRAME_MAGIC,
    SEGMENT_HEADER_SIZE,
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

IDS = [uuid.UUID(int=i + 1) for i in range(5)]
PAYLOADS = [f'[{{"n":{i},"text":"ünïcode ✓"}}]'.encode() for i in range(5)]


def five_frames() -> tuple[bytes, list[int]]:
    """Five frames back to back, and where each starts."""
    data, starts = b"", []
    for batch_id, payload in zip(IDS, PAYLOADS, strict=True):
        starts.append(len(data))
        data += encode_frame(batch_id, payload)
    return data, starts


def intact(items: list[Frame | Damage]) -> list[uuid.UUID]:
    return [item.batch_id for item in items if isinstance(item, Frame)]


def test_a_frame_reads_back_with_its_batch_id_and_payload() -> None:
    data = encode_frame(IDS[0], PAYLOADS[0])
    assert data.startswith(FRAME_MAGIC)
    assert frame_at(data, 0, len(data)) == Frame(0, len(data), IDS[0], PAYLOADS[0])


def test_a_frame_cut_short_is_not_a_frame() -> None:
    data = encode_frame(IDS[0], PAYLOADS[0])
    assert all(frame_at(data, 0, end) is None for end in range(len(data)))


@pytest.mark.parametrize("where", ["magic", "length", "batch id", "checksum", "payload"])
def test_one_flipped_bit_anywhere_in_a_frame_is_caught(where: str) -> None:
    offsets = {"magic": 1, "length": 6, "batch id": 10, "checksum": 25,
               "payload": FRAME_HEADER_SIZE + 3}
    data = bytearray(encode_frame(IDS[0], PAYLOADS[0]))
    data[offsets[where]] ^= 0x04
    assert frame_at(bytes(data), 0, len(data)) is None


def test_scan_gives_every_frame_in_order() -> None:
    data, starts = five_frames()
    items = list(scan(data, 0, len(data)))
    assert intact(items) == IDS
    assert [item.start for item in items] == starts


def test_a_damaged_first_frame_costs_only_itself() -> None:
    data, starts = five_frames()
    damaged = bytearray(data)
    damaged[starts[0] + FRAME_HEADER_SIZE + 2] ^= 0xFF
    items = list(scan(bytes(damaged), 0, len(damaged)))
    assert items[0] == Damage(0, starts[1])
    assert intact(items) == IDS[1:]


def test_garbage_between_frames_is_one_damaged_region() -> None:
    data, starts = five_frames()
    garbage = b"\x00" * 100 + FRAME_MAGIC + b"not a frame" + FRAME_MAGIC * 3 + b"junk"
    mixed = data[:starts[2]] + garbage + data[starts[2]:]
    items = list(scan(mixed, 0, len(mixed)))
    assert intact(items) == IDS
    assert [item for item in items if isinstance(item, Damage)] == \
        [Damage(starts[2], starts[2] + len(garbage))]


def test_a_torn_last_frame_is_damage_up_to_the_end() -> None:
    data, starts = five_frames()
    torn = data[:-7]
    items = list(scan(torn, 0, len(torn)))
    assert intact(items) == IDS[:4]
    assert items[-1] == Damage(starts[4], len(torn))
    assert intact_end(torn, 0, len(torn)) == starts[4]


def test_a_frame_inside_a_damaged_frames_length_is_still_found() -> None:
    """A length that grew by a flipped bit must not swallow the frames it now covers."""
    data, starts = five_frames()
    damaged = bytearray(data)
    damaged[starts[0] + 6] ^= 0x01  # payload length + 256: reaches into the next frames
    assert intact(list(scan(bytes(damaged), 0, len(damaged)))) == IDS[1:]


def test_scan_starts_where_it_is_told() -> None:
    data, starts = five_frames()
    assert intact(list(scan(data, starts[3], len(data)))) == IDS[3:]
    assert list(scan(data, len(data), len(data))) == []


def test_a_segment_header_states_its_identity() -> None:
    identity = uuid.uuid4()
    header = segment_header(identity)
    assert len(header) == SEGMENT_HEADER_SIZE and header.endswith(b"\n")
    assert segment_identity(header) == identity.hex
    assert frames_start(header) == SEGMENT_HEADER_SIZE


def test_a_damaged_header_has_a_stable_identity_of_its_own_and_no_frames_start() -> None:
    identity = uuid.uuid4()
    damaged = bytearray(segment_header(identity))
    damaged[3] ^= 0x20
    assert segment_identity(bytes(damaged)) == segment_identity(bytes(damaged))
    assert segment_identity(bytes(damaged)) != identity.hex
    assert frames_start(bytes(damaged)) == 0


def test_progress_lines_read_back_and_nonsense_is_refused() -> None:
    identity = uuid.uuid4().hex
    assert parse_progress(format_progress(identity, 1234)) == (identity, 1234)
    for nonsense in (b"", b"1234", b"abc 12", f"{identity} -5".encode(), b"\x00" * 40):
        assert parse_progress(nonsense) is None


def test_the_old_format_is_read_up_to_its_first_bad_frame() -> None:
    def old_frame(payload: bytes) -> bytes:
        return struct.pack(">II", len(payload), zlib.crc32(payload)) + payload

    data = old_frame(b"[1]") + old_frame(b"[2]")
    frames, end = legacy_frames(data + b"\x00\x00\x00\x09torn", len(data) + 8)
    assert frames == [(0, b"[1]"), (11, b"[2]")] and end == len(data)
    assert legacy_batch_id(0, b"[1]") == legacy_batch_id(0, b"[1]") != legacy_batch_id(11, b"[1]")
