"""The importer's pure parts: lines with offsets, file recognition, records from lines."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from pgsyslog.importer.identity import HEAD_BYTES, FileIdentity, KnownFile, recognise
from pgsyslog.importer.lines import LineOptions, convert
from pgsyslog.importer.source import LineReader

MODIFIED = datetime(2026, 1, 2, 8, 0, tzinfo=UTC)


def test_help_opens_no_database() -> None:
    result = subprocess.run([sys.executable, "-m", "pgsyslog", "import", "--help"],
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PGSYSLOG_DSN": "host=/nonexistent dbname=x"})
    assert result.returncode == 0 and "--follow" in result.stdout


def test_groups_end_on_line_boundaries_and_a_growing_line_waits_for_its_lf() -> None:
    stream = io.BytesIO(b"one\ntwo\r\nthree\nfour")
    reader = LineReader(stream, 0)
    first = reader.group(2, final=False)
    assert first is not None and (first.lines, first.end) == ([b"one", b"two\r"], 9)
    second = reader.group(2, final=False)
    assert second is not None and (second.lines, second.end) == ([b"three"], 15)
    assert reader.group(2, final=False) is None  # "four" has no LF yet
    stream.seek(0, 2)
    stream.write(b"\nfive")
    stream.seek(19)
    grown = reader.group(2, final=False)
    assert grown is not None and (grown.lines, grown.end) == ([b"four"], 20)
    last = reader.group(2, final=True)  # the stream has ended: "five" counts
    assert last is not None and (last.lines, last.end) == ([b"five"], 24)


def test_a_group_holds_no_more_bytes_than_asked_unless_one_line_is_longer() -> None:
    stream = io.BytesIO(b"aaaa\nbbbb\ncccccccccccccccccccc\ndd\n")
    reader = LineReader(stream, 0)
    first = reader.group(10, final=True, max_bytes=12)  # "aaaa\n" + "bbbb\n" is 10 bytes
    assert first is not None and (first.lines, first.end) == ([b"aaaa", b"bbbb"], 10)
    long = reader.group(10, final=True, max_bytes=12)  # alone over the limit: still taken
    assert long is not None and (long.lines, long.end) == ([b"c" * 20], 31)
    rest = reader.group(10, final=True, max_bytes=12)
    assert rest is not None and (rest.lines, rest.end) == ([b"dd"], 34)
    assert reader.group(10, final=True, max_bytes=12) is None


def identity(head: bytes, inode: int = 7, size: int | None = None,
             compressed: bool = False) -> FileIdentity:
    return FileIdentity(1, inode, head, compressed,
                        None if compressed else len(head) if size is None else size)


def known(head: bytes, position: int, inode: int = 7, row: int = 1,
          path: str = "/var/log/syslog") -> KnownFile:
    return KnownFile(row, 1, inode, hashlib.sha256(head).digest(), len(head), path,
                     position, 3)


WHOLE = b"<14>1 2026-12-01T10:00:00Z h a - - - a line of a log file\n" * 80  # > HEAD_BYTES
HEAD = WHOLE[:HEAD_BYTES]


def test_the_same_inode_is_the_same_file_renamed_or_grown() -> None:
    short = b"<14>1 2026-12-01T10:00:00Z h a - - - line 0\n" * 3
    before = known(short, len(short))
    assert recognise(identity(short + b"more\n"), "/var/log/syslog.1", [before], set()) == before
    rewritten = identity(b"<14>1 2026-12-02T00:00:00Z other start\n")
    assert recognise(rewritten, "/var/log/syslog", [before], set()) is None
    shorter = identity(short, size=10)  # truncated, then the same first bytes again
    assert recognise(shorter, "/var/log/syslog", [before], set()) is None
    assert recognise(identity(b""), "/var/log/syslog", [known(b"", 0)], set()) is None


def test_a_rotated_copy_is_the_known_file_only_beside_it_and_once_it_is_gone() -> None:
    before = known(HEAD, len(WHOLE), inode=7)
    packed = identity(HEAD, inode=99, compressed=True)
    for rotated in ("/var/log/syslog.2.gz", "/var/log/syslog.1", "/var/log/syslog-20261201.gz"):
        assert recognise(packed, rotated, [before], {before.id}) == before, rotated
    assert recognise(packed, "/var/log/syslog.2.gz", [before], set()) is None  # still there
    assert recognise(packed, "/srv/archive/syslog.2.gz", [before], {before.id}) is None
    assert recognise(packed, "/var/log/auth.log.1.gz", [before], {before.id}) is None


def test_a_short_head_matches_by_inode_alone() -> None:
    short = b"boot: firmware 1.2 starting\nboot: link up\n"
    before = known(short, len(short), inode=7)
    elsewhere = identity(short + b"error: disk failed\n", inode=8)
    assert recognise(elsewhere, "/var/log/syslog.1", [before], {before.id}) is None
    packed = identity(short, inode=9, compressed=True)
    assert recognise(packed, "/var/log/syslog.1.gz", [before], {before.id}) is None


def test_of_two_matches_the_same_inode_wins() -> None:
    here = known(HEAD, 5000, inode=7, row=1)
    elsewhere = known(HEAD, 6000, inode=8, row=2, path="/var/log/syslog.1")
    gone = {1, 2}
    assert recognise(identity(HEAD, inode=7, size=7000), "/var/log/syslog", [elsewhere, here],
                     gone) == here
    assert recognise(identity(HEAD, inode=9, size=7000), "/var/log/syslog.2", [here, elsewhere],
                     gone) == elsewhere


def test_records_take_their_own_time_and_the_mtime_year() -> None:
    options = LineOptions(MODIFIED, MODIFIED, ZoneInfo("UTC"), host="gw",
                          retention_days=0)
    out = convert([b"Dec 31 23:59:58 fw1 kernel: x", b"words only", b"  ",
                   b"<14>1 2099-01-01T00:00:00Z h a - - - from the future"], options)
    first, raw, future = out.records
    assert first.received_at == datetime(2025, 12, 31, 23, 59, 58, tzinfo=UTC)
    assert (first.hostname, first.transport, first.source_ip) == ("fw1", "file", None)
    assert (raw.received_at, raw.hostname, raw.format) == (MODIFIED, "gw", "raw")
    assert future.event_time is not None and future.received_at == MODIFIED
    assert (out.tally.imported, out.tally.blank, out.tally.parse_errors) == (3, 1, 1)


class Endless(io.RawIOBase):
    """A stream of ``total`` bytes without a single line feed, then one."""

    def __init__(self, total: int) -> None:
        self.left = total

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
        if self.left < 0:
            return 0
        if self.left == 0:
            buffer[0:1], self.left = b"\n", -1
            return 1
        n = min(len(buffer), self.left)
        buffer[:n] = b"x" * n
        self.left -= n
        return n


def test_an_endless_line_is_cut_and_memory_bounded() -> None:
    total = 50 * 1024 * 1024
    reader = LineReader(io.BufferedReader(Endless(total)), 0, max_length=1000)
    group = reader.group(10, final=False)
    assert group is not None and group.lines == [b"x" * 1001] and group.end == total + 1
    assert reader.cut == 1 and len(reader._tail) == 0
    assert reader.group(10, final=True) is None


def test_offsets_count_the_cut_bytes() -> None:
    data = b"short\n" + b"y" * 5000 + b"\nafter\nend"
    reader = LineReader(io.BytesIO(data), 0, max_length=100)
    group = reader.group(10, final=True)
    assert group is not None
    assert [len(line) for line in group.lines] == [5, 101, 5]
    assert group.end == data.index(b"end")
    last = reader.group(10, final=True)
    assert last is not None and (last.lines, last.end) == ([b"end"], len(data))


def test_a_line_over_the_limit_is_cut_and_marked_as_serve_does() -> None:
    options = LineOptions(MODIFIED, MODIFIED, ZoneInfo("UTC"), max_line=40)
    exact, over = convert([b"<14>1 - h a - - - " + b"e" * 22, b"<14>1 - h a - - - " + b"o" * 23],
                          options).records
    assert exact.parse_error is None and len(exact.message) == 22
    assert over.parse_error == "message truncated to max_frame_length (40 bytes)"
    assert over.message == "o" * 22
