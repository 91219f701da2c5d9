"""What the API's read-only endpoints share: their filters from the query string, and a
pooled connection whose statements are cut off after STATEMENT_TIMEOUT_MS (503), so that
no histogram, facet count or statistic holds a connection of the small pool for long
(tests/test_api_endpoints.py::test_an_aggregate_that_runs_too_long_is_a_503)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import psycopg
from aiohttp import web

from pgsyslog.http.context import DATABASE
from pgsyslog.http.errors import bad_request, unavailable
from pgsyslog.http.params import checked, filters_from
from pgsyslog.storage.filters import FilterError, Filters
from pgsyslog.storage.queries import AnySelect, compile_query

STATEMENT_TIMEOUT_MS = 30_000  # as a search's


def refused(e: FilterError) -> web.HTTPBadRequest:
    """A 400 whose one line starts with the parameter at fault."""
    return bad_request(f"{e.param}: {e}" if e.param else str(e))


def parsed(request: web.Request, known: tuple[str, ...]) -> tuple[Filters, dict[str, str]]:
    """The filters and the other parameters of the request; 400 saying what is wrong."""
    try:
        params = checked(request.query, known)
        return filters_from(request.query, datetime.now(UTC)), params
    except FilterError as e:
        raise refused(e) from None


@asynccontextmanager
async def bounded(request: web.Request, what: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """A pooled connection in a transaction under the statement timeout; ``what`` names
    the work in the 503 that a timeout gives."""
    async with request.app[DATABASE].connection() as conn:
        try:
            async with conn.transaction():
                await conn.execute(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}")
                yield conn
        except psycopg.errors.QueryCanceled:
            raise unavailable(f"{what} took longer than {STATEMENT_TIMEOUT_MS / 1000:g} s; "
                              "narrow it with since, until, host or app") from None


async def fetch_all(conn: psycopg.AsyncConnection[Any], stmt: AnySelect
                    ) -> list[tuple[Any, ...]]:
    query = compile_query(stmt)
    cur = await conn.execute(query.sql, query.params)
    return await cur.fetchall()
