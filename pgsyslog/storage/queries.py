"""Reading syslog.messages: the statements behind ``search``, ``tail`` and the HTTP API.

Statements are built with SQLAlchemy Core and compiled to psycopg's ``%(name)s`` form,
so that the same statement runs on a sync connection (the CLI) and an async one
(the HTTP API). The full-text condition is written exactly as the GIN index is declared,
``syslog.message_tsvector(app_name, message)``, or PostgreSQL would not use the index.

Rows are ordered by ``id``: it orders rows as they were written, is unique (a stable
cursor for paging), and has a btree index on every partition.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import psycopg
from psycopg.rows import class_row
from sqlalchemy import ColumnClause, ColumnElement, Select, func, literal_column, select
from sqlalchemy.dialects import postgresql

from pgsyslog.storage.filters import Filters
from pgsyslog.storage.rows import StoredMessage
from pgsyslog.storage.schema import RECORD_COLUMNS, messages

AnySelect: TypeAlias = "Select[*tuple[Any, ...]]"

_DIALECT = postgresql.psycopg.dialect()  # type: ignore[no-untyped-call]
_FULLTEXT_CONFIG: ColumnClause[Any] = literal_column("'simple'::regconfig")

# The longest page the HTTP API hands out; the CLI's --limit has no upper bound.
MAX_PAGE = 10_000


COLUMNS = ("id", *RECORD_COLUMNS)
assert tuple(f.name for f in dataclasses.fields(StoredMessage)) == COLUMNS


def fulltext_match(words: str) -> ColumnElement[bool]:
    """``words`` in websearch syntax ("a phrase", -not, or) against the GIN index."""
    tsvector = func.syslog.message_tsvector(messages.c.app_name, messages.c.message)
    return tsvector.op("@@")(func.websearch_to_tsquery(_FULLTEXT_CONFIG, words))


def conditions(filters: Filters) -> list[ColumnElement[bool]]:
    c = messages.c
    where: list[ColumnElement[bool]] = []
    if filters.words:
        where.append(fulltext_match(filters.words))
    if filters.host is not None:
        where.append(c.hostname == filters.host)
    if filters.app is not None:
        where.append(c.app_name == filters.app)
    if filters.severity is not None:
        where.append(c.severity <= filters.severity)
    if filters.facility is not None:
        where.append(c.facility == filters.facility)
    if filters.since is not None:
        where.append(c.received_at >= filters.since)
    if filters.until is not None:
        where.append(c.received_at < filters.until)
    return where


def search_statement(filters: Filters, limit: int, *, newest_first: bool = True,
                     cursor: int | None = None) -> AnySelect:
    """Matching rows in id order; ``cursor`` continues after the id of a previous page."""
    c = messages.c
    stmt = select(*(c[name] for name in COLUMNS)).where(*conditions(filters))
    if cursor is not None:
        stmt = stmt.where(c.id < cursor if newest_first else c.id > cursor)
    order = c.id.desc() if newest_first else c.id.asc()
    return stmt.order_by(order).limit(limit)


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


def split_page(rows: Sequence[StoredMessage], limit: int
               ) -> tuple[Sequence[StoredMessage], str | None]:
    """Rows fetched with ``limit + 1``: the page, and the cursor of the next one if any."""
    if len(rows) <= limit:
        return rows, None
    page = rows[:limit]
    return page, str(page[-1].id)
