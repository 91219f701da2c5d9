"""A stored row of syslog.messages and its JSON form (shared by the CLI and the HTTP API).

Kept free of SQLAlchemy and psycopg imports so that the CLI's output code stays light.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """One row of syslog.messages, as psycopg loads it."""

    id: int
    received_at: datetime
    event_time: datetime | None
    facility: int
    severity: int
    hostname: str | None
    app_name: str | None
    procid: str | None
    msgid: str | None
    structured_data: dict[str, Any] | None
    message: str
    format: str
    transport: str
    source_ip: Any  # ipaddress.IPv4Address / IPv6Address, or None
    parse_error: str | None
    raw: bytes | None
    peer_name: str | None



def message_json(m: StoredMessage) -> dict[str, Any]:
    """Every column, JSON-ready: times in ISO 8601, raw bytes in base64."""
    return {
        "id": m.id,
        "received_at": m.received_at.isoformat(),
        "event_time": None if m.event_time is None else m.event_time.isoformat(),
        "facility": m.facility,
        "severity": m.severity,
        "hostname": m.hostname,
        "app_name": m.app_name,
        "procid": m.procid,
        "msgid": m.msgid,
        "structured_data": m.structured_data,
        "message": m.message,
        "format": m.format,
        "transport": m.transport,
        "source_ip": None if m.source_ip is None else str(m.source_ip),
        "parse_error": m.parse_error,
        "raw": None if m.raw is None else base64.b64encode(m.raw).decode("ascii"),
        "peer_name": m.peer_name,
    }
