"""`pgsyslog search`: full-text and filters over syslog.messages, like journalctl."""

from __future__ import annotations

import click

from pgsyslog.cli.db import database_url
from pgsyslog.cli.options import database_options, with_config
from pgsyslog.cli.output import Printer, stdout_closed_quietly
from pgsyslog.cli.query_options import Query, query_options
from pgsyslog.config import Config


@click.command()
@query_options
@click.option("--limit", "-n", type=click.IntRange(min=1), default=100, show_default=True,
              help="Rows shown at most.")
@click.option("--reverse", "-r", is_flag=True, help="Oldest first (default: newest first).")
@database_options
@with_config
def search(config: Config, query: Query, limit: int, reverse: bool) -> None:
    """Rows matching WORDS and the filters, newest first.

    WORDS are matched as whole words through the full-text index (web search syntax):
    all words must occur, "quoted words" as a phrase, -word must not occur, `or` between
    alternatives. Quote the whole query when it has a -word:

    \b
        pgsyslog search '"no route" -ipv6'
    """
    from pgsyslog.storage import database
    from pgsyslog.storage.queries import fetch_messages, search_statement

    stmt = search_statement(query.filters, limit, newest_first=not reverse)
    with database_url(config) as url, database.connect(url) as conn:
        rows = fetch_messages(conn, stmt)
    with stdout_closed_quietly():
        Printer(query.output, query.zone).print_result(rows)
