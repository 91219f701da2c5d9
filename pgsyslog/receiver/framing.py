"""Stream framing for syslog over TCP and TLS (RFC 6587, RFC 5425).

Each frame is detected on its own: ``LEN SP MSG`` (octet counting) when the frame starts
with digits followed by a space, otherwise a line ended by LF (non-transparent framing).
Frames are bounded by ``max_length``: a longer one is cut to that length, marked as
truncated, and the rest of it is skipped; nothing is ever buffered without limit.
"""

from __future__ import annotations

from typing import NamedTuple

# An octet count has at most this many digits (up to 1 GB); a longer run of digits starts
# a line (an epoch timestamp, say), not a count.
MAX_COUNT_DIGITS = 9


class Frame(NamedTuple):
    data: bytes
    truncated: bool = False


class SyslogStreamDecoder:
    """Turns a byte stream into frames; feed it chunks as they arrive."""

    def __init__(self, max_length: int) -> None:
        self.max_length = max_length
        self._buffer = bytearray()
        self._pos = 0  # start of the unread part of _buffer; compacted once per feed
        self._skip = 0  # bytes of an octet-counted frame still to discard after a cut
        self._partial: bytes | None = None  # head of an LF frame that was cut; skip to LF

    def feed(self, chunk: bytes) -> list[Frame]:
        self._buffer += chunk
        frames: list[Frame] = []
        try:
            while self._next_frame(frames):
                pass
        finally:
            del self._buffer[: self._pos]
            self._pos = 0
        return frames

    def flush(self) -> list[Frame]:
        """At end of stream: an unterminated last line is still a frame."""
        frames = []
        if self._partial is not None:
            frames.append(Frame(self._partial, truncated=True))
        elif self._buffer and not self._skip:
            data = bytes(self._buffer)
            frames.append(Frame(data[: self.max_length], len(data) > self.max_length))
        self._buffer.clear()
        self._partial = None
        self._skip = 0
        return frames

    @property
    def buffered(self) -> int:
        return len(self._buffer) - self._pos

    def _next_frame(self, out: list[Frame]) -> bool:
        """Take one frame (or one discard step) off the buffer; False when bytes are needed."""
        buf, pos = self._buffer, self._pos
        if pos >= len(buf):
            return False
        if self._skip:
            n = min(self._skip, len(buf) - pos)
            self._pos += n
            self._skip -= n
            return True
        if self._partial is not None:
            return self._discard_line(out)
        # Octet counting: digits (no leading zero), then a space.
        i = pos
        end = min(len(buf), pos + MAX_COUNT_DIGITS + 1)
        while i < end and 48 <= buf[i] <= 57:
            i += 1
        digits = i - pos
        if i < len(buf) and 0 < digits <= MAX_COUNT_DIGITS and buf[i] == 32 and buf[pos] != 48:
            return self._take_counted(out, int(buf[pos:i]), i + 1)
        if i == len(buf) and digits <= MAX_COUNT_DIGITS:
            return False  # only digits so far: the framing cannot be told yet
        return self._take_line(out)

    def _take_counted(self, out: list[Frame], count: int, start: int) -> bool:
        available = len(self._buffer) - start
        keep = min(count, self.max_length)
        if available < keep:
            return False
        out.append(Frame(bytes(self._buffer[start : start + keep]), truncated=keep < count))
        self._pos = start + keep
        self._skip = count - keep
        return True

    def _take_line(self, out: list[Frame]) -> bool:
        buf, pos = self._buffer, self._pos
        newline = buf.find(b"\n", pos, pos + self.max_length + 1)
        if newline >= 0:
            out.append(Frame(bytes(buf[pos:newline])))
            self._pos = newline + 1
            return True
        if len(buf) - pos <= self.max_length:
            return False
        self._partial = bytes(buf[pos : pos + self.max_length])
        self._pos = pos + self.max_length
        return True

    def _discard_line(self, out: list[Frame]) -> bool:
        newline = self._buffer.find(b"\n", self._pos)
        if newline < 0:
            self._pos = len(self._buffer)
            return False
        self._pos = newline + 1
        assert self._partial is not None
        out.append(Frame(self._partial, truncated=True))
        self._partial = None
        return True
