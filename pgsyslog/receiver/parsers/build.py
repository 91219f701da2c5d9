"""Assembling a ``Record``: the parts every parser fills in the same way."""

from __future__ import annotations

from datetime import datetime

from pgsyslog.record import Format, ParseContext, Record, StructuredData

from .pri import DEFAULT_FACILITY, DEFAULT_SEVERITY, NO_PRI
from .text import BOM

# RFC 5424's header field limits (section 6), for every format. A longer value is cut to
# its limit and the record says so; besides, PostgreSQL refuses a btree entry over ~2.7 kB
# (the hostname and app_name indexes), which would fail the whole batch.
MAX_HOSTNAME = 255
MAX_APP_NAME = 48
MAX_PROCID = 128
MAX_MSGID = 32
FIELD_LIMITS = {"hostname": MAX_HOSTNAME, "app_name": MAX_APP_NAME, "procid": MAX_PROCID,
                "msgid": MAX_MSGID}


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

    The hostname falls back to the peer, a BOM before the message is dropped, header
    fields longer than FIELD_LIMITS are cut (with an error), and ``raw`` is kept only with
    an error.
    """
    if (
        (hostname is not None and len(hostname) > MAX_HOSTNAME)
        or (app_name is not None and len(app_name) > MAX_APP_NAME)
        or (procid is not None and len(procid) > MAX_PROCID)
        or (msgid is not None and len(msgid) > MAX_MSGID)
    ):
        hostname, app_name, procid, msgid, parse_error = _cut_fields(
            (hostname, app_name, procid, msgid), parse_error)
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


def _cut_fields(
    values: tuple[str | None, str | None, str | None, str | None], parse_error: str | None
) -> tuple[str | None, str | None, str | None, str | None, str | None]:
    """Cut hostname, app_name, procid and msgid to their limits; say which were cut."""
    cut: list[str | None] = []
    errors = [] if parse_error is None else [parse_error]
    for (name, limit), value in zip(FIELD_LIMITS.items(), values, strict=True):
        if value is not None and len(value) > limit:
            errors.append(f"{name} cut to {limit} characters")
            value = value[:limit]
        cut.append(value)
    return cut[0], cut[1], cut[2], cut[3], "; ".join(errors)
