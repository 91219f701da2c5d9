"""GET /api/search: the rows `pgsyslog search` would show, as JSON, a page at a time.

Parameters: q (words, web search syntax), host, app, severity, facility, since, until,
limit (default 100), reverse (oldest first), cursor (the ``next`` of the previous page).
"""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
from aiohttp import web

from pgsyslog.http.context import STATE
from pgsyslog.http.database import connection, first_line
from pgsyslog.http.errors import bad_request, unavailable
from pgsyslog.http.params import FILTER_PARAMS, bool_param, check_known, filters_from, int_param
from pgsyslog.storage.filters import FilterError
from pgsyslog.storage.queries import (
    MAX_PAGE,
    fetch_messages_async,
    search_statement,
    split_page,
)
from pgsyslog.storage.rows import message_json

PARAMS = (*FILTER_PARAMS, "limit", "reverse", "cursor")
DEFAULT_LIMIT = 100
STATEMENT_TIMEOUT_MS = 30_000  # a search that runs longer is cancelled (503)


async def search(request: web.Request) -> web.Response:
    params = request.query
    try:
        check_known(params, PARAMS)
        filters = filters_from(params, datetime.now(UTC))
        limit = int_param(params, "limit", DEFAULT_LIMIT, 1, MAX_PAGE) or DEFAULT_LIMIT
        cursor = int_param(params, "cursor", None, 0)
        reverse = bool_param(params, "reverse")
    except FilterError as e:
        raise bad_request(str(e)) from None
    # One row more than asked tells whether there is a next page.
    stmt = search_statement(filters, limit + 1, newest_first=not reverse, cursor=cursor)
    async with connection(request.app[STATE]) as conn:
        try:
            await conn.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")
            rows = await fetch_messages_async(conn, stmt)
        except psycopg.errors.QueryCanceled:
            raise unavailable(f"the search took longer than {STATEMENT_TIMEOUT_MS // 1000} s; "
                              "narrow it with since, until, host or app") from None
        except psycopg.OperationalError as e:
            raise unavailable(f"database: {first_line(e)}") from None
    page, next_cursor = split_page(rows, limit)
    return web.json_response({"rows": [message_json(m) for m in page], "next": next_cursor})
