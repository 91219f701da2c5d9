"""Bytes to text: the message text rules of DESIGN.md ("The record", field ``message``).

The whole line is decoded once; the parsers then work on ``str``. Header fields of
syslog are ASCII, so decoding first never moves a field boundary.
"""

from __future__ import annotations

BOM = "\ufeff"  # RFC 5424 allows it at the start of MSG; never part of the message
_TRAILING_JUNK = b"\r\n\x00"


def decode_line(data: bytes) -> str | None:
    """The text of a message, or ``None`` when it is nothing but whitespace (dropped).

    Trailing CR, LF and NUL are removed, bytes that are not UTF-8 are replaced, and NUL
    bytes inside become U+FFFD.
    """
    data = data.rstrip(_TRAILING_JUNK)
    if not data.strip():
        return None
    text = data.decode("utf-8", "replace")
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    return text
