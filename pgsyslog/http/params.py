"""Query-string parameters of /api/search and /api/tail: the filters of the CLI.

Times without an offset are UTC here (the CLI reads them in the machine's zone). A
parameter the endpoint does not know, or one given twice, is an error rather than
silently ignored, so that a typo does not return everything. Every value that could
not reach the database as it is (a NUL, which PostgreSQL refuses in text; a number too
large for bigint; a time outside the calendar) is a FilterError here, so that bad input
is a 400 saying which parameter, never a failed query (tests/test_http_fuzz.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TypeVar

from multidict import MultiMapping

from pgsyslog.storage.filters import (
    FilterError,
    Filters,
    parse_facility,
    parse_severity,
    parse_time,
)

T = TypeVar("T")

FILTER_PARAMS = ("q", "host", "app", "severity", "facility", "since", "until")
MAX_ID = 2**63 - 1  # ids are bigint


def _text_problem(value: str) -> str | None:
    if "\x00" in value:
        return "holds a NUL character"
    try:
        value.encode()
    except UnicodeEncodeError:
        return "is not valid UTF-8"
    return None


def checked(query: MultiMapping[str], known: tuple[str, ...]) -> dict[str, str]:
    """The parameters as a plain mapping, each known, given once and fit for a query."""
    unknown = sorted(set(query) - set(known))
    if unknown:
        raise FilterError(f"unknown parameter {unknown[0]!r}; known: {', '.join(known)}")
    for name in query:
        if len(query.getall(name)) > 1:
            raise FilterError(f"{name}: give it once")
        problem = _text_problem(query[name])
        if problem:
            raise FilterError(f"{name}: the value {problem}")
    return dict(query)


def _parsed(params: Mapping[str, str], name: str, parse: Callable[[str], T]) -> T | None:
    value = params.get(name)
    if value is None:
        return None
    try:
        return parse(value)
    except FilterError as e:
        raise FilterError(f"{name}: {e}") from None
    except (ValueError, OverflowError):  # a digit int() refuses, a time out of range
        raise FilterError(f"{name}: {value!r} is not a value {name} can take") from None


def filters_from(params: Mapping[str, str], now: datetime) -> Filters:
    def time(value: str) -> datetime:
        return parse_time(value, now, UTC).astimezone(UTC)

    return Filters(words=(params.get("q") or "").strip() or None, host=params.get("host"),
                   app=params.get("app"), severity=_parsed(params, "severity", parse_severity),
                   facility=_parsed(params, "facility", parse_facility),
                   since=_parsed(params, "since", time), until=_parsed(params, "until", time))


def whole_number(text: str, low: int, high: int) -> int | None:
    """``text`` as an int within low..high, or None; only ASCII digits count."""
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(high)):
        return None
    number = int(text)
    return number if low <= number <= high else None


def int_param(params: Mapping[str, str], name: str, default: int | None, low: int,
              high: int = MAX_ID) -> int | None:
    value = params.get(name)
    if value is None:
        return default
    number = whole_number(value, low, high)
    if number is None:
        limits = f"{low}-{high}" if high != MAX_ID else f"{low} or more"
        raise FilterError(f"{name}: {value!r} is not a whole number {limits}")
    return number


def bool_param(params: Mapping[str, str], name: str) -> bool:
    value = params.get(name, "false").lower()
    if value in ("1", "true", "yes", "on", ""):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise FilterError(f"{name}: {value!r} is not true or false")
