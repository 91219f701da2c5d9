"""GET /api/tail: new rows as Server-Sent Events, each once, in commit order.

Parameters: the filters of /api/search, and n (the newest n matching rows first, default
0). Each event carries the row as JSON in ``data`` and its id in ``id``; a client that
reconnects with ``Last-Event-ID`` gets the rows after that id. A comment line goes out
when the stream has been quiet for KEEPALIVE seconds, so that proxies keep it open and a
client that went away is noticed.

The stream's position goes out as an event with an ``id`` and no data (EventSource
dispatches nothing for it but holds the id as its Last-Event-ID): right after the first n
rows (at once with n=0), after rows when the read went on past the last one that matched,
and with a keep-alive when the filters left out every row read meanwhile. It is the
follower's ``resume_after`` (storage/follow.py), the last id of the last batch read, which
a resume takes as any row id. So a client holds a Last-Event-ID from the stream's first
write, and a reconnect, even one before any row came, goes on exactly where the stream
was: the receiver's rows committed meanwhile come, each once
(tests/test_tail_position.py::test_a_reconnect_before_any_row_gets_every_row_once; rows
inserted by hand follow storage/follow.py's rules). After a long filtered silence a
reconnect reads again only what came since the last keep-alive, about KEEPALIVE seconds
(tests/test_tail_position.py::test_a_filtered_stream_moves_its_position_while_quiet).

A stream whose session cookie was logged out (or expired) ends at its next read, within
KEEPALIVE seconds (test_http_auth.py::test_a_logout_ends_the_open_live_tails_of_its_session).

A client that stops reading is dropped once a write has waited http_stream_timeout
seconds for it, which frees its slot and its database connection
(test_http_limits.py::test_a_tail_client_that_stops_reading_is_dropped). One that reads
nothing while little is sent (keep-alives, rows a narrow filter lets through) is not
noticed: the kernels' socket buffers take those writes for hours. What bounds such clients
is MAX_STREAMS and the token (test_tail_slots.py::
test_silent_tails_hold_at_most_the_slots_and_need_the_token). The
storage side (LISTEN, ids seen, order) is pgsyslog.storage.follow.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import TypeVar

import psycopg
from aiohttp import web

from pgsyslog.http.context import AUTH, CLOSING, DATABASE, LIMITS, STATE, STREAMS
from pgsyslog.http.encoding import events
from pgsyslog.http.errors import bad_request, describe, unavailable
from pgsyslog.http.params import (
    FILTER_PARAMS,
    MAX_ID,
    checked,
    filters_from,
    int_param,
    whole_number,
)
from pgsyslog.storage.filters import FilterError, Filters
from pgsyslog.storage.follow import AsyncTail
from pgsyslog.storage.rows import StoredMessage

log = logging.getLogger(__name__)

PARAMS = (*FILTER_PARAMS, "n")
MAX_BACKLOG = 1_000
MAX_STREAMS = 32  # live tails at once; each holds a database connection
KEEPALIVE = 10.0  # seconds of silence before a comment line goes out
HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
           "X-Accel-Buffering": "no"}  # nginx: pass events on at once

T = TypeVar("T")


class _TooSlow(Exception):
    """The client did not take a write within the stream timeout."""


def last_event_id(value: str | None) -> int | None:
    """The id a reconnecting client saw last; FilterError when it is not one."""
    if value is None or not value.strip():
        return None
    number = whole_number(value.strip(), 0, MAX_ID)
    if number is None:
        raise FilterError(f"Last-Event-ID: {value!r} is not an event id")
    return number


def _arguments(request: web.Request) -> tuple[Filters, int, int | None]:
    """The filters, backlog and resume point asked for; 400 saying what is wrong."""
    try:
        params = checked(request.query, PARAMS)
        filters = filters_from(request.query, datetime.now(UTC))
        backlog = int_param(params, "n", 0, 0, MAX_BACKLOG) or 0
        after = last_event_id(request.headers.get("Last-Event-ID"))
    except FilterError as e:
        raise bad_request(str(e)) from None
    return filters, backlog, after


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
    filters, backlog, after = _arguments(request)
    streams = request.app[STREAMS]
    if streams.open >= MAX_STREAMS:
        raise unavailable(f"{MAX_STREAMS} live tails are open already; try again later")
    streams.open += 1
    try:
        conn = await request.app[DATABASE].dedicated()
        try:
            follower = AsyncTail(conn, filters)
            try:
                rows = await follower.start(backlog, after)
            except psycopg.Error as e:
                raise unavailable(f"database: {describe(e, request.app[STATE].dsn)}") from None
            response = web.StreamResponse(headers=HEADERS)
            await response.prepare(request)
            await _stream(request, response, follower, rows, after)
            return response
        finally:
            await conn.close()
    finally:
        streams.open -= 1


async def _send(response: web.StreamResponse, data: bytes, timeout: float) -> None:
    try:
        async with asyncio.timeout(timeout):
            await response.write(data)
    except TimeoutError:
        raise _TooSlow from None


def position_event(position: int | None, held: int | None) -> bytes:
    """An event with only an id, when the stream's ``position`` is not the id the client
    ``held`` last (a row's, or the position sent before)."""
    if position is None or position == held:
        return b""
    return b"id: %d\n\n" % position


def _rows_then_position(rows: list[StoredMessage], follower: AsyncTail, held: int | None
                        ) -> bytes:
    return events(rows) + position_event(follower.resume_after, rows[-1].id if rows else held)


async def _stream(request: web.Request, response: web.StreamResponse, follower: AsyncTail,
                  rows: list[StoredMessage], held: int | None) -> None:
    """Send events until the client goes, the server closes, or the database fails.
    ``held``: the Last-Event-ID the client came back with, not sent back to it."""
    closing = request.app[CLOSING]
    timeout = request.app[LIMITS].stream_timeout
    try:
        first = await asyncio.to_thread(_rows_then_position, rows, follower, held)
        await _send(response, b": pgsyslog live tail\n\n" + first, timeout)
        held, last_write = follower.resume_after, time.monotonic()
        while True:
            new = await _unless_closing(closing, follower.poll(KEEPALIVE))
            if new is None or not request.app[AUTH].allows(request):
                break  # the server stops, or the session logged out or expired
            if new:
                await _send(response, await asyncio.to_thread(
                    _rows_then_position, new, follower, held), timeout)
            elif time.monotonic() - last_write >= KEEPALIVE / 2:
                await _send(response, b": keep-alive\n\n"
                            + position_event(follower.resume_after, held), timeout)
            else:
                continue
            held, last_write = follower.resume_after, time.monotonic()
    except ConnectionError:
        return  # the client went away
    except _TooSlow:
        log.info("live tail of %s dropped: it took nothing for %g s (http_stream_timeout)",
                 request.remote, timeout)
        if request.transport is not None:
            request.transport.abort()
        return
    except psycopg.Error as e:
        log.warning("live tail ended: database: %s", describe(e, request.app[STATE].dsn))
    with contextlib.suppress(ConnectionError):
        await response.write_eof()
