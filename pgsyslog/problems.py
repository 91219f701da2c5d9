"""What went wrong with the database, in one line for the operator, with what to do.

Database errors are told apart by their psycopg class (SQLSTATE), never by their text;
the text of a connection failure only supplies the reason shown ("connection refused").
Plain functions, no click: the CLI, serve's log lines and the HTTP API can all use them.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import psycopg
from psycopg import errors

NO_SCHEMA = ("no pgsyslog schema in this database yet: start pgsyslog serve once, "
             "or run pgsyslog db upgrade")
DEFAULT_PORT = "5432"
LOG_TAIL_BYTES = 4096  # enough of the embedded server's log for its last message


def connection_target(dsn: str) -> str:
    """Where a DSN points, for people: ``db.example:5432`` or ``socket /run/x/.s.PGSQL.5432``."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "the database"
    hosts = str(params.get("host") or params.get("hostaddr") or "").split(",")
    ports = str(params.get("port") or DEFAULT_PORT).split(",")
    ports += [ports[-1]] * (len(hosts) - len(ports))
    return ", ".join(_target(host, port) for host, port in zip(hosts, ports, strict=False))


def _target(host: str, port: str) -> str:
    if not host:
        return f"the local socket of port {port}"
    if host.startswith("/") or host.startswith("@"):
        return f"socket {host.rstrip('/')}/.s.PGSQL.{port}"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def failure_reason(error: BaseException) -> str:
    """The reason libpq gives last on the first line: "connection refused"."""
    first = (str(error).strip().splitlines() or [type(error).__name__])[0]
    reason = first.rpartition(": ")[2].strip() or first
    return reason[:1].lower() + reason[1:] if reason[1:2].islower() else reason


def database_problem(error: psycopg.Error, dsn: str) -> str:
    """The one line for a database error, chosen by its class (that is, its SQLSTATE)."""
    where = connection_target(dsn)
    primary = error.diag.message_primary or failure_reason(error)
    if isinstance(error, errors.UndefinedTable | errors.InvalidSchemaName):
        return NO_SCHEMA
    if isinstance(error, errors.QueryCanceled):
        return (f"{where} did not answer within db_statement_timeout: narrow the query "
                "(--since) or raise db_statement_timeout")
    if isinstance(error, errors.AdminShutdown | errors.CrashShutdown):
        return f"the database at {where} shut down: try again once it is back"
    if isinstance(error, errors.InsufficientPrivilege):
        return f"the database user may not do this ({primary}): grant it, or use another user"
    if isinstance(error, errors.LockNotAvailable):
        return f"another session holds a lock this needs ({primary}): try again shortly"
    if isinstance(error, errors.ReadOnlySqlTransaction):
        return f"the database at {where} is read-only (a standby?): give --dsn the primary"
    if isinstance(error, psycopg.OperationalError) and error.sqlstate is None:
        return (f"cannot connect to {where}: {failure_reason(error)}; check that PostgreSQL "
                "runs there and that --dsn (or PGSYSLOG_DSN) is right")
    code = f" (SQLSTATE {error.sqlstate})" if error.sqlstate else ""
    return f"the database refused: {primary}{code}"


# Failures of the pip-installed server: pg_ctl or initdb exiting non-zero or timing out,
# a data directory of another PostgreSQL version (RuntimeError), files it cannot make.
EMBEDDED_START_ERRORS = (subprocess.SubprocessError, RuntimeError, OSError, psycopg.Error)


def embedded_start_problem(pgdata: Path, error: BaseException) -> str:
    detail = last_log_line(pgdata / "log") or failure_reason(error)
    return (f"cannot start the embedded PostgreSQL in {pgdata}: {detail}; see {pgdata / 'log'}, "
            "or give --dsn a PostgreSQL server")


def last_log_line(path: Path) -> str | None:
    """The last non-empty line of a log file, or None when there is none."""
    try:
        with path.open("rb") as fh:
            fh.seek(max(0, fh.seek(0, 2) - LOG_TAIL_BYTES))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else None
