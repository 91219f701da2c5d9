"""Import benchmark: lines per second of `pgsyslog import` into PostgreSQL.

Writes realistic log files (RFC 3164 as /var/log/syslog has it, mixed with RFC 5424
lines, two days of them; a new file per run, so that nothing is skipped as imported
before), imports each with `pgsyslog import --quiet` as a subprocess into the embedded
database (in a temporary directory) or the one --dsn names, and prints the median of the
runs. Two scenarios, each run of one taking its turn with a run of the other:

- history: the two days of each file are days the store does not hold yet (each run's
  end three days before the last one's start), as when old logs and archives are
  imported: their tables are loaded without indexes and attached at the end, the
  indexes built then (counted in the time).
- stored: the last two days, whose partitions exist (made before the first run), as
  when a file that serve's days already hold grows: every row updates every index.

--profile runs one import in this process under cProfile and prints where the time
goes instead.

--baseline DIR takes a work tree of another commit (``git worktree add --detach DIR
COMMIT``) and runs its import in turn with this one's (baseline, this, this, baseline,
...: on a shared, noisy machine the two see the same load and the same database), then
prints both medians and their ratio.

    python bench/import.py [--lines 500000] [--runs 3] [--dsn URL] [--profile]
                           [--baseline DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
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

from ingest import WORDS  # bench/ is the script's directory: the same vocabulary

BENCH = Path(__file__).resolve().parent
GOAL = 50_000  # lines per second (issue 13)
HOSTS = [f"web{i:02d}" for i in range(30)] + [f"db{i}.example.net" for i in range(6)]
APPS = ["sshd", "CRON", "kernel", "systemd", "postfix/smtpd", "nginx", "dhclient", "sudo"]


def write_log(path: Path, count: int, seed: int, end: datetime | None = None) -> None:
    """``count`` lines over the two days before ``end`` (default now), two in three RFC
    3164, the rest RFC 5424, times in order."""
    rng = random.Random(seed)
    start = (end or datetime.now(UTC)) - timedelta(days=2)
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


def import_once(dsn: str, path: Path, code: Path | None = None) -> float:
    """Seconds `pgsyslog import` took for the file (start-up of the command included),
    with the package of the work tree ``code`` when given."""
    # `python -m` puts the working directory first on sys.path: run in the work tree of
    # the code meant, or a checkout's own package would shadow the baseline's.
    code = code or BENCH.parent
    # Retention 0 keeps every day: the history runs reach further back than 30 days.
    env = {**os.environ, "PYTHONPATH": str(code), "PGSYSLOG_RETENTION_DAYS": "0"}
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "pgsyslog", "import", "--quiet", "--dsn", dsn,
                    "--default-tz", "UTC", str(path)], check=True, stdout=subprocess.DEVNULL,
                   env=env, cwd=code)
    return time.monotonic() - started


def profile_once(dsn: str, path: Path) -> None:
    from pgsyslog.importer.progress import QuietProgress
    from pgsyslog.importer.run import Importer, ImportSettings
    from pgsyslog.importer.source import open_source

    async def run() -> None:
        importer = Importer(dsn, ImportSettings(2000, ZoneInfo("UTC")), QuietProgress())
        await importer.connect()
        opened = await importer.open(open_source(str(path)))
        await importer.import_all(opened)
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
    parser.add_argument("--baseline", type=Path, metavar="DIR",
                        help="work tree of the commit to compare with, run in turn")
    parser.add_argument("--scenario", choices=("both", "history", "stored"), default="both")
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
    if args.profile:
        path = tmp / "syslog-0"
        write_log(path, args.lines, seed=0)
        profile_once(dsn, path)
        return
    scenarios = ("history", "stored") if args.scenario == "both" else (args.scenario,)
    now = datetime.now(UTC)
    _make_stored_days(dsn, now)
    rates: dict[tuple[str, str], list[float]] = {}
    history_end = now - timedelta(days=3)
    for run in range(args.runs):
        for scenario in scenarios if run % 2 == 0 else scenarios[::-1]:
            for name in _turns(run, args.baseline is not None):
                path = tmp / f"syslog-{scenario}-{name}-{run}"
                end = now
                if scenario == "history":
                    end, history_end = history_end, history_end - timedelta(days=3)
                write_log(path, args.lines, seed=2 * run + (name == "baseline"), end=end)
                seconds = import_once(dsn, path, args.baseline if name == "baseline" else None)
                path.unlink()
                rates.setdefault((scenario, name), []).append(args.lines / seconds)
                print(f"run {run + 1} {scenario} ({name}): {args.lines:,} lines in "
                      f"{seconds:.1f} s = {rates[scenario, name][-1]:,.0f} lines/s", flush=True)
    for scenario in scenarios:
        median = statistics.median(rates[scenario, "this"])
        verdict = "met" if median >= GOAL else "NOT met"
        print(f"{scenario}: median {median:,.0f} lines/s (goal >= {GOAL:,}: {verdict})")
        if (scenario, "baseline") in rates:
            baseline = statistics.median(rates[scenario, "baseline"])
            print(f"{scenario}: baseline median {baseline:,.0f} lines/s; this / baseline = "
                  f"{median / baseline:.2f}")


def _make_stored_days(dsn: str, now: datetime) -> None:
    from pgsyslog.storage import database, partitions

    with database.connect(dsn, autocommit=True) as conn:
        partitions.ensure_days(conn, [(now - timedelta(days=n)).date() for n in range(3)])


def _turns(run: int, with_baseline: bool) -> tuple[str, ...]:
    """Whose import goes first in this round: the two take turns, so that neither always
    meets the larger indexes of the other's rows."""
    if not with_baseline:
        return ("this",)
    return ("baseline", "this") if run % 2 == 0 else ("this", "baseline")


if __name__ == "__main__":
    main()
