"""Day partitions of syslog.messages: create ahead, list, drop expired.

Plain functions over a psycopg connection so that they can be tested directly; the
scheduler and the CLI only call them. Creation never runs ``CREATE TABLE ... PARTITION
OF`` on the live parent (that takes an ACCESS EXCLUSIVE lock): it creates a free-standing
table, adds a CHECK matching the range, and ATTACHes it, which with the CHECK in place
needs only a SHARE UPDATE EXCLUSIVE lock on the parent and no scan.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

import psycopg
from psycopg import errors, sql

from pgsyslog.storage.schema import PARTITION_PREFIX, SCHEMA

log = logging.getLogger(__name__)

PARENT = "messages"
LOCK_TIMEOUT = "2s"
ATTEMPTS = 5
_NAME_RE = re.compile(rf"^{PARTITION_PREFIX}(\d{{8}})$")

T = TypeVar("T")
Connection = psycopg.Connection[Any]


@dataclass(frozen=True, slots=True)
class PartitionInfo:
    name: str
    day: date
    row_estimate: int
    size_bytes: int

    @property
    def range_start(self) -> datetime:
        return day_start(self.day)

    @property
    def range_end(self) -> datetime:
        return day_start(self.day + timedelta(days=1))


def is_partition_name(name: str) -> bool:
    return _NAME_RE.match(name) is not None


def partition_name(day: date) -> str:
    return f"{PARTITION_PREFIX}{day:%Y%m%d}"


def partition_day(name: str) -> date | None:
    match = _NAME_RE.match(name)
    return datetime.strptime(match.group(1), "%Y%m%d").date() if match else None


def day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _with_retries(conn: Connection, action: Callable[[], T]) -> T:
    """Run one short transaction under lock_timeout; on a lock wait, retry with jitter."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with conn.transaction():
                conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(LOCK_TIMEOUT))
                return action()
        except errors.LockNotAvailable:
            if attempt == ATTEMPTS:
                raise
            pause = min(2.0, 0.1 * 2**attempt) * random.uniform(0.5, 1.5)
            log.info("partition maintenance waited for a lock; retry %d in %.1fs", attempt, pause)
            time.sleep(pause)
    raise AssertionError("unreachable")


_CHILDREN_SQL = """
    SELECT c.relname, greatest(c.reltuples, 0)::bigint, pg_total_relation_size(c.oid),
           i.inhdetachpending
    FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid
    JOIN pg_class p ON p.oid = i.inhparent
    JOIN pg_namespace n ON n.oid = p.relnamespace
    WHERE n.nspname = %s AND p.relname = %s
    ORDER BY c.relname
"""


def _children(conn: Connection) -> list[tuple[str, int, int, bool]]:
    """(name, row estimate, bytes, detach pending) of every partition of the parent."""
    return conn.execute(_CHILDREN_SQL, (SCHEMA, PARENT)).fetchall()


def attached_partitions(conn: Connection) -> list[str]:
    return [row[0] for row in _children(conn)]


def create_partition(conn: Connection, day: date) -> bool:
    """Create and attach the partition of ``day``; False when it was already attached."""
    name = partition_name(day)
    if name in attached_partitions(conn):
        return False
    table = sql.Identifier(SCHEMA, name)
    parent = sql.Identifier(SCHEMA, PARENT)
    check = sql.Identifier(f"{name}_range")
    lower, upper = sql.Literal(day_start(day)), sql.Literal(day_start(day + timedelta(days=1)))

    def create() -> None:
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
            ).format(table, parent)
        )
        conn.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}").format(table, check))
        conn.execute(
            sql.SQL(
                "ALTER TABLE {} ADD CONSTRAINT {} "
                "CHECK (received_at IS NOT NULL AND received_at >= {} AND received_at < {})"
            ).format(table, check, lower, upper)
        )

    def attach() -> None:
        conn.execute(
            sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})").format(
                parent, table, lower, upper
            )
        )
        # The CHECK only spared ATTACH a scan; the partition bound now says the same.
        conn.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(table, check))

    _with_retries(conn, create)
    try:
        _with_retries(conn, attach)
    except errors.InvalidObjectDefinition:
        # Another receiver attached it between our look and our ATTACH.
        if name not in attached_partitions(conn):
            raise
        return False
    log.info("created partition %s.%s", SCHEMA, name)
    return True


def ensure_partitions(conn: Connection, today: date, ahead: int) -> list[str]:
    """Make sure partitions exist from yesterday to today + ahead; return those created."""
    created = []
    for offset in range(-1, ahead + 1):
        day = today + timedelta(days=offset)
        if create_partition(conn, day):
            created.append(partition_name(day))
    return created


def list_partitions(conn: Connection) -> list[PartitionInfo]:
    result = []
    for name, estimate, size, _ in _children(conn):
        day = partition_day(name)
        if day is not None:
            result.append(PartitionInfo(name, day, estimate, size))
    return result


def expired_partitions(conn: Connection, now: datetime, retention_days: int) -> list[str]:
    """Partitions whose whole day ended more than retention_days ago (0 keeps everything)."""
    if retention_days <= 0:
        return []
    cutoff = now - timedelta(days=retention_days)
    return [p.name for p in list_partitions(conn) if p.range_end <= cutoff]


def finalize_pending_detaches(conn: Connection) -> list[str]:
    """Finish a DETACH ... CONCURRENTLY that a crash or a cancel left half done."""
    finished = []
    for name, _, _, pending in _children(conn):
        if not pending:
            continue
        conn.execute(
            sql.SQL("ALTER TABLE {} DETACH PARTITION {} FINALIZE").format(
                sql.Identifier(SCHEMA, PARENT), sql.Identifier(SCHEMA, name)
            )
        )
        log.info("finished the pending detach of partition %s.%s", SCHEMA, name)
        finished.append(name)
    return finished


def drop_expired_partitions(conn: Connection, now: datetime, retention_days: int) -> list[str]:
    """Detach (concurrently) and drop every expired partition; return their names.

    ``conn`` must be in autocommit mode: DETACH ... CONCURRENTLY cannot run in a
    transaction block. Inserts into other partitions go on meanwhile.
    """
    if not conn.autocommit:
        raise ValueError("drop_expired_partitions needs an autocommit connection")
    dropped = [
        name
        for name in finalize_pending_detaches(conn)
        if _drop_or_reattach(conn, name, now, retention_days)
    ]
    for name in expired_partitions(conn, now, retention_days):
        conn.execute(
            sql.SQL("ALTER TABLE {} DETACH PARTITION {} CONCURRENTLY").format(
                sql.Identifier(SCHEMA, PARENT), sql.Identifier(SCHEMA, name)
            )
        )
        conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(SCHEMA, name)))
        log.info("dropped expired partition %s.%s", SCHEMA, name)
        dropped.append(name)
    return dropped


def _drop_or_reattach(conn: Connection, name: str, now: datetime, retention_days: int) -> bool:
    """A partition whose detach was just finalized: drop it if expired (True), else re-attach."""
    day = partition_day(name)
    if day is None:
        return False
    expired = retention_days > 0 and day_start(day + timedelta(days=1)) <= now - timedelta(
        days=retention_days
    )
    if expired:
        conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(SCHEMA, name)))
        log.info("dropped expired partition %s.%s", SCHEMA, name)
    else:
        create_partition(conn, day)
    return expired
