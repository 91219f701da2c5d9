"""`pgsyslog partitions list / ensure / prune`: partition maintenance by hand."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from pgsyslog.cli.db import database_url
from pgsyslog.cli.options import database_options, with_config
from pgsyslog.cli.output import human_size
from pgsyslog.config import Config


@click.group()
def partitions() -> None:
    """Day partitions of syslog.messages."""


@partitions.command("list")
@database_options
@with_config
def list_(config: Config) -> None:
    """Each partition with its range, estimated rows and size on disk."""
    from pgsyslog.storage import database
    from pgsyslog.storage import partitions as parts

    with database_url(config) as url, database.connect(url) as conn:
        infos = parts.list_partitions(conn)
    click.echo(f"{'partition':<20} {'from (UTC)':<17} {'to (UTC)':<17} {'rows (est.)':>12} "
               f"{'size':>10}")
    for p in infos:
        click.echo(f"{p.name:<20} {p.range_start:%Y-%m-%d %H:%M} {p.range_end:%Y-%m-%d %H:%M} "
                   f"{p.row_estimate:>12,} {human_size(p.size_bytes):>10}")
    click.echo(f"{len(infos)} partition(s), {sum(p.row_estimate for p in infos):,} rows "
               f"(est.), {human_size(sum(p.size_bytes for p in infos))}")


@partitions.command()
@click.option("--ahead", type=click.IntRange(min=0, max=366), metavar="DAYS",
              help="Days ahead of today [default: partitions_ahead of the config].")
@database_options
@with_config
def ensure(config: Config, ahead: int | None) -> None:
    """Create the partitions from yesterday to today + DAYS."""
    from pgsyslog.storage.maintenance import run_maintenance

    with database_url(config) as url:
        result = run_maintenance(url, ahead=config.partitions_ahead if ahead is None else ahead,
                                 retention_days=config.retention_days, wait=True,
                                 steps=("ensure",))
    for name in result.created:
        click.echo(f"created {name}")
    click.echo(f"{len(result.created)} partition(s) created")


@partitions.command()
@click.option("--retention-days", metavar="DAYS",
              help="Keep this many days; 0 or 'forever' keeps all [default: the config's].")
@click.option("--dry-run", is_flag=True, help="Only print what would be dropped.")
@database_options
@with_config
def prune(config: Config, dry_run: bool) -> None:
    """Detach and drop the partitions older than the retention."""
    from pgsyslog.storage import database
    from pgsyslog.storage import partitions as parts
    from pgsyslog.storage.maintenance import run_maintenance

    keep = config.retention_days
    now = datetime.now(UTC)
    with database_url(config) as url:
        if dry_run:
            with database.connect(url) as conn:
                names = parts.expired_partitions(conn, now, keep)
        else:
            names = run_maintenance(url, ahead=config.partitions_ahead, retention_days=keep,
                                    now=now, wait=True, steps=("drop",)).dropped
    verb = "would drop" if dry_run else "dropped"
    for name in names:
        click.echo(f"{verb} {name}")
    summary = "would be dropped" if dry_run else "dropped"
    click.echo(f"{len(names)} partition(s) {summary}" + (" (retention: forever)" if keep == 0
                                                      else f" (retention: {keep} days)"))
