"""Timestamps as senders write them, turned into UTC-aware datetimes.

Three shapes: RFC 3339 (strict, for RFC 5424), ISO 8601 (lenient: ``T`` or space,
``.`` or ``,`` before the fraction, zone optional) and BSD ``Mmm dd hh:mm:ss`` (no year,
no zone). Every function returns ``None`` for a time that cannot exist instead of
raising. A time without a zone is read in the default zone; one without a year takes
the year that puts it nearest to the receive time.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo

_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?"
    r"(?:[Zz]|[+-][0-9]{2}:[0-9]{2})"
)
ISO_PATTERN = (
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]+)?)?"
    r"(?:[Zz]|[+-][0-9]{2}(?::?[0-9]{2})?)?"
)
"""An ISO 8601 date and time: ``T`` or space, ``.`` or ``,`` before the fraction, any zone."""

BSD_PATTERN = (
    r"(?:(?P<year0>[0-9]{4}) )?"  # NX-OS puts the year first
    r"(?P<mon>[A-Za-z]{3}) {1,2}(?P<day>[0-9]{1,2})"
    r"(?: (?P<year>[0-9]{4}))?"  # Cisco ASA and others put it after the day
    r" (?P<hh>[0-9]{2}):(?P<mi>[0-9]{2}):(?P<ss>[0-9]{2})(?:[.,](?P<frac>[0-9]{1,9}))?"
)
"""A BSD timestamp, with the optional year and fraction seen in the field."""

_MONTHS = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}
_HALF_YEAR = timedelta(days=183)

ZONE_NAMES = (
    "UTC|GMT|UT|WET|WEST|CET|CEST|EET|EEST|MSK|EST|EDT|CDT|MST|MDT|PST|PDT|AKST|AKDT|HST"
    "|JST|KST|AEST|AEDT|ACST|ACDT|AWST|NZST|NZDT"
)
"""Zone abbreviations that Cisco IOS prints after its timestamps (``show-timezone``)."""
# fmt: off
_ZONE_HOURS = {
    "UTC": 0, "GMT": 0, "UT": 0, "WET": 0, "WEST": 1, "CET": 1, "CEST": 2, "EET": 2,
    "EEST": 3, "MSK": 3, "EST": -5, "EDT": -4, "CDT": -5, "MST": -7, "MDT": -6, "PST": -8,
    "PDT": -7, "AKST": -9, "AKDT": -8, "HST": -10, "JST": 9, "KST": 9, "AEST": 10,
    "AEDT": 11, "ACST": 9.5, "ACDT": 10.5, "AWST": 8, "NZST": 12, "NZDT": 13,
}
# fmt: on
_ZONES: dict[str, tzinfo] = {
    name: UTC if hours == 0 else timezone(timedelta(hours=hours))
    for name, hours in _ZONE_HOURS.items()
}


def to_utc(dt: datetime) -> datetime | None:
    """An aware datetime in UTC; ``None`` when it falls outside the datetime range."""
    if dt.tzinfo is UTC:
        return dt
    try:
        return dt.astimezone(UTC)
    except (OverflowError, ValueError):
        return None


def localize(naive: datetime, tz: tzinfo) -> datetime | None:
    """Read a wall-clock time in ``tz`` (the earlier one when the clock goes back)."""
    return to_utc(naive.replace(tzinfo=tz))


def parse_rfc3339(value: str) -> datetime | None:
    """RFC 3339 (as RFC 5424 requires) to UTC; ``None`` for anything else."""
    if _RFC3339.fullmatch(value) is None:
        return None
    try:
        dt: datetime | None = datetime.fromisoformat(value)
    except ValueError:
        dt = _rfc3339_slow(value)
    if dt is None or dt.tzinfo is UTC:  # "Z" and "+00:00" come back as UTC itself
        return dt
    return to_utc(dt)


def _rfc3339_slow(value: str) -> datetime | None:
    """Lower-case ``t``/``z`` and a leap second (``:60``, kept as ``:59``)."""
    value = value.upper()
    if value[17:19] == "60":
        value = value[:17] + "59" + value[19:]
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def iso8601_to_utc(value: str, default_tz: tzinfo) -> datetime | None:
    """A string that matched ``ISO_PATTERN`` to UTC; without a zone it is in ``default_tz``."""
    try:
        dt = datetime.fromisoformat(value.upper())
    except ValueError:
        return None
    if dt.tzinfo is None:
        return localize(dt, default_tz)
    return to_utc(dt)


def bsd_from_match(
    m: re.Match[str], default_tz: tzinfo, received_at: datetime, zone: str | None = None
) -> datetime | None:
    """The UTC time of a ``BSD_PATTERN`` match (``zone``: an abbreviation from ``ZONE_NAMES``)."""
    year0, mon, day, year, hh, mi, ss, frac = m.group(
        "year0", "mon", "day", "year", "hh", "mi", "ss", "frac"
    )
    month = _MONTHS.get(mon.lower())
    if month is None:
        return None
    tz = default_tz if zone is None else _ZONES.get(zone, default_tz)
    us = int(frac[:6].ljust(6, "0")) if frac else 0
    fields = (month, int(day), int(hh), int(mi), int(ss), us)
    year = year or year0
    try:
        if year:
            naive: datetime | None = datetime(int(year), *fields)
        else:
            naive = nearest_year(fields, _wall_clock(received_at, tz))
    except (OverflowError, ValueError):
        return None
    return None if naive is None else localize(naive, tz)


def _wall_clock(received_at: datetime, tz: tzinfo) -> datetime:
    """``received_at`` as the clock on the wall in ``tz`` shows it (naive); the messages
    of one read, or of one imported file, share it."""
    global _last_wall_clock
    key, value = _last_wall_clock
    if key != (received_at, tz):
        value = received_at.astimezone(tz).replace(tzinfo=None)
        _last_wall_clock = ((received_at, tz), value)
    return value


_last_wall_clock: tuple[tuple[datetime, tzinfo], datetime] = (
    (datetime.min.replace(tzinfo=UTC), UTC), datetime.min)


def nearest_year(fields: tuple[int, int, int, int, int, int], ref: datetime) -> datetime | None:
    """The wall-clock time ``(month, day, h, m, s, us)`` in the year nearest to ``ref``."""
    year = ref.year
    try:
        candidate = datetime(year, *fields)
    except ValueError:  # 29 February outside a leap year, or no such day at all
        return _nearest_leap_day(fields, ref)
    if candidate - ref > _HALF_YEAR:
        return _in_year(year - 1, fields)
    if ref - candidate > _HALF_YEAR:
        return _in_year(year + 1, fields)
    return candidate


def _in_year(year: int, fields: tuple[int, int, int, int, int, int]) -> datetime | None:
    try:
        return datetime(year, *fields)
    except ValueError:  # 29 February, or beyond year 1 or 9999
        return None


def _nearest_leap_day(
    fields: tuple[int, int, int, int, int, int], ref: datetime
) -> datetime | None:
    candidates = (_in_year(y, fields) for y in range(ref.year - 4, ref.year + 5))
    found = [c for c in candidates if c is not None]
    return min(found, key=lambda c: abs(c - ref)) if found else None
