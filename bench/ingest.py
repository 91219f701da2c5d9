"""Ingest benchmark: messages per second committed by `pgsyslog serve`, and messages lost.

Starts serve on a fresh embedded database (in a temporary directory), then for each run
sends N realistic RFC 5424 lines from a separate process, over TCP as fast as the socket
takes them and over UDP at a fixed offered rate, waits until the rows are committed, and
prints the median of the runs.

    python bench/ingest.py [--count 200000] [--runs 3] [--udp-rate 20000]
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from multiprocessing import Queue
from pathlib import Path

import psycopg

WORDS = (  # noqa: SIM905 (a sentence reads better than a list of 80 strings)
    "accepted connection closed session opened user root failed password invalid from port "
    "ssh2 kernel eth0 link up down timeout upstream request GET POST 200 404 500 cache hit "
    "miss disk full warning error critical backup completed started retry queue depth high "
    "low memory cpu load average deadlock detected transaction commit rollback index scan "
    "firewall blocked allowed tcp udp icmp dhcp lease renewed dns query nxdomain certificate "
    "expired renewed token refresh login logout invoice payment charged refund order shipped"
).split()
HOSTS = [f"web{i:02d}.example.net" for i in range(40)] + [f"db{i}" for i in range(8)]
APPS = ["nginx", "sshd", "postgres", "billing", "cron", "kernel", "haproxy", "api"]
DEADLINE_S = 600
POLL_S = 0.2  # seconds between row counts; the count's cost stays a few % of one core


def make_lines(count: int, tag: str, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    lines = []
    for i in range(count):
        words = " ".join(rng.choices(WORDS, k=rng.randint(6, 18)))
        lines.append(
            f"<{rng.randint(0, 191)}>1 2026-11-21T11:59:{i % 60:02d}.{i % 1000:03d}Z "
            f"{rng.choice(HOSTS)} {rng.choice(APPS)} {rng.randint(1, 65535)} - - "
            f"{tag} {i} {words}".encode()
        )
    return lines


# The senders build their lines first and report the (system-wide) monotonic time of their
# first byte, so that making the lines is not counted.


def send_tcp(started: Queue, port: int, count: int, tag: str) -> None:
    payload = b"".join(b"%d %s" % (len(m), m) for m in make_lines(count, tag, 1))
    with socket.create_connection(("127.0.0.1", port)) as s:
        started.put(time.monotonic())
        s.sendall(payload)


def send_udp(started: Queue, port: int, count: int, tag: str, rate: int) -> None:
    lines = make_lines(count, tag, 2)
    burst = max(1, rate // 100)  # 100 bursts a second
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        started.put(time.monotonic())
        start = time.perf_counter()
        for first in range(0, count, burst):
            for line in lines[first : first + burst]:
                s.sendto(line, ("127.0.0.1", port))
            ahead = start + (first + burst) / rate - time.perf_counter()
            if ahead > 0:
                time.sleep(ahead)


def max_id(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT coalesce(max(id), 0) FROM syslog.messages").fetchone()
    return int(row[0]) if row else 0


def count_rows(dsn: str, after_id: int) -> int:
    """Rows written since the run began: an index range count, cheap enough to poll.

    (A LIKE over the message column would scan the whole table on every poll and steal
    the database's CPU from the writer it measures.)
    """
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM syslog.messages WHERE id > %s", (after_id,)
        ).fetchone()
    return int(row[0]) if row else 0


def wait_committed(dsn: str, after_id: int, expected: int, started: float) -> tuple[int, float]:
    """Poll until all rows are there, or nothing new arrived for 3 s; return (rows, seconds)."""
    last, last_change, done_at = -1, time.monotonic(), time.monotonic()
    while time.monotonic() - started < DEADLINE_S:
        n = count_rows(dsn, after_id)
        now = time.monotonic()
        if n != last:
            last, last_change, done_at = n, now, now
        if n >= expected or now - last_change > 3.0:
            break
        time.sleep(POLL_S)
    return last, done_at - started


def one_run(
    dsn: str, transport: str, port: int, count: int, rate: int, run: int
) -> tuple[float, int]:
    tag = f"bench-{transport}-{run}-{random.randrange(1 << 30)}"
    after_id = max_id(dsn)
    first_byte: Queue = multiprocessing.Queue()
    target, args = (
        (send_tcp, (first_byte, port, count, tag))
        if transport == "tcp"
        else (send_udp, (first_byte, port, count, tag, rate))
    )
    sender = multiprocessing.Process(target=target, args=args)
    sender.start()
    started = first_byte.get(timeout=DEADLINE_S)
    rows, seconds = wait_committed(dsn, after_id, count, started)
    sender.join()
    return rows / seconds, count - rows


LISTENERS = ("--udp", "127.0.0.1:0", "--tcp", "127.0.0.1:0")


def start_serve(data_dir: Path, flags: tuple[str, ...] = LISTENERS
                ) -> tuple[subprocess.Popen[str], dict[str, int], str]:
    """`pgsyslog serve` on the embedded database in ``data_dir`` with ``flags``; its
    ports by transport (udp, tcp, http) and its DSN, once it is receiving."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pgsyslog", "serve", "--data-dir", str(data_dir), *flags,
         "--log-level", "WARNING"],
        stdout=subprocess.PIPE,
        text=True,
    )
    ports: dict[str, int] = {}
    dsn = ""
    assert proc.stdout is not None
    for line in proc.stdout:
        if m := re.match(r"listening on (udp|tcp|http)://.+:(\d+)$", line.strip()):
            ports[m.group(1)] = int(m.group(2))
        if m := re.match(r"pgsyslog is receiving; database: (\S+)", line):
            dsn = m.group(1)
        if line.startswith("then:"):
            break
    if proc.poll() is not None or not dsn:
        raise SystemExit("serve did not start")
    return proc, ports, dsn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--udp-rate", type=int, default=20_000, help="UDP messages offered/s")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pgsyslog-bench-") as tmp:
        proc, ports, dsn = start_serve(Path(tmp) / "data")
        try:
            for transport in ("udp", "tcp"):
                results = [
                    one_run(dsn, transport, ports[transport], args.count, args.udp_rate, run)
                    for run in range(args.runs)
                ]
                for run, (rate, lost) in enumerate(results, 1):
                    print(f"  {transport} run {run}: {rate:,.0f} msg/s committed, {lost} lost")
                offered = f" (offered {args.udp_rate:,}/s)" if transport == "udp" else ""
                print(
                    f"{transport}{offered}: median {statistics.median(r for r, _ in results):,.0f}"
                    f" msg/s committed, median lost "
                    f"{statistics.median(lost for _, lost in results):,.0f} of {args.count:,}",
                    flush=True,
                )
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(120)


if __name__ == "__main__":
    main()
