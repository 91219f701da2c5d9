"""Assembling a ``Record``: the parts every parser fills in the same way."""

from __future__ import annotations

from datetime import datetime

from pgsyslog.record import Format, ParseContext, Record, StructuredData

from .pri import DEFAULT_FACILITY, DEFAULT_SEVERITY, NO_PRI
from .text import BOM


def make_record(
    ctx: ParseContext,
    data: bytes,
    format: Format,
    facility: int,
    severity: int,
    message: str,
    *,
    event_time: datetime | None = None,
    hostname: str | None = None,
    app_name: str | None = None,
    procid: str | None = None,
    msgid: str | None = None,
    structured_data: StructuredData | None = None,
    parse_error: str | None = None,
) -> Record:
    """A record from what a parser found.

    The hostname falls back to the peer, a BOM before the message is dropped, and ``raw``
    is kept only with an error.
    """
    # Positional, in the field order of Record: keywords would add a tenth to a whole parse.
    return Record(
        ctx.received_at,
        event_time,
        facility,
        severity,
        ctx.source_ip if hostname is None else hostname,
        app_name,
        procid,
        msgid,
        structured_data,
        message[1:] if message.startswith(BOM) else message,
        format,
        ctx.transport,
        ctx.source_ip,
        parse_error,
        None if parse_error is None else data,
    )


def raw_record(ctx: ParseContext, data: bytes, text: str, reason: str, pri: int = NO_PRI) -> Record:
    """The worst case: the whole text as message, with the reason; PRI kept when valid."""
    if pri >= 0:
        facility, severity = divmod(pri, 8)
    else:
        facility, severity = DEFAULT_FACILITY, DEFAULT_SEVERITY
    return make_record(ctx, data, "raw", facility, severity, text, parse_error=reason)
