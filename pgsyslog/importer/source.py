"""Opening a log file (plain or gzip, told by its magic bytes) and reading it as lines.

Offsets are bytes of the content, decompressed: that is the position imported_files
keeps, on a line boundary. Lines are split on LF only; the parsers drop a trailing CR.
"""

from __future__ import annotations

import bisect
import gzip
import hashlib
import os
import stat
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import accumulate
from typing import BinaryIO, cast

from pgsyslog.importer.identity import HEAD_BYTES, FileIdentity, KnownFile

GZIP_MAGIC = b"\x1f\x8b"
STDIN = "-"
READ_SIZE = 1 << 20  # bytes per read: a few thousand lines, a batch or two
# What a damaged or cut-off gzip file raises while it is read.
GZIP_ERRORS = (gzip.BadGzipFile, EOFError, zlib.error)


class SourceError(Exception):
    """A file cannot be read; the message is one line naming it."""


@dataclass
class Source:
    """An open file (or standard input): its content stream and what identifies it."""

    name: str  # as the operator gave it
    raw: BinaryIO  # the bytes on disk
    stream: BinaryIO  # the content: raw, or raw decompressed
    identity: FileIdentity | None  # None for standard input: no row in imported_files
    mtime: datetime | None  # None for standard input
    disk_size: int | None  # None when unknown (a pipe)

    @property
    def location(self) -> str:
        """The absolute path, as imported_files keeps it."""
        return os.path.abspath(self.name)

    @property
    def compressed(self) -> bool:
        return self.stream is not self.raw

    def disk_position(self, content_position: int) -> int:
        """Bytes of the file on disk read so far (for progress)."""
        if self.compressed and self.disk_size is not None:
            return min(self.raw.tell(), self.disk_size)
        return content_position

    def seek(self, position: int) -> Skipped:
        """Go to ``position`` in the content; a gzip file is decompressed up to there, its
        lines counted, and it may end (or be cut short) before."""
        if not self.compressed:
            self.stream.seek(position)
            return Skipped(position, None, cut_short=False)
        read: Callable[[int], bytes] = cast(gzip.GzipFile, self.stream).read1
        reached = lines = 0
        try:
            while reached < position:
                chunk = read(min(READ_SIZE, position - reached))
                if not chunk:
                    break
                reached, lines = reached + len(chunk), lines + chunk.count(b"\n")
        except GZIP_ERRORS:
            return Skipped(reached, lines, cut_short=True)
        return Skipped(reached, lines, cut_short=False)

    def close(self) -> None:
        if self.raw is not sys.stdin.buffer:
            self.raw.close()


@dataclass(frozen=True, slots=True)
class Skipped:
    """How far Source.seek went: ``lines`` passed (None: not counted, a plain file)."""

    position: int
    lines: int | None
    cut_short: bool  # the gzip data ended without its end marker before ``position``


def cut_short(name: str, content_bytes: int) -> str:
    return (f"{name}: the gzip data is cut short after {content_bytes:,} bytes of content: "
            "the lines before it are imported")


def bad_gzip(name: str, error: BaseException) -> str:
    return f"{name}: not a readable gzip file ({error or type(error).__name__})"


def open_source(name: str) -> Source:
    """Open a file, or standard input for ``-``; raise SourceError in one line."""
    if name == STDIN:
        return _open_stdin()
    try:
        raw = open(name, "rb")  # noqa: SIM115 (the Source owns it; closed by Source.close)
    except OSError as e:
        raise SourceError(f"{name}: cannot read it: {e.strerror or e}") from None
    try:
        return _open_file(name, raw)
    except BaseException:
        raw.close()
        raise


def _open_file(name: str, raw: BinaryIO) -> Source:
    st = os.fstat(raw.fileno())
    if not stat.S_ISREG(st.st_mode):
        raise SourceError(f"{name}: not a regular file")
    stream = _content(name, raw)
    head = _read_head(name, raw, stream)
    mtime = datetime.fromtimestamp(st.st_mtime, UTC)
    compressed = stream is not raw
    identity = FileIdentity(st.st_dev, st.st_ino, head, compressed,
                            None if compressed else st.st_size)
    return Source(name, raw, stream, identity, mtime, st.st_size)


def _content(name: str, raw: BinaryIO) -> BinaryIO:
    if not _peek(raw).startswith(GZIP_MAGIC):
        return raw
    return gzip.GzipFile(filename=name, fileobj=raw, mode="rb")  # type: ignore[return-value]


def _peek(raw: BinaryIO) -> bytes:
    peek: Callable[[int], bytes] | None = getattr(raw, "peek", None)
    return peek(len(GZIP_MAGIC)) if peek is not None else b""


def _read_head(name: str, raw: BinaryIO, stream: BinaryIO) -> bytes:
    if stream is raw:
        return os.pread(raw.fileno(), HEAD_BYTES, 0)
    head = b""
    try:
        while len(head) < HEAD_BYTES and (chunk := stream.read(HEAD_BYTES - len(head))):
            head += chunk
    except EOFError as e:
        if not head:  # cut short before any content: nothing to import
            raise SourceError(bad_gzip(name, e)) from None
    except GZIP_ERRORS as e:
        raise SourceError(bad_gzip(name, e)) from None
    stream.seek(0)  # a rewind: a fresh decompressor, also after a cut
    return head


