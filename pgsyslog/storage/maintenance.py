"""Maintenance runs: partitions ahead, expired partitions out, unrouted rows back in,
old batch identities forgotten.

Each run opens its own connection and takes a session-level advisory lock on it, so that
of several receivers on one database only one does maintenance at a time; the others
skip (or, at start-up, wait). The work itself is the plain functions of partitions.py,
:func:`drain_unrouted` and :func:`prune_batches`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
from psycopg import errors, sql

from pgsyslog.storage import database, locks, partitions
from pgsyslog.storage.schema import RECORD_COLUMNS, SCHEMA

log = logging.getLogger(__name__)

DRAIN_BATCH_ROWS = 5000  # rows moved per transaction: short transactions, few round trips
PRUNE_BATCH_ROWS = 5000  # batch identities deleted per transaction, for the same reason
# With retention forever, a batch identity is still forgotten after this many days: a
# retry or a spool replay comes long before.
BATCH_IDENTITY_DAYS = 90
# How long a starting receiver waits for another's maintenance run before it gives up;
# a run's every wait is bounded, so only a stuck session holds the lock this long.
LOCK_WAIT_LIMIT = 600.0

Connection = psycopg.Connection[Any]


class MaintenanceBusy(Exception):
    """Waiting for another session's maintenance lock took too long; the message is one
    line for the operator."""


@dataclass
class MaintenanceResult:
    ran: bool  # False when another receiver held the lock
    created: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    drained: int = 0
    batches_pruned: int = 0

    def summary(self) -> str:
        if not self.ran:
            return "skipped: another receiver holds the maintenance lock"
        done = [f"created {', '.join(self.created)}" if self.created else "",
                f"dropped {', '.join(self.dropped)}" if self.dropped else "",
                f"moved {self.drained} row(s) out of unrouted" if self.drained else "",
                f"forgot {self.batches_pruned} old batch identity(ies)"
                if self.batches_pruned else ""]
        return "; ".join(d for d in done if d) or "nothing to do"


@contextmanager
def maintenance_lock(conn: Connection, *, wait: bool,
                     wait_limit: float = LOCK_WAIT_LIMIT) -> Iterator[bool]:
    """Hold the maintenance advisory lock while inside; yield False when it is taken.

    With ``wait``, a lock held elsewhere is waited for (logged once) up to wait_limit
    seconds, then MaintenanceBusy is raised (tests:
    test_start_up_waits_for_another_receivers_maintenance, test_start_up_gives_up_in_one_line).
    """
    got = _try_lock(conn)
    if not got and wait:
        _wait_for_lock(conn, wait_limit)
        got = True
    try:
        yield got
    finally:
        if got and not conn.broken:
            conn.execute("SELECT pg_advisory_unlock(%s)", (locks.MAINTENANCE,))


def _try_lock(conn: Connection) -> bool:
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (locks.MAINTENANCE,)).fetchone()
    return bool(row and row[0])


def _wait_for_lock(conn: Connection, wait_limit: float) -> None:
    holder = _lock_holder(conn)
    log.info("waiting for another receiver's partition maintenance to finish (%s)", holder)
    try:
        with partitions.waits_bounded(conn, wait_limit):
            conn.execute("SELECT pg_advisory_lock(%s)", (locks.MAINTENANCE,))
    except (errors.LockNotAvailable, errors.QueryCanceled):
        raise MaintenanceBusy(
            f"gave up after {wait_limit:g}s waiting for another receiver's partition "
            f"maintenance ({_lock_holder(conn)}); if that session is stuck, end it with "
            "pg_terminate_backend(pid)") from None


_HOLDER_SQL = """
    SELECT a.pid, a.application_name, coalesce(host(a.client_addr), 'local socket')
    FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND l.classid = %s::oid AND l.objid = %s::oid
"""


def _lock_holder(conn: Connection) -> str:
    """Who holds the maintenance lock, for the operator: backend pid, program, client."""
    key = locks.MAINTENANCE
    row = conn.execute(_HOLDER_SQL, (key >> 32, key & 0xFFFF_FFFF)).fetchone()
    if row is None:
        return "its session just ended"
    pid, program, client = row
    return f"held by pid {pid}, {program or 'unnamed program'} from {client}"


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


def prune_batches(conn: Connection, now: datetime, retention_days: int,
                  batch_rows: int = PRUNE_BATCH_ROWS) -> int:
    """Delete identities of batches committed before the retention (BATCH_IDENTITY_DAYS
    when it is forever), batch_rows per short transaction; return how many."""
    cutoff = now - timedelta(days=retention_days or BATCH_IDENTITY_DAYS)
    statement = sql.SQL(
        "DELETE FROM {batches} WHERE id IN "
        "(SELECT id FROM {batches} WHERE committed_at < %s LIMIT %s)"
    ).format(batches=sql.Identifier(SCHEMA, "batches"))
    pruned = 0
    while True:
        with conn.transaction():
            n = conn.execute(statement, (cutoff, batch_rows)).rowcount
        pruned += n
        if n < batch_rows:
            return pruned


def run_maintenance(
    dsn: str,
    *,
    ahead: int,
    retention_days: int,
    now: datetime | None = None,
    wait: bool = False,
    steps: tuple[str, ...] = ("ensure", "drop", "drain", "batches"),
    lock_wait_limit: float = LOCK_WAIT_LIMIT,
    statement_limit: float = partitions.STATEMENT_LIMIT,
) -> MaintenanceResult:
    """One locked maintenance run of the given steps; skips when another holds the lock
    (with ``wait``: waits, and raises MaintenanceBusy after lock_wait_limit seconds).

    Every statement of the run waits and runs at most statement_limit seconds, so that a
    run always ends and gives the lock back."""
    now = now or datetime.now(UTC)
    with (database.connect(dsn, autocommit=True) as conn,
          maintenance_lock(conn, wait=wait, wait_limit=lock_wait_limit) as got):
        result = MaintenanceResult(ran=got)
        if not got:
            log.info("maintenance %s", result.summary())
            return result
        with partitions.waits_bounded(conn, statement_limit):
            if "ensure" in steps:
                result.created = partitions.ensure_partitions(conn, now.date(), ahead)
            if "drop" in steps:
                result.dropped = partitions.drop_expired_partitions(
                    conn, now, retention_days, limit=statement_limit)
            if "drain" in steps:
                result.drained = drain_unrouted(conn)
            if "batches" in steps:
                result.batches_pruned = prune_batches(conn, now, retention_days)
    return result
