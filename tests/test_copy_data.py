"""COPY data encoded without a connection (storage/copy_data.py) stores what copy_rows
stores for the same records, every column and type included."""

from __future__ import annotations

import asyncio
import pickle
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from pgsyslog.record import Record
from pgsyslog.storage import database
from pgsyslog.storage.copy import (
    copy_data,
    copy_rows,
    register_adapters,
    register_batch,
    reserve_ids,
)
from pgsyslog.storage.copy_data import MessageRows
from pgsyslog.storage.schema import RECORD_COLUMNS
from stored import record

NOW = datetime.now(UTC).replace(microsecond=123456)


def varied() -> list[Record]:
    """Every column filled and left null, non-ASCII text, SD with a repeated param,
    raw bytes that are not UTF-8, IPv4 and IPv6 sources."""
    tls = record("tls peer", when=NOW)
    tls.peer_name = "gw.example.net"
    return [
        record("plain", when=NOW),
        record("zwölf Grüße ✓ 日本", host=None, app=None, when=NOW - timedelta(hours=5),
               event_time=NOW - timedelta(hours=5, seconds=3), procid="4711", msgid="ID47",
               structured_data={"origin@1": {"ip": ["192.0.2.1", "192.0.2.2"], "x": "y"}},
               source_ip="2001:db8::17"),
        record("half understood", severity=3, facility=23, fmt="raw", source_ip=None,
               parse_error="no PRI", raw=b"\x00\xff\xfe bytes", when=NOW),
        tls,
        record("", when=NOW, event_time=datetime(1970, 1, 1, tzinfo=UTC)),
    ]


async def store_both(dsn: str, records: list[Record]) -> tuple[int, int]:
    conn = await database.connect_async(dsn, autocommit=True)
    try:
        register_adapters(conn)
        async with conn.transaction():
            by_rows = await copy_rows(conn, records, await reserve_ids(conn))
            await register_batch(conn, by_rows)
        first = await reserve_ids(conn)
        data = MessageRows().encode(records, first)
        async with conn.transaction():
            by_data = await copy_data(conn, data, first, len(records))
            await register_batch(conn, by_data)
    finally:
        await conn.close()
    return by_rows.first_id, by_data.first_id


def stored(dsn: str, first_id: int, count: int) -> list[tuple[Any, ...]]:
    columns = ", ".join(RECORD_COLUMNS)
    with psycopg.connect(dsn) as conn:
        return conn.execute(f"SELECT id - %s, {columns} FROM syslog.messages "
                            "WHERE id BETWEEN %s AND %s ORDER BY id",
                            (first_id, first_id, first_id + count - 1)).fetchall()


def test_the_data_is_what_copy_rows_stores(dsn: str) -> None:
    records = varied()
    by_rows, by_data = asyncio.run(store_both(dsn, records))
    from_rows = stored(dsn, by_rows, len(records))
    assert len(from_rows) == len(records)
    assert stored(dsn, by_data, len(records)) == from_rows
    assert from_rows[1][10] == "zwölf Grüße ✓ 日本"
    assert from_rows[2][15] == b"\x00\xff\xfe bytes"
    assert from_rows[3][16] == "gw.example.net"


def test_no_records_is_a_valid_copy(dsn: str) -> None:
    async def empty() -> None:
        conn = await database.connect_async(dsn, autocommit=True)
        try:
            async with conn.transaction():
                await copy_data(conn, MessageRows().encode([], 1), 1, 0)
        finally:
            await conn.close()

    asyncio.run(empty())
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM syslog.messages").fetchone() == (0,)


def test_the_encoder_goes_to_another_process_as_its_output_comes_back() -> None:
    data = MessageRows().encode(varied(), 7)
    assert pickle.loads(pickle.dumps(data)) == data
    assert data.startswith(b"PGCOPY\n\xff\r\n\x00") and data.endswith(b"\xff\xff")
