"""Stream framing for syslog over TCP and TLS (RFC 6587, RFC 5425), and UDP's count prefix.

Each frame is detected on its own: ``LEN SP MSG`` (octet counting) when the frame starts
with digits followed by a space, otherwise a line ended by LF or NUL (non-transparent
framing; Python's ``logging.handlers.SysLogHandler`` ends each message with NUL and no
LF). Frames are bounded by ``max_length``: a longer one is cut to that length, marked as
truncated, and the rest of it is skipped; nothing is ever buffered without limit.

Three things end a stream (``error`` says why; the connection should be closed, and
nothing after that point is handed on): an octet count above MAX_OCTET_COUNT; once a
stream has used octet counting, a frame that starts with digits that are not a count
("12x", "012 "): its framing is lost; and a stream that opens with a RELP ``open``
command (rsyslog's omrelp): it is not syslog, and none of it is handed on.

A frame the stream leaves unfinished (the connection ends, or the receiver stops, before
the count is reached or the line ends) is handed on by ``flush`` marked ``cut``, without
its count prefix.
"""

from __future__ import annotations

import functools
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

CONNECTION_ENDED = "the connection ended before the frame did"
"""The reason ``flush`` gives a cut frame when the caller names none."""

# librelp (rsyslog's omrelp) opens every session with the frame "1 SP open SP DATALEN SP
# relp_version=0 LF ..." (doc/relp.md: a session starts at TXNR 1; DATALEN is 1-9 digits,
# and 0 is followed by LF at once). As octet counting that would be the one-byte message
# "o" followed by "pen ...": no syslog sender starts a stream this way.
_RELP_OPEN = re.compile(rb"1 open [0-9]{1,9}[ \n]")
# The start of a stream that cannot yet be told apart from a RELP open.
_RELP_OPEN_SO_FAR = re.compile(rb"1(?: (?:o(?:p(?:e(?:n(?: [0-9]{0,9})?)?)?)?)?)?")

class Frame(NamedTuple):
    data: bytes
    truncated: bool = False  # cut at max_length; the rest of the frame was skipped
    cut: str | None = None  # why the frame ended before its end (connection end, stop)


def strip_datagram_count(data: bytes) -> bytes:
    """A UDP datagram without an octet-count prefix that gives exactly its own length.

    Some senders (syslog-ng's ``loggen``) frame datagrams as on TCP: "LEN SP MSG". Only a
    count equal to the rest of the datagram is taken as one; anything else is the message.
    """
    if not data or not 49 <= data[0] <= 57:  # fast path: the message starts with '<'
        return data
    count = _OCTET_COUNT.match(data)
    if count is not None and int(count.group(1)) == len(data) - count.end():
        return data[count.end() :]
    return data


def relp_refusal(data: bytes) -> str:
    """The error for a stream that opened a RELP session."""
    header = data.split(b"\n", 1)[0][:60]
    return (f"the sender speaks RELP (it opened with {header!r}), not plain syslog: send to "
            "this port with rsyslog's omfwd (protocol tcp), not omrelp")


class SyslogStreamDecoder:
    """Turns a byte stream into frames; feed it chunks as they arrive."""

    def __init__(self, max_length: int) -> None:
        self.max_length = max_length
        self._buffer = bytearray()
        # Bytes the buffer must hold before splitting can make progress; saves work (and
        # quadratic copying) while a long frame trickles in.
        self._need = 1
        self._skip = 0  # bytes of an octet-counted frame still to discard after a cut
        self._partial: bytes | None = None  # head of a line that was cut; skip to its end
        self._counting = False  # the stream has sent an octet-counted frame
        self._at_start = True  # nothing framed yet: the stream may still be RELP
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
        if self.error is not None or (
            len(buf) < self._need and b"\n" not in chunk and b"\x00" not in chunk
        ):
            return []
        frames: list[Frame] = []
        consumed = self._split(bytes(buf), frames)
        del buf[:consumed]
        return frames

    def flush(self, cut_reason: str | None = None) -> list[Frame]:
        """At the end of the stream, or when the receiver stops reading it: what is left.

        Complete frames still held back are handed on as they are; an unfinished one (an
        octet count not reached, a line with no LF or NUL yet) is handed on with ``cut``
        set to ``cut_reason`` (default CONNECTION_ENDED) and without its count prefix.
        Nothing is handed on after a framing error.
        """
        reason = CONNECTION_ENDED if cut_reason is None else cut_reason
        frames: list[Frame] = []
        if self.error is None:
            self._at_start = False  # no more bytes will come to tell RELP apart
            data = bytes(self._buffer)
            rest = data[self._split(data, frames) :]
            if self.error is None:
                self._append_cut(rest, reason, frames)
        self._buffer.clear()
        self._partial = None
        self._skip = 0
        self._need = 1
        return frames

    def _append_cut(self, rest: bytes, reason: str, out: list[Frame]) -> None:
        """The unfinished frame at the end of the stream, if there is one."""
        if self._partial is not None:
            out.append(Frame(self._partial, True, reason))
        elif rest and not self._skip:
            count = _OCTET_COUNT.match(rest)
            if count is None:
                out.append(Frame(rest, False, reason))
            else:
                body = rest[count.end() :]
                out.append(Frame(body, False,
                                 f"{reason} ({len(body)} of {count.group(1).decode()} octets)"))

    def _split(self, data: bytes, out: list[Frame]) -> int:
        """Append the complete frames of data to out; return how many bytes were used."""
        if self._at_start and not self._past_relp_check(data):
            return 0
        max_length, end, pos = self.max_length, len(data), 0
        append = out.append
        # A NUL ends a line too; one scan for it spares one per line in the common case.
        line_end = functools.partial(_line_end, data) if b"\x00" in data else data.find
        self._need = 1
        while pos < end:
            if self._partial is not None:  # skipping the rest of a cut line
                stop = line_end(b"\n", pos, end)
                if stop < 0:
                    return end
                append(Frame(self._partial, truncated=True))
                self._partial = None
                pos = stop + 1
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
            stop = line_end(b"\n", pos, pos + max_length + 1)
            if stop >= 0:
                append(Frame(data[pos:stop]))
                pos = stop + 1
            elif end - pos > max_length:
                self._partial = data[pos : pos + max_length]
                pos += max_length
            else:
                # Look again when an LF or NUL arrives (feed checks) or the line grows too long.
                self._need = max_length + 1
                return pos
        return pos

    def _past_relp_check(self, data: bytes) -> bool:
        """False while the stream may still be a RELP session, or once it is one (error)."""
        if _RELP_OPEN.match(data) is not None:
            self.error = relp_refusal(data)
            return False
        if _RELP_OPEN_SO_FAR.fullmatch(data) is not None:
            self._need = len(data) + 1  # look again at the next byte
            return False
        self._at_start = False
        return True


def _line_end(data: bytes, newline: bytes, start: int, stop: int) -> int:
    """Like ``data.find(newline, start, stop)``, but a NUL ends a line too."""
    lf = data.find(newline, start, stop)
    nul = data.find(b"\x00", start, stop if lf < 0 else lf)
    return lf if nul < 0 else nul
