"""Query-string parameters of /api/search and /api/tail: the filters of the CLI.

Times without an offset are UTC here (the CLI reads them in the machine's zone). A
parameter the endpoint does not know is an error rather than silently ignored, so that a
typo does not return everything.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TypeVar

from pgsyslog.storage.filters import (
    FilterError,
    Filters,
    parse_facility,
    parse_severity,
    parse_time,
)

T = TypeVar("T")

FILTER_PARAMS = ("q", "host", "app", "severity", "facility", "since", "until")


def check_known(params: Mapping[str, str], known: tuple[str, ...]) -> None:
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise FilterError(f"unknown parameter {unknown[0]!r}; known: {', '.join(known)}")


def _parsed(params: Mapping[str, str], name: str, parse: Callable[[str], T]) -> T | None:
    value = params.get(name)
    if value is None:
        return None
    try:
        return parse(value)
    except FilterError as e:
        raise FilterError(f"{name}: {e}") from None


def filters_from(params: Mapping[str, str], now: datetime) -> Filters:
    def time(value: str) -> datetime:
        return parse_time(value, now, UTC)

    return Filters(words=(params.get("q") or "").strip() or None, host=params.get("host"),
                   app=params.get("app"), severity=_parsed(params, "severity", parse_severity),
                   facility=_parsed(params, "facility", parse_facility),
                   since=_parsed(params, "since", time), until=_parsed(params, "until", time))


def int_param(params: Mapping[str, str], name: str, default: int | None, low: int,
              high: int | None = None) -> int | None:
    value = params.get(name)
    if value is None:
        return default
    if not value.isdigit() or int(value) < low or (high is not None and int(value) > high):
        limits = f"{low}-{high}" if high is not None else f"{low} or more"
        raise FilterError(f"{name}: {value!r} is not a whole number {limits}")
    return int(value)


def bool_param(params: Mapping[str, str], name: str) -> bool:
    value = params.get(name, "false").lower()
    if value in ("1", "true", "yes", "on", ""):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise FilterError(f"{name}: {value!r} is not true or false")
