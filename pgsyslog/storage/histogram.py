"""Matching rows counted per minute, hour or day: the console's histogram, /api/histogram.

One aggregate: ``date_bin`` over the search's time column (received_at or event_time)
with the search's conditions, grouped by bucket, so PostgreSQL reads only the rows the
indexes find (tests/test_query_plans.py::test_the_histogram_of_a_word_uses_indexes).
Buckets no row fell into are added here, so that a chart of them is continuous; a range is
cut into MAX_BUCKETS buckets at most.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import func, literal_column, select

from pgsyslog.storage.filters import FilterError, Filters
from pgsyslog.storage.queries import AnySelect, conditions, time_column

Interval = Literal["minute", "hour", "day"]
STEPS: dict[Interval, timedelta] = {"minute": timedelta(minutes=1),
                                    "hour": timedelta(hours=1), "day": timedelta(days=1)}
# Ranges up to this long get buckets of this size when no interval is asked for.
CHOICES: tuple[tuple[timedelta, Interval], ...] = (
    (timedelta(hours=3), "minute"), (timedelta(days=7), "hour"))
DEFAULT_RANGE = timedelta(hours=24)
MAX_BUCKETS = 2_000  # a week by minute is 10,080: too many bars for a chart, and rows
ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)  # buckets start on whole UTC minutes, hours, days


@dataclass(frozen=True, slots=True)
class Histogram:
    interval: Interval
    since: datetime
    until: datetime
    buckets: list[tuple[datetime, int]]  # (start, rows), every bucket of the range

    @property
    def total(self) -> int:
        return sum(count for _, count in self.buckets)


def parse_interval(text: str) -> Interval:
    for name in STEPS:
        if text.strip().lower() == name:
            return name
    raise FilterError(f"{text!r} is not an interval: give minute, hour or day", "interval")


def choose_interval(since: datetime, until: datetime) -> Interval:
    """Minutes for up to 3 hours, hours for up to 7 days, days beyond."""
    for longest, interval in CHOICES:
        if until - since <= longest:
            return interval
    return "day"


def bucket_start(when: datetime, interval: Interval) -> datetime:
    """The start of the bucket ``when`` falls in (as date_bin from ORIGIN has it)."""
    step = STEPS[interval]
    return ORIGIN + ((when - ORIGIN) // step) * step


def ranged(filters: Filters, now: datetime, interval: Interval | None
            ) -> tuple[Filters, Interval]:
    """The filters with since and until set (24 h back from now unless given), and the
    interval; FilterError when the range is empty or holds too many buckets."""
    until = filters.until or now
    since = filters.since or until - DEFAULT_RANGE
    if since >= until:
        raise FilterError("since must be before until", "since")
    chosen = interval or choose_interval(since, until)
    buckets = (bucket_start(until, chosen) - bucket_start(since, chosen)) // STEPS[chosen] + 1
    if buckets > MAX_BUCKETS:
        raise FilterError(f"{buckets:,} {chosen}s are too many bars (at most {MAX_BUCKETS:,}): "
                          "give a larger interval or a shorter range", "interval")
    return dataclasses.replace(filters, since=since, until=until), chosen


def _bin(filters: Filters, interval: Interval) -> Any:
    # Literals, not parameters: GROUP BY must repeat the select's expression exactly.
    return func.date_bin(literal_column(f"interval '1 {interval}'"), time_column(filters),
                         literal_column(f"timestamptz '{ORIGIN.isoformat()}'"))


def histogram_statement(filters: Filters, interval: Interval) -> AnySelect:
    """(bucket start, rows) of the buckets that hold rows, in time order."""
    start = _bin(filters, interval)
    return (select(start, func.count()).where(*conditions(filters))
            .group_by(start).order_by(start))


def filled(counted: Iterable[tuple[datetime, int]], filters: Filters, interval: Interval
           ) -> Histogram:
    """Every bucket from since to until, with the counts found (0 where none)."""
    assert filters.since is not None and filters.until is not None
    found = {start: count for start, count in counted}
    step = STEPS[interval]
    buckets = []
    start = bucket_start(filters.since, interval)
    while start < filters.until:
        buckets.append((start, found.get(start, 0)))
        start += step
    return Histogram(interval, filters.since, filters.until, buckets)


def histogram_json(h: Histogram) -> dict[str, Any]:
    return {"interval": h.interval, "since": h.since.isoformat(), "until": h.until.isoformat(),
            "buckets": [{"start": start.isoformat(), "count": count}
                        for start, count in h.buckets],
            "total": h.total}
