"""What `pgsyslog stats` reports: counts by severity, host and app; ingest; partitions.

Counts by severity, host and app come from one scan of the window (GROUPING SETS); the
ingest rate counts the last hour through the BRIN index on received_at; the oldest and
newest rows are found through the id index (a min() of received_at would read every
partition).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from sqlalchemy import func, select

from pgsyslog.storage import partitions
from pgsyslog.storage.filters import severity_label
from pgsyslog.storage.queries import AnySelect, compile_query
from pgsyslog.storage.schema import SCHEMA, messages

TOP = 10  # hosts and apps listed

Connection = psycopg.Connection[Any]
AsyncConnection = psycopg.AsyncConnection[Any]


@dataclass(frozen=True, slots=True)
class Stats:
    since: datetime | None  # the window of the counts; None: every row
    rows: int
    by_severity: list[tuple[int, int]]  # (severity, rows), most severe first
    top_hosts: list[tuple[str | None, int]]  # (hostname, rows), most rows first
    top_apps: list[tuple[str | None, int]]
    last_minute: int  # rows received in the last minute and the last hour
    last_hour: int
    oldest: datetime | None  # received_at of the first and the last row (by id)
    newest: datetime | None
    partitions: list[partitions.PartitionInfo]

    @property
    def rate_minute(self) -> float:
        return self.last_minute / 60

    @property
    def rate_hour(self) -> float:
        return self.last_hour / 3600


def _counts_statement(since: datetime | None) -> AnySelect:
    c = messages.c
    stmt = select(func.grouping(c.severity), func.grouping(c.hostname), c.severity, c.hostname,
                  c.app_name, func.count())
    if since is not None:
        stmt = stmt.where(c.received_at >= since)
    return stmt.group_by(func.grouping_sets(c.severity, c.hostname, c.app_name))


def _ingest_statement(now: datetime) -> AnySelect:
    c = messages.c
    minute = func.count().filter(c.received_at >= now - timedelta(minutes=1))
    return select(minute, func.count()).where(c.received_at >= now - timedelta(hours=1))


def _ends_statement() -> AnySelect:
    c = messages.c
    first = select(c.received_at).order_by(c.id.asc()).limit(1).scalar_subquery()
    last = select(c.received_at).order_by(c.id.desc()).limit(1).scalar_subquery()
    return select(first, last)


def _run(conn: Connection, stmt: AnySelect) -> list[tuple[Any, ...]]:
    query = compile_query(stmt)
    return conn.execute(query.sql, query.params).fetchall()


async def _run_async(conn: AsyncConnection, stmt: AnySelect) -> list[tuple[Any, ...]]:
    query = compile_query(stmt)
    cur = await conn.execute(query.sql, query.params)
    return await cur.fetchall()


def _top(counts: Counter[Any], n: int) -> list[tuple[Any, int]]:
    return sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))[:n]


def _assembled(since: datetime | None, counted: list[tuple[Any, ...]],
               ingest: list[tuple[Any, ...]], ends: list[tuple[Any, ...]],
               partition_list: list[partitions.PartitionInfo]) -> Stats:
    severities: Counter[int] = Counter()
    hosts: Counter[str | None] = Counter()
    apps: Counter[str | None] = Counter()
    for not_severity, not_host, severity, host, app, count in counted:
        if not not_severity:
            severities[severity] = count
        elif not not_host:
            hosts[host] = count
        else:
            apps[app] = count
    (last_minute, last_hour), = ingest
    (oldest, newest), = ends
    return Stats(since, sum(severities.values()), sorted(severities.items()), _top(hosts, TOP),
                 _top(apps, TOP), last_minute, last_hour, oldest, newest, partition_list)


def collect_stats(conn: Connection, since: datetime | None, now: datetime) -> Stats:
    return _assembled(since, _run(conn, _counts_statement(since)),
                      _run(conn, _ingest_statement(now)), _run(conn, _ends_statement()),
                      partitions.list_partitions(conn))


async def list_partitions_async(conn: AsyncConnection) -> list[partitions.PartitionInfo]:
    """partitions.list_partitions on the API's async connections (the same catalog query)."""
    cur = await conn.execute(partitions._CHILDREN_SQL, (SCHEMA, partitions.PARENT))
    found = [(name, partitions.partition_day(name), estimate, size)
             for name, estimate, size, _ in await cur.fetchall()]
    return [partitions.PartitionInfo(name, day, estimate, size)
            for name, day, estimate, size in found if day is not None]


async def collect_stats_async(conn: AsyncConnection, since: datetime | None, now: datetime
                              ) -> Stats:
    return _assembled(since, await _run_async(conn, _counts_statement(since)),
                      await _run_async(conn, _ingest_statement(now)),
                      await _run_async(conn, _ends_statement()),
                      await list_partitions_async(conn))


def _iso(when: datetime | None) -> str | None:
    return None if when is None else when.isoformat()


def stats_json(s: Stats) -> dict[str, Any]:
    """What ``pgsyslog stats -o json`` prints (and /api/stats holds as ``top``)."""
    return {
        "since": _iso(s.since),
        "rows": s.rows,
        "by_severity": {severity_label(k): n for k, n in s.by_severity},
        "top_hosts": [{"hostname": h, "rows": n} for h, n in s.top_hosts],
        "top_apps": [{"app_name": a, "rows": n} for a, n in s.top_apps],
        "rows_per_second_last_minute": s.rate_minute,
        "rows_per_second_last_hour": s.rate_hour,
        "oldest_received_at": _iso(s.oldest),
        "newest_received_at": _iso(s.newest),
        "partitions": [{"name": p.name, "day": p.day.isoformat(), "rows_estimate": p.row_estimate,
                        "size_bytes": p.size_bytes} for p in s.partitions],
    }
