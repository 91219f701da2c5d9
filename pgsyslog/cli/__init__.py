"""The `pgsyslog` command: a click group; each command group lives in its own module.

Commands import what they need when they run, so that `--help` opens no database and
loads no receiver code.
"""

from __future__ import annotations

import click

from pgsyslog import __version__
from pgsyslog.cli.db import db, dsn
from pgsyslog.cli.parse import parse
from pgsyslog.cli.partitions import partitions
from pgsyslog.cli.search import search
from pgsyslog.cli.serve import check_config, serve
from pgsyslog.cli.stats import stats
from pgsyslog.cli.tail import tail


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pgsyslog")
def cli() -> None:
    """A syslog receiver that stores every message in day-partitioned PostgreSQL."""


for command in (serve, check_config, parse, dsn, db, partitions, search, tail, stats):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="pgsyslog")
