"""Alert evaluation benchmark: 50 rules over a 5-minute window on a 5,000,000-row table.

Starts an embedded PostgreSQL in a temporary directory (or uses --dsn, into a new
database), migrates it, fills syslog.messages with generate_series spread over the last
24 hours (so about 17,000 rows fall in any 5 minutes), and times full evaluation rounds
(summarize new BRIN ranges, count every rule, write the states and history, claim
notifications) as serve runs them, after a first round. Prints the median of the rounds.
Target: under 1 s.

    python bench/alerts.py [--rows 5000000] [--rules 50] [--rounds 3] [--dsn DSN]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from pgsyslog.alerts.engine import evaluate_all
from pgsyslog.alerts.rules import AlertRule, parse_rules
from pgsyslog.storage import database, migrate, partitions

HOSTS = 200
APPS = 40
TEXTS = ("upstream timed out while reading response header", "connection refused",
         "no space left on device", "session opened for user root", "cache miss for key",
         "GET /index.html 200", "deadlock detected", "certificate expired")

FILL_SQL = """
INSERT INTO syslog.messages (received_at, facility, severity, hostname, app_name, message,
                             format, transport)
SELECT now() - (i::float8 / %(rows)s) * interval '24 hours', i %% 24, i %% 8,
       'host' || (i %% {hosts}), 'app' || (i %% {apps}),
       (%(texts)s::text[])[1 + i %% {texts}] || ' ' || i, 'rfc5424', 'tcp'
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS i
"""


def rule_tables(count: int) -> list[dict[str, Any]]:
    """A mix as operators write them: error rates per host, quiet senders, words, ranges."""
    kinds = [
        lambda i: {"app": f"app{i % APPS}", "severity": "err", "threshold": 100,
                   "group_by": "host"},
        lambda i: {"host": f"host{i % HOSTS}", "below": 1},
        lambda i: {"query": "timed out", "app": f"app{i % APPS}", "threshold": 10},
        lambda i: {"severity": "crit", "threshold": 500, "group_by": "app"},
        lambda i: {"host": [f"host{i % HOSTS}", f"host{(i + 1) % HOSTS}"],
                   "severity": "warning", "threshold": 50},
    ]
    return [{"name": f"rule {i}", "window": "5m", **kinds[i % len(kinds)](i)}
            for i in range(count)]


def fill(dsn: str, rows: int, chunk: int = 500_000) -> float:
    started = time.monotonic()
    sql = FILL_SQL.format(hosts=HOSTS, apps=APPS, texts=len(TEXTS))
    with database.connect(dsn, autocommit=True) as conn:
        partitions.ensure_partitions(conn, datetime.now(UTC).date(), 1)
        # Oldest rows first, so that the newest are stamped last, just before the rounds.
        for first in reversed(range(1, rows + 1, chunk)):
            last = min(rows, first + chunk - 1)
            conn.execute(sql, {"rows": rows, "texts": list(TEXTS), "first": first,
                               "last": last})
            print(f"  rows {first:,}-{last:,}", flush=True)
        conn.execute("ANALYZE syslog.messages")
    return time.monotonic() - started


def time_rounds(dsn: str, rules: tuple[AlertRule, ...], rounds: int, rows: int
                ) -> list[float]:
    """Each round after the rows of 30 s more at the table's average rate (as a live
    receiver would have written between rounds)."""
    times = []
    between = max(1, rows * 30 // 86_400)
    sql = FILL_SQL.format(hosts=HOSTS, apps=APPS, texts=len(TEXTS))
    for _ in range(rounds):
        with database.connect(dsn, autocommit=True) as conn:
            conn.execute(sql, {"rows": rows, "texts": list(TEXTS), "first": 1,
                               "last": between})
        started = time.monotonic()
        result = evaluate_all(dsn, rules, 0.0)  # interval 0: no rule counts as recent
        times.append(time.monotonic() - started)
        assert result.ran and len(result.evaluated) == len(rules)
    return times


def run(dsn: str, args: argparse.Namespace) -> None:
    migrate.upgrade(dsn)
    print(f"filling {args.rows:,} rows over the last 24 hours ...", flush=True)
    print(f"filled in {fill(dsn, args.rows):.0f} s")
    rules = parse_rules(rule_tables(args.rules))
    with database.connect(dsn) as conn:
        in_window = conn.execute("SELECT count(*) FROM syslog.messages WHERE received_at >= "
                                 "now() - interval '5 minutes'").fetchone()
    print(f"{in_window[0] if in_window else 0:,} rows in the 5-minute window")
    started = time.monotonic()
    evaluate_all(dsn, rules, 0.0)
    print(f"first round {time.monotonic() - started:.3f} s (it also summarizes the BRIN "
          "ranges of the whole fill, which autovacuum or the previous round does in service)")
    times = time_rounds(dsn, rules, args.rounds, args.rows)
    print("rounds: " + ", ".join(f"{t:.3f} s" for t in times))
    print(f"evaluation of {len(rules)} rules, 5-minute window, {args.rows:,} rows: "
          f"median {statistics.median(times):.3f} s (target < 1 s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--rules", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dsn", help="a PostgreSQL server to make a scratch database on")
    args = parser.parse_args()
    if args.dsn:
        name = f"bench_alerts_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(args.dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            run(make_conninfo(args.dsn, dbname=name), args)
        finally:
            with psycopg.connect(args.dsn, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        return
    with tempfile.TemporaryDirectory(prefix="pgsyslog-bench-alerts-") as tmp:
        embedded = database.EmbeddedDatabase(Path(tmp), stop_on_exit=True)
        try:
            run(embedded.start(), args)
        finally:
            embedded.stop()


if __name__ == "__main__":
    main()
