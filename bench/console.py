"""Console benchmark: the first page, the histogram and the facets of a one-word search
over 24 hours, on a table of 2,000,000 rows spread over 3 days.

Fills syslog.messages with generate_series (realistic hosts, apps, severities and log
lines made from templates), ANALYZEs it, then runs each query as the API does (the same
storage statements, on one connection) RUNS times and prints the median in ms against
the 300 ms goal. Without --dsn it uses a fresh embedded PostgreSQL in a temporary
directory; with --dsn it creates and drops a database of its own on that server.

    python bench/console.py [--rows 2000000] [--word failed] [--dsn postgresql://...]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from pgsyslog.storage import database, migrate, partitions
from pgsyslog.storage.facets import facets_statement, tally
from pgsyslog.storage.filters import Filters, parse_filters
from pgsyslog.storage.histogram import filled, histogram_statement, ranged
from pgsyslog.storage.queries import compile_query, fetch_messages, search_statement

GOAL_MS = 300
RUNS = 5
DAYS = 3
PAGE = 100
CHUNKS = 12  # the fill runs in this many statements, so that progress shows

# Log lines of the kinds a syslog receiver sees; the {} parts vary with the row number.
TEMPLATES = [
    "GET /api/v1/orders/{n} HTTP/1.1 200 {m} \"-\" \"curl/8.5\"",
    "POST /login HTTP/1.1 302 0 \"-\" \"Mozilla/5.0\"",
    "GET /static/app.{n}.js HTTP/1.1 304 0",
    "upstream timed out (110: Connection timed out) while reading response header from "
    "upstream, client: 10.{a}.{b}.7",
    "Accepted publickey for deploy from 10.{a}.{b}.9 port {m} ssh2",
    "Failed password for invalid user admin{a} from 203.0.113.{b} port {m} ssh2",
    "pam_unix(sshd:session): session opened for user deploy by (uid=0)",
    "checkpoint starting: time",
    "checkpoint complete: wrote {a} buffers; write={b}.1 s, sync=0.01 s",
    "duration: {m}.{a} ms  statement: SELECT * FROM orders WHERE id = {n}",
    "could not receive data from client: Connection reset by peer",
    "eth0: link up, 1000 Mbps, full duplex",
    "nf_conntrack: table full, dropping packet",
    "(root) CMD (/usr/local/bin/backup --incremental)",
    "DHCPACK on 10.{a}.{b}.20 to 52:54:00:{a}:{b}:01 via eth1",
    "Started Session {n} of user deploy.",
    "backend web{a} is DOWN, reason: Layer4 connection problem, check duration: {m}ms",
    "payment {n} charged: 42.{a} EUR",
    "payment {n} failed: card declined",
    "disk /var usage {a}% (warning above 85%)",
]
HOSTS = 60
APPS = ["nginx", "nginx", "nginx", "sshd", "sshd", "postgres", "postgres", "postgres",
        "postgres", "postgres", "kernel", "kernel", "kernel", "cron", "dhcpd", "systemd",
        "haproxy", "billing", "billing", "monitor"]  # the app of each template


def _template_sql() -> str:
    def sql_literal(t: str) -> str:
        text = t.replace("'", "''").replace("%", "%%")  # %% is psycopg's literal %
        for name, expr in (("{n}", "mod(i, 100000)"), ("{m}", "mod(i, 65000)"),
                           ("{a}", "mod(i, 250)"), ("{b}", "mod(i / 250, 250)")):
            text = text.replace(name, f"' || {expr} || '")
        return f"'{text}'"
    cases = " ".join(f"WHEN {k} THEN {sql_literal(t)}" for k, t in enumerate(TEMPLATES))
    return f"CASE t {cases} END"


def fill_sql(rows: int) -> str:
    """Rows first..last of ``rows``, received evenly over DAYS days before %(now)s, in
    the order of their ids (as the receiver writes them)."""
    apps = ", ".join(f"'{a}'" for a in APPS)
    span_ms = DAYS * 86_400_000
    return f"""
    INSERT INTO syslog.messages (received_at, event_time, facility, severity, hostname,
                                 app_name, procid, message, format, transport, source_ip)
    SELECT %(now)s - (({rows} - i) * {span_ms} / {rows}) * interval '1 ms',
           %(now)s - (({rows} - i) * {span_ms} / {rows}) * interval '1 ms'
               - mod(i, 5) * interval '1 s',
           CASE WHEN t IN (4, 5, 6) THEN 10 ELSE 3 END,
           CASE WHEN t IN (5, 10, 16, 18) THEN 3 WHEN t IN (3, 12, 19) THEN 4
                WHEN mod(i, 9973) = 0 THEN 2 WHEN t IN (7, 8, 11) THEN 5 ELSE 6 END,
           'host' || lpad(mod(i * 31, {HOSTS})::text, 2, '0') || '.example.net',
           (ARRAY[{apps}])[t + 1],
           (1000 + mod(i, 30000))::text,
           {_template_sql()},
           'rfc5424', 'tcp', ('10.1.' || mod(i * 31, {HOSTS}) || '.1')::inet
    FROM (SELECT i, mod(i * 7 + i / 13, {len(TEMPLATES)}) AS t
          FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS i) AS g
    """


def fill(dsn: str, rows: int, now: datetime) -> None:
    with database.connect(dsn, autocommit=True) as conn:
        for back in range(DAYS + 1):
            partitions.create_partition(conn, (now - timedelta(days=back)).date())
        partitions.ensure_partitions(conn, now.date(), 1)
        started = time.monotonic()
        step = -(-rows // CHUNKS)
        for first in range(1, rows + 1, step):
            last = min(rows, first + step - 1)
            conn.execute(fill_sql(rows), {"now": now, "first": first, "last": last})
            print(f"  filled {last:,} rows in {time.monotonic() - started:.0f} s", flush=True)
        conn.execute("ANALYZE syslog.messages")
        conn.execute("CHECKPOINT")  # the timings should not pay for the fill's writes
        print(f"  analyzed in {time.monotonic() - started:.0f} s", flush=True)


def timed(run: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = run()
    return (time.perf_counter() - started) * 1000, result


def measure(name: str, run: Callable[[], Any], describe: Callable[[Any], str]) -> float:
    timings = []
    result: Any = None
    for _ in range(RUNS):
        ms, result = timed(run)
        timings.append(ms)
    median = statistics.median(timings)
    verdict = "met" if median < GOAL_MS else "NOT met"
    print(f"{name:<34} median {median:7.1f} ms  (runs: "
          f"{', '.join(f'{t:.0f}' for t in timings)})  {describe(result)}  "
          f"goal < {GOAL_MS} ms: {verdict}", flush=True)
    return median


def explain(conn: psycopg.Connection[Any], filters: Filters, now: datetime) -> None:
    bounded, interval = ranged(filters, now, None)
    for name, stmt in (("first page", search_statement(filters, PAGE + 1)),
                       ("histogram", histogram_statement(bounded, interval)),
                       ("facets", facets_statement(filters, 10))):
        query = compile_query(stmt)
        plan = conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + query.sql, query.params)
        print(f"-- {name}\n" + "\n".join(row[0] for row in plan), flush=True)


def run_queries(conn: psycopg.Connection[Any], filters: Filters, now: datetime) -> None:
    def page() -> Any:
        return fetch_messages(conn, search_statement(filters, PAGE + 1))

    def histogram() -> Any:
        bounded, interval = ranged(filters, now, None)
        query = compile_query(histogram_statement(bounded, interval))
        return filled(conn.execute(query.sql, query.params).fetchall(), bounded, interval)

    def facets() -> Any:
        query = compile_query(facets_statement(filters, 10))
        return tally(conn.execute(query.sql, query.params).fetchall())

    measure("first page (100 rows)", page, lambda rows: f"{len(rows[:PAGE])} rows")
    measure("histogram", histogram,
            lambda h: f"{len(h.buckets)} {h.interval} buckets, {h.total:,} rows")
    measure("facets (top 10 each)", facets,
            lambda f: f"{len(f.host)} hosts, {len(f.app)} apps, {len(f.severity)} severities")


@contextmanager
def bench_database(dsn: str | None) -> Iterator[str]:
    """A new database on the server of --dsn, or an embedded server of our own."""
    if dsn is None:
        with tempfile.TemporaryDirectory(prefix="pgsyslog-bench-") as tmp:
            embedded = database.EmbeddedDatabase(Path(tmp), stop_on_exit=True)
            try:
                yield embedded.start()
            finally:
                embedded.stop()
        return
    name = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_conninfo(dsn, dbname=name)
    finally:
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--word", default="failed", help="the one-word query")
    parser.add_argument("--dsn", help="a PostgreSQL server to create the bench database on")
    parser.add_argument("--explain", action="store_true",
                        help="print EXPLAIN ANALYZE of the one-word queries too")
    args = parser.parse_args()
    now = datetime.now(UTC)
    with bench_database(args.dsn) as dsn:
        migrate.upgrade(dsn)
        print(f"filling {args.rows:,} rows over {DAYS} days", flush=True)
        fill(dsn, args.rows, now)
        with database.connect(dsn, autocommit=True) as conn:
            matching = parse_filters({"q": [args.word], "since": ["24h"]}, now, UTC)
            count = conn.execute(
                "SELECT count(*) FROM syslog.messages WHERE received_at >= %s AND "
                "syslog.message_tsvector(app_name, message) @@ "
                "websearch_to_tsquery('simple', %s)",
                (now - timedelta(hours=24), args.word)).fetchone()
            print(f"\nthe word {args.word!r} over the last 24 h: {count[0] if count else 0:,} "
                  f"rows; median of {RUNS} runs each (a loaded 2-core machine):", flush=True)
            run_queries(conn, matching, now)
            if args.explain:
                explain(conn, matching, now)
            print("\nfor comparison, no words over 24 h (every row of a day read):")
            run_queries(conn, parse_filters({"since": ["24h"]}, now, UTC), now)
    return 0


if __name__ == "__main__":
    sys.exit(main())
