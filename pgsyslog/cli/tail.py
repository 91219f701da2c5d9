"""`pgsyslog tail [-n N] [-f]`: the newest rows, then every new one as it is written."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING, Any

import click

from pgsyslog.cli.db import database_url
from pgsyslog.cli.options import database_options, with_config
from pgsyslog.cli.output import Printer, stdout_closed_quietly
from pgsyslog.cli.query_options import Query, query_options
from pgsyslog.config import Config
from pgsyslog.problems import failure_reason

if TYPE_CHECKING:
    import psycopg

    from pgsyslog.storage.follow import Tail
    from pgsyslog.storage.rows import StoredMessage


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
    after each batch, and tail reads only the rows it has not seen. When the database
    goes away (a restart), tail says so on stderr, connects again with growing pauses,
    and goes on after the last row it showed.
    """
    from pgsyslog.storage import database
    from pgsyslog.storage.queries import fetch_messages, search_statement

    printer = Printer(query.output, query.zone)
    with database_url(config) as url, stdout_closed_quietly():
        if follow:
            _follow(url, query, lines, printer)
            return
        with database.connect(url, autocommit=True) as conn:
            printer.print_result(
                fetch_messages(conn, search_statement(query.filters, lines))[::-1])


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
        if self.pressed:  # during the last read or print
            raise KeyboardInterrupt
        self._waiting = True
        try:
            yield
        finally:
            self._waiting = False


class Backoff:
    """Pauses between reconnection attempts: FIRST_PAUSE, doubling up to MAX_PAUSE."""

    FIRST_PAUSE = 0.5
    MAX_PAUSE = 10.0

    def __init__(self) -> None:
        self.failures = 0

    def next_pause(self) -> float:
        pause = min(self.MAX_PAUSE, self.FIRST_PAUSE * (1 << min(self.failures, 8)))
        self.failures += 1
        return pause


NOTICE_EVERY = 10  # failed reconnection attempts in a row are reported once per this many


def _follow(url: str, query: Query, lines: int, printer: Printer) -> None:
    """Show the backlog, then follow; across lost connections, go on after the last id."""
    import psycopg

    from pgsyslog.storage import database

    ctrl_c = CtrlC()
    shown = Shown(printer)
    backoff = Backoff()
    lost = False
    with ctrl_c.installed():
        while True:
            try:
                with ctrl_c.interruptible():
                    conn = database.connect(url, autocommit=True)
            except psycopg.OperationalError as e:
                if shown.resume_after is None:
                    raise  # never connected: the one-line error of database_url
                if backoff.failures % NOTICE_EVERY == 0:
                    _notice(f"cannot reconnect yet ({failure_reason(e)}); trying again")
                with ctrl_c.interruptible():
                    time.sleep(backoff.next_pause())
                continue
            with conn:
                if lost:
                    _notice(f"reconnected; going on where it left off (row {shown.resume_after})")
                    lost, backoff = False, Backoff()
                try:
                    _follow_on(conn, query, lines, shown, ctrl_c)
                except psycopg.OperationalError as e:
                    _notice(f"lost the database connection ({failure_reason(e)}); "
                            "reconnecting")
                    lost = True


class Shown:
    """Prints what a follower read and remembers where it is, in commit order: the point
    a new follower resumes after when the connection was lost (None before the start)."""

    def __init__(self, printer: Printer) -> None:
        self.printer = printer
        self.resume_after: int | None = None

    def print(self, rows: Sequence[StoredMessage], follower: Tail) -> None:
        self.printer.print(rows)
        self.resume_after = follower.resume_after


def _follow_on(conn: psycopg.Connection[Any], query: Query, lines: int, shown: Shown,
               ctrl_c: CtrlC) -> None:
    from pgsyslog.storage.follow import Tail

    follower = Tail(conn, query.filters)
    if shown.resume_after is None:
        shown.print(follower.start(lines), follower)
    else:
        shown.print(follower.start(0, after=shown.resume_after), follower)
    while True:
        with ctrl_c.interruptible():
            follower.wait()
        shown.print(follower.read(), follower)


def _notice(text: str) -> None:
    click.echo(f"tail: {text}", err=True)
