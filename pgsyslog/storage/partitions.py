"""Day partitions of syslog.messages: create ahead, list, drop expired.

Plain functions over a psycopg connection so that they can be tested directly; the
scheduler and the CLI only call them. Creation never runs ``CREATE TABLE ... PARTITION
OF`` on the live parent (that takes an ACCESS EXCLUSIVE lock): it creates a free-standing
table, adds a CHECK matching the range, and ATTACHes it, which with the CHECK in place
needs only a SHARE UPDATE EXCLUSIVE lock on the parent and no scan.

Whoever creates or drops the table of a day (the writer, maintenance) holds that day's
advisory lock meanwhile, so that two of them never work on one day at once.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

import psycopg
from psycopg import errors, sql

from pgsyslog.storage import locks
from pgsyslog.storage.days import day_start, is_expired
from pgsyslog.storage.schema import PARTITION_PREFIX, SCHEMA

log = logging.getLogger(__name__)

PARENT = "messages"
LOCK_TIMEOUT = "2s"
ATTEMPTS = 5
# Seconds one maintenance statement may wait for other transactions or run. A DETACH,
# FINALIZE or DROP that hits it stops the drop step; the next run goes on from there.
STATEMENT_LIMIT = 30.0
_NAME_RE = re.compile(rf"^{PARTITION_PREFIX}(\d{{8}})$")

T = TypeVar("T")
Connection = psycopg.Connection[Any]


class Blocked(Exception):
    """A drop-step statement waited too long for another transaction; one line."""


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


def _day_of(name: str) -> date:
    day = partition_day(name)
    if day is None:
        raise ValueError(f"not a partition name: {name!r}")
    return day


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


@contextmanager
def _day_lock(conn: Connection, day: date) -> Iterator[None]:
    """Hold the session-level advisory lock of ``day``'s table while inside."""
    key = (locks.PARTITION_DAY, day.toordinal())
    _with_retries(conn, lambda: conn.execute("SELECT pg_advisory_lock(%s::int4, %s::int4)", key))
    try:
        yield
    finally:
        if not conn.broken:
            conn.execute("SELECT pg_advisory_unlock(%s::int4, %s::int4)", key)


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

_FREE_TABLES_SQL = """
    SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = %s AND c.relkind = 'r' AND NOT c.relispartition
      AND starts_with(c.relname, %s)
    ORDER BY c.relname
"""


def _children(conn: Connection) -> list[tuple[str, int, int, bool]]:
    """(name, row estimate, bytes, detach pending) of every partition of the parent."""
    return conn.execute(_CHILDREN_SQL, (SCHEMA, PARENT)).fetchall()


def _is_attached(conn: Connection, name: str) -> bool:
    row = conn.execute("SELECT c.relispartition FROM pg_class c JOIN pg_namespace n "
                       "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
                       (SCHEMA, name)).fetchone()
    return bool(row and row[0])


def left_over_tables(conn: Connection) -> list[str]:
    """Tables named like a partition that are not attached: a crash between DETACH and
    DROP, or during creation, leaves them. Other tables of the schema are never listed."""
    rows = conn.execute(_FREE_TABLES_SQL, (SCHEMA, PARTITION_PREFIX)).fetchall()
    return [name for (name,) in rows if is_partition_name(name)]


def create_partition(conn: Connection, day: date) -> bool:
    """Create and attach the partition of ``day``; False when it was already attached.

    Serialized per day across sessions and idempotent: a second creator finds it attached
    and does nothing; a table left half made (created, with or without its CHECK) is
    finished (tests: test_two_creators_of_one_day_make_one_partition,
    test_a_half_made_partition_is_finished).
    """
    name = partition_name(day)
    if _is_attached(conn, name):
        return False
    with _day_lock(conn, day):
        if _is_attached(conn, name):  # made by another session while we waited
            return False
        _with_retries(conn, lambda: _create_with_check(conn, day))
        _with_retries(conn, lambda: _attach(conn, day))
    log.info("created partition %s.%s", SCHEMA, name)
    return True


