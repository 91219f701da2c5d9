"""The filters and output flags shared by `search` and `tail`, turned into one Query."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import click

from pgsyslog.cli.options import OneLineBadParameter
from pgsyslog.cli.output import OUTPUTS
from pgsyslog.config import machine_zone_name
from pgsyslog.storage.filters import TIME_COLUMNS, FilterError, Filters, parse_filters


@dataclass(frozen=True, slots=True)
class Query:
    filters: Filters
    output: str  # table, json or raw
    zone: tzinfo  # times are shown, and read when they carry no offset, in this zone


def _filters(texts: Mapping[str, tuple[str, ...]], now: datetime, zone: tzinfo) -> Filters:
    """The flags' text through the parser the API uses; a bad value names its flag."""
    try:
        return parse_filters(texts, now, zone)
    except FilterError as e:
        raise OneLineBadParameter(str(e), param_hint=f"'--{e.param}'") from None


_OPTIONS = [
    click.argument("words", nargs=-1),
    click.option("--host", multiple=True,
                 help="Only this hostname (exactly); repeat it for any of several."),
    click.option("--app", multiple=True, help="Only this app_name (exactly); repeatable."),
    click.option("--procid", multiple=True, help="Only this procid (the [pid]); repeatable."),
    click.option("--msgid", multiple=True, help="Only this RFC 5424 MSGID; repeatable."),
    click.option("--source", multiple=True, metavar="IP|CIDR",
                 help="Only from this address or network (10.0.0.0/8); repeatable."),
    click.option("--peer", multiple=True, metavar="NAME",
                 help="Only from this TLS client (its permitted certificate name); repeatable."),
    click.option("--severity", "-p", metavar="NAME|0-7|FROM..TO",
                 help="This severity or worse (emerg alert crit err warning notice info "
                      "debug), or a range such as err..crit."),
    click.option("--facility", metavar="NAME|0-23",
                 help="Only this facility (kern, user, daemon, auth, local0...)."),
    click.option("--since", "-S", metavar="TIME",
                 help="At or after TIME: ISO 8601 or 15m, 2h, 3d, today, yesterday."),
    click.option("--until", "-U", metavar="TIME", help="Before TIME (as --since)."),
    click.option("--time", "time_column", type=click.Choice(TIME_COLUMNS), default="received",
                 show_default=True,
                 help="Filter and order by when pgsyslog received a message, or by the "
                      "time the message states (rows that state none are left out)."),
    click.option("--output", "-o", type=click.Choice(OUTPUTS), default="table",
                 show_default=True,
                 help="table (aligned), json (one object per line) or raw (syslog lines)."),
    click.option("--utc", is_flag=True,
                 help="Show and read times in UTC rather than this machine's zone."),
]

_SINGLE = ("severity", "facility", "since", "until")
_REPEATED = ("host", "app", "procid", "msgid", "source", "peer")


def query_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """WORDS and the filter and output flags, passed to the command as ``query``."""

    @functools.wraps(func)
    def wrapper(*, words: tuple[str, ...], time_column: str, output: str, utc: bool,
                **rest: Any) -> Any:
        zone: tzinfo = UTC if utc else ZoneInfo(machine_zone_name())
        texts: dict[str, tuple[str, ...]] = {"q": (" ".join(words),), "time": (time_column,)}
        for name in _SINGLE:
            if (value := rest.pop(name)) is not None:
                texts[name] = (value,)
        for name in _REPEATED:
            texts[name] = rest.pop(name)
        filters = _filters(texts, datetime.now(UTC), zone)
        return func(query=Query(filters, output, zone), **rest)

    for option in reversed(_OPTIONS):
        wrapper = option(wrapper)
    return wrapper
