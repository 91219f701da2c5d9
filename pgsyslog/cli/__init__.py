"""The `pgsyslog` command: a click group; each command group lives in its own module.

Commands import what they need when they run, so that `--help` opens no database and
loads no receiver code.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import click

from pgsyslog import __version__
from pgsyslog.cli.alerts import alerts
from pgsyslog.cli.db import db, dsn
from pgsyslog.cli.errors import OperatorError
from pgsyslog.cli.import_ import import_
from pgsyslog.cli.parse import parse
from pgsyslog.cli.partitions import partitions
from pgsyslog.cli.search import search
from pgsyslog.cli.serve import catch_early_signals, check_config, serve
from pgsyslog.cli.stats import stats
from pgsyslog.cli.tail import tail
from pgsyslog.config import mask_secrets

log = logging.getLogger("pgsyslog.cli")


class SafeGroup(click.Group):
    """A group whose commands never show a traceback: an unexpected exception becomes
    one "internal error" line and exit status 1 (the traceback is logged at DEBUG)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except BrokenPipeError:
            # `pgsyslog stats | head -1`: the reader left; that is no error.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # the interpreter's last flush goes nowhere
            return None
        except Exception as e:
            log.debug("internal error", exc_info=True)
            raise OperatorError(internal_error_line(e)) from None


def internal_error_line(error: BaseException) -> str:
    """One line for an exception nobody expected, with no secret in it."""
    text = " ".join(str(error).split()) or "no message"
    return (f"internal error: {type(error).__name__}: {mask_secrets(text)} "
            "(run with --log-level DEBUG or PGSYSLOG_LOG_LEVEL=DEBUG for details)")


@click.group(cls=SafeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pgsyslog")
def cli() -> None:
    """A syslog receiver that stores every message in day-partitioned PostgreSQL."""


for command in (serve, check_config, parse, dsn, db, partitions, search, tail, stats,
                import_, alerts):
    cli.add_command(command)


def main() -> None:
    if sys.argv[1:2] == ["serve"]:
        catch_early_signals()  # before the imports and checks that take a moment
    cli(prog_name="pgsyslog")