def create_detached(conn: Connection, day: date) -> bool:
    """Make ``day``'s table free-standing, with its CHECK and without indexes, for an
    import to load: False when the day's partition is attached already.

    Loaded, it is attached with attach_loaded, which builds its indexes in one pass: for
    the full-text index that costs PostgreSQL far less per row than keeping it up to date
    row by row (bench/import.py, "history"). Until then its rows are in no query; a table
    left by an import that died is attached by the next import or by maintenance
    (settle_left_over_tables), and a writer that needs the day attaches it at once
    (create_partition finishes a half-made partition). A free-standing table already
    there is taken as it is.
    """
    name = partition_name(day)
    if _is_attached(conn, name):
        return False
    with _day_lock(conn, day):
        if _is_attached(conn, name):
            return False
        if not _exists(conn, name):
            _with_retries(conn, lambda: _create_with_check(conn, day))
    return True


# maintenance_work_mem of each index build of a loaded day's table.
INDEX_MEMORY = "128MB"


def attach_loaded(conn: Connection, day: date) -> bool:
    """Attach ``day``'s loaded table (create_detached), building its indexes, with no
    statement timeout: that takes as long as its rows need. False when it was attached
    already (by a writer, maintenance or another import meanwhile) or there is no table."""
    name = partition_name(day)
    if _is_attached(conn, name) or not _exists(conn, name):
        return False
    with _day_lock(conn, day):
        if _is_attached(conn, name) or not _exists(conn, name):
            return False

        def attach() -> None:
            conn.execute("SET LOCAL statement_timeout = 0")
            conn.execute(sql.SQL("SET LOCAL maintenance_work_mem = {}").format(
                sql.Literal(INDEX_MEMORY)))
            if not _has_check(conn, day):  # a left-over taken as it was
                _create_with_check(conn, day)
            _attach(conn, day)

        _with_retries(conn, attach)
    log.info("attached partition %s.%s with its indexes built", SCHEMA, name)
    return True


def missing_index_statements(conn: Connection, day: date) -> list[str]:
    """CREATE INDEX statements for ``day``'s free-standing table: those of the parent's
    indexes it lacks, the full-text (GIN) ones first. ATTACH takes an index made by one
    of them as the partition's own, instead of building it; each can run on a
    connection of its own, beside the others."""
    table = sql.Identifier(SCHEMA, partition_name(day)).as_string(conn)
    rows = conn.execute(_INDEX_DEFINITIONS_SQL, (f"{SCHEMA}.{PARENT}",)).fetchall()
    have = {_index_method_and_keys(d) for (d,) in conn.execute(
        _INDEX_DEFINITIONS_SQL, (f"{SCHEMA}.{partition_name(day)}",)).fetchall()}
    statements = []
    for (definition,) in rows:
        keys = _index_method_and_keys(definition)
        if keys not in have:
            create = definition.split(" ON ONLY ", 1)[0].rsplit(" ", 1)[0]  # drop its name
            statements.append(f"{create} ON {table} USING {keys}")
    return sorted(statements, key=lambda statement: " USING gin " not in statement)


_INDEX_DEFINITIONS_SQL = ("SELECT pg_get_indexdef(indexrelid) FROM pg_index "
                          "WHERE indrelid = to_regclass(%s) ORDER BY indexrelid")


def _index_method_and_keys(definition: str) -> str:
    """``btree (hostname, received_at)`` of a CREATE INDEX statement."""
    return definition.split(" USING ", 1)[1]


def loading_lock_key(day: date) -> tuple[int, int]:
    """The advisory lock an import holds while it loads ``day``'s table (session level)."""
    return locks.LOADING_DAY, day.toordinal()


@contextmanager
def _unless_loading(conn: Connection, day: date) -> Iterator[bool]:
    """Hold ``day``'s loading lock exclusive while inside (an import that wants to load
    the day waits meanwhile); False inside when an import holds it, loading the day."""
    key = loading_lock_key(day)
    held = conn.execute("SELECT pg_try_advisory_lock(%s::int4, %s::int4)", key).fetchone()
    try:
        yield held == (True,)
    finally:
        if held == (True,) and not conn.broken:
            conn.execute("SELECT pg_advisory_unlock(%s::int4, %s::int4)", key)


def _exists(conn: Connection, name: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL",
                        (f"{SCHEMA}.{name}",)).fetchone() == (True,)


def _has_check(conn: Connection, day: date) -> bool:
    row = conn.execute("SELECT count(*) FROM pg_constraint WHERE conrelid = to_regclass(%s) "
                       "AND conname = %s AND convalidated",
                       (f"{SCHEMA}.{partition_name(day)}", f"{partition_name(day)}_range")
                       ).fetchone()
    return row is not None and row[0] == 1


