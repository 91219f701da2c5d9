"""`pgsyslog stats`: what is in the database and how fast it comes in."""

from __future__ import annotations

import json
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import click

from pgsyslog.cli.db import database_url
from pgsyslog.cli.options import OneLineBadParameter, database_options, with_config
from pgsyslog.cli.output import human_size
from pgsyslog.config import Config, machine_zone_name
from pgsyslog.storage.filters import FilterError, parse_time, severity_label

if TYPE_CHECKING:
    from pgsyslog.storage.stats import Stats


@click.command()
@click.option("--since", "-S", default="24h", show_default=True, metavar="TIME",
              help="Count rows received since TIME (ISO 8601, 15m, 2h, 3d, yesterday) or "
                   "'all'.")
@click.option("--output", "-o", type=click.Choice(("table", "json")), default="table",
              show_default=True)
@click.option("--utc", is_flag=True, help="Show and read times in UTC.")
@database_options
@with_config
def stats(config: Config, since: str, output: str, utc: bool) -> None:
    """Rows by severity, host and app (top 10), ingest rate, partitions, oldest and newest."""
    from pgsyslog.storage import database
    from pgsyslog.storage.stats import collect_stats, stats_json

    zone: tzinfo = UTC if utc else ZoneInfo(machine_zone_name())
    now = datetime.now(UTC)
    start = _since(since, now, zone)
    with database_url(config) as url, database.connect(url) as conn:
        result = collect_stats(conn, start, now)
    if output == "json":
        click.echo(json.dumps(stats_json(result), ensure_ascii=False))
    else:
        click.echo("\n".join(stats_lines(result, zone)))


def _since(value: str, now: datetime, zone: tzinfo) -> datetime | None:
    if value.strip().lower() == "all":
        return None
    try:
        return parse_time(value, now, zone)
    except FilterError as e:
        raise OneLineBadParameter(str(e), param_hint="'--since'") from None


def _time(when: datetime | None, zone: tzinfo) -> str:
    return "-" if when is None else when.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %Z")


def _counts(title: str, items: list[tuple[str, int]]) -> list[str]:
    width = max([len(title), *(len(name) for name, _ in items)])
    return ["", f"{title:<{width}} {'rows':>12}",
            *(f"{name:<{width}} {count:>12,}" for name, count in items)]


def stats_lines(s: Stats, zone: tzinfo) -> list[str]:
    window = "all rows" if s.since is None else f"rows since {_time(s.since, zone)}"
    lines = [f"{window}: {s.rows:,}",
             f"ingest: {s.rate_minute:,.1f} rows/s over the last minute, "
             f"{s.rate_hour:,.1f} rows/s over the last hour",
             f"oldest row: {_time(s.oldest, zone)}",
             f"newest row: {_time(s.newest, zone)}"]
    lines += _counts("severity", [(severity_label(k), n) for k, n in s.by_severity])
    lines += _counts("host", [(h or "-", n) for h, n in s.top_hosts])
    lines += _counts("app", [(a or "-", n) for a, n in s.top_apps])
    lines += ["", f"{'partition':<20} {'rows (est.)':>12} {'size':>10}"]
    lines += [f"{p.name:<20} {p.row_estimate:>12,} {human_size(p.size_bytes):>10}"
              for p in s.partitions]
    lines.append(f"{len(s.partitions)} partition(s), "
                 f"{human_size(sum(p.size_bytes for p in s.partitions))}")
    return lines
