"""`pgsyslog parse`: the parsers on standard input, one JSON object per line on output.

It is how people and the conformance corpus see what a message becomes (DESIGN.md,
"Parse rules"). Output is written per read from standard input, so piping a large file
is fast and piping ``tail -f`` still shows each line as it comes.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, tzinfo
from typing import BinaryIO, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click

from pgsyslog.cli.options import OneLineBadParameter
from pgsyslog.config import machine_zone_name
from pgsyslog.receiver.parsers import FORMAT_CHOICES, FormatChoice, parse_message
from pgsyslog.record import ParseContext, Record, record_fields

READ_SIZE = 1 << 16  # bytes per read of standard input; each read's lines are written at once
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _received_at(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise OneLineBadParameter(f"{value!r} is not an ISO 8601 date and time") from None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _default_tz(ctx: click.Context, param: click.Parameter, value: str | None) -> tzinfo:
    if value is None:
        return ZoneInfo(machine_zone_name())
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise OneLineBadParameter(
            f"{value!r} is not an IANA time zone (such as Europe/Berlin or UTC)"
        ) from None


@click.command()
@click.option(
    "--received-at",
    metavar="ISO8601",
    callback=_received_at,
    help="Receive time given to every message (a time without zone is UTC).  [default: now]",
)
@click.option(
    "--default-tz",
    metavar="ZONE",
    callback=_default_tz,
    help="IANA zone for timestamps without one.  [default: this machine's zone]",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMAT_CHOICES),
    default="auto",
    show_default=True,
    help="Force one format; messages that do not fit it come out as raw.",
)
def parse(received_at: datetime, default_tz: tzinfo, fmt: str) -> None:
    """Parse syslog messages, one per line on stdin, into one JSON object per line.

    Blank lines print nothing. The fields are the columns of syslog.messages without
    raw, transport and source_ip.
    """
    ctx = ParseContext(received_at=received_at, default_tz=default_tz)
    choice = cast(FormatChoice, fmt)
    out = sys.stdout.buffer
    for lines in _line_batches(sys.stdin.buffer):
        records = (parse_message(line, ctx, choice) for line in lines)
        out.write(b"".join(_json_line(r) for r in records if r is not None))
        out.flush()


def _line_batches(stream: BinaryIO) -> Iterator[list[bytes]]:
    """The complete lines of each read (split on LF only); the last may lack its LF."""
    read: Callable[[int], bytes] = getattr(stream, "read1", stream.read)
    pending: list[bytes] = []  # pieces of a line that has not ended yet
    while chunk := read(READ_SIZE):
        lines = chunk.split(b"\n")
        if len(lines) == 1:
            pending.append(chunk)
            continue
        if pending:
            lines[0] = b"".join([*pending, lines[0]])
        tail = lines.pop()
        pending = [tail] if tail else []
        yield lines
    if pending:
        yield [b"".join(pending)]


def _json_line(record: Record) -> bytes:
    return (_encode(record_fields(record)) + "\n").encode()
