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

With the embedded server, each run also prints the CPU a line took in the import's
processes (the command and its encoding workers) and in PostgreSQL's (read from /proc),
and each scenario the rate those medians allow on this machine's cores: the bound the
measured rate is to be read against. Before each run a fixed loop of Python is timed
("host loop"): on a shared machine its time, and every figure with it, varies by up to
twice from one minute to the next.

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
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
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
            bench(dsn, Path(tmp), args, embedded.pgdata if embedded else None)
        finally:
            if embedded is not None:
                embedded.stop()


def bench(dsn: str, tmp: Path, args: argparse.Namespace, pgdata: Path | None) -> None:
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
    cpu: dict[tuple[str, str], list[Cpu]] = {}
    speed: list[float] = []
    history_end = now - timedelta(days=3)
    for run in range(args.runs):
        for scenario in scenarios if run % 2 == 0 else scenarios[::-1]:
            for name in _turns(run, args.baseline is not None):
                path = tmp / f"syslog-{scenario}-{name}-{run}"
                end = now
                if scenario == "history":
                    end, history_end = history_end, history_end - timedelta(days=3)
                write_log(path, args.lines, seed=2 * run + (name == "baseline"), end=end)
                speed.append(host_speed())
                before = _cpu(pgdata)
                seconds = import_once(dsn, path, args.baseline if name == "baseline" else None)
                used = _cpu(pgdata) - before
                path.unlink()
                rates.setdefault((scenario, name), []).append(args.lines / seconds)
                cpu.setdefault((scenario, name), []).append(used / args.lines)
                print(f"run {run + 1} {scenario} ({name}): {args.lines:,} lines in "
                      f"{seconds:.1f} s = {rates[scenario, name][-1]:,.0f} lines/s"
                      f"{_cpu_text(used / args.lines, ' (CPU a line: {})')}; "
                      f"host loop {speed[-1]:.2f} s", flush=True)
    print(f"host loop: median {statistics.median(speed):.2f} s, quickest {min(speed):.2f} s "
          f"(the same work each run: a larger figure is a slower host)")
    for scenario in scenarios:
        median = statistics.median(rates[scenario, "this"])
        verdict = "met" if median >= GOAL else "NOT met"
        print(f"{scenario}: median {median:,.0f} lines/s (goal >= {GOAL:,}: {verdict})")
        per_line = Cpu(statistics.median(c.importer for c in cpu[scenario, "this"]),
                       statistics.median(c.server for c in cpu[scenario, "this"]))
        if per_line.server:
            cores = len(os.sched_getaffinity(0))
            print(f"{scenario}: median CPU a line: {_cpu_text(per_line)}; {cores} cores allow "
                  f"at most {cores / (per_line.importer + per_line.server):,.0f} lines/s")
        if (scenario, "baseline") in rates:
            baseline = statistics.median(rates[scenario, "baseline"])
            print(f"{scenario}: baseline median {baseline:,.0f} lines/s; this / baseline = "
                  f"{median / baseline:.2f}")


@dataclass(frozen=True)
class Cpu:
    """CPU seconds: of the import's processes, and of the embedded PostgreSQL's (0 when
    the server is not ours to read)."""

    importer: float
    server: float

    def __sub__(self, other: Cpu) -> Cpu:
        return Cpu(self.importer - other.importer, self.server - other.server)

    def __truediv__(self, count: int) -> Cpu:
        return Cpu(self.importer / count, self.server / count)


def host_speed() -> float:
    """CPU seconds of a fixed loop of Python: on a shared machine the same work takes up
    to twice as long from one minute to the next, and every figure with it."""
    started = time.process_time()
    total = 0
    for step in range(5_000_000):
        total += step
    return time.process_time() - started


def _cpu(pgdata: Path | None) -> Cpu:
    """CPU used so far by the children this process waited for (each import command with
    its workers) and by the server of ``pgdata``."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return Cpu(children.ru_utime + children.ru_stime,
               0.0 if pgdata is None else _server_cpu(pgdata))


def _server_cpu(pgdata: Path) -> float:
    """The postmaster's CPU, its reaped children's (backends that ended) and its live
    children's, from /proc."""
    postmaster = int((pgdata / "postmaster.pid").read_text().split()[0])
    ticks = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            # After the command's closing parenthesis: state, ppid, ... utime is field 14.
            fields = (Path("/proc") / entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile: counted in the postmaster's reaped children
            continue
        if int(entry) == postmaster:
            ticks += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
        elif int(fields[1]) == postmaster:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _cpu_text(per_line: Cpu, form: str = "{}") -> str:
    if not per_line.server:
        return ""
    return form.format(f"import {per_line.importer * 1e6:.1f} µs, "
                       f"PostgreSQL {per_line.server * 1e6:.1f} µs")


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
