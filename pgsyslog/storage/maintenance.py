"""Maintenance runs: partitions ahead, expired partitions out, unrouted rows back in.

Each run opens its own connection and takes a session-level advisory lock on it, so that
of several receivers on one database only one does maintenance at a time; the others
skip (or, at start-up, wait). The work itself is the plain functions of partitions.py
and :func:`drain_unrouted`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import psycopg
from psycopg import sql

from pgsyslog.storage import database, locks, partitions
from pgsyslog.storage.schema import RECORD_COLUMNS, SCHEMA

log = logging.getLogger(__name__)

DRAIN_BATCH_ROWS = 5000  # rows moved per transaction: short transactions, few round trips
START_LOCK_WAIT = "60s"  # how long a starting receiver waits for another's maintenance

Connection = psycopg.Connection[Any]


@dataclass
class MaintenanceResult:
    ran: bool  # False when another receiver held the lock
    created: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    drained: int = 0

    def summary(self) -> str:
        if not self.ran:
            return "skipped: another receiver holds the maintenance lock"
        done = [f"created {', '.join(self.created)}" if self.created else "",
                f"dropped {', '.join(self.dropped)}" if self.dropped else "",
                f"moved {self.drained} row(s) out of unrouted" if self.drained else ""]
        return "; ".join(d for d in done if d) or "nothing to do"


@contextmanager
def maintenance_lock(conn: Connection, *, wait: bool) -> Iterator[bool]:
    """Hold the maintenance advisory lock while inside; yield False when it is taken."""
    if wait:
        conn.execute(sql.SQL("SET lock_timeout = {}").format(START_LOCK_WAIT))
        conn.execute("SELECT pg_advisory_lock(%s)", (locks.MAINTENANCE,))
        got = True
    else:
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (locks.MAINTENANCE,)).fetchone()
        got = bool(row and row[0])
    try:
        yield got
    finally:
        if got and not conn.closed:
            conn.execute("SELECT pg_advisory_unlock(%s)", (locks.MAINTENANCE,))


def drain_unrouted(conn: Connection, batch_rows: int = DRAIN_BATCH_ROWS) -> int:
    """Move rows of syslog.unrouted whose day now has a partition into syslog.messages.

    One transaction per batch: a row is deleted from unrouted in the same transaction
    that inserts it into messages, so nothing is lost or doubled. Rows refused for a data
    reason stay where they are with their error.
    """
    days = [p.day for p in partitions.list_partitions(conn)]
    if not days:
        return 0
    moved = 0
    while True:
        n = _move_batch(conn, days, batch_rows)
        moved += n
        if n < batch_rows:
            break
    if moved:
        log.info("moved %d row(s) from %s.unrouted into their partitions", moved, SCHEMA)
    return moved


def _move_batch(conn: Connection, days: list[date], batch_rows: int) -> int:
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in ("id", *RECORD_COLUMNS))
    statement = sql.SQL(
        """
        WITH batch AS (
            SELECT id FROM {unrouted}
            WHERE (received_at AT TIME ZONE 'UTC')::date = ANY(%(days)s)
              AND (error IS NULL OR error LIKE 'no partition%%')
            ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED
        ), moved AS (
            DELETE FROM {unrouted} u USING batch WHERE u.id = batch.id RETURNING u.*
        )
        INSERT INTO {messages} ({columns}) SELECT {columns} FROM moved
        """
    ).format(unrouted=sql.Identifier(SCHEMA, "unrouted"),
             messages=sql.Identifier(SCHEMA, "messages"), columns=columns)
    with conn.transaction():
        cur = conn.execute(statement, {"days": days, "limit": batch_rows})
        return cur.rowcount


def run_maintenance(
    dsn: str,
    *,
    ahead: int,
    retention_days: int,
    now: datetime | None = None,
    wait: bool = False,
    steps: tuple[str, ...] = ("ensure", "drop", "drain"),
) -> MaintenanceResult:
    """One locked maintenance run of the given steps; skips when another holds the lock."""
    now = now or datetime.now(UTC)
    with database.connect(dsn, autocommit=True) as conn, maintenance_lock(conn,
                                                                          wait=wait) as got:
        result = MaintenanceResult(ran=got)
        if not got:
            log.info("maintenance %s", result.summary())
            return result
        if "ensure" in steps:
            result.created = partitions.ensure_partitions(conn, now.date(), ahead)
        if "drop" in steps:
            result.dropped = partitions.drop_expired_partitions(conn, now, retention_days)
        if "drain" in steps:
            result.drained = drain_unrouted(conn)
    return result

