"""GET /api/partitions: the day partitions of syslog.messages, their size and expiry.

The answer: ``{"retention_days": n, "partitions": [{"name", "day", "rows", "bytes",
"expires"}...]}``, oldest day first. ``rows`` is PostgreSQL's estimate
(pg_class.reltuples, as of the last ANALYZE or autovacuum), not a count: counting would
read every partition. ``expires`` is the UTC day on which maintenance drops the
partition (the day after its whole day is older than retention_days); null when
retention_days is 0 (kept for ever) or not known.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from aiohttp import web

from pgsyslog.http.aggregate import bounded, parsed
from pgsyslog.http.stats import RETENTION
from pgsyslog.storage.partitions import PartitionInfo
from pgsyslog.storage.stats import list_partitions_async


def expires(day: date, retention_days: int | None) -> date | None:
    """As partitions.is_expired: dropped when day + 1 is retention_days in the past."""
    if not retention_days:
        return None
    return day + timedelta(days=1 + retention_days)


def partition_json(p: PartitionInfo, retention_days: int | None) -> dict[str, Any]:
    until = expires(p.day, retention_days)
    return {"name": p.name, "day": p.day.isoformat(), "rows": p.row_estimate,
            "bytes": p.size_bytes, "expires": None if until is None else until.isoformat()}


async def partitions(request: web.Request) -> web.Response:
    parsed(request, ())
    retention_days = request.app[RETENTION].days
    async with bounded(request, "listing the partitions") as conn:
        found = await list_partitions_async(conn)
    return web.json_response({"retention_days": retention_days,
                              "partitions": [partition_json(p, retention_days) for p in found]})
