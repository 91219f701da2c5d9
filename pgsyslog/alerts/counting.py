"""A rule's count: one statement over syslog.messages, built by search's query builder.

The window is ``now - window <= received_at < now``: the partition key, so PostgreSQL
reads only today's (and at midnight yesterday's) partition, through the same indexes a search
uses (tests/test_alerts_evaluate.py::test_a_count_uses_the_indexes shows the plan).
With group_by it is one ``GROUP BY`` statement.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import errors
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.sql.util import ClauseAdapter

from pgsyslog.alerts.evaluate import NO_GROUP
from pgsyslog.alerts.payload import MAX_SAMPLES
from pgsyslog.alerts.rules import GROUP_COLUMNS, AlertRule
from pgsyslog.storage.filters import Filters
from pgsyslog.storage.queries import (
    AnySelect,
    compile_query,
    conditions,
    fetch_messages,
    fulltext_match,
    search_statement,
)
from pgsyslog.storage.rows import message_json
from pgsyslog.storage.schema import PARTITION_PREFIX, SCHEMA, messages

NULL_GROUP = "-"  # the group of rows whose host (or app) is null
# The BRIN index on received_at (storage.schema) and how long a round waits for its lock.
BRIN_INDEX = "syslog.messages_received_at_brin"
SUMMARIZE_LOCK_TIMEOUT = "200ms"

_PARTITION_BRIN_SQL = """
    SELECT x.indexrelid::regclass::text FROM pg_index x
    JOIN pg_inherits i ON i.inhrelid = x.indexrelid
    WHERE i.inhparent = %s::regclass
      AND x.indrelid = ANY(SELECT to_regclass(t) FROM unnest(%s::text[]) AS t)
"""


def window_partitions(now: datetime, longest_window: float) -> list[str]:
    """The day partitions a window ending now can reach."""
    day, last = (now - timedelta(seconds=longest_window)).date(), now.date()
    names = []
    while day <= last:
        names.append(f"{SCHEMA}.{PARTITION_PREFIX}{day:%Y%m%d}")
        day += timedelta(days=1)
    return names


def summarize_new_ranges(conn: psycopg.Connection[Any], now: datetime,
                         longest_window: float) -> int:
    """Let the BRIN index on received_at cover the pages written since the last round.

    BRIN leaves new pages unsummarized until a VACUUM, and a scan reads every page of
    an unsummarized range: between autovacuums, that is most of the day's newest rows,
    exactly the ones a window asks for (bench/alerts.py: 50 rules on 5,000,000 rows took
    0.9 s with the newest ranges unsummarized, 0.1-0.2 s with them summarized). A lock
    held by a VACUUM, or a missing privilege, skips it for this round."""
    tables = window_partitions(now, longest_window)
    indexes = [row[0] for row in conn.execute(_PARTITION_BRIN_SQL, (BRIN_INDEX, tables))]
    summarized = 0
    for index in indexes:
        try:
            with conn.transaction():
                conn.execute(f"SET LOCAL lock_timeout = '{SUMMARIZE_LOCK_TIMEOUT}'")
                row = conn.execute("SELECT brin_summarize_new_values(%s::regclass)",
                                   (index,)).fetchone()
                summarized += int(row[0]) if row else 0
        except (errors.LockNotAvailable, errors.InsufficientPrivilege):
            continue
    return summarized


def window_filters(rule: AlertRule, now: datetime) -> Filters:
    """The rule's filters over [now - window, now): both ends let PostgreSQL leave out
    every other partition when it plans the statement."""
    return dataclasses.replace(rule.filters, since=now - timedelta(seconds=rule.window),
                               until=now)


def count_statement(rule: AlertRule, now: datetime) -> AnySelect:
    filters = window_filters(rule, now)
    if filters.words is None:
        return _counted(rule, messages, conditions(filters))
    # Words: the window's rows first (time and column indexes), then the words on those
    # rows only. The GIN index would find every row of the day with the words, which for
    # common words is far more than a short window holds (bench/alerts.py).
    columns = [messages.c.app_name, messages.c.message, *_group_column(rule)]
    rows = (select(*columns).where(*conditions(dataclasses.replace(filters, words=None)))
            .cte("window_rows").prefix_with("MATERIALIZED"))
    words = ClauseAdapter(rows).traverse(fulltext_match(filters.words))
    return _counted(rule, rows, [words])


def _group_column(rule: AlertRule) -> list[ColumnElement[Any]]:
    return [messages.c[GROUP_COLUMNS[rule.group_by]]] if rule.group_by else []


def _counted(rule: AlertRule, source: Any, where: list[ColumnElement[bool]]) -> AnySelect:
    if rule.group_by is None:
        return select(func.count()).select_from(source).where(*where)
    column = source.c[GROUP_COLUMNS[rule.group_by]]
    return select(column, func.count()).select_from(source).where(*where).group_by(column)


def count(conn: psycopg.Connection[Any], rule: AlertRule, now: datetime) -> dict[str, int]:
    """group -> rows matched in the window (without group_by: the one group "")."""
    query = compile_query(count_statement(rule, now))
    rows = conn.execute(query.sql, query.params).fetchall()
    if rule.group_by is None:
        return {NO_GROUP: int(rows[0][0])}
    return {NULL_GROUP if group is None else str(group): int(n) for group, n in rows}


def group_filters(rule: AlertRule, group: str, now: datetime) -> Filters:
    filters = window_filters(rule, now)
    if rule.group_by == "host" and group != NULL_GROUP:
        return dataclasses.replace(filters, hosts=(group,))
    if rule.group_by == "app" and group != NULL_GROUP:
        return dataclasses.replace(filters, apps=(group,))
    return filters


def samples(conn: psycopg.Connection[Any], rule: AlertRule, group: str, now: datetime
            ) -> list[dict[str, Any]]:
    """The newest few rows the rule counted for this group, as the API shows rows."""
    stmt = search_statement(group_filters(rule, group, now), MAX_SAMPLES)
    return [message_json(m) for m in fetch_messages(conn, stmt)]
