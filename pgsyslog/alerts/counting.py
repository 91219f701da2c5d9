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
from sqlalchemy import func, select

from pgsyslog.alerts.evaluate import NO_GROUP
from pgsyslog.alerts.payload import MAX_SAMPLES
from pgsyslog.alerts.rules import GROUP_COLUMNS, AlertRule
from pgsyslog.storage.filters import Filters
from pgsyslog.storage.queries import (
    AnySelect,
    compile_query,
    conditions,
    fetch_messages,
    search_statement,
)
from pgsyslog.storage.rows import message_json
from pgsyslog.storage.schema import messages

NULL_GROUP = "-"  # the group of rows whose host (or app) is null


def window_filters(rule: AlertRule, now: datetime) -> Filters:
    """The rule's filters over [now - window, now): both ends let PostgreSQL leave out
    every other partition when it plans the statement."""
    return dataclasses.replace(rule.filters, since=now - timedelta(seconds=rule.window),
                               until=now)


def count_statement(rule: AlertRule, now: datetime) -> AnySelect:
    where = conditions(window_filters(rule, now))
    if rule.group_by is None:
        return select(func.count()).select_from(messages).where(*where)
    column = messages.c[GROUP_COLUMNS[rule.group_by]]
    return select(column, func.count()).where(*where).group_by(column)


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
