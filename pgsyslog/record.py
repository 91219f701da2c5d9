"""The record: one received syslog message, normalised.

Field names are the column names of ``syslog.messages`` (see DESIGN.md, "The record").
Parsers build records; listeners, the writer and the queries only pass them on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Literal, TypeAlias

Format: TypeAlias = Literal["rfc5424", "rfc3164", "custom", "raw"]
Transport: TypeAlias = Literal["udp", "tcp", "tls", "stdin"]
SDValue: TypeAlias = str | list[str]
StructuredData: TypeAlias = dict[str, dict[str, SDValue]]

FORMATS: tuple[Format, ...] = ("rfc5424", "rfc3164", "custom", "raw")


@dataclass(frozen=True, slots=True)
class ParseContext:
    """What a parser is told besides the bytes: it never reads a clock or a socket."""

    received_at: datetime  # timezone-aware, UTC
    default_tz: tzinfo
    source_ip: str | None = None
    transport: Transport = "stdin"


@dataclass(slots=True)
class Record:
    received_at: datetime
    event_time: datetime | None
    facility: int
    severity: int
    hostname: str | None
    app_name: str | None
    procid: str | None
    msgid: str | None
    structured_data: StructuredData | None
    message: str
    format: Format
    transport: Transport
    source_ip: str | None
    parse_error: str | None
    raw: bytes | None

    def add_error(self, reason: str, data: bytes) -> None:
        """Mark the record as only partly understood, keeping the original bytes."""
        self.parse_error = reason if self.parse_error is None else f"{self.parse_error}; {reason}"
        self.raw = data
