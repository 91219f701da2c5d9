"""RFC 3164 and its common dialects (DESIGN.md, parse rules 4 and 6).

``[<PRI>][TIMESTAMP SP][HOSTNAME SP][TAG SP]MSG`` where TIMESTAMP is BSD (``Mmm dd
hh:mm:ss``, optionally with year and fraction) or ISO 8601 (rsyslog's forwarding
format). Cisco's own header (``123: host: *Mar  1 00:00:17.123 UTC:``) is read for its
time and hostname, and its full text stays the message. Without a timestamp (FortiGate
key=value, Cisco ASA without ``logging timestamp``) there is no hostname either.
"""

from __future__ import annotations

import re
from datetime import datetime, tzinfo

from pgsyslog.record import ParseContext, Record

from .build import make_record
from .pri import DEFAULT_FACILITY, DEFAULT_SEVERITY
from .timestamps import BSD_PATTERN, ISO_PATTERN, ZONE_NAMES, bsd_from_match, iso8601_to_utc

# A timestamp, then a space or the end; " UTC:" after it makes it Cisco's header instead.
_HEADER = re.compile(rf"(?:{BSD_PATTERN}|(?P<iso>{ISO_PATTERN}))(?= (?!(?:{ZONE_NAMES}):)|\Z)")
# Cisco IOS/NX-OS/ASA: sequence number, origin hostname, clock flag ('*' not set, '.' not
# synchronised), timestamp, zone, then a colon.
_CISCO = re.compile(
    rf"(?:(?P<seq>[0-9]+): (?:(?P<chost>[^ :]+): )?)?"
    rf"(?P<flag>[*.])?{BSD_PATTERN}(?: (?P<zone>{ZONE_NAMES}))?:(?= |\Z)"
)
_CISCO_SEQUENCE = re.compile(r"[0-9]+: ")

_Fields = tuple[str | None, str | None, str | None, str]  # hostname, app_name, procid, message


def parse_rfc3164(text: str, pos: int, pri: int, data: bytes, ctx: ParseContext) -> Record | None:
    """Parse ``text[pos:]``, the part after ``<PRI>`` (``pri`` < 0: there was none).

    Without a PRI a timestamp is required; ``None`` when there is none.
    """
    if pri >= 0:
        facility, severity = divmod(pri, 8)
    else:
        facility, severity = DEFAULT_FACILITY, DEFAULT_SEVERITY
    event_time: datetime | None = None
    stamp = None  # the timestamp text, when there is one
    if (m := _HEADER.match(text, pos)) is not None:
        stamp = m.group()
        event_time = _header_time(m, ctx)
        hostname, app_name, procid, message = _after_timestamp(text, m.end())
    elif (m := _CISCO.match(text, pos)) is not None:
        if m["flag"] != "*":  # '*': the device clock was never set, its time means nothing
            stamp = m.group()
            event_time = bsd_from_match(m, ctx.default_tz, ctx.received_at, m["zone"])
        hostname, app_name, procid, message = m["chost"], None, None, text[pos:]
    elif pri < 0:
        return None
    elif _CISCO_SEQUENCE.match(text, pos) is not None:
        hostname, app_name, procid, message = None, None, None, text[pos:]
    else:
        hostname, app_name, procid, message = _tag_and_message(text, pos)
    error = None
    if stamp is not None and event_time is None:
        error = f"timestamp {stamp[:40]!r} is not a valid date and time"
    return make_record(
        ctx,
        data,
        "rfc3164",
        facility,
        severity,
        message,
        event_time=event_time,
        hostname=hostname,
        app_name=app_name,
        procid=procid,
        parse_error=error,
    )


def _header_time(m: re.Match[str], ctx: ParseContext) -> datetime | None:
    # Lines of one burst share their second, and the frames of one read (or of one
    # imported file) their context: reading that header once is most of its cost.
    key = (m.group(), ctx.default_tz, ctx.received_at)
    try:
        return _HEADER_TIMES[key]
    except KeyError:
        pass
    iso = m["iso"]
    if iso is not None:
        value = iso8601_to_utc(iso, ctx.default_tz)
    else:
        value = bsd_from_match(m, ctx.default_tz, ctx.received_at)
    if len(_HEADER_TIMES) >= _HEADER_TIMES_KEPT:
        _HEADER_TIMES.clear()
    _HEADER_TIMES[key] = value
    return value


_HEADER_TIMES: dict[tuple[str, tzinfo, datetime], datetime | None] = {}
_HEADER_TIMES_KEPT = 4096


def _after_timestamp(text: str, pos: int) -> _Fields:
    """HOSTNAME, unless that token is already a TAG; then TAG; then MSG."""
    while text.startswith(" ", pos):
        pos += 1
    end = text.find(" ", pos)
    hostname = text[pos:] if end < 0 else text[pos:end]
    if not hostname or _split_tag(hostname) is not None:
        return _tag_and_message(text, pos)
    if end < 0:
        return hostname, None, None, ""
    pos = end + 1
    if text[pos : pos + 2] in (":", ": "):
        pos += 2  # Cisco ASA: "hostname : %ASA-6-302013: ..."
    _, app_name, procid, message = _tag_and_message(text, pos)
    return hostname, app_name, procid, message


def _tag_and_message(text: str, pos: int) -> _Fields:
    """``TAG SP MSG`` when the first token is a TAG, else all of ``text[pos:]`` is MSG."""
    end = text.find(" ", pos)
    tag = _split_tag(text[pos:] if end < 0 else text[pos:end])
    if tag is None:
        return None, None, None, text[pos:]
    return None, tag[0], tag[1], "" if end < 0 else text[end + 1 :]


def _split_tag(token: str) -> tuple[str, str | None] | None:
    """``name:`` or ``name[pid]:`` to ``(name, pid)``; ``None`` when it is not a TAG."""
    if len(token) < 2 or not token.endswith(":"):
        return None
    name = token[:-1]
    if name.endswith("]"):
        bracket = name.rfind("[")
        if bracket > 0:
            return name[:bracket], name[bracket + 1 : -1] or None
    return name, None
