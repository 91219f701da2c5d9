"""GET /api/stats: what `pgsyslog stats` shows, with the receiver's health and counters.

The answer: ``{"health": <the body of /healthz>, "ingest_per_minute": [{"start", "count"}
... the last 60 minutes, the current one last], "oldest", "newest", "retention_days",
"counters": {...the receiver's counters...}, "top": <pgsyslog stats -o json over the last
24 h>}``. ``retention_days`` is null when serve did not say (make_app's retention_days).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from pgsyslog.http.aggregate import bounded, fetch_all, parsed
from pgsyslog.http.context import STATE
from pgsyslog.http.health import healthz
from pgsyslog.storage.filters import Filters
from pgsyslog.storage.histogram import bucket_start, filled, histogram_json, histogram_statement
from pgsyslog.storage.stats import collect_stats_async, stats_json

WINDOW = timedelta(hours=24)  # as `pgsyslog stats` counts by default
INGEST_MINUTES = 60


@dataclass(frozen=True)
class Retention:
    days: int | None  # None: not known to the API


RETENTION = web.AppKey("retention", Retention)


def ingest_filters(now: datetime) -> Filters:
    """The last INGEST_MINUTES minutes, the current one included."""
    since = bucket_start(now, "minute") - timedelta(minutes=INGEST_MINUTES - 1)
    return Filters(since=since, until=now)


async def stats(request: web.Request) -> web.Response:
    parsed(request, ())  # no parameters
    now = datetime.now(UTC)
    health = json.loads((await healthz(request)).text or "{}")
    ingest = ingest_filters(now)
    async with bounded(request, "the statistics") as conn:
        result = await collect_stats_async(conn, now - WINDOW, now)
        per_minute = await fetch_all(conn, histogram_statement(ingest, "minute"))
    body: dict[str, Any] = {
        "health": health,
        "ingest_per_minute": histogram_json(filled(per_minute, ingest, "minute"))["buckets"],
        "oldest": None if result.oldest is None else result.oldest.isoformat(),
        "newest": None if result.newest is None else result.newest.isoformat(),
        "retention_days": request.app[RETENTION].days,
        "counters": request.app[STATE].counters.as_dict(),
        "top": stats_json(result),
    }
    return web.json_response(body)