def _open_stdin() -> Source:
    raw = sys.stdin.buffer
    stream = _content(STDIN, raw)
    return Source(STDIN, raw, stream, None, None, None)


def still_there(known: KnownFile) -> bool:
    """Whether the known file is still at the path it was last read from, starting as it
    did (not gone, replaced by another file, or emptied as copytruncate does)."""
    try:
        with open(known.path, "rb") as f:
            st = os.fstat(f.fileno())
            if (st.st_dev, st.st_ino) != (known.device, known.inode):
                return False
            if known.compressed:
                return True  # a gzip file is not written to again
            head = os.pread(f.fileno(), known.head_length, 0)
    except OSError:
        return False
    return hashlib.sha256(head).digest() == known.head_sha256


def reread_head(source: Source) -> FileIdentity | None:
    """The identity with a head grown to HEAD_BYTES (a plain file that was shorter)."""
    identity = source.identity
    if identity is None or source.compressed or len(identity.head) >= HEAD_BYTES:
        return identity
    head = os.pread(source.raw.fileno(), HEAD_BYTES, 0)
    return FileIdentity(identity.device, identity.inode, head, False,
                        os.fstat(source.raw.fileno()).st_size)


@dataclass(frozen=True, slots=True)
class LineGroup:
    lines: list[bytes]
    end: int  # content offset just after the last line


@dataclass
class LineReader:
    """Complete lines of a stream in groups, each with the offset reached after it.

    A line longer than ``max_length`` is cut (see _cut), as serve cuts a frame; the rest
    of it is skipped, so that a file without line feeds takes no more memory than a
    read and a line (test_import_reading.py::test_an_endless_line_is_cut_and_memory_bounded).
    """

    stream: BinaryIO
    position: int  # the offset just after the last line handed out
    max_length: int = 64 * 1024
    _lines: list[bytes] = field(default_factory=list)
    _ends: list[int] = field(default_factory=list)  # the offset after each of _lines
    _tail: bytes = b""  # the start of a line whose LF has not been read yet (cut)
    _tail_length: int = 0  # its length in the stream, cut bytes included
    cut: int = 0  # lines cut so far
    cut_short_at: int | None = None  # bytes of content before the gzip data was cut short

    def group(self, size: int, *, final: bool, max_bytes: int | None = None
              ) -> LineGroup | None:
        """Up to ``size`` lines, and no more than ``max_bytes`` of them unless the first
        line alone is longer; None when nothing more is there now.

        ``final``: the stream has ended, so an unterminated last line counts as a line;
        otherwise it waits for its LF (a file being written).
        """
        limit = self.position + max_bytes if max_bytes is not None else None
        while len(self._lines) < size and (limit is None or not self._ends
                                           or self._ends[-1] < limit) and self._fill():
            pass
        if not self._lines:
            return self._last_line() if final else None
        if limit is not None:
            size = max(1, min(size, bisect.bisect_right(self._ends, limit)))
        lines, self._lines = self._lines[:size], self._lines[size:]
        self.position = self._ends[len(lines) - 1]
        del self._ends[: len(lines)]
        return LineGroup(lines, self.position)

    def _fill(self) -> bool:
        if self.cut_short_at is not None:
            return False
        read: Callable[[int], bytes] = getattr(self.stream, "read1", self.stream.read)
        start = (self._ends[-1] if self._ends else self.position)  # where the tail began
        try:
            chunk = read(READ_SIZE)
        except GZIP_ERRORS:
            # A gzip file cut short (a copy broken off): what came before it counts; the
            # line it cut through is not read.
            self.cut_short_at = start + self._tail_length
            return False
        if not chunk:
            return False
        lines = chunk.split(b"\n")
        tail = lines.pop()
        if lines:
            lengths = [len(line) + 1 for line in lines]
            lengths[0] += self._tail_length
            lines[0] = self._tail + lines[0]
            self._ends.extend(list(accumulate(lengths, initial=start))[1:])
            self._lines.extend(self._cut(lines))
            self._tail, self._tail_length = b"", 0
        self._tail_length += len(tail)
        self._tail = (self._tail + tail)[: self.max_length + 1]
        return True

    def _cut(self, lines: list[bytes]) -> list[bytes]:
        """Lines over max_length cut to one byte more, so that the parsing step can tell
        them from lines of exactly max_length (it cuts and marks them, as serve does)."""
        limit = self.max_length
        if max(map(len, lines)) <= limit:
            return lines
        self.cut += sum(1 for line in lines if len(line) > limit)
        return [line[: limit + 1] for line in lines]

    def _last_line(self) -> LineGroup | None:
        if not self._tail_length or self.cut_short_at is not None:
            return None
        line = self._cut([self._tail])[0]
        self.position += self._tail_length
        self._tail, self._tail_length = b"", 0
        return LineGroup([line], self.position)

    def restart(self, position: int) -> None:
        """Forget what was read ahead; the stream has been moved to ``position``."""
        self.position, self._lines, self._ends = position, [], []
        self._tail, self._tail_length = b"", 0
