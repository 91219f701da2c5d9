"""The disk spool: batches that could not be written while the database was away.

One append-only file, ``spool.bin``, of frames in arrival order. A frame is one batch:

    4 bytes  length of the payload (big-endian)
    4 bytes  CRC-32 of the payload
    payload  JSON: a list of records

A frame is fsynced before the batch counts as taken care of (``fsync`` may be turned
off). Replay reads frames from the offset kept in ``spool.offset`` and moves it past each
frame once that frame's rows are committed, so a replay cut short resumes where it
stopped; a crash between a commit and the offset update can repeat that one batch. When
all is replayed both files are deleted. A damaged tail (a crash in the middle of an
append) is reported and skipped. Rows that the database refuses for good go to
``rejects.jsonl`` beside them, one JSON object per line.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import struct
import zlib
from collections.abc import Generator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from pgsyslog.record import Record, record_fields

log = logging.getLogger(__name__)

_HEADER = struct.Struct(">II")


def record_to_json(record: Record) -> dict[str, Any]:
    """Every field of the record, JSON-ready (raw in base64)."""
    return {
        **record_fields(record),
        "transport": record.transport,
        "source_ip": record.source_ip,
        "raw": None if record.raw is None else base64.b64encode(record.raw).decode(),
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
    )


class Spool:
    def __init__(self, directory: Path, max_bytes: int, fsync: bool = True) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.fsync = fsync
        self.path = directory / "spool.bin"
        self.offset_path = directory / "spool.offset"
        self.rejects_path = directory / "rejects.jsonl"
        self._warned_full = False

    @property
    def size(self) -> int:
        """Bytes in the spool file, replayed or not (0 when there is none)."""
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    @property
    def pending(self) -> int:
        """Bytes not replayed yet."""
        size = self.size
        return size - self._replayed_offset() if size else 0

    def append(self, records: Sequence[Record]) -> bool:
        """Add one batch at the end; False (and one log line) when the cap would be passed."""
        payload = json.dumps([record_to_json(r) for r in records],
                             ensure_ascii=False, separators=(",", ":")).encode()
        frame = _HEADER.pack(len(payload), zlib.crc32(payload)) + payload
        if self.size + len(frame) > self.max_bytes:
            if not self._warned_full:
                log.error("spool is full (%d bytes, spool_max_bytes %d): batches are no longer "
                          "spooled; the writer waits for the database, so TCP senders block "
                          "and UDP datagrams are dropped when the queue fills",
                          self.size, self.max_bytes)
                self._warned_full = True
            return False
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.path, "ab") as fh:
            fh.write(frame)
            fh.flush()
            if self.fsync:
                os.fsync(fh.fileno())
        return True

    def batches(self) -> Generator[tuple[int, list[Record]], None, None]:
        """(offset after the frame, its records) for each frame not replayed yet, in order."""
        if not self.path.exists():
            return
        offset = self._replayed_offset()
        with open(self.path, "rb") as fh:
            fh.seek(offset)
            while header := fh.read(_HEADER.size):
                length, crc = _HEADER.unpack(header) if len(header) == _HEADER.size else (-1, 0)
                payload = fh.read(length) if length >= 0 else b""
                if length < 0 or len(payload) < length or zlib.crc32(payload) != crc:
                    log.error("spool %s ends in a damaged frame at byte %d (a crash while "
                              "writing it); the %d bytes from there are skipped",
                              self.path, offset, self.size - offset)
                    return
                offset += _HEADER.size + length
                yield offset, [record_from_json(obj) for obj in json.loads(payload)]

    def mark_replayed(self, offset: int) -> None:
        tmp = self.offset_path.with_suffix(".tmp")
        tmp.write_text(str(offset))
        if self.fsync:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        tmp.replace(self.offset_path)

    def clear(self) -> None:
        """Everything was replayed: remove the spool."""
        self.path.unlink(missing_ok=True)
        self.offset_path.unlink(missing_ok=True)
        self._warned_full = False

    def reject(self, record: Record, error: str) -> None:
        """Keep a row that no table takes, with the reason, for a person to look at."""
        self.directory.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"error": error, "record": record_to_json(record)}, ensure_ascii=False)
        with open(self.rejects_path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")

    def _replayed_offset(self) -> int:
        try:
            return int(self.offset_path.read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            return 0
