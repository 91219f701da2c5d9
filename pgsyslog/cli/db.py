"""`pgsyslog dsn` and `pgsyslog db upgrade`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click

from pgsyslog.cli.options import database_options, with_config
from pgsyslog.config import Config
from pgsyslog.storage.database import EmbeddedDatabase


@contextmanager
def database_url(config: Config, *, keep_running: bool = False) -> Iterator[str]:
    """The configured DSN, or the embedded server's (started if it is not running)."""
    if config.dsn:
        yield config.dsn
        return
    embedded = EmbeddedDatabase(config.data_dir, stop_on_exit=not keep_running)
    try:
        yield embedded.start()
    finally:
        embedded.stop()


@click.command()
@database_options
@with_config
def dsn(config: Config) -> None:
    """Print the database URL, for psql "$(pgsyslog dsn)".

    With the embedded database, this starts it when it is not running and leaves it
    running, so that psql can connect after serve has stopped too.
    """
    with database_url(config, keep_running=True) as url:
        click.echo(url)


@click.group()
def db() -> None:
    """Database schema commands."""


@db.command()
@database_options
@with_config
def upgrade(config: Config) -> None:
    """Run the migrations to the newest schema (serve also does this at start)."""
    from pgsyslog.storage import migrate

    with database_url(config) as url:
        migrate.upgrade(url)
    click.echo("database schema is up to date")
