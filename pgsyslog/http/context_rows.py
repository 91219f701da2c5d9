"""GET /api/context?id=N&before=20&after=20: a row and the rows of its host around it.

The answer is ``{"row": {...}, "before": [...], "after": [...]}``: ``before`` holds the
rows of the same hostname received just before row N, oldest first, ``after`` those just
after it (by received_at, then id; pgsyslog.storage.context). No filter applies: context
is what the host sent around that row. 404 when no row has id N.
"""

from __future__ import annotations

from typing import Any

import psycopg
from aiohttp import web
from psycopg.rows import class_row

from pgsyslog.http.aggregate import bounded, refused
from pgsyslog.http.errors import error_body
from pgsyslog.http.params import checked, int_param
from pgsyslog.storage.context import DEFAULT_ROWS, MAX_ROWS, neighbours_statement, row_statement
from pgsyslog.storage.filters import FilterError
from pgsyslog.storage.queries import AnySelect, compile_query
from pgsyslog.storage.rows import StoredMessage, message_json

PARAMS = ("id", "before", "after")


def _arguments(request: web.Request) -> tuple[int, int, int]:
    try:
        params = checked(request.query, PARAMS)
        row_id = int_param(params, "id", None, 0)
        before = int_param(params, "before", DEFAULT_ROWS, 0, MAX_ROWS)
        after = int_param(params, "after", DEFAULT_ROWS, 0, MAX_ROWS)
    except FilterError as e:
        raise refused(e) from None
    if row_id is None:
        raise refused(FilterError("give the id of a row", "id"))
    assert before is not None and after is not None
    return row_id, before, after


async def _rows(conn: psycopg.AsyncConnection[Any], stmt: AnySelect) -> list[StoredMessage]:
    query = compile_query(stmt)
    async with conn.cursor(row_factory=class_row(StoredMessage)) as cur:
        await cur.execute(query.sql, query.params)
        rows: list[StoredMessage] = await cur.fetchall()
        return rows


async def context_rows(request: web.Request) -> web.Response:
    row_id, before, after = _arguments(request)
    async with bounded(request, "reading the context") as conn:
        found = await _rows(conn, row_statement(row_id))
        if not found:
            raise web.HTTPNotFound(text=error_body(f"no row has the id {row_id}"),
                                   content_type="application/json")
        row = found[0]
        earlier = await _rows(conn, neighbours_statement(row, before, before=True))
        later = await _rows(conn, neighbours_statement(row, after, before=False))
    return web.json_response({"row": message_json(row),
                              "before": [message_json(m) for m in reversed(earlier)],
                              "after": [message_json(m) for m in later]})
