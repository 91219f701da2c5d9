"""`pgsyslog tail [-n N] [-f]`: the newest rows, then every new one as it is written."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING, Any

import click

from pgsyslog.cli.db import database_url
from pgsyslog.cli.options import database_options, with_config
from pgsyslog.cli.output import Printer, stdout_closed_quietly
from pgsyslog.cli.query_options import Query, query_options
from pgsyslog.config import Config

if TYPE_CHECKING:
    import psycopg


@click.command()
@query_options
@click.option("--lines", "-n", type=click.IntRange(min=0), default=10, show_default=True,
              help="How many of the newest matching rows to show first.")
@click.option("--follow", "-f", is_flag=True,
              help="Then show each new matching row as it is written, until Ctrl-C.")
@database_options
@with_config
def tail(config: Config, query: Query, lines: int, follow: bool) -> None:
    """The newest rows matching WORDS and the filters, oldest of them first.

    With -f, new rows follow within a second of being written: the receiver notifies
    after each batch, and tail reads only the rows it has not seen.
    """
    from pgsyslog.storage import database
    from pgsyslog.storage.queries import fetch_messages, search_statement

    printer = Printer(query.output, query.zone)
    with (database_url(config) as url, database.connect(url, autocommit=True) as conn,
          stdout_closed_quietly()):
        if follow:
            _follow(conn, query, lines, printer)
        else:
            printer.print(fetch_messages(conn, search_statement(query.filters, lines))[::-1])


class CtrlC:
    """Ctrl-C ends ``tail -f`` between two reads, never in the middle of one (that would
    leave the connection busy): while waiting it interrupts, otherwise it is noted."""

    def __init__(self) -> None:
        self.pressed = False
        self._waiting = False

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        self.pressed = True
        if self._waiting:
            raise KeyboardInterrupt

    @contextmanager
    def installed(self) -> Iterator[None]:
        previous = signal.signal(signal.SIGINT, self._handler)
        try:
            yield
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGINT, previous)

    @contextmanager
    def interruptible(self) -> Iterator[None]:
        self._waiting = True
        try:
            yield
        finally:
            self._waiting = False


def _follow(conn: psycopg.Connection[Any], query: Query, lines: int, printer: Printer) -> None:
    from pgsyslog.storage.follow import Tail

    follower = Tail(conn, query.filters)
    ctrl_c = CtrlC()
    with ctrl_c.installed():
        printer.print(follower.start(lines))
        while True:
            with ctrl_c.interruptible():
                if ctrl_c.pressed:  # during the last read or print
                    break
                follower.wait()
            printer.print(follower.read())
