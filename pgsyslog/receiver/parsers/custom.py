"""The custom format: ``TIMESTAMP SERVICE SEVERITY MESSAGE`` (DESIGN.md, parse rule 5).

TIMESTAMP is ISO 8601 (a time without a zone is read in the default zone), SERVICE a
token without spaces (it becomes app_name), SEVERITY a word matched case-insensitively.
"""

from __future__ import annotations

import re

from pgsyslog.record import SEVERITY_NAMES, ParseContext, Record

from .build import make_record
from .pri import DEFAULT_FACILITY
from .timestamps import ISO_PATTERN, iso8601_to_utc

# Fields are separated by runs of spaces: loggers pad the severity ("INFO     message").
_CUSTOM = re.compile(rf"({ISO_PATTERN}) +([^ ]+) +([A-Za-z]+)(?: +|\Z)")


def parse_custom(text: str, pos: int, data: bytes, ctx: ParseContext) -> Record | None:
    """Parse ``text[pos:]``; ``None`` when it is not in the custom format."""
    m = _CUSTOM.match(text, pos)
    if m is None:
        return None
    timestamp, service, word = m.groups()
    severity = SEVERITY_NAMES.get(word.lower())
    if severity is None:
        return None
    event_time = iso8601_to_utc(timestamp, ctx.default_tz)
    error = None
    if event_time is None:
        error = f"TIMESTAMP {timestamp!r} is not a valid date and time"
    return make_record(
        ctx,
        data,
        "custom",
        DEFAULT_FACILITY,
        severity,
        text[m.end() :],
        event_time=event_time,
        app_name=service,
        parse_error=error,
    )
