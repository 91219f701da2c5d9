"""Write records with one binary COPY per batch (the hot path; no ORM here).

A batch is written in one transaction: reserve a block of ids (one nextval), COPY the rows
with those ids, then register the batch in syslog.batches under a transaction-level
advisory lock that is held until COMMIT, so that batch numbers (``seq``) are handed out
in commit order. Registering a batch id that committed before fails on the table's
primary key (SQLSTATE 23505, constraint ``batches_pkey``): that is how a retry learns
that its batch is already stored. Listeners of NEW_ROWS_CHANNEL get the batch's seq.

The two steps can also be taken apart (copy_rows, then register_batch in the same
transaction), so that an importer COPYs one batch on a second connection while the batch
before it registers and commits on the first; serve's writer takes both at once
(copy_records).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from pgsyslog.record import Record
from pgsyslog.storage.row_format import (
    COLUMN_TYPES,
    MESSAGE_TYPES,
    PackedInet,
    PackedInetDumper,
    message_row,
    record_row,
)
from pgsyslog.storage.schema import BLOCK_IDS, RECORD_COLUMNS, SCHEMA

AsyncConnection = psycopg.AsyncConnection[Any]

assert len(COLUMN_TYPES) == len(RECORD_COLUMNS)


def _copy_statement(table: str, extra: Sequence[str] = (), first: Sequence[str] = ()
                    ) -> sql.Composed:
    names = (*first, *RECORD_COLUMNS, *extra)
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in names)
    return sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        sql.Identifier(SCHEMA, table), columns
    )


COPY_MESSAGES = _copy_statement("messages", first=("id",))
COPY_UNROUTED = _copy_statement("unrouted", ("error",))

# Held from a batch's registration to its COMMIT: batches commit in the order of their
# seq. Only that last statement and the commit are serialised; the COPYs run side by side.
COMMIT_ORDER_LOCK = 0x7067_7379_736C_6F10
DUPLICATE_BATCH_CONSTRAINT = "batches_pkey"

_RESERVE_IDS = sql.SQL("SELECT nextval({})").format(
    sql.Literal(f"{SCHEMA}.messages_id_seq"))
_REGISTER_BATCH_TEMPLATE = sql.SQL("""
    WITH registered AS (
        INSERT INTO {batches} (id, seq, first_id, last_id)
        SELECT %(id)s, nextval({batch_seq}), %(first)s, %(last)s
        FROM pg_advisory_xact_lock(%(lock)s)
        RETURNING seq
    )
    SELECT pg_notify({channel}, seq::text) FROM registered
""")


def register_adapters(conn: AsyncConnection) -> None:
    """Make COPY's inet column take PackedInet (call once per connection)."""
    conn.adapters.register_dumper(PackedInet, PackedInetDumper)


# Sent in the transaction of each batch: live tails LISTEN on it instead of polling.
NEW_ROWS_CHANNEL = "syslog_messages"

_REGISTER_BATCH = _REGISTER_BATCH_TEMPLATE.format(
    batches=sql.Identifier(SCHEMA, "batches"), batch_seq=sql.Literal(f"{SCHEMA}.batch_seq"),
    channel=sql.Literal(NEW_ROWS_CHANNEL))


@dataclass(frozen=True, slots=True)
class IdBlock:
    """The ids the rows of one COPY took: first_id to last_id, both included."""

    first_id: int
    last_id: int


async def copy_records(conn: AsyncConnection, records: Sequence[Record],
                       batch_id: uuid.UUID | None = None, *, table: str | None = None) -> None:
    """COPY the records into syslog.messages (or ``table``, one of its days' tables) and
    register the batch, in the connection's current transaction (at most BLOCK_IDS
    records).

    Raises psycopg.errors.UniqueViolation on DUPLICATE_BATCH_CONSTRAINT when a batch with
    this id committed before. Listeners of NEW_ROWS_CHANNEL are notified at commit.
    """
    ids = await copy_rows(conn, records, await reserve_ids(conn), table=table)
    await register_batch(conn, ids, batch_id)


async def reserve_ids(conn: AsyncConnection) -> int:
    """The first of a block of BLOCK_IDS row ids no other batch gets (one nextval)."""
    async with conn.cursor() as cur:
        await cur.execute(_RESERVE_IDS)
        reserved = await cur.fetchone()
    assert reserved is not None
    return int(reserved[0])


async def copy_rows(conn: AsyncConnection, records: Sequence[Record], first_id: int, *,
                    table: str | None = None) -> IdBlock:
    """COPY the records into syslog.messages with the ids from ``first_id`` on (a block of
    reserve_ids; at most BLOCK_IDS records), in the connection's current transaction,
    without registering a batch: call register_batch with the block before that
    transaction commits."""
    if len(records) > BLOCK_IDS:
        raise ValueError(f"a batch holds at most {BLOCK_IDS} records, not {len(records)}")
    statement = COPY_MESSAGES if table is None else _copy_into(table)
    async with conn.cursor() as cur, cur.copy(statement) as copy:
        copy.set_types(MESSAGE_TYPES)
        write_row = copy.write_row
        for row_id, record in enumerate(records, first_id):
            await write_row(message_row(row_id, record))
    return IdBlock(first_id, first_id + len(records) - 1)


async def copy_data(conn: AsyncConnection, data: bytes, first_id: int, rows: int) -> IdBlock:
    """COPY rows already encoded (copy_data.MessageRows, ids from ``first_id`` on) into
    syslog.messages, as copy_rows does with records."""
    if rows > BLOCK_IDS:
        raise ValueError(f"a batch holds at most {BLOCK_IDS} records, not {rows}")
    async with conn.cursor() as cur, cur.copy(COPY_MESSAGES) as copy:
        await copy.write(data)
    return IdBlock(first_id, first_id + rows - 1)


async def copy_data_into(conn: AsyncConnection, table: str, data: bytes) -> None:
    """COPY rows already encoded into ``table`` of the schema, a day's table of
    syslog.messages (attached or not yet: partitions.create_detached)."""
    async with conn.cursor() as cur, cur.copy(_copy_into(table)) as copy:
        await copy.write(data)


@functools.lru_cache(maxsize=64)
def _copy_into(table: str) -> sql.Composed:
    return _copy_statement(table, first=("id",))


async def register_batch(conn: AsyncConnection, ids: IdBlock,
                         batch_id: uuid.UUID | None = None) -> None:
    """Register the rows copied as ``ids`` as one batch, taking the commit-order lock until
    the current transaction ends (see copy_records for what it raises)."""
    async with conn.cursor() as cur:
        await _register(cur, batch_id, ids.first_id, ids.last_id)


async def copy_unrouted(conn: AsyncConnection, records: Sequence[Record], error: str,
                        batch_id: uuid.UUID | None = None) -> None:
    """COPY the records into syslog.unrouted and register the batch (no message ids)."""
    async with conn.cursor() as cur:
        async with cur.copy(COPY_UNROUTED) as copy:
            copy.set_types((*COLUMN_TYPES, "text"))
            for record in records:
                await copy.write_row((*record_row(record), error))
        await _register(cur, batch_id, None, None)


async def _register(cur: psycopg.AsyncCursor[Any], batch_id: uuid.UUID | None,
                    first_id: int | None, last_id: int | None) -> None:
    await cur.execute(_REGISTER_BATCH, {"id": batch_id or uuid.uuid4(), "first": first_id,
                                        "last": last_id, "lock": COMMIT_ORDER_LOCK})


