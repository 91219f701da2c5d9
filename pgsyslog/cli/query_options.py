"""The filters and output flags shared by `search` and `tail`, turned into one Query."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import click

from pgsyslog.cli.options import OneLineBadParameter
from pgsyslog.cli.output import OUTPUTS
from pgsyslog.config import machine_zone_name
from pgsyslog.storage.filters import (
    FilterError,
    Filters,
    parse_facility,
    parse_severity,
    parse_time,
)


@dataclass(frozen=True, slots=True)
class Query:
    filters: Filters
    output: str  # table, json or raw
    zone: tzinfo  # times are shown, and read when they carry no offset, in this zone


def _checked(parse: Callable[[str], int]) -> Callable[[click.Context, click.Parameter, Any],
                                                       int | None]:
    def callback(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
        if value is None:
            return None
        try:
            return parse(value)
        except FilterError as e:
            raise OneLineBadParameter(str(e), ctx, param) from None

    return callback


def _time(value: str | None, flag: str, now: datetime, zone: tzinfo) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_time(value, now, zone)
    except FilterError as e:
        raise OneLineBadParameter(str(e), param_hint=f"'{flag}'") from None


_OPTIONS = [
    click.argument("words", nargs=-1),
    click.option("--host", help="Only this hostname (exactly)."),
    click.option("--app", help="Only this app_name (exactly)."),
    click.option("--severity", "-p", callback=_checked(parse_severity), metavar="NAME|0-7",
                 help="This severity or worse: emerg alert crit err warning notice info debug."),
    click.option("--facility", callback=_checked(parse_facility), metavar="NAME|0-23",
                 help="Only this facility (kern, user, daemon, auth, local0...)."),
    click.option("--since", "-S", metavar="TIME",
                 help="Received at or after TIME: ISO 8601 or 15m, 2h, 3d, today, yesterday."),
    click.option("--until", "-U", metavar="TIME", help="Received before TIME (as --since)."),
    click.option("--output", "-o", type=click.Choice(OUTPUTS), default="table",
                 show_default=True,
                 help="table (aligned), json (one object per line) or raw (syslog lines)."),
    click.option("--utc", is_flag=True,
                 help="Show and read times in UTC rather than this machine's zone."),
]


def query_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """WORDS and the filter and output flags, passed to the command as ``query``."""

    @functools.wraps(func)
    def wrapper(*, words: tuple[str, ...], host: str | None, app: str | None,
                severity: int | None, facility: int | None, since: str | None,
                until: str | None, output: str, utc: bool, **rest: Any) -> Any:
        zone: tzinfo = UTC if utc else ZoneInfo(machine_zone_name())
        now = datetime.now(UTC)
        filters = Filters(words=" ".join(words).strip() or None, host=host, app=app,
                          severity=severity, facility=facility,
                          since=_time(since, "--since", now, zone),
                          until=_time(until, "--until", now, zone))
        return func(query=Query(filters, output, zone), **rest)

    for option in reversed(_OPTIONS):
        wrapper = option(wrapper)
    return wrapper
