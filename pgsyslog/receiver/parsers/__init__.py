"""Parsers: pure functions from the bytes of one message to a ``Record``.

No I/O, no clock, no logging: everything besides the bytes comes in a ``ParseContext``.
They never raise on bad input; the worst case is a ``raw`` record that keeps the whole
text and says why in ``parse_error`` (DESIGN.md, "Parse rules").
"""

from __future__ import annotations

from typing import Literal, TypeAlias

from pgsyslog.record import ParseContext, Record

from .build import raw_record
from .custom import parse_custom
from .pri import INVALID_PRI, NO_PRI, invalid_pri_reason, read_pri
from .rfc3164 import parse_rfc3164
from .rfc5424 import parse_rfc5424
from .text import BOM, decode_line

__all__ = ["FORMAT_CHOICES", "FormatChoice", "parse_message"]

FormatChoice: TypeAlias = Literal["auto", "rfc5424", "rfc3164", "custom"]
FORMAT_CHOICES: tuple[FormatChoice, ...] = ("auto", "rfc5424", "rfc3164", "custom")


def parse_message(data: bytes, ctx: ParseContext, fmt: FormatChoice = "auto") -> Record | None:
    """Parse one message; ``None`` only when it is empty or whitespace (drop and count it).

    ``fmt`` forces a format; a message that does not fit it becomes ``raw`` with a reason.
    """
    if fmt != "auto" and fmt not in FORMAT_CHOICES:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMAT_CHOICES)}")
    text = decode_line(data)
    if text is None:
        return None
    try:
        return _parse(text, data, ctx, fmt)
    except Exception as exc:  # a parser bug must not lose the message (the tests prove none)
        return raw_record(ctx, data, text, f"internal parser error: {exc!r}")


_LEADING = " " + BOM  # skipped before the PRI: spaces from broken relays, a file's BOM
_NO_FIT: dict[FormatChoice, str] = {
    "auto": "no PRI, no RFC 3164 header and not the custom format",
    "rfc5424": "not RFC 5424: no '<PRI>1 ' at the start",
    "rfc3164": "not RFC 3164: no PRI and no timestamp",
    "custom": "not the custom format TIMESTAMP SERVICE SEVERITY MESSAGE",
}


def _parse(text: str, data: bytes, ctx: ParseContext, fmt: FormatChoice) -> Record:
    start = len(text) - len(text.lstrip(_LEADING)) if text[0] in _LEADING else 0
    pri, pos = read_pri(text, start)
    if pri == INVALID_PRI:
        return raw_record(ctx, data, text, invalid_pri_reason(text, start))
    record = _parse_as(fmt, text, pos, pri, data, ctx)
    return record or raw_record(ctx, data, text, _NO_FIT[fmt], pri)


def _parse_as(
    fmt: FormatChoice, text: str, pos: int, pri: int, data: bytes, ctx: ParseContext
) -> Record | None:
    """The rules of DESIGN.md in order; ``None`` when the message does not fit ``fmt``."""
    is_rfc5424 = pri != NO_PRI and text.startswith("1 ", pos)
    if fmt == "auto":
        if is_rfc5424:
            return parse_rfc5424(text, pos, pri, data, ctx)
        if pri != NO_PRI:
            return parse_rfc3164(text, pos, pri, data, ctx)
        return parse_custom(text, pos, data, ctx) or parse_rfc3164(text, pos, pri, data, ctx)
    if fmt == "rfc5424":
        return parse_rfc5424(text, pos, pri, data, ctx) if is_rfc5424 else None
    if fmt == "rfc3164":
        return parse_rfc3164(text, pos, pri, data, ctx)
    return parse_custom(text, pos, data, ctx) if pri == NO_PRI else None
