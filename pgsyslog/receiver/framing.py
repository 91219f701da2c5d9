"""Stream framing for syslog over TCP and TLS (RFC 6587, RFC 5425).

Each frame is detected on its own: ``LEN SP MSG`` (octet counting) when the frame starts
with digits followed by a space, otherwise a line ended by LF (non-transparent framing).
Frames are bounded by ``max_length``: a longer one is cut to that length, marked as
truncated, and the rest of it is skipped; nothing is ever buffered without limit.

Two things end a stream (``error`` says why; the connection should be closed): an octet
count above MAX_OCTET_COUNT, and, once a stream has used octet counting, a frame that
starts with digits that are not a count ("12x", "012 "): its framing is lost.
"""

from __future__ import annotations

import re
from typing import NamedTuple

# An octet count has at most this many digits (up to 1 GB); a longer run of digits starts
# a line (an epoch timestamp, say), not a count.
MAX_COUNT_DIGITS = 9
_OCTET_COUNT = re.compile(rb"([1-9][0-9]{0,%d}) " % (MAX_COUNT_DIGITS - 1))
_DIGITS_SO_FAR = re.compile(rb"[0-9]{1,%d}" % MAX_COUNT_DIGITS)
# No syslog message is this long: a larger count is garbage or an attack, not a frame to
# skip through.
MAX_OCTET_COUNT = 64 * 1024 * 1024


class Frame(NamedTuple):
    data: bytes
    truncated: bool = False


class SyslogStreamDecoder:
    """Turns a byte stream into frames; feed it chunks as they arrive."""

    def __init__(self, max_length: int) -> None:
        self.max_length = max_length
        self._buffer = bytearray()
        # Bytes the buffer must hold before splitting can make progress; saves work (and
        # quadratic copying) while a long frame trickles in.
        self._need = 1
        self._skip = 0  # bytes of an octet-counted frame still to discard after a cut
        self._partial: bytes | None = None  # head of an LF frame that was cut; skip to LF
        self._counting = False  # the stream has sent an octet-counted frame
        self.error: str | None = None  # why the stream cannot be framed any further

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, chunk: bytes) -> list[Frame]:
        buf = self._buffer
        if self._skip:
            n = min(self._skip, len(chunk))
            self._skip -= n
            chunk = chunk[n:]
        buf += chunk
        if self.error is not None or (len(buf) < self._need and b"\n" not in chunk):
            return []
        frames: list[Frame] = []
        consumed = self._split(bytes(buf), frames)
        del buf[:consumed]
        return frames

    def flush(self) -> list[Frame]:
        """At end of stream: an unterminated last line is still a frame (not after an error)."""
        frames = []
        if self.error is not None:
            pass  # what follows a framing error is not a message
        elif self._partial is not None:
            frames.append(Frame(self._partial, truncated=True))
        elif self._buffer and not self._skip:
            data = bytes(self._buffer)
            frames.append(Frame(data[: self.max_length], len(data) > self.max_length))
        self._buffer.clear()
        self._partial = None
        self._skip = 0
        self._need = 1
        return frames

    def _split(self, data: bytes, out: list[Frame]) -> int:
        """Append the complete frames of data to out; return how many bytes were used."""
        max_length, end, pos = self.max_length, len(data), 0
        append = out.append
        self._need = 1
        while pos < end:
            if self._partial is not None:  # skipping the rest of a cut line
                newline = data.find(b"\n", pos)
                if newline < 0:
                    return end
                append(Frame(self._partial, truncated=True))
                self._partial = None
                pos = newline + 1
                continue
            count = _OCTET_COUNT.match(data, pos)
            if count is not None:
                size = int(count.group(1))
                if size > MAX_OCTET_COUNT:
                    self.error = f"octet count {size} is above the {MAX_OCTET_COUNT} ceiling"
                    return pos
                self._counting = True
                start = count.end()
                keep = size if size <= max_length else max_length
                if end - start < keep:
                    self._need = start + keep - pos
                    return pos
                append(Frame(data[start : start + keep], keep < size))
                pos = start + keep
                if keep < size:
                    self._skip = size - keep
                    skipped = min(self._skip, end - pos)
                    self._skip -= skipped
                    pos += skipped
                continue
            if _DIGITS_SO_FAR.fullmatch(data, pos):
                return pos  # only digits so far: the framing cannot be told yet
            if self._counting and 48 <= data[pos] <= 57:
                self.error = f"expected an octet count, got {data[pos : pos + 12]!r}"
                return pos
            newline = data.find(b"\n", pos, pos + max_length + 1)
            if newline >= 0:
                append(Frame(data[pos:newline]))
                pos = newline + 1
            elif end - pos > max_length:
                self._partial = data[pos : pos + max_length]
                pos += max_length
            else:
                # Look again when an LF arrives (feed checks) or the line grows too long.
                self._need = max_length + 1
                return pos
        return pos
