"""Write records with one binary COPY per batch (the hot path; no ORM here)."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg.abc import Buffer
from psycopg.adapt import Dumper
from psycopg.pq import Format

from pgsyslog.record import Record
from pgsyslog.storage.schema import RECORD_COLUMNS, SCHEMA

INET_OID = 869  # pg_type.oid of inet, fixed in every PostgreSQL

AsyncConnection = psycopg.AsyncConnection[Any]

# PostgreSQL type names of RECORD_COLUMNS, in order, for COPY ... (FORMAT BINARY).
COLUMN_TYPES = (
    "timestamptz", "timestamptz", "int2", "int2", "text", "text", "text", "text",
    "jsonb", "text", "text", "text", "inet", "text", "bytea",
)
assert len(COLUMN_TYPES) == len(RECORD_COLUMNS)


def _copy_statement(table: str, extra: Sequence[str] = ()) -> sql.Composed:
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in (*RECORD_COLUMNS, *extra))
    return sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        sql.Identifier(SCHEMA, table), columns
    )


COPY_MESSAGES = _copy_statement("messages")
COPY_UNROUTED = _copy_statement("unrouted", ("error",))


class PackedInet(bytes):
    """An address already in PostgreSQL's binary inet form."""


class PackedInetDumper(Dumper):
    format = Format.BINARY
    oid = INET_OID

    def dump(self, obj: PackedInet) -> Buffer:
        return obj


def register_adapters(conn: AsyncConnection) -> None:
    """Make COPY's inet column take PackedInet (call once per connection)."""
    conn.adapters.register_dumper(PackedInet, PackedInetDumper)


@functools.lru_cache(maxsize=4096)
def _inet(address: str | None) -> PackedInet | None:
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
        _inet(r.source_ip), r.parse_error, r.raw,
    )


# Sent in the transaction of each batch: live tails LISTEN on it instead of polling.
NEW_ROWS_CHANNEL = "syslog_messages"


async def copy_records(conn: AsyncConnection, records: Sequence[Record]) -> None:
    """COPY the records into syslog.messages in the connection's current transaction.

    Listeners of NEW_ROWS_CHANNEL are notified when that transaction commits.
    """
    async with conn.cursor() as cur:
        async with cur.copy(COPY_MESSAGES) as copy:
            copy.set_types(COLUMN_TYPES)
            write_row = copy.write_row
            for record in records:
                await write_row(record_row(record))
        await cur.execute(sql.SQL("NOTIFY {}").format(sql.Identifier(NEW_ROWS_CHANNEL)))


async def copy_unrouted(conn: AsyncConnection, records: Sequence[Record], error: str) -> None:
    async with conn.cursor() as cur, cur.copy(COPY_UNROUTED) as copy:
        copy.set_types((*COLUMN_TYPES, "text"))
        for record in records:
            await copy.write_row((*record_row(record), error))


