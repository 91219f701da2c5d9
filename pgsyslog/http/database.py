"""A database connection per request: searches are short and live tails hold their own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg

from pgsyslog.http.errors import unavailable
from pgsyslog.receiver.state import ReceiverState
from pgsyslog.storage.database import connect_async

CONNECT_TIMEOUT = 5.0  # seconds; a request fails with 503 rather than hang


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


async def open_connection(state: ReceiverState, *, autocommit: bool = False
                          ) -> psycopg.AsyncConnection[Any]:
    """A new connection, or 503 saying why there is none."""
    if state.dsn is None:
        raise unavailable("database: not connected yet")
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            return await connect_async(state.dsn, autocommit=autocommit)
    except TimeoutError:
        raise unavailable(f"database: no connection within {CONNECT_TIMEOUT:g} s") from None
    except psycopg.Error as e:
        raise unavailable(f"database: {first_line(e)}") from None


@asynccontextmanager
async def connection(state: ReceiverState, *, autocommit: bool = False
                     ) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    conn = await open_connection(state, autocommit=autocommit)
    try:
        yield conn
    finally:
        await conn.close()
