"""Index benchmark: what each index of syslog.messages costs PostgreSQL per row.

On one PostgreSQL 15 of the distribution (as bench/peers.py), the same N rows (received
once by ``pgsyslog serve``, kept as binary COPY data) are COPYed over 2 connections into a
fresh database per run, migrated to the head revision and then changed by one variant:
one index dropped, all dropped, the GIN without fastupdate, other GIN settings, or the
other variants named in VARIANTS. Each run ends by merging the GIN pending lists
(gin_clean_pending_list), counted in its time and CPU: deferred work is not saved work.
Variants run interleaved (each round starts one later); the medians of the PostgreSQL
CPU per row and the rate come last, with each variant's cost against ``head``.

    python bench/indexes.py [--count 200000] [--runs 3] [--only head,-gin,...]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import peers  # noqa: E402
import psycopg  # noqa: E402

from pg15 import Pg15, running_pg15, unavailable_reason  # noqa: E402
from pgsyslog.storage.schema import RECORD_COLUMNS  # noqa: E402


def drop(*names: str) -> Callable[[psycopg.Connection[tuple[object, ...]]], None]:
    def change(conn: psycopg.Connection[tuple[object, ...]]) -> None:
        for name in names:
            conn.execute(f"DROP INDEX IF EXISTS syslog.{name}")
    return change


def per_partition_index(template: str, index: str
                        ) -> Callable[[psycopg.Connection[tuple[object, ...]]], None]:
    """Run ``template`` (with {index}) for each partition's copy of a partitioned index."""
    def change(conn: psycopg.Connection[tuple[object, ...]]) -> None:
        rows = conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = %s::regclass", (f"syslog.{index}",)).fetchall()
        for (name,) in rows:
            conn.execute(template.format(index=f"syslog.{name}"))
    return change


def sql(*statements: str) -> Callable[[psycopg.Connection[tuple[object, ...]]], None]:
    def change(conn: psycopg.Connection[tuple[object, ...]]) -> None:
        for statement in statements:
            conn.execute(statement)
    return change


def database_settings(**settings: str
                      ) -> Callable[[psycopg.Connection[tuple[object, ...]]], None]:
    """Settings every later session of the database starts with (the COPY connections)."""
    def change(conn: psycopg.Connection[tuple[object, ...]]) -> None:
        name = conn.info.dbname
        for key, value in settings.items():
            conn.execute(f"ALTER DATABASE \"{name}\" SET {key} = '{value}'")
    return change


SECONDARY = ("messages_received_at_brin", "messages_hostname_received_at",
             "messages_app_name_received_at", "messages_severity", "messages_id",
             "messages_event_time", "messages_fulltext")

VARIANTS: dict[str, Callable[[psycopg.Connection[tuple[object, ...]]], None] | None] = {
    "head": None,
    "none": drop(*SECONDARY),
    "-gin": drop("messages_fulltext"),
    "-severity": drop("messages_severity"),
    "-id": drop("messages_id"),
    "-event_time": drop("messages_event_time"),
    "-hostname": drop("messages_hostname_received_at"),
    "-app_name": drop("messages_app_name_received_at"),
    "-brin": drop("messages_received_at_brin"),
    "workmem-64MB": database_settings(work_mem="64MB"),
    "pending-32MB": database_settings(gin_pending_list_limit="32MB", work_mem="64MB"),
    "pending-128MB": database_settings(gin_pending_list_limit="128MB", work_mem="256MB"),
    "gin-nofastupdate": per_partition_index("ALTER INDEX {index} SET (fastupdate = off)",
                                            "messages_fulltext"),
    "gin-message-only": sql(
        "DROP INDEX syslog.messages_fulltext",
        "CREATE INDEX messages_fulltext ON syslog.messages USING gin "
        "(to_tsvector('simple'::regconfig, left(message, 65536)))"),
    "stored-tsvector": sql(
        "DROP INDEX syslog.messages_fulltext",
        "ALTER TABLE syslog.messages ADD COLUMN words tsvector GENERATED ALWAYS AS "
        "(syslog.message_tsvector(app_name, message)) STORED",
        "CREATE INDEX messages_words ON syslog.messages USING gin (words)"),
}


def run_variant(pg: Pg15, name: str, payloads: peers.Payloads) -> peers.Run:
    change = VARIANTS[name]
    dsn = peers.fresh_database(pg)
    if change is not None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            change(conn)
    run = peers.copy_into(pg, dsn, name, payloads, 2)
    # What a pending list still holds is work deferred, not saved: merge it into the
    # index and count that too.
    cleanup_cpu: list[float] = []
    with psycopg.connect(dsn, autocommit=True) as conn, peers.postgres_cpu(pg, cleanup_cpu):
        started = time.monotonic()
        conn.execute("SELECT gin_clean_pending_list(c.oid) FROM pg_class c JOIN pg_am a "
                     "ON a.oid = c.relam WHERE a.amname = 'gin' AND c.relkind = 'i' "
                     "AND c.relnamespace = 'syslog'::regnamespace")
        cleanup_seconds = time.monotonic() - started
    peers.drop_database(pg, dsn)
    return dataclasses.replace(run, seconds=run.seconds + cleanup_seconds,
                               postgres_cpu=run.postgres_cpu + cleanup_cpu[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default=",".join(VARIANTS),
                        help="comma-separated variants (default: all)")
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant(s): {', '.join(unknown)}; known: "
                         f"{', '.join(VARIANTS)}")
    reason = unavailable_reason()
    if reason:
        raise SystemExit(f"cannot run: {reason}")
    with running_pg15(with_database=False) as pg, \
            tempfile.TemporaryDirectory(prefix="pgsyslog-indexes-") as tmp:
        [payloads] = peers.capture_payloads(pg, args.count, Path(tmp), [RECORD_COLUMNS])
        print(f"{payloads.rows:,} rows a run, {args.runs} rounds, 2 COPY connections",
              flush=True)
        results: dict[str, list[peers.Run]] = {}
        for round_no in range(1, args.runs + 1):
            shift = (round_no - 1) % len(names)
            for name in names[shift:] + names[:shift]:
                run = run_variant(pg, name, payloads)
                results.setdefault(name, []).append(run)
                peers.print_run(round_no, run, payloads.rows)
        print("\nmedians (postgres us/row; against head):")
        cost = {n: statistics.median(r.per_row_us(r.postgres_cpu) for r in runs)
                for n, runs in results.items()}
        rate = {n: statistics.median(r.rate for r in runs) for n, runs in results.items()}
        base = cost.get("head")
        for n in names:
            versus = f"{cost[n] / base:5.2f}x  {cost[n] - base:+6.1f} us" if base else ""
            print(f"  {n:18s} {rate[n]:9,.0f} rows/s  {cost[n]:6.1f} us/row  {versus}")


if __name__ == "__main__":
    main()
