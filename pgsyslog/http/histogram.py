"""GET /api/histogram: matching rows per minute, hour or day over a range.

Parameters: the filters of /api/search (since defaults to 24 h before until, until to
now) and interval (minute, hour or day; chosen from the range when not given: up to 3 h
by minute, up to 7 days by hour, else by day). The answer is ``{"interval", "since",
"until", "buckets": [{"start", "count"}...], "total"}`` with every bucket of the range,
empty ones too (pgsyslog.storage.histogram).
"""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from pgsyslog.http.aggregate import bounded, fetch_all, parsed, refused
from pgsyslog.http.params import FILTER_PARAMS
from pgsyslog.storage.filters import FilterError
from pgsyslog.storage.histogram import (
    filled,
    histogram_json,
    histogram_statement,
    parse_interval,
    ranged,
)

PARAMS = (*FILTER_PARAMS, "interval")


async def histogram(request: web.Request) -> web.Response:
    filters, params = parsed(request, PARAMS)
    try:
        interval = parse_interval(params["interval"]) if "interval" in params else None
        filters, chosen = ranged(filters, datetime.now(UTC), interval)
    except FilterError as e:
        raise refused(e) from None
    async with bounded(request, "the histogram") as conn:
        counted = await fetch_all(conn, histogram_statement(filters, chosen))
    return web.json_response(histogram_json(filled(counted, filters, chosen)))
