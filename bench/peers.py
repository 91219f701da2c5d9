"""Peer benchmark: pgsyslog against rsyslog+ompgsql and the COPY ceiling, on one PostgreSQL.

One PostgreSQL 15 of the distribution (pg_ctl, in a temporary directory) holds every run.
Each round runs, in this order, each into a fresh database migrated by pgsyslog:

- ``pgsyslog``: ``pgsyslog serve`` (its default 2 writers) receiving N RFC 5424 messages
  over one TCP connection;
- ``rsyslog``: rsyslogd imtcp -> ompgsql (2 worker threads, 5,000-row transactions)
  receiving the same bytes, inserting the same columns into the same table;
- ``copy1`` / ``copy2``: the COPY ceiling of the current schema: the same rows, built
  before the clock starts, sent as binary COPY over 1 and over 2 connections;
- ``copy0001``: the same over 2 connections into the index set of the first migration.

Each run reports rows per second (first byte sent to last row committed), the CPU the
receiving daemon used per message and the CPU PostgreSQL used per row (both read from
/proc). The medians over the rounds and the ratios come last.

    python bench/peers.py [--count 300000] [--runs 3]

Needs root (PostgreSQL runs as the postgres user; rsyslog, rsyslog-pgsql and
postgresql-15 are installed with apt-get when missing).
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "tests"))
sys.path.insert(0, str(BENCH))

import ingest  # noqa: E402
import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402
from rsyslogd import PLUGINS, RSYSLOGD, start_rsyslogd  # noqa: E402
from system_packages import missing_reason  # noqa: E402

from helpers import free_port, start_server  # noqa: E402
from pg15 import Pg15, running_pg15, unavailable_reason  # noqa: E402
from pgsyslog.storage import migrate  # noqa: E402
from pgsyslog.storage.partitions import ensure_partitions  # noqa: E402
from pgsyslog.storage.schema import RECORD_COLUMNS  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
OMPGSQL = f"{PLUGINS}/ompgsql.so"
RSYSLOG_WORKERS = 2
RSYSLOG_BATCH = 5_000
FIRST_SCHEMA = "0001"
# The columns rsyslog fills; structured_data, parse_error and raw stay null for these
# messages in pgsyslog too (their SD is "-", and they parse without error).
RSYSLOG_COLUMNS = ("received_at", "event_time", "facility", "severity", "hostname",
                   "app_name", "procid", "message", "format", "transport", "source_ip")

RSYSLOG_CONF = """\
global(workDirectory="{work}")
module(load="imtcp" maxSessions="10")
module(load="ompgsql")
main_queue(queue.type="LinkedList" queue.size="1000000")
template(name="pgsyslog_row" type="list" option.stdsql="on") {{
  constant(value="INSERT INTO syslog.messages ({columns}) VALUES ('")
  property(name="timegenerated" dateFormat="rfc3339") constant(value="','")
  property(name="timereported" dateFormat="rfc3339") constant(value="',")
  property(name="syslogfacility") constant(value=",")
  property(name="syslogseverity") constant(value=",'")
  property(name="hostname") constant(value="','")
  property(name="app-name") constant(value="','")
  property(name="procid") constant(value="','")
  property(name="msg") constant(value="','rfc5424','tcp','")
  property(name="fromhost-ip") constant(value="')")
}}
ruleset(name="to_pgsql") {{
  action(type="ompgsql" conninfo="{conninfo}" template="pgsyslog_row"
         queue.type="LinkedList" queue.size="1000000"
         queue.workerThreads="{workers}" queue.dequeueBatchSize="{batch}")
}}
input(type="imtcp" address="127.0.0.1" port="{port}" ruleset="to_pgsql")
"""


@dataclass(frozen=True)
class Run:
    name: str
    rows: int
    seconds: float
    daemon_cpu: float  # seconds of CPU of the receiving daemon (0 for COPY)
    postgres_cpu: float  # seconds of CPU of PostgreSQL's processes

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    def per_row_us(self, cpu: float) -> float:
        return cpu / self.rows * 1e6 if self.rows else 0.0


# ----------------------------------------------------------------------------- /proc


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def process_tree_cpu(pids: list[int]) -> dict[int, float]:
    return {pid: cpu_seconds(pid) for pid in pids}


@contextmanager
def postgres_cpu(pg: Pg15, into: list[float]) -> Iterator[None]:
    """CPU seconds PostgreSQL's processes spent in the block (read before they exit)."""
    before = process_tree_cpu(pg.processes())
    yield
    after = process_tree_cpu(pg.processes())
    into.append(sum(after[pid] - before.get(pid, 0.0) for pid in after))


