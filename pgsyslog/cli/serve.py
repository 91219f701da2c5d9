"""`pgsyslog serve` and `pgsyslog check-config`."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from pgsyslog.cli.errors import OperatorError, database_errors
from pgsyslog.cli.options import ConfigProblem, database_options, with_config
from pgsyslog.config import Config, ConfigError, check_startup, mask_secrets, redacted
from pgsyslog.problems import EMBEDDED_START_ERRORS, embedded_start_problem


def serve_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Every receiver setting as a flag; values are checked by config.py, not by click."""
    options = [
        click.option("--udp", multiple=True, metavar="HOST:PORT",
                     help="Listen for syslog over UDP (repeatable; [::1]:5514 for IPv6)."),
        click.option("--tcp", multiple=True, metavar="HOST:PORT",
                     help="Listen for syslog over TCP, octet-counted or LF framed (repeatable)."),
        click.option("--tls", multiple=True, metavar="HOST:PORT",
                     help="Listen for syslog over TLS (RFC 5425; repeatable)."),
        click.option("--relp", multiple=True, metavar="HOST:PORT",
                     help="Listen for RELP (rsyslog's omrelp): each message acknowledged once "
                          "stored or spooled (repeatable)."),
        click.option("--relp-tls", multiple=True, metavar="HOST:PORT",
                     help="Listen for RELP over TLS, with the --tls-* settings (repeatable)."),
        click.option("--tls-cert", metavar="FILE", help="PEM certificate (chain) for --tls."),
        click.option("--tls-key", metavar="FILE", help="PEM private key for --tls."),
        click.option("--tls-client-ca", metavar="FILE",
                     help="Require client certificates signed by this CA (mutual TLS)."),
        click.option("--udp-receive-buffer", metavar="BYTES",
                     help="Kernel receive buffer of UDP sockets [default: 8388608]."),
        click.option("--max-frame-length", metavar="BYTES",
                     help="Longest message kept; longer ones are cut and marked [default: 65536]."),
        click.option("--queue-size", metavar="N",
                     help="Records held between listeners and writer [default: 100000]."),
        click.option("--queue-bytes", metavar="BYTES",
                     help="Memory the queued records may hold [default: 268435456]."),
        click.option("--batch-rows", metavar="N",
                     help="Rows per COPY batch [default: 2000]."),
        click.option("--batch-age-ms", metavar="MS",
                     help="Longest wait before a partial batch is written [default: 200]."),
        click.option("--writers", metavar="N",
                     help="Database connections writing batches at once [default: 2]."),
        click.option("--partitions-ahead", metavar="DAYS",
                     help="Day partitions made ahead of today [default: 3]."),
        click.option("--retention-days", metavar="DAYS",
                     help="Days of partitions kept; 0 or 'forever' keeps all [default: 30]."),
        click.option("--maintenance-interval", metavar="SECONDS",
                     help="Seconds between partition maintenance runs [default: 3600]."),
        click.option("--default-tz", metavar="ZONE",
                     help="Zone of timestamps that carry none [default: this machine's]."),
        click.option("--source-tz", "source_timezones", multiple=True, metavar="CIDR=ZONE",
                     help="Zone for senders in CIDR, e.g. 10.1.0.0/16=Europe/Berlin (repeatable)."),
        click.option("--shutdown-timeout", metavar="SECONDS",
                     help="Longest time a stop may spend writing what was received [default: 30]."),
        click.option("--db-connect-timeout", metavar="SECONDS",
                     help="Longest wait for a database connection [default: 5]."),
        click.option("--db-statement-timeout", metavar="SECONDS",
                     help="Longest a database statement may take before the database counts "
                          "as away [default: 30]."),
        click.option("--db-keepalive-idle", metavar="SECONDS",
                     help="TCP keepalive probes on database connections after this much "
                          "silence [default: 10]."),
        click.option("--max-connections", metavar="N",
                     help="TCP, TLS and RELP connections open at once; more are refused "
                          "[default: 1000]."),
        click.option("--max-connections-per-source", metavar="N",
                     help="TCP, TLS and RELP connections one source address may hold "
                          "[default: 100]."),
        click.option("--tls-handshake-timeout", metavar="SECONDS",
                     help="Longest a TLS handshake may take [default: 10]."),
        click.option("--idle-timeout", metavar="SECONDS",
                     help="Close a connection silent this long; 0 never [default: 86400]."),
        click.option("--udp-allow", metavar="CIDR[,CIDR...]",
                     help="Only these source networks may send over UDP [default: all]."),
        click.option("--tcp-allow", metavar="CIDR[,CIDR...]",
                     help="Only these source networks may connect over TCP and RELP "
                          "[default: all]."),
        click.option("--tls-allow", metavar="CIDR[,CIDR...]",
                     help="Only these source networks may connect over TLS and RELP over "
                          "TLS [default: all]."),
        click.option("--spool-max-bytes", metavar="BYTES",
                     help="Disk spool for database outages, under --data-dir; 0 turns it off "
                          "[default: 1073741824]."),
        click.option("--spool-fsync", metavar="BOOL",
                     help="fsync each spooled batch (true/false) [default: true]."),
        click.option("--http", metavar="HOST:PORT",
                     help="HTTP API: health, metrics, search, live tail; 'off' turns it off "
                          "[default: 127.0.0.1:8514]."),
        click.option("--http-token", metavar="TOKEN",
                     help="Bearer token required on /api when set. [env: PGSYSLOG_HTTP_TOKEN]"),
        click.option("--http-db-connections", metavar="N",
                     help="Database connections the HTTP API may use at once [default: 4]."),
        click.option("--http-max-response-bytes", metavar="BYTES",
                     help="Largest HTTP API answer [default: 16777216]."),
        click.option("--http-stream-timeout", metavar="SECONDS",
                     help="Drop a live-tail client that reads nothing this long [default: 30]."),
        click.option("--log-level", metavar="LEVEL", help="DEBUG, INFO, WARNING or ERROR."),
    ]
    for option in reversed(options):
        func = option(func)
    return database_options(func)


