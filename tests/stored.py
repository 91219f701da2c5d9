"""Rows put straight into syslog.messages (one COPY, as the writer does), for query tests."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pgsyslog.record import Format, Record
from pgsyslog.storage import database
from pgsyslog.storage.copy import copy_records, register_adapters
from pgsyslog.storage.schema import BLOCK_IDS


def record(message: str, *, host: str | None = "web1", app: str | None = "nginx",
           severity: int = 6, facility: int = 1, when: datetime | None = None,
           fmt: Format = "rfc5424", **fields: Any) -> Record:
    values: dict[str, Any] = {"event_time": None, "procid": None, "msgid": None,
                              "structured_data": None, "source_ip": "192.0.2.7",
                              "parse_error": None, "raw": None, **fields}
    return Record(when or datetime.now(UTC), values["event_time"], facility, severity, host,
                  app, values["procid"], values["msgid"], values["structured_data"], message,
                  fmt, "tcp", values["source_ip"], values["parse_error"], values["raw"])


async def insert_async(dsn: str, records: Sequence[Record]) -> None:
    conn = await database.connect_async(dsn, autocommit=True)
    try:
        register_adapters(conn)
        async with conn.transaction():
            for first in range(0, len(records), BLOCK_IDS):  # a batch holds one id block
                await copy_records(conn, records[first : first + BLOCK_IDS])
    finally:
        await conn.close()


def insert(dsn: str, records: Sequence[Record]) -> None:
    asyncio.run(insert_async(dsn, records))
