"""Query-string parameters of the API (search, tail, histogram, facets): the CLI's filters.

Times without an offset are UTC here (the CLI reads them in the machine's zone). A
parameter the endpoint does not know, or one given twice (but for the filters that mean
"any of them" when repeated: host, app, procid, msgid, source, peer), is an error rather
than silently ignored, so that a typo does not return everything. Every value that could
not reach the database as it is (a NUL, which PostgreSQL refuses in text; a number too
large for bigint; a time outside the calendar) is a FilterError here, so that bad input
is a 400 saying which parameter, never a failed query (tests/test_http_fuzz.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from multidict import MultiMapping

from pgsyslog.storage.filters import FILTER_NAMES, REPEATABLE, FilterError, Filters, parse_filters

FILTER_PARAMS = FILTER_NAMES
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
    """The parameters as a plain mapping (the first value of each), each known, given
    once unless it is a filter that may repeat, and fit for a query."""
    unknown = sorted(set(query) - set(known))
    if unknown:
        raise FilterError(f"unknown parameter {unknown[0]!r}; known: {', '.join(known)}")
    for name in set(query):
        values = query.getall(name)
        if len(values) > 1 and name not in REPEATABLE:
            raise FilterError(f"{name}: give it once")
        for value in values:
            problem = _text_problem(value)
            if problem:
                raise FilterError(f"{name}: the value {problem}")
    return {name: query[name] for name in query}


def filters_from(query: MultiMapping[str], now: datetime) -> Filters:
    """The filter parameters (checked first) as Filters; ``host=a&host=b`` is either."""
    texts = {name: query.getall(name) for name in FILTER_NAMES if name in query}
    try:
        return parse_filters(texts, now, UTC)
    except FilterError as e:
        raise FilterError(f"{e.param}: {e}" if e.param else str(e)) from None


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
