"""What a query asks for, and the words people use for it: severities, facilities, times.

Shared by the CLI and the HTTP API, so that ``--severity warning`` and ``?severity=warning``
mean the same. Parsing never touches the database; a bad value raises
:class:`FilterError` with a one-line reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta, tzinfo

from pgsyslog.record import SEVERITY_LABELS, SEVERITY_NAMES

# RFC 5424 facilities with the names of syslog.h; 13-15 have no name in most systems.
FACILITY_NAMES: dict[str, int] = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6,
    "news": 7, "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11, "ntp": 12,
    "security": 13, "console": 14, "solaris-cron": 15,
    **{f"local{n}": 16 + n for n in range(8)},
}

_RELATIVE_RE = re.compile(r"^-?(\d+)\s*(s|sec|m|min|h|hour|d|day|w|week)s?(\s+ago)?$")
_UNIT_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hour": 3600,
                 "d": 86400, "day": 86400, "w": 604800, "week": 604800}


class FilterError(ValueError):
    """A filter value that means nothing; the message says which and why, in one line."""


@dataclass(frozen=True, slots=True)
class Filters:
    """Conditions on syslog.messages; None means "any"."""

    words: str | None = None  # websearch_to_tsquery text: word, "a phrase", -excluded, or
    host: str | None = None
    app: str | None = None
    severity: int | None = None  # this or worse: severity <= this
    facility: int | None = None
    since: datetime | None = None  # received_at >= since
    until: datetime | None = None  # received_at < until

    @property
    def empty(self) -> bool:
        return self == Filters()


def parse_severity(text: str) -> int:
    """A severity name (``warning``, ``err``...) or number 0-7."""
    value = text.strip().lower()
    if value.isascii() and value.isdigit() and int(value) <= 7:
        return int(value)
    if value in SEVERITY_NAMES:
        return SEVERITY_NAMES[value]
    raise FilterError(f"{text!r} is not a severity: give 0-7 or one of "
                      f"{', '.join(SEVERITY_LABELS)}")


def parse_facility(text: str) -> int:
    """A facility name (``daemon``, ``local0``...) or number 0-23."""
    value = text.strip().lower()
    if value.isascii() and value.isdigit() and int(value) <= 23:
        return int(value)
    if value in FACILITY_NAMES:
        return FACILITY_NAMES[value]
    raise FilterError(f"{text!r} is not a facility: give 0-23 or a name such as kern, user, "
                      "daemon, auth, cron, local0-local7")


def parse_time(text: str, now: datetime, zone: tzinfo) -> datetime:
    """ISO 8601, or relative to ``now``: ``15m``, ``2h``, ``3d``, ``1w``, ``now``, ``today``,
    ``yesterday``. Dates and times without an offset are read in ``zone``."""
    value = text.strip().lower()
    local_now = now.astimezone(zone)
    midnight = datetime.combine(local_now.date(), time(), zone)
    words = {"now": now, "today": midnight, "yesterday": midnight - timedelta(days=1),
             "tomorrow": midnight + timedelta(days=1)}
    if value in words:
        return words[value]
    match = _RELATIVE_RE.match(value)
    if match:
        return now - timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise FilterError(f"{text!r} is not a time: give ISO 8601 (2024-03-01T10:15:00Z, "
                          "2024-03-01) or relative (15m, 2h, 3d, yesterday)") from None
    return parsed.replace(tzinfo=zone) if parsed.tzinfo is None else parsed


def severity_label(severity: int) -> str:
    return SEVERITY_LABELS[severity] if 0 <= severity <= 7 else str(severity)
