"""Failures an operator can cause, as one ``Error:`` line and a non-zero exit status.

The wording is pgsyslog.problems'; anything else that escapes a command becomes one
"internal error" line (see :class:`pgsyslog.cli.SafeGroup`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

import click
import psycopg

from pgsyslog.config import mask_secrets
from pgsyslog.problems import database_problem


class OperatorError(click.ClickException):
    """One ``Error: ...`` line on stderr, exit status 1."""

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"Error: {self.format_message()}", err=True)


def _psycopg_error(exc: BaseException) -> psycopg.Error | None:
    """The psycopg error itself, or the one SQLAlchemy (migrations) wrapped."""
    if isinstance(exc, psycopg.Error):
        return exc
    orig = getattr(exc, "orig", None)
    return orig if isinstance(orig, psycopg.Error) else None


@contextmanager
def database_errors(dsn: str) -> Iterator[None]:
    """Turn a database error raised inside into one line (secrets masked)."""
    import sqlalchemy.exc

    from pgsyslog.storage.maintenance import MaintenanceBusy

    try:
        yield
    except MaintenanceBusy as e:
        raise OperatorError(str(e)) from None
    except (psycopg.Error, sqlalchemy.exc.DBAPIError) as e:
        error = _psycopg_error(e)
        if error is None:
            raise
        raise OperatorError(mask_secrets(database_problem(error, dsn), dsn)) from None
