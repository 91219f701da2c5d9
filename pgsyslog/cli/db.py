"""`pgsyslog dsn`, `pgsyslog db upgrade`, and how every command finds its database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click

from pgsyslog.cli.errors import OperatorError, database_errors
from pgsyslog.cli.options import ConfigProblem, database_options, with_config
from pgsyslog.config import Config, data_dir_problem, mask_dsn
from pgsyslog.problems import EMBEDDED_START_ERRORS, NO_SCHEMA, embedded_start_problem
from pgsyslog.storage.database import EmbeddedDatabase, Timeouts, with_timeouts


@contextmanager
def database_url(config: Config, *, create: bool = False) -> Iterator[str]:
    """The DSN to connect to, with the configured timeouts; database errors inside become
    one line. Without --dsn, the embedded server's, started if it is not running.

    Unless ``create`` (db upgrade), the database must exist and hold the pgsyslog schema:
    a data directory or database where serve never ran is one line saying so.
    """
    with server_url(config, create=create) as url, database_errors(url):
        timed = with_timeouts(url, Timeouts.of(config))
        if not create:
            require_schema(timed)
        yield timed


def require_schema(url: str) -> None:
    from pgsyslog.storage import database
    from pgsyslog.storage.schema import SCHEMA

    with database.connect(url) as conn:
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{SCHEMA}.messages",)
                           ).fetchone()
    if not (row and row[0]):
        raise OperatorError(NO_SCHEMA)


@contextmanager
def server_url(config: Config, *, create: bool, keep_running: bool = False) -> Iterator[str]:
    """The configured DSN, or the embedded server's as it gives it."""
    if config.dsn:
        yield config.dsn
        return
    data_dir = config.data_dir
    problem = data_dir_problem(data_dir)
    if problem:
        raise ConfigProblem(f"config: data_dir: {problem}")
    pgdata = data_dir / "pgdata"
    if not create and not (pgdata / "PG_VERSION").exists():
        raise OperatorError(f"no pgsyslog database in {data_dir} yet: start pgsyslog serve "
                            "once (it makes one there), or give --dsn")
    embedded = EmbeddedDatabase(data_dir, stop_on_exit=not keep_running)
    try:
        try:
            url = embedded.start()
        except EMBEDDED_START_ERRORS as e:
            raise OperatorError(embedded_start_problem(pgdata, e)) from None
        yield url
    finally:
        embedded.stop()


@click.command()
@click.option("--show-password", is_flag=True,
              help="Print the password too (it is shown as *** otherwise).")
@database_options
@with_config
def dsn(config: Config, show_password: bool) -> None:
    """Print the database URL, for psql "$(pgsyslog dsn)".

    With the embedded database, this starts it when it is not running (making it first,
    if there is none yet) and leaves it running, so that psql can connect after serve
    has stopped too. The embedded database has no password.
    """
    with server_url(config, create=True, keep_running=True) as url:
        click.echo(url if show_password else mask_dsn(url))


@click.group()
def db() -> None:
    """Database schema commands."""


@db.command()
@database_options
@with_config
def upgrade(config: Config) -> None:
    """Run the migrations to the newest schema (serve also does this at start)."""
    from pgsyslog.storage import migrate

    with database_url(config, create=True) as url:
        migrate.upgrade(url)
    click.echo("database schema is up to date")