def _range_literals(day: date) -> tuple[sql.Literal, sql.Literal]:
    return sql.Literal(day_start(day)), sql.Literal(day_start(day + timedelta(days=1)))


def _check_name(day: date) -> sql.Identifier:
    return sql.Identifier(f"{partition_name(day)}_range")


def _create_with_check(conn: Connection, day: date) -> None:
    table = sql.Identifier(SCHEMA, partition_name(day))
    lower, upper = _range_literals(day)
    conn.execute(sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
    ).format(table, sql.Identifier(SCHEMA, PARENT)))
    conn.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}").format(
        table, _check_name(day)))
    conn.execute(sql.SQL(
        "ALTER TABLE {} ADD CONSTRAINT {} "
        "CHECK (received_at IS NOT NULL AND received_at >= {} AND received_at < {})"
    ).format(table, _check_name(day), lower, upper))


def _attach(conn: Connection, day: date) -> None:
    table = sql.Identifier(SCHEMA, partition_name(day))
    lower, upper = _range_literals(day)
    conn.execute(sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})").format(
        sql.Identifier(SCHEMA, PARENT), table, lower, upper))
    # The CHECK only spared ATTACH a scan; the partition bound now says the same.
    conn.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(table, _check_name(day)))


def ensure_partitions(conn: Connection, today: date, ahead: int) -> list[str]:
    """Make sure partitions exist from yesterday to today + ahead; return those created."""
    created = []
    for offset in range(-1, ahead + 1):
        day = today + timedelta(days=offset)
        if create_partition(conn, day):
            created.append(partition_name(day))
    return created


def ensure_days(conn: Connection, days: Iterable[date]) -> list[str]:
    """Make sure the partitions of these days exist, however old (an import of old logs);
    return those created."""
    return [partition_name(day) for day in sorted(set(days)) if create_partition(conn, day)]


def list_partitions(conn: Connection) -> list[PartitionInfo]:
    result = []
    for name, estimate, size, _ in _children(conn):
        day = partition_day(name)
        if day is not None:
            result.append(PartitionInfo(name, day, estimate, size))
    return result


def _expired(names: list[str], now: datetime, retention_days: int) -> list[str]:
    return [name for name in names if is_expired(_day_of(name), now, retention_days)]


def expired_partitions(conn: Connection, now: datetime, retention_days: int) -> list[str]:
    """What the drop step drops: partitions and left-over tables of expired days."""
    return sorted(_expired([p.name for p in list_partitions(conn)] + left_over_tables(conn),
                           now, retention_days))


def finalize_pending_detaches(conn: Connection) -> list[str]:
    """Finish a DETACH ... CONCURRENTLY that a crash or a cancel left half done."""
    finished = []
    for name, _, _, pending in _children(conn):
        if not pending:
            continue
        _bounded(conn, sql.SQL("ALTER TABLE {} DETACH PARTITION {} FINALIZE").format(
            sql.Identifier(SCHEMA, PARENT), sql.Identifier(SCHEMA, name)),
            f"finishing the pending detach of {SCHEMA}.{name}")
        log.info("finished the pending detach of partition %s.%s", SCHEMA, name)
        finished.append(name)
    return finished


def drop_expired_partitions(conn: Connection, now: datetime, retention_days: int, *,
                            limit: float = STATEMENT_LIMIT) -> list[str]:
    """Detach (concurrently) and drop every expired partition; return the tables dropped.

    First finishes detaches left pending and settles left-over tables (see
    :func:`settle_left_over_tables`). No statement waits more than ``limit`` seconds
    for another transaction: a blocked step logs one line and stops, and a DETACH cut
    short stays pending for the next run to finish (test:
    test_a_detach_blocked_by_an_open_transaction_is_finished_by_the_next_run).

    ``conn`` must be in autocommit mode: DETACH ... CONCURRENTLY cannot run in a
    transaction block. Inserts into other partitions go on meanwhile.
    """
    if not conn.autocommit:
        raise ValueError("drop_expired_partitions needs an autocommit connection")
    dropped: list[str] = []
    try:
        with waits_bounded(conn, limit):
            for name in _retire_expired(conn, now, retention_days):
                dropped.append(name)
    except (Blocked, errors.LockNotAvailable, errors.QueryCanceled) as e:
        log.warning("partition maintenance stopped: %s; the next run goes on from there",
                    str(e).splitlines()[0])
    return dropped


