"""Every query shape the CLI, the API and the console run reads the message partitions
through an index: EXPLAIN on 150,000 rows over two days shows no Seq Scan of a partition
that holds rows (an empty partition costs nothing to scan, and PostgreSQL knows it)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from conftest import create_database, drop_database

from pgsyslog.storage import database, migrate, partitions
from pgsyslog.storage.context import neighbours_statement, row_statement
from pgsyslog.storage.facets import facets_statement
from pgsyslog.storage.filters import Filters, parse_filters
from pgsyslog.storage.histogram import histogram_statement, ranged
from pgsyslog.storage.queries import AnySelect, compile_query, fetch_messages, search_statement

ROWS = 150_000
STEP_MS = 1_000  # between rows: 150,000 rows span about 42 hours
NOW = datetime.now(UTC)

# Realistic enough for the planner: ids in the order of received_at (as the receiver
# writes), 200 hosts, 8 apps, mostly info, a few errors, words from a vocabulary of 5,000
# and one rare word.
FILL = f"""
INSERT INTO syslog.messages (received_at, event_time, facility, severity, hostname,
                             app_name, procid, message, format, transport, source_ip)
SELECT %(now)s - ({ROWS} - i) * interval '{STEP_MS} ms',
       %(now)s - ({ROWS} - i) * interval '{STEP_MS} ms' - (i %% 90) * interval '1 s',
       1,
       CASE WHEN i %% 997 = 0 THEN 2 WHEN i %% 101 = 0 THEN 3 WHEN i %% 23 = 0 THEN 4
            WHEN i %% 7 = 0 THEN 5 ELSE 6 END,
       'host' || (i %% 200),
       (ARRAY['nginx', 'sshd', 'postgres', 'kernel', 'cron', 'haproxy', 'systemd',
              'dhcpd'])[1 + (i / 200) %% 8],
       (i %% 30000)::text,
       'w' || (i * 7919 %% 5000) || ' w' || (i * 104729 %% 5000) || ' w' || (i %% 4999)
           || CASE WHEN i %% 5000 = 0 THEN ' needle' ELSE '' END,
       'rfc5424', 'tcp', ('10.0.' || (i %% 200) || '.1')::inet
FROM generate_series(1::bigint, {ROWS}) AS i
"""


@pytest.fixture(scope="module")
def big(admin_dsn: str) -> Iterator[str]:
    """One database for the module: filling it is the slow part, and nothing writes."""
    dsn = create_database(admin_dsn)
    migrate.upgrade(dsn)
    with database.connect(dsn, autocommit=True) as conn:
        partitions.ensure_partitions(conn, NOW.date(), 1)
        oldest = NOW - timedelta(milliseconds=STEP_MS * ROWS)
        partitions.create_partition(conn, oldest.date())
        partitions.create_partition(conn, (oldest - timedelta(days=1)).date())
        conn.execute(FILL, {"now": NOW})
        conn.execute("ANALYZE syslog.messages")
    yield dsn
    drop_database(admin_dsn, dsn)


def plan_of(dsn: str, stmt: AnySelect) -> str:
    query = compile_query(stmt)
    with database.connect(dsn) as conn:
        return "\n".join(r[0] for r in conn.execute("EXPLAIN " + query.sql, query.params))


def partitions_with_rows(dsn: str) -> set[str]:
    with database.connect(dsn) as conn:
        return {p.name for p in partitions.list_partitions(conn) if p.row_estimate > 0}


def assert_indexed(dsn: str, stmt: AnySelect) -> str:
    plan = plan_of(dsn, stmt)
    scanned = set(re.findall(r"Seq Scan on (messages_p\d{8})", plan))
    assert not scanned & partitions_with_rows(dsn), plan
    assert re.search(r"Index (Only )?Scan|Bitmap Index Scan", plan), plan
    return plan


def filters(**given: str | list[str]) -> Filters:
    values = {k: v if isinstance(v, list) else [v] for k, v in given.items()}
    return parse_filters(values, NOW, UTC)


SEARCHES = {
    "words": filters(q="needle"),
    "words over 24 h": filters(q="w17", since="24h"),
    "host": filters(host="host17"),
    "hosts": filters(host=["host17", "host18"], since="24h"),
    "app": filters(app="dhcpd", since="6h"),
    "severity range": filters(severity="crit..err"),
    "severity range and word": filters(severity="alert..crit", q="w17"),
    "source": filters(source="10.0.17.0/24", host="host17"),
    "event time": filters(time="event", since="2h"),
    "event time and host": filters(time="event", host="host5"),
}


@pytest.mark.parametrize("name", list(SEARCHES))
def test_the_first_page_of_a_search_uses_an_index(big: str, name: str) -> None:
    assert_indexed(big, search_statement(SEARCHES[name], 101))


def test_event_time_order_reads_the_event_time_index(big: str) -> None:
    plan = assert_indexed(big, search_statement(filters(time="event"), 101))
    assert re.search(r"Index Scan Backward using messages_p\d{8}_event_time_idx", plan), plan


def test_the_histogram_of_a_word_uses_indexes(big: str) -> None:
    for given in (filters(q="w17"), filters(q="needle", host="host0"),
                  filters(host="host3", severity="err"), filters(q="w17", time="event")):
        bounded, interval = ranged(given, NOW, None)
        assert_indexed(big, histogram_statement(bounded, interval))


def test_facets_of_a_word_use_indexes(big: str) -> None:
    for given in (filters(q="w17", since="24h"), filters(q="needle", since="3d"),
                  filters(app="cron", since="1h")):
        assert_indexed(big, facets_statement(given, 10))


def test_context_uses_the_host_index(big: str) -> None:
    with database.connect(big) as conn:
        row = fetch_messages(conn, search_statement(filters(host="host42", since="20h"), 1))[0]
    assert assert_indexed(big, row_statement(row.id))
    for before in (True, False):
        plan = assert_indexed(big, neighbours_statement(row, 20, before=before))
        assert "hostname_received_at" in plan, plan


def test_the_table_holds_what_the_plans_were_made_for(big: str) -> None:
    with psycopg.connect(big) as conn:
        count: Any = conn.execute("SELECT count(*), count(DISTINCT hostname), "
                                  "count(*) FILTER (WHERE message LIKE '%%needle%%') "
                                  "FROM syslog.messages").fetchone()
    assert tuple(count) == (ROWS, 200, ROWS // 5000)
    assert len(partitions_with_rows(big)) >= 2
