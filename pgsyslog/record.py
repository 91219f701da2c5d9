"""The record: one received syslog message, normalised.

Field names are the column names of ``syslog.messages`` (see DESIGN.md, "The record").
Parsers build records; listeners, the writer and the queries only pass them on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any, Literal, TypeAlias

Format: TypeAlias = Literal["rfc5424", "rfc3164", "custom", "raw"]
Transport: TypeAlias = Literal["udp", "tcp", "tls", "relp", "file", "stdin"]
SDValue: TypeAlias = str | list[str]
StructuredData: TypeAlias = dict[str, dict[str, SDValue]]

FORMATS: tuple[Format, ...] = ("rfc5424", "rfc3164", "custom", "raw")

# Severity words, matched without regard to case: the custom line format's level names
# and the CLI's --severity filter read the same table. The first name is the one shown.
SEVERITY_NAMES: dict[str, int] = {
    "emerg": 0, "emergency": 0, "panic": 0,
    "alert": 1,
    "crit": 2, "critical": 2, "fatal": 2,
    "err": 3, "error": 3,
    "warning": 4, "warn": 4,
    "notice": 5,
    "info": 6, "informational": 6,
    "debug": 7, "trace": 7,
}  # fmt: skip
SEVERITY_LABELS = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")


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
    # The name a TLS client certificate was permitted under (tls_permitted_peers).
    peer_name: str | None = None

    def add_error(self, reason: str, data: bytes) -> None:
        """Mark the record as only partly understood, keeping the original bytes."""
        self.parse_error = reason if self.parse_error is None else f"{self.parse_error}; {reason}"
        self.raw = data


def record_fields(record: Record) -> dict[str, Any]:
    """The JSON form of what a message says: every field but raw, transport and source_ip.

    This is what `pgsyslog parse` prints; times are ISO 8601 with their offset.
    """
    return {
        "received_at": record.received_at.isoformat(),
        "event_time": None if record.event_time is None else record.event_time.isoformat(),
        "facility": record.facility,
        "severity": record.severity,
        "hostname": record.hostname,
        "app_name": record.app_name,
        "procid": record.procid,
        "msgid": record.msgid,
        "structured_data": record.structured_data,
        "message": record.message,
        "format": record.format,
        "parse_error": record.parse_error,
    }
