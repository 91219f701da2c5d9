"""RELP frames as librelp reads and writes them: a stream decoder, offers, responses. Pure.

The wire format (librelp doc/relp.md, src/relpframe.c)::

    FRAME   = TXNR SP COMMAND SP DATALEN [SP DATA] LF
    TXNR    = 1*9DIGIT     ; 1 up to 999,999,999, then 1 again; 0 is for hints
    COMMAND = 1*32ALPHA    ; open, syslog, close, rsp, serverclose
    DATALEN = 1*9DIGIT     ; octets of DATA; 0 is followed by LF at once

A response is ``TXNR rsp DATALEN CODE SP TEXT [LF DATA]`` with CODE 200 (OK) or 500. The
``open`` command carries offers, one per line, ``name=value,value``; the server answers
with the offers it accepts.

The decoder is bounded: it keeps at most ``max_data`` octets of a frame's DATA (a longer
one is handed on cut and marked ``truncated``, as rsyslog's imrelp does by default, and the
rest is skipped as it arrives: tests/test_relp_frames.py::
test_data_above_max_data_is_skipped_as_it_arrives); a DATALEN above MAX_DATALEN, or any
byte that breaks the grammar, ends the stream with ``error`` saying why
(::test_broken_frames).
"""

from __future__ import annotations

import re
from typing import NamedTuple

MAX_TXNR = 999_999_999
# A DATALEN above this is garbage or an attack, not a message to skip through (the same
# ceiling as octet counting on TCP).
MAX_DATALEN = 64 * 1024 * 1024
# librelp speaks version 0 (RELP_CURR_PROTOCOL_VERSION in src/relp.h): offered back to it.
RELP_VERSION = 0

_HEADER = re.compile(rb"([0-9]{1,9}) ([A-Za-z]{1,32}) ([0-9]{1,9})([ \n])")
# What may still grow into a header: digits, a space, letters, a space, digits.
_HEADER_SO_FAR = re.compile(rb"[0-9]{1,9}(?: (?:[A-Za-z]{1,32}(?: [0-9]{0,9})?)?)?")
HEADER_MAX = 9 + 1 + 32 + 1 + 9 + 1

OK = b"200 OK"
SERVERCLOSE = b"0 serverclose 0\n"


class RelpFrame(NamedTuple):
    txnr: int
    command: str
    data: bytes
    truncated: bool = False  # DATALEN was above max_data: data holds its first max_data octets


class RelpDecoder:
    """Turns a byte stream into RELP frames; feed it chunks as they arrive."""

    def __init__(self, max_data: int) -> None:
        self.max_data = max_data
        self.error: str | None = None  # why the stream cannot be read any further
        self._buffer = bytearray()
        self._header: tuple[int, str, int] | None = None  # txnr, command, datalen
        self._data = bytearray()  # DATA kept so far (max_data at most)
        self._left = 0  # octets of DATA still to come (kept or skipped)

    @property
    def buffered(self) -> int:
        return len(self._buffer) + len(self._data)

    def feed(self, chunk: bytes) -> list[RelpFrame]:
        frames: list[RelpFrame] = []
        if self.error is not None:
            return frames
        self._buffer += chunk
        while self.error is None:
            if self._header is None:
                if not self._read_header():
                    break
            elif self._left:
                self._read_data()
                if self._left:
                    break
            elif not self._buffer:
                break
            else:
                self._end_frame(frames)
        return frames

    def _read_header(self) -> bool:
        """Take the header off the buffer; False when it is not complete yet (or broken)."""
        buf = self._buffer
        if not buf:
            return False
        match = _HEADER.match(buf)
        if match is None:
            if len(buf) > HEADER_MAX or _HEADER_SO_FAR.fullmatch(buf) is None:
                self.error = f"not a RELP frame header: {bytes(buf[:HEADER_MAX])!r}"
            return False
        txnr, command, datalen = int(match[1]), match[2].decode(), int(match[3])
        if datalen > MAX_DATALEN:
            self.error = f"DATALEN {datalen} is above the {MAX_DATALEN} ceiling"
            return False
        if (datalen == 0) != (match[4] == b"\n"):
            self.error = (f"frame {txnr} {command}: DATALEN {datalen} followed by "
                          f"{bytes(match[4])!r}")
            return False
        end = match.end() if datalen else match.end() - 1  # the LF of an empty frame stays
        del buf[:end]
        self._header, self._left = (txnr, command, datalen), datalen
        return True

    def _read_data(self) -> None:
        buf = self._buffer
        n = min(self._left, len(buf))
        room = self.max_data - len(self._data)
        if room > 0:
            self._data += buf[: min(n, room)]
        del buf[:n]
        self._left -= n

    def _end_frame(self, frames: list[RelpFrame]) -> None:
        assert self._header is not None
        txnr, command, datalen = self._header
        if self._buffer[0] != 0x0A:
            self.error = (f"frame {txnr} {command}: expected LF after {datalen} octets of "
                          f"data, got {bytes(self._buffer[:12])!r}")
            return
        del self._buffer[:1]
        frames.append(RelpFrame(txnr, command, bytes(self._data), datalen > self.max_data))
        self._header = None
        self._data = bytearray()


def next_txnr(txnr: int) -> int:
    """The transaction number that follows ``txnr`` (it wraps from 999,999,999 to 1)."""
    return 1 if txnr >= MAX_TXNR else txnr + 1


def frame(txnr: int, command: bytes, data: bytes = b"") -> bytes:
    if not data:
        return b"%d %s 0\n" % (txnr, command)
    return b"%d %s %d %s\n" % (txnr, command, len(data), data)


def response(txnr: int, status: bytes, extra: bytes = b"") -> bytes:
    """A ``rsp`` frame: status such as ``200 OK``, and the data that follows it (offers)."""
    return frame(txnr, b"rsp", status + b"\n" + extra if extra else status)


Offers = dict[str, list[str]]


def parse_offers(data: bytes) -> Offers:
    """The offers of an ``open``: one per line, ``name[=value[,value...]]``."""
    offers: Offers = {}
    for line in data.decode("utf-8", "replace").split("\n"):
        if not line:
            continue
        name, _, values = line.partition("=")
        offers[name] = [v for v in values.split(",") if v]
    return offers


class OpenRefused(ValueError):
    """The ``open`` cannot be accepted; the message is the response's text (after 500)."""


def accept_offers(offers: Offers, software: str) -> tuple[bytes, bool]:
    """The offers the server answers an ``open`` with, and whether ``syslog`` is enabled.

    As librelp's server: relp_version must be an unsigned number (the answer is the lower
    of it and ours); ``commands`` is answered with the ones both sides know (syslog).
    """
    version = offers.get("relp_version")
    if not version or not (version[0].isascii() and version[0].isdigit()):
        raise OpenRefused("relp_version offer missing or not a number")
    syslog = "syslog" in offers.get("commands", [])
    answer = [f"relp_version={min(int(version[0]), RELP_VERSION)}",
              f"relp_software={software}",
              "commands=syslog" if syslog else "commands="]
    return "\n".join(answer).encode(), syslog
