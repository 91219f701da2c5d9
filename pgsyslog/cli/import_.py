"""`pgsyslog import FILE... [--follow]`: log files into the store, each line one
row (tests: test_import.py, test_import_follow.py).

Files are opened and checked before the database is: a missing, unreadable or damaged
file is one line and nothing is imported. Standard input (``-``) has no identity, so its
lines are imported every time it is given.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

from pgsyslog.cli.db import database_url
from pgsyslog.cli.errors import OperatorError
from pgsyslog.cli.options import OneLineBadParameter, database_options, with_config
from pgsyslog.config import Config

if TYPE_CHECKING:
    from pgsyslog.importer.lines import Tally
    from pgsyslog.importer.run import ImportSettings, OpenFile
    from pgsyslog.importer.source import Source

STDIN = "-"  # pgsyslog.importer.source.STDIN, without loading the importer for --help

INTERRUPTED = 130  # exit status of a one-shot import stopped by a signal: run it again


def _host_name(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    from pgsyslog.receiver.parsers.build import MAX_HOSTNAME

    if value is not None and not value.strip():
        raise OneLineBadParameter("the hostname is empty; leave --host out for lines that "
                                  "carry none", param_hint="'--host'")
    if value is not None and len(value) > MAX_HOSTNAME:
        raise OneLineBadParameter(f"the hostname has {len(value):,} characters; at most "
                                  f"{MAX_HOSTNAME} (RFC 5424's limit, as for every row)",
                                  param_hint="'--host'")
    return value


@click.command("import")
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@click.option("--follow", "-f", is_flag=True,
              help="Keep reading the files as they grow, across rotation (rename and "
                   "truncate), as tail -F; stop with Ctrl-C or SIGTERM.")
@click.option("--host", metavar="NAME", callback=_host_name,
              help="Hostname of lines that carry none.")
@click.option("--default-tz", metavar="ZONE",
              help="IANA zone of timestamps without one [default: the config's].")
@click.option("--batch-rows", "import_batch_rows", metavar="N",
              help="Lines per transaction, at most 65,536 [default: 10000]. "
                   "[env: PGSYSLOG_IMPORT_BATCH_ROWS]")
@click.option("--quiet", "-q", is_flag=True, help="No progress, only the summary.")
@database_options
@with_config
def import_(config: Config, files: tuple[str, ...], follow: bool, host: str | None,
            quiet: bool) -> None:
    """Import log files (plain or gzip; - for stdin), one message per line.

    Each line is parsed as serve parses a message and stored at the time it states, in
    the partition of its own day. Files are remembered in syslog.imported_files: a
    second import of a file, grown, renamed or compressed since, adds only the lines not
    imported yet. Lines older than retention_days are counted and skipped.
    """
    from pgsyslog.importer.run import ImportSettings
    from pgsyslog.importer.source import SourceError

    _check_arguments(files, follow)
    sources = _open_all(files)
    if STDIN in files:
        click.echo("standard input has no identity: its lines are imported each time",
                   err=True)
    settings = ImportSettings(config.import_batch_rows, config.default_zone, host,
                              config.retention_days, config.max_frame_length,
                              load_new_days=not follow)
    try:
        with database_url(config) as url:
            opened, stopped = asyncio.run(_run(url, settings, sources, follow, quiet))
    except SourceError as e:
        raise OperatorError(str(e)) from None
    finally:
        for source in sources:
            source.close()
    click.echo(summary(opened))
    damaged = cut_short_lines(opened)
    for line in damaged:
        click.echo(f"Error: {line}", err=True)
    if stopped and not follow:
        click.echo("interrupted: " + ("the summary counts what is stored; lines of standard "
                                      "input given again would be stored again"
                                      if STDIN in files else
                                      "run the same import again to go on from here"), err=True)
        raise SystemExit(INTERRUPTED)
    if damaged:
        raise SystemExit(1)


def _check_arguments(files: Sequence[str], follow: bool) -> None:
    if files.count(STDIN) > 1:
        raise click.UsageError("- (standard input) can be given once")
    if follow and STDIN in files:
        raise click.UsageError("--follow reads files; standard input cannot be followed")


def _open_all(files: Sequence[str]) -> list[Source]:
    from pgsyslog.importer.source import SourceError, open_source

    sources: list[Source] = []
    try:
        for name in files:
            sources.append(open_source(name))
    except SourceError as e:
        for source in sources:
            source.close()
        raise OperatorError(str(e)) from None
    return sources


async def _run(url: str, settings: ImportSettings, sources: list[Source], follow: bool,
               quiet: bool) -> tuple[list[OpenFile], bool]:
    from pgsyslog import collector
    from pgsyslog.importer.follow import Follower
    from pgsyslog.importer.ledger import ConcurrentImport
    from pgsyslog.importer.progress import make_progress
    from pgsyslog.importer.run import Importer

    stop = asyncio.Event()
    progress = make_progress(quiet=quiet or follow)
    importer = Importer(url, settings, progress, stop)
    opened: list[OpenFile] = []
    try:
        with _stop_on_signals(stop):
            await importer.connect()
            collector.settle()
            if follow:
                for source in sources:
                    source.close()  # the follower opens each path itself
                follower = Follower(importer, stop)
                return await follower.run_through_outages([s.name for s in sources]), False
            try:
                for source in sources:
                    if stop.is_set():
                        break
                    opened.append(await importer.open(source))
                    await importer.import_all(opened[-1])
            except ConcurrentImport:
                await importer.finish()  # the days of the files before it show
                raise
            stopped = stop.is_set()  # a signal during finish interrupts no reading
            await importer.finish()  # also when stopped: what was committed shows
    except ConcurrentImport as e:
        raise OperatorError(str(e)) from None
    finally:
        progress.close()
        await importer.close()
    return opened, stopped


@contextmanager
def _stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    """SIGINT and SIGTERM end the import after the batch in flight."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        yield
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def summary(opened: Sequence[OpenFile]) -> str:
    """Per file and in total: imported, skipped as imported before or too old, errors."""
    from pgsyslog.importer.lines import Tally

    total = Tally()
    lines = []
    for item in opened:
        total.add(item.tally)
        cut = f", {item.reader.cut:,} cut to max_frame_length" if item.reader.cut else ""
        lines.append(f"{item.source.name}: {_counts(item.tally)}{cut}")
    if len(opened) != 1:
        lines.append(f"total: {_counts(total)}")
    return "\n".join(lines)


def cut_short_lines(opened: Sequence[OpenFile]) -> list[str]:
    """One line per gzip file whose data was cut short."""
    from pgsyslog.importer.source import cut_short

    return [cut_short(item.source.name, item.cut_short_at) for item in opened
            if item.cut_short_at is not None]


def _counts(t: Tally) -> str:
    return (f"{t.imported:,} imported, {t.already:,} skipped as already imported, "
            f"{t.too_old:,} skipped as too old, {t.parse_errors:,} with parse errors "
            f"(stored), {t.blank:,} blank")
