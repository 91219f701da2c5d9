"""Reading syslog.messages: the statements behind ``search``, ``tail`` and the HTTP API.

Statements are built with SQLAlchemy Core and compiled to psycopg's ``%(name)s`` form,
so that the same statement runs on a sync connection (the CLI) and an async one
(the HTTP API). The full-text condition is written exactly as the GIN index is declared,
``syslog.message_tsvector(app_name, message)``, or PostgreSQL would not use the index.

Rows are ordered by ``id``: it orders rows as they were written, is unique (a stable
cursor for paging), and has a btree index on every partition. With ``time=event`` they
are ordered by (event_time, id) instead, through the event_time index, and the cursor
holds both (tests/test_filters.py::test_event_time_pages_meet_without_gaps_or_repeats).
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any, TypeAlias

import psycopg
from psycopg.rows import class_row
from sqlalchemy import (
    ColumnClause,
    ColumnElement,
    Select,
    Text,
    and_,
    any_,
    cast,
    func,
    literal,
    literal_column,
    or_,
    select,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import ARRAY, CIDR

from pgsyslog.storage.filters import FilterError, Filters, Network
from pgsyslog.storage.rows import StoredMessage
from pgsyslog.storage.schema import RECORD_COLUMNS, messages

AnySelect: TypeAlias = "Select[*tuple[Any, ...]]"

_DIALECT = postgresql.psycopg.dialect()  # type: ignore[no-untyped-call]
_FULLTEXT_CONFIG: ColumnClause[Any] = literal_column("'simple'::regconfig")

# The longest page the HTTP API hands out; the CLI's --limit has no upper bound.
MAX_PAGE = 10_000
MAX_ID = 2**63 - 1  # ids are bigint


COLUMNS = ("id", *RECORD_COLUMNS)
assert tuple(f.name for f in dataclasses.fields(StoredMessage)) == COLUMNS


def fulltext_match(words: str) -> ColumnElement[bool]:
    """``words`` in websearch syntax ("a phrase", -not, or) against the GIN index."""
    tsvector = func.syslog.message_tsvector(messages.c.app_name, messages.c.message)
    return tsvector.op("@@")(func.websearch_to_tsquery(_FULLTEXT_CONFIG, words))


def _any_of(column: ColumnElement[Any], values: Sequence[str]) -> list[ColumnElement[bool]]:
    """``column`` equal to one of ``values`` (none given: no condition)."""
    if not values:
        return []
    if len(values) == 1:
        return [column == values[0]]
    return [column == any_(literal(list(values), ARRAY(Text)))]


def _in_networks(networks: Sequence[Network]) -> list[ColumnElement[bool]]:
    if not networks:
        return []
    source_ip = messages.c.source_ip
    return [or_(*(source_ip.op("<<=")(cast(literal(str(n)), CIDR)) for n in networks))]


def time_column(filters: Filters) -> ColumnElement[Any]:
    """The time since, until and the order go by: received_at, or event_time."""
    return messages.c.event_time if filters.time == "event" else messages.c.received_at


def _day_start(when: datetime) -> datetime:
    return datetime.combine(when.astimezone(UTC).date(), time(), UTC)


def _received_range_beside_words(filters: Filters) -> list[ColumnElement[bool]]:
    """received_at within since..until, for a search with words.

    PostgreSQL would AND the BRIN index's bitmap of received_at into the GIN index's;
    BRIN's bitmap is lossy (whole block ranges), so the result is too, and every row of
    those blocks is then checked against the words again: to_tsvector of each, 2 s over
    a day of 700,000 rows (bench/console.py). So whole UTC days bound the partitions
    scanned (the partition key, plainly), and the exact bounds are written on an
    expression no index serves: the words' exact bitmap does the work."""
    c = messages.c
    unindexed = c.received_at + literal_column("interval '0 s'")
    where: list[ColumnElement[bool]] = []
    if filters.since is not None:
        where += [c.received_at >= _day_start(filters.since), unindexed >= filters.since]
    if filters.until is not None:
        next_day = _day_start(filters.until) + timedelta(days=1)
        where += [c.received_at < next_day, unindexed < filters.until]
    return where


def _time_range(filters: Filters) -> list[ColumnElement[bool]]:
    if filters.words and filters.time == "received":
        return _received_range_beside_words(filters)
    column = time_column(filters)
    # By the message's own time, a row that states none has no place in the order.
    where: list[ColumnElement[bool]] = [column.is_not(None)] if filters.time == "event" else []
    if filters.since is not None:
        where.append(column >= filters.since)
    if filters.until is not None:
        where.append(column < filters.until)
    return where


