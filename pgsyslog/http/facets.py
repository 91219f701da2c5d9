"""GET /api/facets: the top hosts, apps and severities of the rows a search matches.

Parameters: the filters of /api/search (since defaults to 24 h before until or now) and
limit (values per facet, default 10, at most 100). The answer is ``{"host": [{"value",
"count"}...], "app": [...], "severity": [{"value", "label", "count"}...]}``, most rows
first (pgsyslog.storage.facets).
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from aiohttp import web

from pgsyslog.http.aggregate import bounded, fetch_all, parsed, refused
from pgsyslog.http.params import FILTER_PARAMS, int_param
from pgsyslog.storage.facets import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    facets_json,
    facets_statement,
    tally,
)
from pgsyslog.storage.filters import FilterError
from pgsyslog.storage.histogram import DEFAULT_RANGE

PARAMS = (*FILTER_PARAMS, "limit")


async def facets(request: web.Request) -> web.Response:
    filters, params = parsed(request, PARAMS)
    try:
        limit = int_param(params, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT) or DEFAULT_LIMIT
    except FilterError as e:
        raise refused(e) from None
    if filters.since is None:
        since = (filters.until or datetime.now(UTC)) - DEFAULT_RANGE
        filters = dataclasses.replace(filters, since=since)
    async with bounded(request, "counting the facets") as conn:
        rows = await fetch_all(conn, facets_statement(filters, limit))
    return web.json_response(facets_json(tally(rows)))
