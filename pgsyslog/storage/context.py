"""The rows of the same host just before and after one row: "show context", /api/context.

Neighbours are taken in (received_at, id) order through the (hostname, received_at)
index: the scan starts at the row and reads only as many rows as asked for, in each
partition it touches (tests/test_query_plans.py::test_context_uses_the_host_index).
"""

from __future__ import annotations

from sqlalchemy import and_, or_, select

from pgsyslog.storage.queries import COLUMNS, AnySelect
from pgsyslog.storage.rows import StoredMessage
from pgsyslog.storage.schema import messages

DEFAULT_ROWS = 20
MAX_ROWS = 500  # rows on either side at most


def row_statement(row_id: int) -> AnySelect:
    c = messages.c
    return select(*(c[name] for name in COLUMNS)).where(c.id == row_id)


def neighbours_statement(row: StoredMessage, rows: int, *, before: bool) -> AnySelect:
    """The ``rows`` rows of the same hostname nearest to ``row`` on one side, nearest first.

    (received_at, id) < (t, n) is written out so that received_at bounds the index scan."""
    c = messages.c
    same_host = c.hostname.is_(None) if row.hostname is None else c.hostname == row.hostname
    t = row.received_at
    if before:
        side = and_(c.received_at <= t, or_(c.received_at < t, c.id < row.id))
        order = (c.received_at.desc(), c.id.desc())
    else:
        side = and_(c.received_at >= t, or_(c.received_at > t, c.id > row.id))
        order = (c.received_at.asc(), c.id.asc())
    return (select(*(c[name] for name in COLUMNS)).where(same_host, side)
            .order_by(*order).limit(rows))