def conditions(filters: Filters) -> list[ColumnElement[bool]]:
    c = messages.c
    where: list[ColumnElement[bool]] = []
    if filters.words:
        where.append(fulltext_match(filters.words))
    where += _any_of(c.hostname, filters.hosts) + _any_of(c.app_name, filters.apps)
    where += _any_of(c.procid, filters.procids) + _any_of(c.msgid, filters.msgids)
    where += _any_of(c.peer_name, filters.peers) + _in_networks(filters.sources)
    if filters.severity is not None:
        where.append(c.severity <= filters.severity)
    if filters.most_severe is not None:
        where.append(c.severity >= filters.most_severe)
    if filters.facility is not None:
        where.append(c.facility == filters.facility)
    return where + _time_range(filters)


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page ended: the id of its last row, and with time=event that row's
    event_time (the order is then event_time, id)."""

    id: int
    event_time: datetime | None = None


_EVENT_CURSOR = "event,"


def cursor_text(m: StoredMessage, filters: Filters) -> str:
    """The opaque cursor of the page ending at ``m``: the id for the received order,
    base64 of "event,<event_time>,<id>" for the event order."""
    if filters.time != "event" or m.event_time is None:
        return str(m.id)
    text = f"{_EVENT_CURSOR}{m.event_time.isoformat()},{m.id}"
    return base64.urlsafe_b64encode(text.encode()).decode("ascii").rstrip("=")


def _event_cursor(text: str) -> Cursor | None:
    try:
        decoded = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        kind, when, row_id = decoded.split(",")
        cursor = Cursor(int(row_id), datetime.fromisoformat(when))
    except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors too
        return None
    if kind + "," != _EVENT_CURSOR or cursor.event_time is None or cursor.event_time.tzinfo is None:
        return None
    return cursor if 0 <= cursor.id <= MAX_ID else None


def parse_cursor(text: str, filters: Filters) -> Cursor:
    """The ``next`` of a previous page of the same search; FilterError when it is not one."""
    value = text.strip()
    if filters.time == "event":
        cursor = _event_cursor(value)
    else:
        is_id = value.isascii() and value.isdigit() and len(value) <= len(str(MAX_ID))
        cursor = Cursor(int(value)) if is_id and int(value) <= MAX_ID else None
    if cursor is None:
        raise FilterError(f"{text!r} is not the next of a page with time={filters.time}",
                          "cursor")
    return cursor


def _after(cursor: Cursor, filters: Filters, newest_first: bool) -> ColumnElement[bool]:
    """Rows past ``cursor`` in the order of the search. (event_time, id) < (t, n) is
    written out so that the event_time index bounds the scan."""
    c = messages.c
    if cursor.event_time is None or filters.time != "event":
        return c.id < cursor.id if newest_first else c.id > cursor.id
    if newest_first:
        return and_(c.event_time <= cursor.event_time,
                    or_(c.event_time < cursor.event_time, c.id < cursor.id))
    return and_(c.event_time >= cursor.event_time,
                or_(c.event_time > cursor.event_time, c.id > cursor.id))


def order_by(filters: Filters, newest_first: bool) -> list[ColumnElement[Any]]:
    """Received: by id (commit order, unique). Event: by event_time, then id."""
    columns = [messages.c.event_time, messages.c.id] if filters.time == "event" else [
        messages.c.id]
    return [col.desc() if newest_first else col.asc() for col in columns]


def search_statement(filters: Filters, limit: int, *, newest_first: bool = True,
                     cursor: Cursor | None = None) -> AnySelect:
    """Matching rows in the order of ``filters.time``; ``cursor`` continues after the last
    row of a previous page."""
    c = messages.c
    stmt = select(*(c[name] for name in COLUMNS)).where(*conditions(filters))
    if cursor is not None:
        stmt = stmt.where(_after(cursor, filters, newest_first))
    return stmt.order_by(*order_by(filters, newest_first)).limit(limit)


@dataclass(frozen=True, slots=True)
class Compiled:
    """A compiled statement: SQL text with %(name)s placeholders and its parameters."""

    sql: str
    params: dict[str, Any]


def compile_query(stmt: AnySelect) -> Compiled:
    compiled = stmt.compile(dialect=_DIALECT)
    return Compiled(str(compiled), dict(compiled.params))


def fetch_messages(conn: psycopg.Connection[Any], stmt: AnySelect) -> list[StoredMessage]:
    query = compile_query(stmt)
    with conn.cursor(row_factory=class_row(StoredMessage)) as cur:
        return cur.execute(query.sql, query.params).fetchall()


async def fetch_messages_async(conn: psycopg.AsyncConnection[Any], stmt: AnySelect
                               ) -> list[StoredMessage]:
    query = compile_query(stmt)
    async with conn.cursor(row_factory=class_row(StoredMessage)) as cur:
        await cur.execute(query.sql, query.params)
        return await cur.fetchall()


def fetch_ids(conn: psycopg.Connection[Any], stmt: AnySelect) -> list[int]:
    query = compile_query(stmt)
    return [row[0] for row in conn.execute(query.sql, query.params)]


async def fetch_ids_async(conn: psycopg.AsyncConnection[Any], stmt: AnySelect) -> list[int]:
    query = compile_query(stmt)
    cur = await conn.execute(query.sql, query.params)
    return [row[0] for row in await cur.fetchall()]
