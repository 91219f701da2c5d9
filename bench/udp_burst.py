"""UDP burst benchmark: a burst offered faster than pgsyslog writes, and what it loses.

Starts serve on a fresh embedded database (in a temporary directory, as bench/ingest.py),
offers a burst of realistic RFC 5424 datagrams at a fixed rate from a separate process to
127.0.0.1, waits until every row is committed (or nothing moved for a while), and prints
what was offered, stored and lost, the kernel's drops (RcvbufErrors of /proc/net/snmp and
the socket's own count), what went through the spool, the peak memory (RssAnon) of the
receiver and of its UDP reader process against queue_bytes, and the time to drain.

    python bench/udp_burst.py [--rate 50000] [--seconds 10] [--queue-bytes 268435456]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from multiprocessing import Queue
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "tests"))

import psycopg  # noqa: E402
from ingest import count_rows, make_lines, max_id, send_udp  # noqa: E402
from ingest import start_serve as serve_with  # noqa: E402

from helpers import children_of  # noqa: E402

MIB = 1024 * 1024
DEADLINE_S = 600.0
STALL_S = 60.0  # nothing committed for this long: give up waiting
READER = "pgsyslog.receiver.udp_reader"


def rcvbuf_errors() -> int:
    with open("/proc/net/snmp") as fh:
        rows = [line.split() for line in fh if line.startswith("Udp:")]
    header, values = rows[0], rows[1]
    return int(values[header.index("RcvbufErrors")])


def rss(pid: int) -> int:
    """Anonymous resident memory: what the process holds, without the page cache of the
    spool segments it maps (those count in VmRSS as RssFile)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def readers_of(pid: int) -> list[int]:
    return children_of(pid, READER.encode())


def metrics(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
        text = response.read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name.replace('"', "")] = float(value)
    return values


def start_serve(data_dir: Path, queue_bytes: int) -> tuple[subprocess.Popen[str], dict[str, int],
                                                           str]:
    return serve_with(data_dir, ("--udp", "127.0.0.1:0", "--http", "127.0.0.1:0",
                                         "--queue-bytes", str(queue_bytes)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=50_000, help="datagrams offered per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the burst")
    parser.add_argument("--queue-bytes", type=int, default=256 * MIB)
    args = parser.parse_args()
    count = int(args.rate * args.seconds)
    print(f"load before: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} "
          f"{os.getloadavg()[2]:.2f} on {os.cpu_count()} cores", flush=True)
    with tempfile.TemporaryDirectory(prefix="pgsyslog-bench-") as tmp:
        proc, ports, dsn = start_serve(Path(tmp) / "data", args.queue_bytes)
        try:
            run(proc, ports, dsn, count, args.rate, args.queue_bytes)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(300)


def run(proc: subprocess.Popen[str], ports: dict[str, int], dsn: str, count: int, rate: int,
        queue_bytes: int) -> None:
    tag = f"burst-{random.randrange(1 << 30)}"
    after_id = max_id(dsn)
    readers = readers_of(proc.pid)
    base_serve, base_readers = rss(proc.pid), sum(rss(p) for p in readers)
    before = metrics(ports["http"])
    errors_before = rcvbuf_errors()
    first_byte: Queue[float] = multiprocessing.Queue()
    make_lines(1, tag, 2)  # the sender makes its own; this only warms the import
    sender = multiprocessing.Process(target=send_udp,
                                     args=(first_byte, ports["udp"], count, tag, rate))
    sender.start()
    started = first_byte.get(timeout=120)
    peak_serve, peak_readers = base_serve, base_readers
    rows, last_change, last_rows, sent_at = 0, time.monotonic(), -1, None
    next_count = 0.0
    while time.monotonic() - started < DEADLINE_S:
        time.sleep(0.1)
        peak_serve = max(peak_serve, rss(proc.pid))
        peak_readers = max(peak_readers, sum(rss(p) for p in readers))
        if sent_at is None and not sender.is_alive():
            sent_at = time.monotonic()
        if time.monotonic() < next_count:
            continue
        next_count = time.monotonic() + 0.5
        rows = count_rows(dsn, after_id)
        if rows != last_rows:
            last_rows, last_change = rows, time.monotonic()
        if rows >= count or time.monotonic() - last_change > STALL_S:
            break
    done = last_change - started
    sender.join()
    after = metrics(ports["http"])
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*), count(DISTINCT message) FROM syslog.messages "
                           "WHERE id > %s AND message LIKE %s", (after_id, f"{tag} %")).fetchone()
    stored, distinct = (int(row[0]), int(row[1])) if row else (0, 0)

    def delta(name: str) -> int:
        return int(after.get(name, 0) - before.get(name, 0))

    print(f"offered {count:,} datagrams at {rate:,}/s "
          f"(sent in {(sent_at or time.monotonic()) - started:.1f} s)")
    print(f"stored {stored:,} ({distinct:,} distinct), lost {count - distinct:,}")
    print(f"kernel drops: RcvbufErrors +{rcvbuf_errors() - errors_before:,} (whole machine), "
          f"socket {delta('pgsyslog_udp_kernel_drops_total'):,}")
    print(f"dropped_queue_full {delta('pgsyslog_messages_dropped_total{reason=queue_full}'):,}, "
          f"spilled to the spool {delta('pgsyslog_udp_spilled_total'):,}, "
          f"replayed {delta('pgsyslog_rows_replayed_total'):,}")
    print(f"peak RssAnon: receiver {peak_serve / MIB:.0f} MiB "
          f"(+{(peak_serve - base_serve) / MIB:.0f}),"
          f" reader {peak_readers / MIB:.0f} MiB (+{(peak_readers - base_readers) / MIB:.0f}); "
          f"growth {(peak_serve - base_serve + peak_readers - base_readers) / MIB:.0f} MiB "
          f"against queue_bytes {queue_bytes / MIB:.0f} MiB")
    print(f"all committed {done:.1f} s after the first datagram", flush=True)
    print(f"load after: {os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
