"""Fault benchmark: exactly once through database restarts and a hang, at volume.

Starts a PostgreSQL 15 of its own (tests/pg15.py) behind the fault proxy
(tests/faultproxy.py) and `pgsyslog serve` on it (default writers), sends N RFC 5424
messages with unique ids over several TCP connections at once while PostgreSQL is
restarted three times (fast, fast, immediate) and hung once for 20 s through the proxy,
then waits until everything is stored and prints what was sent, stored, distinct,
duplicated and missing, and how long the drain took after the last byte and the last
fault. Everything is on 127.0.0.1; the run aborts with a message after --deadline seconds.

    python bench/faults.py [--messages 1000000] [--connections 4] [--hang 20]
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import psycopg

from faultproxy import FaultProxy, running_proxy
from helpers import ServerProcess, start_server
from pg15 import Pg15, running_pg15, unavailable_reason

CHUNK = 1_000  # messages per sendall
SEND_TIMEOUT = 120.0  # a sendall blocked longer than this ends its sender
TAG = "bench"
# When each fault happens, as the share of messages sent, and what it is.
RESTARTS = ((0.15, "fast"), (0.35, "fast"), (0.80, "immediate"))
HANG_AT = 0.55


class Deadline(Exception):
    """The run took longer than --deadline."""


def line(i: int) -> bytes:
    return (b"<134>1 2026-11-21T11:59:58.123Z web%02d.example.net nginx %d - - "
            b"bench=%07d GET /api/orders 200 in 3 ms upstream cache miss\n"
            % (i % 40, 1000 + i % 50, i))


@dataclass
class Senders:
    port: int
    messages: int
    connections: int
    sent: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    last_byte: float = 0.0

    def start(self) -> list[threading.Thread]:
        self.sent = [0] * self.connections
        share = -(-self.messages // self.connections)
        threads = []
        for k in range(self.connections):
            ids = range(k * share, min(self.messages, (k + 1) * share))
            thread = threading.Thread(target=self._send, args=(k, ids), daemon=True)
            thread.start()
            threads.append(thread)
        return threads

    @property
    def total(self) -> int:
        return sum(self.sent)

    def _send(self, k: int, ids: range) -> None:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=SEND_TIMEOUT) as s:
                for first in range(ids.start, ids.stop, CHUNK):
                    chunk = range(first, min(ids.stop, first + CHUNK))
                    s.sendall(b"".join(line(i) for i in chunk))
                    self.sent[k] += len(chunk)
        except OSError as e:
            self.errors.append(f"sender {k} stopped after {self.sent[k]}: {e}")
        self.last_byte = max(self.last_byte, time.monotonic())


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.deadline = time.monotonic() + args.deadline
        self.faults_done = 0.0

    def check(self, what: str) -> None:
        if time.monotonic() > self.deadline:
            raise Deadline(f"aborted after {self.args.deadline:.0f} s while {what}")

    def wait_until(self, done: Callable[[], bool], what: str, every: float = 0.2) -> None:
        while not done():
            self.check(what)
            time.sleep(every)

    def faults(self, pg: Pg15, proxy: FaultProxy, senders: Senders) -> None:
        n = self.args.messages
        schedule = sorted([(at, f"restart {mode}", mode) for at, mode in RESTARTS]
                          + [(HANG_AT, f"hang {self.args.hang:.0f} s", "hang")])
        for at, name, mode in schedule:
            self.wait_until(lambda at=at: senders.total >= at * n,
                            f"waiting to {name} at {at:.0%} sent")
            started, at_sent = time.monotonic(), senders.total
            if mode == "hang":
                proxy.hang()
                time.sleep(self.args.hang)
                proxy.pass_through()
            else:
                pg.restart(mode)
            print(f"  fault: {name} at {at_sent:,} sent "
                  f"({time.monotonic() - started:.1f} s)", flush=True)
        self.faults_done = time.monotonic()

    def stored(self, dsn: str) -> int:
        try:
            with psycopg.connect(dsn, connect_timeout=5) as conn:
                row = conn.execute("SELECT count(*) FROM syslog.messages").fetchone()
            return int(row[0]) if row else 0
        except psycopg.Error:
            return -1

    def drain(self, dsn: str, sent: int) -> float:
        """Wait until `sent` rows are stored (or none came for --stall s); when that was."""
        quiet_from = time.monotonic()
        last = -1
        while (count := self.stored(dsn)) < sent:
            self.check(f"draining ({count:,} of {sent:,} stored)")
            if count != last:
                last, quiet_from = count, time.monotonic()
            elif time.monotonic() - quiet_from > self.args.stall:
                print(f"  no new rows for {self.args.stall:.0f} s: stopping the drain at "
                      f"{count:,}", flush=True)
                break
            time.sleep(1.0)
        return time.monotonic()


def report(dsn: str, sent: int, drain_s: float, server: ServerProcess) -> bool:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*), count(DISTINCT message) FROM syslog.messages "
                           "WHERE message LIKE %s", (f"{TAG}=%",)).fetchone()
    assert row is not None
    stored, distinct = int(row[0]), int(row[1])
    print(f"sent       {sent:>10,}")
    print(f"stored     {stored:>10,}")
    print(f"distinct   {distinct:>10,}")
    print(f"duplicates {stored - distinct:>10,}")
    print(f"missing    {sent - distinct:>10,}")
    print(f"drain      {drain_s:>10.1f} s after the last byte and the last fault")
    try:
        counters = server.final_counters()
        print("serve:     " + ", ".join(f"{k} {counters.get(k, 0):,}" for k in (
            "written", "retried", "spooled", "replayed", "duplicates_skipped", "lost_at_stop")))
    except AssertionError:
        print("serve printed no stopped summary")
    return stored == distinct == sent


def bench(args: argparse.Namespace) -> int:
    reason = unavailable_reason()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    run = Run(args)
    with running_pg15() as pg, running_proxy("127.0.0.1", pg.port) as proxy, \
            tempfile.TemporaryDirectory(prefix="pgsyslog-faults-") as data_dir:
        server = start_server(["--dsn", proxy.dsn(pg.dsn), "--data-dir", data_dir,
                               "--tcp", "127.0.0.1:0",
                               "--db-statement-timeout", str(args.statement_timeout),
                               "--shutdown-timeout", "120"])
        try:
            print(f"sending {args.messages:,} messages over {args.connections} TCP "
                  f"connections; faults: {', '.join(m for _, m in RESTARTS)} restarts, "
                  f"a {args.hang:.0f} s hang", flush=True)
            started = time.monotonic()
            senders = Senders(server.port("tcp"), args.messages, args.connections)
            threads = senders.start()
            run.faults(pg, proxy, senders)
            for thread in threads:
                run.wait_until(lambda t=thread: not t.is_alive(),
                               "sending")
            for error in senders.errors:
                print(f"  {error}", flush=True)
            print(f"  sent in {senders.last_byte - started:.1f} s", flush=True)
            drained = run.drain(pg.dsn, senders.total)
            drain_s = drained - max(senders.last_byte, run.faults_done)
            status = server.stop(signal.SIGTERM, timeout=180)
            ok = report(pg.dsn, senders.total, drain_s, server)
            return 0 if ok and status == 0 else 1
        except Deadline as e:
            print(f"{e}; serve's last lines:\n" + "\n".join(server.errors[-10:]), file=sys.stderr)
            return 1
        finally:
            if server.proc.poll() is None:
                server.stop(signal.SIGKILL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--hang", type=float, default=20.0, help="seconds the proxy hangs")
    parser.add_argument("--statement-timeout", type=float, default=5.0,
                        help="serve's --db-statement-timeout")
    parser.add_argument("--stall", type=float, default=120.0,
                        help="give up the drain after this many seconds without new rows")
    parser.add_argument("--deadline", type=float, default=900.0,
                        help="abort the whole run after this many seconds")
    return bench(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
