"""RFC 5424: ``<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA [MSG]``.

Each ``-`` is null. A TIMESTAMP that is not RFC 3339 gives ``event_time`` null and a
``parse_error``, and parsing goes on; malformed STRUCTURED-DATA keeps its text in the
message. Extra spaces between header fields are tolerated.
"""

from __future__ import annotations

import re

from pgsyslog.record import ParseContext, Record, StructuredData

from .build import make_record
from .structured_data import parse_structured_data
from .timestamps import parse_rfc3339

_SPACES = re.compile(" +")
_HEADER_FIELDS = ("TIMESTAMP", "HOSTNAME", "APP-NAME", "PROCID", "MSGID", "STRUCTURED-DATA")


def parse_rfc5424(text: str, pos: int, pri: int, data: bytes, ctx: ParseContext) -> Record:
    """Parse ``text[pos:]``, the part after ``<PRI>``, which starts with version ``1 ``."""
    header = text[pos + 2 :]
    fields = header.split(" ", 5)
    if len(fields) < 6 or "" in fields:
        fields = _SPACES.split(header.lstrip(" "), 5)
        if len(fields) < 6 or not fields[5]:
            return _cut_off(fields, pri, data, ctx)
    timestamp, hostname, app_name, procid, msgid, rest = fields
    event_time = None
    error = None
    if timestamp != "-":
        event_time = parse_rfc3339(timestamp)
        if event_time is None:
            error = f"TIMESTAMP {timestamp[:40]!r} is not RFC 3339"
    structured_data, message, sd_error = _split_sd(rest)
    if sd_error is not None:
        error = sd_error if error is None else f"{error}; {sd_error}"
    facility, severity = divmod(pri, 8)
    return make_record(
        ctx,
        data,
        "rfc5424",
        facility,
        severity,
        message,
        event_time=event_time,
        hostname=None if hostname == "-" else hostname,
        app_name=None if app_name == "-" else app_name,
        procid=None if procid == "-" else procid,
        msgid=None if msgid == "-" else msgid,
        structured_data=structured_data,
        parse_error=error,
    )


def _split_sd(rest: str) -> tuple[StructuredData | None, str, str | None]:
    """``(structured_data, message, error)`` from ``STRUCTURED-DATA [SP MSG]``."""
    if rest == "-":
        return None, "", None
    if rest.startswith("- "):
        return None, _message_from(rest, 2), None
    if rest.startswith("["):
        sd, end, error = parse_structured_data(rest, 0)  # with sd: why it was cut, if it was
        if sd is None:
            return None, rest, error
        if end == len(rest):
            return sd, "", error
        if rest[end] == " ":
            return sd, _message_from(rest, end + 1), error
        no_space = "no space between STRUCTURED-DATA and MSG"
        return sd, rest[end:], no_space if error is None else f"{error}; {no_space}"
    token = rest.split(" ", 1)[0]
    return None, rest, f"STRUCTURED-DATA {token[:40]!r} is neither '-' nor '[...]'"


def _message_from(rest: str, start: int) -> str:
    """MSG from ``start``, less one leading space when there is one.

    rsyslog's RFC 5424 forwarding template writes ``%STRUCTURED-DATA% %msg%``, and the
    msg of a message that came in as RFC 3164 keeps the space that followed its TAG:
    every such line carries two spaces before the text. Dropping one gives the text as
    the application logged it.
    """
    if start < len(rest) and rest[start] == " ":
        start += 1
    return rest[start:]


def _cut_off(fields: list[str], pri: int, data: bytes, ctx: ParseContext) -> Record:
    """A header that ends early: keep the fields it has, say which one is missing."""
    values: list[str | None] = [None if f in ("", "-") else f for f in fields[:5]]
    values += [None] * (5 - len(values))
    timestamp, hostname, app_name, procid, msgid = values
    missing = _HEADER_FIELDS[len(fields) if fields[-1] else len(fields) - 1]
    event_time = None if timestamp is None else parse_rfc3339(timestamp)
    facility, severity = divmod(pri, 8)
    return make_record(
        ctx,
        data,
        "rfc5424",
        facility,
        severity,
        "",
        event_time=event_time,
        hostname=hostname,
        app_name=app_name,
        procid=procid,
        msgid=msgid,
        parse_error=f"RFC 5424 header is cut off: {missing} is missing",
    )
