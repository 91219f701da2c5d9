"""What a query asks for, and the words people use for it: severities, facilities, times.

Shared by the CLI, the HTTP API, the console and alert rules: all of them build their
Filters with :func:`parse_filters`, so that ``--severity warning`` and
``?severity=warning`` mean the same. Parsing never touches the database
(tests/test_filters.py::test_parse_filters runs without one); a bad value raises
:class:`FilterError` with a one-line reason and the name of the filter
(tests/test_filters.py::test_a_bad_filter_names_itself).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, tzinfo
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Literal, TypeAlias, TypeVar

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
    """A filter value that means nothing; the message says which and why, in one line.

    ``param`` names the filter (``severity``, ``host``...) when the parser knows it, so
    that the CLI can name the flag and the API the parameter."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


TimeColumn = Literal["received", "event"]
TIME_COLUMNS: tuple[TimeColumn, ...] = ("received", "event")
Network: TypeAlias = IPv4Network | IPv6Network


@dataclass(frozen=True, slots=True)
class Filters:
    """Conditions on syslog.messages; None or () means "any". Several values of one
    filter (hosts, apps...) mean any of them."""

    words: str | None = None  # websearch_to_tsquery text: word, "a phrase", -excluded, or
    hosts: tuple[str, ...] = ()
    apps: tuple[str, ...] = ()
    procids: tuple[str, ...] = ()
    msgids: tuple[str, ...] = ()
    sources: tuple[Network, ...] = ()  # source_ip <<= any of these
    peers: tuple[str, ...] = ()  # peer_name, the TLS client's permitted name
    severity: int | None = None  # this or worse: severity <= this
    most_severe: int | None = None  # a range's other end: severity >= this
    facility: int | None = None
    since: datetime | None = None  # time >= since
    until: datetime | None = None  # time < until
    time: TimeColumn = "received"  # received_at, or event_time (the message's own)

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


def parse_severity_range(text: str) -> tuple[int | None, int]:
    """``err`` (this or worse: (None, 3)) or a range ``err..crit`` as journalctl reads it,
    in either order, names or numbers: (most severe, least severe), here (2, 3). An open
    end (``..err``, ``err..``) reaches emerg or debug."""
    if ".." not in text:
        return None, parse_severity(text)
    first, _, second = text.partition("..")
    ends = [parse_severity(end) if end.strip() else default
            for end, default in ((first, 0), (second, 7))]
    return min(ends), max(ends)


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


def parse_source(text: str) -> Network:
    """An IP address or a CIDR network (``192.0.2.7``, ``10.0.0.0/8``, ``2001:db8::/32``);
    host bits after the prefix are ignored, as PostgreSQL's ``<<=`` would. An IPv6 scope
    (``fe80::1%eth0``) is refused: PostgreSQL's inet has none, and source_ip never holds one
    (tests/test_filters.py::test_a_scoped_address_is_refused_by_the_cli_the_api_and_rules)."""
    try:
        network = ip_network(text.strip(), strict=False)
    except ValueError:
        raise FilterError(f"{text!r} is not an IP address or network (192.0.2.7, "
                          "10.0.0.0/8, 2001:db8::/32)") from None
    if "%" in text:  # ip_network took it, so it is a scope; a network drops it silently
        raise FilterError(f"{text!r} has an IPv6 scope (%...): stored addresses have none, "
                          "give the address without it")
    return network


def parse_time_column(text: str) -> TimeColumn:
    value = text.strip().lower()
    for column in TIME_COLUMNS:
        if value == column:
            return column
    raise FilterError(f"{text!r} is not a time to filter by: give received (when pgsyslog "
                      "got the message) or event (the time the message states)")


# The filters by name, as the API's parameters and the CLI's flags call them.
FILTER_NAMES = ("q", "host", "app", "procid", "msgid", "source", "peer", "severity",
                "facility", "since", "until", "time")
REPEATABLE = frozenset({"host", "app", "procid", "msgid", "source", "peer"})

T = TypeVar("T")


def _one(values: Mapping[str, Sequence[str]], name: str) -> str | None:
    given = values.get(name) or ()
    if len(given) > 1:
        raise FilterError("give it once", name)
    return given[0] if given else None


def _parsed(values: Mapping[str, Sequence[str]], name: str,
            parse: Callable[[str], T]) -> T | None:
    """The one value of ``name`` parsed, or None; a FilterError naming ``name``."""
    text = _one(values, name)
    if text is None:
        return None
    try:
        return parse(text)
    except FilterError as e:
        raise FilterError(str(e), name) from None
    except (ValueError, OverflowError):  # a digit int() refuses, a time out of range
        raise FilterError(f"{text!r} is not a value {name} can take", name) from None


def _many(values: Mapping[str, Sequence[str]], name: str,
          parse: Callable[[str], T]) -> tuple[T, ...]:
    result = []
    for text in values.get(name) or ():
        try:
            result.append(parse(text))
        except FilterError as e:
            raise FilterError(str(e), name) from None
    return tuple(result)


def parse_filters(values: Mapping[str, Sequence[str]], now: datetime, zone: tzinfo
                  ) -> Filters:
    """Filters from their text by name (FILTER_NAMES; each a list of the values given):
    the one parser behind the CLI's flags and the API's parameters. Times without an
    offset are read in ``zone``. A bad value raises FilterError naming the filter."""
    unknown = sorted(set(values) - set(FILTER_NAMES))
    if unknown:
        raise FilterError(f"unknown filter {unknown[0]!r}", unknown[0])
    severities = _parsed(values, "severity", parse_severity_range)
    most_severe, severity = severities if severities is not None else (None, None)

    def when(text: str) -> datetime:
        # In UTC: a time the calendar cannot hold there (0001-01-01T00:00+14:00) is an
        # error now, not a failed query later.
        return parse_time(text, now, zone).astimezone(UTC)

    return Filters(
        words=(_one(values, "q") or "").strip() or None,
        hosts=_many(values, "host", str), apps=_many(values, "app", str),
        procids=_many(values, "procid", str), msgids=_many(values, "msgid", str),
        sources=_many(values, "source", parse_source), peers=_many(values, "peer", str),
        severity=severity, most_severe=most_severe,
        facility=_parsed(values, "facility", parse_facility),
        since=_parsed(values, "since", when), until=_parsed(values, "until", when),
        time=_parsed(values, "time", parse_time_column) or "received")