# ----------------------------------------------------------------------------- databases


def fresh_database(pg: Pg15, revision: str = "head") -> str:
    dsn = pg.create_database(migrated=False)
    migrate.upgrade(dsn, revision)
    with psycopg.connect(dsn, autocommit=True) as conn:
        ensure_partitions(conn, datetime.now(UTC).date(), 1)
    return dsn


def drop_database(pg: Pg15, dsn: str) -> None:
    name = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
    with psycopg.connect(pg.admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(str(name))))


def count_rows(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM syslog.messages").fetchone()
    return int(row[0]) if row else 0


def wait_rows(dsn: str, expected: int, started: float) -> tuple[int, float]:
    """Poll until every row is there, or nothing new came for 5 s: (rows, seconds)."""
    last, last_change = -1, time.monotonic()
    while True:
        n = count_rows(dsn)
        now = time.monotonic()
        if n != last:
            last, last_change = n, now
        if n >= expected or now - last_change > 5.0:
            return last, last_change - started
        time.sleep(ingest.POLL_S)


# ----------------------------------------------------------------------------- senders


def send(port: int, count: int, tag: str) -> float:
    """Send the messages from another process; return the monotonic time of the first byte."""
    started: multiprocessing.Queue[float] = multiprocessing.Queue()
    sender = multiprocessing.Process(target=ingest.send_tcp, args=(started, port, count, tag))
    sender.start()
    first_byte = started.get(timeout=120)
    threading.Thread(target=sender.join, daemon=True).start()
    return first_byte


def run_pgsyslog(pg: Pg15, count: int, work: Path) -> Run:
    dsn = fresh_database(pg)
    server = start_server(["--dsn", dsn, "--tcp", "127.0.0.1:0", "--http", "off",
                           "--data-dir", str(work / "pgsyslog"), "--log-level", "WARNING"])
    pg_cpu: list[float] = []
    try:
        daemon_before = cpu_seconds(server.proc.pid)
        with postgres_cpu(pg, pg_cpu):
            started = send(server.port("tcp"), count, "pgsyslog")
            rows, seconds = wait_rows(dsn, count, started)
            daemon = cpu_seconds(server.proc.pid) - daemon_before
    finally:
        server.stop()
        drop_database(pg, dsn)
    return Run("pgsyslog", rows, seconds, daemon, pg_cpu[0])


def rsyslog_conf(work: Path, dsn: str, port: int) -> Path:
    conf = work / "rsyslog.conf"
    conf.write_text(RSYSLOG_CONF.format(
        work=work, columns=", ".join(RSYSLOG_COLUMNS), conninfo=as_uri(dsn), port=port,
        workers=RSYSLOG_WORKERS, batch=RSYSLOG_BATCH))
    return conf


def as_uri(dsn: str) -> str:
    """rsyslog takes no spaces in a parameter: the keyword DSN as a postgresql:// URI."""
    parts = psycopg.conninfo.conninfo_to_dict(dsn)
    return (f"postgresql://{parts['user']}@{parts['host']}:{parts['port']}/{parts['dbname']}"
            "?sslmode=disable")


def run_rsyslog(pg: Pg15, count: int, work: Path) -> Run:
    dsn = fresh_database(pg)
    rsyslog_dir = work / "rsyslog"
    rsyslog_dir.mkdir(exist_ok=True)
    port = free_port()
    proc = start_rsyslogd(rsyslog_conf(rsyslog_dir, dsn, port), rsyslog_dir / "rsyslogd.pid")
    pg_cpu: list[float] = []
    try:
        daemon_before = cpu_seconds(proc.pid)
        with postgres_cpu(pg, pg_cpu):
            started = send(port, count, "rsyslog")
            rows, seconds = wait_rows(dsn, count, started)
            daemon = cpu_seconds(proc.pid) - daemon_before
    finally:
        proc.terminate()
        proc.wait(30)
        drop_database(pg, dsn)
    return Run("rsyslog", rows, seconds, daemon, pg_cpu[0])


# ----------------------------------------------------------------------------- COPY ceiling


@dataclass(frozen=True)
class Payloads:
    """The rows of a pgsyslog run as binary COPY data, split in two halves."""

    columns: tuple[str, ...]
    halves: tuple[bytes, bytes]
    rows: int


def capture_payloads(pg: Pg15, count: int, work: Path,
                     column_sets: list[tuple[str, ...]]) -> list[Payloads]:
    """Receive the messages once with pgsyslog and keep its rows as COPY data."""
    dsn = fresh_database(pg)
    server = start_server(["--dsn", dsn, "--tcp", "127.0.0.1:0", "--http", "off",
                           "--data-dir", str(work / "capture"), "--log-level", "WARNING"])
    try:
        rows, _ = wait_rows(dsn, count, send(server.port("tcp"), count, "copy"))
    finally:
        server.stop()
    try:
        return [Payloads(columns, (copy_out(dsn, columns, 0), copy_out(dsn, columns, 1)), rows)
                for columns in column_sets]
    finally:
        drop_database(pg, dsn)


def copy_out(dsn: str, columns: tuple[str, ...], parity: int) -> bytes:
    names = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    query = sql.SQL("COPY (SELECT {} FROM syslog.messages WHERE id % 2 = {} ORDER BY id) "
                    "TO STDOUT (FORMAT BINARY)").format(names, sql.Literal(parity))
    data = bytearray()
    with psycopg.connect(dsn) as conn, conn.cursor() as cur, cur.copy(query) as copy:
        for chunk in copy:
            data += chunk
    return bytes(data)


def copy_in(conn: psycopg.Connection[tuple[object, ...]], columns: tuple[str, ...],
            payload: bytes) -> None:
    names = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    query = sql.SQL("COPY syslog.messages ({}) FROM STDIN (FORMAT BINARY)").format(names)
    with conn.transaction(), conn.cursor() as cur, cur.copy(query) as copy:
        for start in range(0, len(payload), 1 << 20):
            copy.write(payload[start:start + (1 << 20)])


def run_copy(pg: Pg15, name: str, payloads: Payloads, connections: int,
             revision: str = "head") -> Run:
    dsn = fresh_database(pg, revision)
    try:
        return copy_into(pg, dsn, name, payloads, connections)
    finally:
        drop_database(pg, dsn)


def copy_into(pg: Pg15, dsn: str, name: str, payloads: Payloads, connections: int) -> Run:
    """COPY the payloads into the database ``dsn`` over 1 or 2 connections."""
    # Connected before the CPU is first read and closed after it is read again: a
    # backend's CPU is only seen while it runs.
    conns = [psycopg.connect(dsn, autocommit=True) for _ in range(connections)]
    pg_cpu: list[float] = []
    try:
        with postgres_cpu(pg, pg_cpu):
            started = time.monotonic()
            if connections == 1:
                for half in payloads.halves:
                    copy_in(conns[0], payloads.columns, half)
            else:
                in_parallel([functools.partial(copy_in, conn, payloads.columns, half)
                             for conn, half in zip(conns, payloads.halves, strict=True)])
            seconds = time.monotonic() - started
        rows = count_rows(dsn)
    finally:
        for conn in conns:
            conn.close()
    return Run(name, rows, seconds, 0.0, pg_cpu[0])


def in_parallel(work: list[Callable[[], None]]) -> None:
    errors: list[BaseException] = []

    def guarded(step: Callable[[], None]) -> None:
        try:
            step()
        except BaseException as e:  # reported after the join
            errors.append(e)

    threads = [threading.Thread(target=guarded, args=(step,)) for step in work]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


# ----------------------------------------------------------------------------- report


def first_schema_columns() -> tuple[str, ...]:
    return tuple(c for c in RECORD_COLUMNS if c != "peer_name")


def print_run(round_no: int, run: Run, expected: int) -> None:
    lost = expected - run.rows
    daemon = f"{run.per_row_us(run.daemon_cpu):6.1f}" if run.daemon_cpu else "     -"
    print(f"round {round_no} {run.name:9s} {run.rate:9,.0f} rows/s  {run.seconds:6.1f} s  "
          f"daemon {daemon} us/msg  postgres {run.per_row_us(run.postgres_cpu):6.1f} us/row"
          f"  lost {lost}", flush=True)


def median(runs: list[Run], value: Callable[[Run], float]) -> float:
    return statistics.median(value(r) for r in runs)


def report(results: dict[str, list[Run]]) -> None:
    print("\nmedians:")
    for name, runs in results.items():
        print(f"  {name:9s} {median(runs, lambda r: r.rate):9,.0f} rows/s  daemon "
              f"{median(runs, lambda r: r.per_row_us(r.daemon_cpu)):6.1f} us/msg  postgres "
              f"{median(runs, lambda r: r.per_row_us(r.postgres_cpu)):6.1f} us/row")
    rate = {name: median(runs, lambda r: r.rate) for name, runs in results.items()}
    cpu = {name: median(runs, lambda r: r.per_row_us(r.daemon_cpu))
           for name, runs in results.items()}
    pg_us = {name: median(runs, lambda r: r.per_row_us(r.postgres_cpu))
             for name, runs in results.items()}
    print("ratios:")
    print(f"  pgsyslog / rsyslog rate:           {rate['pgsyslog'] / rate['rsyslog']:.2f}")
    print(f"  pgsyslog / COPY ceiling (2 conns): {rate['pgsyslog'] / rate['copy2']:.2f}")
    print(f"  pgsyslog / rsyslog daemon CPU:     {cpu['pgsyslog'] / cpu['rsyslog']:.2f}")
    print(f"  schema / 0001 schema PG per row:   {pg_us['copy2'] / pg_us['copy0001']:.2f}")
    print(f"  pgsyslog / rsyslog PG per row:     {pg_us['pgsyslog'] / pg_us['rsyslog']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    for reason in (unavailable_reason(),
                   missing_reason([RSYSLOGD, OMPGSQL], ["rsyslog", "rsyslog-pgsql"])):
        if reason:
            raise SystemExit(f"cannot run: {reason}")
    with running_pg15(with_database=False) as pg, \
            tempfile.TemporaryDirectory(prefix="pgsyslog-peers-") as tmp:
        work = Path(tmp)
        current, first = capture_payloads(pg, args.count, work,
                                          [RECORD_COLUMNS, first_schema_columns()])
        print(f"{args.count:,} messages a run, {args.runs} rounds, PostgreSQL 15 "
              f"({pg.directory})", flush=True)
        results: dict[str, list[Run]] = {}
        variants: list[Callable[[], Run]] = [
            lambda: run_pgsyslog(pg, args.count, work),
            lambda: run_rsyslog(pg, args.count, work),
            lambda: run_copy(pg, "copy1", current, 1),
            lambda: run_copy(pg, "copy2", current, 2),
            lambda: run_copy(pg, "copy0001", first, 2, FIRST_SCHEMA),
        ]
        for round_no in range(1, args.runs + 1):
            # Each round starts one variant later, so none always runs first or last.
            shift = (round_no - 1) % len(variants)
            for variant in variants[shift:] + variants[:shift]:
                run = variant()
                results.setdefault(run.name, []).append(run)
                print_run(round_no, run, args.count)
        report(dict(sorted(results.items())))


if __name__ == "__main__":
    main()
