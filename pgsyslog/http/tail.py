"""GET /api/tail: new rows as Server-Sent Events, each once, in id order.

Parameters: the filters of /api/search, and n (the newest n matching rows first, default
0). Each event carries the row as JSON in ``data`` and its id in ``id``; a client that
reconnects with ``Last-Event-ID`` gets the rows after that id. A comment line goes out
when the stream has been quiet for KEEPALIVE seconds, so that proxies keep it open and a
client that went away is noticed. The storage side (LISTEN, ids seen, order) is
pgsyslog.storage.follow.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Sequence
from datetime import UTC, datetime
from typing import TypeVar

import psycopg
from aiohttp import web

from pgsyslog.http.context import CLOSING, STATE, STREAMS
from pgsyslog.http.database import connection, first_line
from pgsyslog.http.errors import bad_request, unavailable
from pgsyslog.http.params import FILTER_PARAMS, check_known, filters_from, int_param
from pgsyslog.storage.filters import FilterError
from pgsyslog.storage.follow import AsyncTail
from pgsyslog.storage.rows import StoredMessage, message_json

log = logging.getLogger(__name__)

PARAMS = (*FILTER_PARAMS, "n")
MAX_BACKLOG = 1_000
MAX_STREAMS = 32  # live tails at once; each holds a database connection
KEEPALIVE = 10.0  # seconds of silence before a comment line goes out
HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
           "X-Accel-Buffering": "no"}  # nginx: pass events on at once

T = TypeVar("T")
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def events(rows: Sequence[StoredMessage]) -> bytes:
    return "".join(f"id: {m.id}\ndata: {_encode(message_json(m))}\n\n" for m in rows).encode()


def _last_event_id(request: web.Request) -> int | None:
    value = request.headers.get("Last-Event-ID", "").strip()
    return int(value) if value.isdigit() else None


async def _unless_closing(closing: asyncio.Event, work: Awaitable[T]) -> T | None:
    """The result of ``work``, or None when the server closes first (``work`` is cancelled)."""
    task = asyncio.ensure_future(work)
    waiter = asyncio.ensure_future(closing.wait())
    try:
        await asyncio.wait((task, waiter), return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        waiter.cancel()
    if task.done():
        return task.result()
    task.cancel()
    await asyncio.wait((task,))  # it ends before its connection is closed
    return None


async def tail(request: web.Request) -> web.StreamResponse:
    params = request.query
    try:
        check_known(params, PARAMS)
        filters = filters_from(params, datetime.now(UTC))
        backlog = int_param(params, "n", 0, 0, MAX_BACKLOG) or 0
    except FilterError as e:
        raise bad_request(str(e)) from None
    streams = request.app[STREAMS]
    if streams.open >= MAX_STREAMS:
        raise unavailable(f"{MAX_STREAMS} live tails are open already; try again later")
    streams.open += 1
    try:
        async with connection(request.app[STATE], autocommit=True) as conn:
            follower = AsyncTail(conn, filters)
            try:
                rows = await follower.start(backlog, _last_event_id(request))
            except psycopg.Error as e:
                raise unavailable(f"database: {first_line(e)}") from None
            response = web.StreamResponse(headers=HEADERS)
            await response.prepare(request)
            await _stream(request, response, follower, rows)
            return response
    finally:
        streams.open -= 1


async def _stream(request: web.Request, response: web.StreamResponse, follower: AsyncTail,
                  rows: list[StoredMessage]) -> None:
    """Send events until the client goes, the server closes, or the database fails."""
    closing = request.app[CLOSING]
    try:
        await response.write(b": pgsyslog live tail\n\n" + events(rows))
        last_write = time.monotonic()
        while True:
            new = await _unless_closing(closing, follower.poll(KEEPALIVE))
            if new is None:
                break
            if new:
                await response.write(events(new))
            elif time.monotonic() - last_write >= KEEPALIVE / 2:
                await response.write(b": keep-alive\n\n")
            else:
                continue
            last_write = time.monotonic()
    except ConnectionResetError:
        return  # the client went away
    except psycopg.Error as e:
        log.warning("live tail ended: database: %s", first_line(e))
    with contextlib.suppress(ConnectionResetError):
        await response.write_eof()
