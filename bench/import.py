"""Import benchmark: lines per second of `pgsyslog import` into PostgreSQL.

Writes realistic log files (RFC 3164 as /var/log/syslog has it, mixed with RFC 5424
lines, over the last two days; a new file per run, so that nothing is skipped as imported
before), imports each with `pgsyslog import --quiet` as a subprocess into the embedded
database (in a temporary directory) or the one --dsn names, and prints the median of the
runs. --profile runs one import in this process under cProfile and prints where the time
goes instead.

    python bench/import.py [--lines 500000] [--runs 3] [--dsn URL] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

GOAL = 50_000  # lines per second (issue 13)
WORDS = (  # noqa: SIM905 (a sentence reads better than a list of 60 strings)
    "accepted connection closed session opened user root failed password invalid from port "
    "ssh2 kernel eth0 link up down timeout upstream request GET POST 200 404 500 cache hit "
    "miss disk full warning error critical backup completed started retry queue depth high "
    "low memory cpu load average deadlock detected transaction commit rollback index scan"
).split()
HOSTS = [f"web{i:02d}" for i in range(30)] + [f"db{i}.example.net" for i in range(6)]
APPS = ["sshd", "CRON", "kernel", "systemd", "postfix/smtpd", "nginx", "dhclient", "sudo"]


def write_log(path: Path, count: int, seed: int) -> None:
    """``count`` lines, two in three RFC 3164, the rest RFC 5424, times in order."""
    rng = random.Random(seed)
    start = datetime.now(UTC) - timedelta(days=2)
    step = timedelta(days=2) / count
    with path.open("w") as out:
        for i in range(count):
            t = start + step * i
            words = " ".join(rng.choices(WORDS, k=rng.randint(6, 18)))
            host, app, pid = rng.choice(HOSTS), rng.choice(APPS), rng.randint(1, 65535)
            if i % 3:
                out.write(f"{t:%b} {t.day:2d} {t:%H:%M:%S} {host} {app}[{pid}]: {words}\n")
            else:
                out.write(f"<{rng.randint(0, 191)}>1 {t:%Y-%m-%dT%H:%M:%S.%f}Z {host} {app} "
                          f"{pid} - - run {seed} line {i} {words}\n")


def import_once(dsn: str, path: Path) -> float:
    """Seconds `pgsyslog import` took for the file (start-up of the command included)."""
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "pgsyslog", "import", "--quiet", "--dsn", dsn,
                    "--default-tz", "UTC", str(path)], check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - started


def profile_once(dsn: str, path: Path) -> None:
    from pgsyslog.importer.progress import QuietProgress
    from pgsyslog.importer.run import Importer, ImportSettings
    from pgsyslog.importer.source import open_source

    async def run() -> None:
        importer = Importer(dsn, ImportSettings(2000, ZoneInfo("UTC")), QuietProgress())
        await importer.connect()
        opened = await importer.open(open_source(str(path)))
        await importer.import_all(opened, asyncio.Event())
        await importer.close()

    profiler = cProfile.Profile()
    profiler.runcall(asyncio.run, run())
    pstats.Stats(profiler).sort_stats("tottime").print_stats(18)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=500_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dsn", help="PostgreSQL URL; default: an embedded server")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pgsyslog-bench-import-") as tmp:
        embedded = None
        dsn = args.dsn
        if dsn is None:
            from pgsyslog.storage.database import EmbeddedDatabase

            embedded = EmbeddedDatabase(Path(tmp), stop_on_exit=True)
            dsn = embedded.start()
        try:
            bench(dsn, Path(tmp), args)
        finally:
            if embedded is not None:
                embedded.stop()


def bench(dsn: str, tmp: Path, args: argparse.Namespace) -> None:
    from pgsyslog.storage import migrate

    migrate.upgrade(dsn)
    rates = []
    for run in range(1 if args.profile else args.runs):
        path = tmp / f"syslog-{run}"
        write_log(path, args.lines, seed=run)
        if args.profile:
            profile_once(dsn, path)
            return
        seconds = import_once(dsn, path)
        rates.append(args.lines / seconds)
        print(f"run {run + 1}: {args.lines:,} lines in {seconds:.1f} s = "
              f"{rates[-1]:,.0f} lines/s", flush=True)
    median = statistics.median(rates)
    verdict = "met" if median >= GOAL else "NOT met"
    print(f"median: {median:,.0f} lines/s (goal >= {GOAL:,}: {verdict})")


if __name__ == "__main__":
    main()