def _retire_expired(conn: Connection, now: datetime, retention_days: int) -> Iterator[str]:
    """Finish pending detaches, settle left-overs, detach and drop; yield each dropped."""
    finalize_pending_detaches(conn)
    yield from settle_left_over_tables(conn, now, retention_days)
    for name in _expired([p.name for p in list_partitions(conn)], now, retention_days):
        _bounded(conn, sql.SQL("ALTER TABLE {} DETACH PARTITION {} CONCURRENTLY").format(
            sql.Identifier(SCHEMA, PARENT), sql.Identifier(SCHEMA, name)),
            f"detaching {SCHEMA}.{name}")
        if _drop_if_free(conn, name):
            log.info("dropped expired partition %s.%s", SCHEMA, name)
            yield name


def settle_left_over_tables(conn: Connection, now: datetime, retention_days: int
                            ) -> Iterator[str]:
    """Drop left-over tables of expired days (yielding each); attach the others.

    A young left-over is attached rather than dropped and made again: it may hold rows (a
    detach finished for a shorter retention than today's, a detach by hand), and attaching
    is what finishing a half-made partition does anyway. One whose rows or columns do not
    fit stays as it is, with one line in the log; nothing in it is lost.
    """
    for name in left_over_tables(conn):
        day = _day_of(name)
        with _unless_loading(conn, day) as free:
            if not free:
                log.info("left-over table %s.%s is being loaded by an import; left to it",
                         SCHEMA, name)
                continue
            if is_expired(day, now, retention_days):
                if _drop_if_free(conn, name):
                    log.info("dropped left-over table %s.%s of an expired day", SCHEMA, name)
                    yield name
                continue
            _attach_left_over(conn, day, name)


def _attach_left_over(conn: Connection, day: date, name: str) -> None:
    try:
        # An import that died may have loaded it: its indexes take what its rows need.
        attach_loaded(conn, day) or create_partition(conn, day)
    except psycopg.Error as e:
        # Classes 22 and 54 (a row an index refuses), 23 (rows outside the day) and 42
        # (columns unlike the parent): the table stays, the other steps go on.
        if e.sqlstate is None or e.sqlstate[:2] not in _UNATTACHABLE or conn.broken:
            raise
        log.warning("left-over table %s.%s cannot be attached and stays as it is: %s",
                    SCHEMA, name, e.diag.message_primary or e.sqlstate)


_UNATTACHABLE = frozenset({"22", "23", "42", "54"})


def _drop_if_free(conn: Connection, name: str) -> bool:
    """Drop the table unless a creator attached it again meanwhile (a replayed spool)."""
    with _day_lock(conn, _day_of(name)):
        if _is_attached(conn, name):
            return False
        _bounded(conn, sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(SCHEMA, name)),
                 f"dropping {SCHEMA}.{name}")
    return True


_TIMEOUTS_SQL = """
    SELECT set_config('lock_timeout', %s, false), set_config('statement_timeout', %s, false)
"""


@contextmanager
def waits_bounded(conn: Connection, seconds: float) -> Iterator[None]:
    """Every lock wait and statement of the session bounded by ``seconds`` while inside.

    For autocommit sessions, where SET LOCAL cannot be used; the settings from before
    (the DSN's, or an outer bound's) come back afterwards."""
    before = conn.execute("SELECT current_setting('lock_timeout'), "
                          "current_setting('statement_timeout')").fetchone()
    ms = f"{max(1, int(seconds * 1000))}ms"
    conn.execute(_TIMEOUTS_SQL, (ms, ms))
    try:
        yield
    finally:
        if before is not None and not conn.broken:
            conn.execute(_TIMEOUTS_SQL, before)


def _bounded(conn: Connection, statement: sql.Composed, doing: str) -> None:
    """Run a statement under the session's timeouts; a timeout becomes Blocked."""
    try:
        conn.execute(statement)
    except (errors.LockNotAvailable, errors.QueryCanceled):
        raise Blocked(f"{doing} waited too long for another transaction using it "
                      "(pg_stat_activity shows which)") from None
