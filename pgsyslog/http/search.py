"""GET /api/search: the rows `pgsyslog search` would show, as JSON, a page at a time.

Parameters: the filters (q, host, app, procid, msgid, source, peer, severity, facility,
since, until, time; pgsyslog.http.params), limit (default 100), reverse (oldest first),
cursor (the ``next`` of the previous page: an opaque string; with time=event it holds the
row's event_time and id).
The answer is ``{"rows": [...], "next": cursor or null, "truncated": bool}``; a page
that would exceed http_max_response_bytes ends early with ``truncated`` true (see
pgsyslog.http.encoding). Rows are read through a server-side cursor FETCH_ROWS at a time
and encoded in a worker thread, so that neither memory nor the event loop carries more
than one page.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import psycopg
from aiohttp import web
from psycopg.rows import class_row

from pgsyslog.http.context import DATABASE, LIMITS
from pgsyslog.http.encoding import Page
from pgsyslog.http.errors import bad_request, unavailable
from pgsyslog.http.params import FILTER_PARAMS, bool_param, checked, filters_from, int_param
from pgsyslog.storage.filters import FilterError, Filters
from pgsyslog.storage.queries import (
    MAX_PAGE,
    AnySelect,
    compile_query,
    cursor_text,
    parse_cursor,
    search_statement,
)
from pgsyslog.storage.rows import StoredMessage

PARAMS = (*FILTER_PARAMS, "limit", "reverse", "cursor")
DEFAULT_LIMIT = 100
STATEMENT_TIMEOUT_MS = 30_000  # a search that runs longer is cancelled (503)
FETCH_ROWS = 200  # rows fetched and encoded at a time
CURSOR_EXTRA = 64  # an event-order cursor is longer than the id the envelope allows for


class SearchPage(Page):
    """A Page whose ``next`` is the opaque cursor of the search's order."""

    def __init__(self, filters: Filters, limit: int, max_bytes: int) -> None:
        super().__init__(limit, max_bytes)
        self.size += CURSOR_EXTRA
        self.filters = filters
        self.last_row: StoredMessage | None = None

    def offer(self, m: StoredMessage) -> bool:
        taken = super().offer(m)
        if taken:
            self.last_row = m
        return taken

    def body(self) -> bytes:
        cursor = (cursor_text(self.last_row, self.filters)
                  if self.more and self.last_row is not None else None)
        return b"".join((b'{"rows":[', b",".join(self.rows), b'],"next":',
                         json.dumps(cursor).encode(), b',"truncated":',
                         b"true" if self.truncated else b"false", b"}"))


def _statement(request: web.Request) -> tuple[AnySelect, Filters, int]:
    """The query, filters and page size the parameters ask for; 400 saying what is wrong."""
    try:
        params = checked(request.query, PARAMS)
        filters = filters_from(request.query, datetime.now(UTC))
        limit = int_param(params, "limit", DEFAULT_LIMIT, 1, MAX_PAGE) or DEFAULT_LIMIT
        cursor = parse_cursor(params["cursor"], filters) if "cursor" in params else None
        reverse = bool_param(params, "reverse")
    except FilterError as e:
        raise bad_request(f"{e.param}: {e}" if e.param else str(e)) from None
    # One row more than asked tells whether there is a next page.
    stmt = search_statement(filters, limit + 1, newest_first=not reverse, cursor=cursor)
    return stmt, filters, limit


async def _fill(conn: psycopg.AsyncConnection[Any], stmt: AnySelect, page: Page) -> None:
    query = compile_query(stmt)
    async with conn.transaction():
        await conn.execute(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}")
        cursor = conn.cursor(name="pgsyslog_search", row_factory=class_row(StoredMessage))
        async with cursor:
            await cursor.execute(query.sql, query.params)
            while not page.more and (rows := await cursor.fetchmany(FETCH_ROWS)):
                await asyncio.to_thread(page.fill, rows)


async def search(request: web.Request) -> web.Response:
    stmt, filters, limit = _statement(request)
    page = SearchPage(filters, limit, request.app[LIMITS].max_response_bytes)
    async with request.app[DATABASE].connection() as conn:
        try:
            await _fill(conn, stmt, page)
        except psycopg.errors.QueryCanceled:
            raise unavailable(f"the search took longer than {STATEMENT_TIMEOUT_MS // 1000} s; "
                              "narrow it with since, until, host or app") from None
    body = await asyncio.to_thread(page.body)
    return web.Response(body=body, content_type="application/json", charset="utf-8")