def _ready_to_serve(config: Config) -> None:
    """The checks serve makes before it opens a socket (check-config makes them too)."""
    try:
        check_startup(config)
    except ConfigError as e:
        raise ConfigProblem(f"config: {e}") from None


@click.command()
@serve_options
@with_config
def serve(config: Config) -> None:
    """Receive syslog and store it in PostgreSQL until SIGTERM or Ctrl-C."""
    from pgsyslog.receiver.server import Receiver, StartupError

    _ready_to_serve(config)
    receiver = Receiver(config, early_stops=EARLY_STOPS)
    try:
        with (_startup_errors(config, lambda: receiver.state.dsn is not None),
              asyncio.Runner(loop_factory=_loop_factory()) as runner):
            runner.run(receiver.run())
            _exit_now()
    except StartupError as e:
        click.echo(f"Error: {mask_secrets(str(e), config.dsn)}", err=True)
        sys.exit(1)


# Stop signals that came before the receiver's own handlers were in place.
EARLY_STOPS: list[int] = []


def catch_early_signals() -> None:
    """From the first moment of serve: SIGHUP never kills it, and a SIGTERM or SIGINT
    during start-up stops it once it is up (tests/test_serve_start.py)."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda number, _frame: EARLY_STOPS.append(number))


def _exit_now() -> None:
    """Exit 0 without waiting for worker threads: everything received is written or
    spooled by now, but a thread can still be blocked on a database that hangs (a
    maintenance statement a stopped server never answers), and the interpreter would wait
    for it at exit, past shutdown_timeout (tests/test_faults_stop.py)."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


@contextmanager
def _startup_errors(config: Config, database_ready: Callable[[], bool]) -> Iterator[None]:
    """Database failures, and the embedded server's failure to start, as one line each."""
    if config.dsn:
        with database_errors(config.dsn):
            yield
        return
    pgdata = config.data_dir / "pgdata"
    try:
        with database_errors(f"host={pgdata}"):
            yield
    except EMBEDDED_START_ERRORS as e:
        if database_ready():
            raise
        raise OperatorError(embedded_start_problem(pgdata, e)) from None


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed: the standard loop drops UDP under load far sooner."""
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


@click.command("check-config")
@serve_options
@with_config
def check_config(config: Config) -> None:
    """Check the configuration as serve does before it opens a socket, and print it.

    Settings, listeners, TLS files (loaded into a real TLS context) and the data directory
    are checked; no socket is opened and no database is started. The DSN is shown with
    its password masked, the HTTP token as ***.
    """
    _ready_to_serve(config)
    for name, value in redacted(config).items():
        click.echo(f"{name} = {value}")
    from pgsyslog.alerts.describe import rule_line

    for rule in config.alert:
        click.echo(f"alert rule {rule_line(rule)}")
    click.echo("configuration is valid")
