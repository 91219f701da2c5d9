"""A record as a row of syslog.messages: the values in column order and their types.

Kept free of SQLAlchemy so that an import's encoding worker process, which needs only
this, the parsers and psycopg, starts in a fraction of the time
(test_import_encode.py::test_the_worker_imports_no_sqlalchemy). copy.py's COPY
statements name the columns of schema.RECORD_COLUMNS, in this order.
"""

from __future__ import annotations

import functools
import ipaddress
from typing import Any

from psycopg.abc import Buffer
from psycopg.adapt import Dumper
from psycopg.pq import Format

from pgsyslog.record import Record

INET_OID = 869  # pg_type.oid of inet, fixed in every PostgreSQL

# PostgreSQL type names of the record's columns (schema.RECORD_COLUMNS), in order, for
# COPY ... (FORMAT BINARY).
COLUMN_TYPES = (
    "timestamptz", "timestamptz", "int2", "int2", "text", "text", "text", "text",
    "jsonb", "text", "text", "text", "inet", "text", "bytea", "text",
)
MESSAGE_TYPES = ("int8", *COLUMN_TYPES)  # the id first


class PackedInet(bytes):
    """An address already in PostgreSQL's binary inet form."""


class PackedInetDumper(Dumper):
    format = Format.BINARY
    oid = INET_OID

    def dump(self, obj: PackedInet) -> Buffer:
        return obj


@functools.lru_cache(maxsize=4096)
def packed_inet(address: str | None) -> PackedInet | None:
    """Senders are few and send often: convert each address to wire form once."""
    if address is None:
        return None
    ip = ipaddress.ip_address(address)
    family = 2 if ip.version == 4 else 3  # PGSQL_AF_INET, PGSQL_AF_INET6
    return PackedInet(bytes((family, ip.max_prefixlen, 0, len(ip.packed))) + ip.packed)


def record_row(r: Record) -> tuple[Any, ...]:
    return (
        r.received_at, r.event_time, r.facility, r.severity, r.hostname, r.app_name,
        r.procid, r.msgid, r.structured_data, r.message, r.format, r.transport,
        packed_inet(r.source_ip), r.parse_error, r.raw, r.peer_name,
    )


def message_row(row_id: int, r: Record) -> tuple[Any, ...]:
    """The row of COPY_MESSAGES: the id, then record_row (built at once, per row)."""
    return (
        row_id, r.received_at, r.event_time, r.facility, r.severity, r.hostname, r.app_name,
        r.procid, r.msgid, r.structured_data, r.message, r.format, r.transport,
        packed_inet(r.source_ip), r.parse_error, r.raw, r.peer_name,
    )
