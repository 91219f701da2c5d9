"""From the lines of a file to records: pure, no I/O, no clock.

Each line is parsed as serve parses a message, with the file's modification time as the
receive time the parsers reason from (so a yearless "Dec 31" in a file modified on
2 January is last year). The record then lands at the time it states: received_at is
its event_time, unless it has none or states a time past ``now`` + FUTURE_SLACK (a
device clock years ahead must not make partitions for 2099); then it is the reference
time (the file's modification time; for standard input, the time of the import).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo

from pgsyslog.receiver.parsers import parse_message
from pgsyslog.record import ParseContext, Record
from pgsyslog.storage.days import is_expired

FUTURE_SLACK = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class LineOptions:
    """How lines of one file become records."""

    reference: datetime  # the file's mtime (UTC): the year of yearless times, the fallback
    now: datetime  # for the retention and the future bound
    default_tz: tzinfo
    host: str | None = None  # hostname of lines that carry none
    retention_days: int = 0  # 0 keeps everything
    max_line: int = 64 * 1024  # max_frame_length: a longer line is cut and marked

    def context(self) -> ParseContext:
        return ParseContext(received_at=self.reference, default_tz=self.default_tz,
                            transport="file")


@dataclass
class Tally:
    """What became of the lines read; each line is counted in one field
    (test_import.py::test_a_plain_file_lands_in_the_partitions_of_its_own_days)."""

    imported: int = 0
    already: int = 0  # skipped: imported before
    too_old: int = 0  # skipped: older than retention_days
    blank: int = 0  # empty or only whitespace: nothing to store
    parse_errors: int = 0  # stored, but only partly understood (parse_error set)
    bytes: int = 0  # of content read

    def add(self, other: Tally) -> None:
        for name in ("imported", "already", "too_old", "blank", "parse_errors", "bytes"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def lines(self) -> int:
        """Lines read in this run (those skipped as imported before are not read)."""
        return self.imported + self.too_old + self.blank


@dataclass
class Converted:
    records: list[Record] = field(default_factory=list)
    tally: Tally = field(default_factory=Tally)


def convert(lines: Sequence[bytes], options: LineOptions) -> Converted:
    """The records to store for these lines, and what was skipped."""
    ctx = options.context()
    latest = options.now + FUTURE_SLACK
    out = Converted()
    tally = out.tally
    keep = out.records.append
    expired = _expired_days(options)
    for line in lines:
        cut = len(line) > options.max_line
        if cut:
            line = line[: options.max_line]
        record = parse_message(line, ctx)
        if record is None:
            tally.blank += 1
            continue
        if cut:
            record.add_error(f"message truncated to max_frame_length ({options.max_line} "
                             "bytes)", line)
        stated = record.event_time
        if stated is not None and stated <= latest:
            record.received_at = stated
        if options.retention_days and expired(record.received_at.date()):
            tally.too_old += 1
            continue
        if record.hostname is None:
            record.hostname = options.host
        if record.parse_error is not None:
            tally.parse_errors += 1
        keep(record)
    tally.imported = len(out.records)
    return out


def _expired_days(options: LineOptions) -> Callable[[date], bool]:
    """is_expired for this group's ``now``, worked out once per day (lines of a group fall
    on a day or two)."""
    known: dict[date, bool] = {}

    def expired(day: date) -> bool:
        verdict = known.get(day)
        if verdict is None:
            verdict = known[day] = is_expired(day, options.now, options.retention_days)
        return verdict

    return expired
