"""The one-line wording of database failures: chosen by psycopg class, never by text."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from psycopg import errors

from pgsyslog.problems import (
    NO_SCHEMA,
    connection_target,
    database_problem,
    embedded_start_problem,
    failure_reason,
)


@pytest.mark.parametrize(
    ("dsn", "target"),
    [("host=db.example port=5433", "db.example:5433"),
     ("postgresql://u:pw@db.example/logs", "db.example:5432"),
     ("host=::1", "[::1]:5432"),
     ("host=a,b port=5432,5433", "a:5432, b:5433"),
     ("host=/run/postgresql", "socket /run/postgresql/.s.PGSQL.5432"),
     ("dbname=logs", "the local socket of port 5432"),
     ("not a dsn", "the database")],
)
def test_connection_target(dsn: str, target: str) -> None:
    assert connection_target(dsn) == target


def test_failure_reason_is_what_libpq_says_last() -> None:
    refused = psycopg.OperationalError(
        'connection failed: connection to server at "127.0.0.1", port 9 failed: '
        "Connection refused\n\tIs the server running on that host?")
    assert failure_reason(refused) == "connection refused"
    assert failure_reason(psycopg.OperationalError('failed: FATAL:  role "x" does not exist')
                          ) == 'role "x" does not exist'


@pytest.mark.parametrize(
    ("error", "says"),
    [(errors.UndefinedTable('relation "syslog.messages" does not exist'), NO_SCHEMA),
     (errors.InvalidSchemaName('schema "syslog" does not exist'), NO_SCHEMA),
     (errors.QueryCanceled("canceling statement due to statement timeout"),
      "did not answer within db_statement_timeout"),
     (errors.AdminShutdown("terminating connection"), "shut down: try again once it is back"),
     (errors.ReadOnlySqlTransaction("read-only"), "is read-only (a standby?)"),
     (psycopg.OperationalError("connection failed: x failed: Connection refused"),
      "cannot connect to db:5432: connection refused; check that PostgreSQL runs there"),
     (errors.DiskFull("could not extend file"), "the database refused:")],
)
def test_database_problem_by_class(error: psycopg.Error, says: str) -> None:
    assert says in database_problem(error, "host=db")


def test_embedded_start_problem_names_the_servers_last_word(tmp_path: Path) -> None:
    (tmp_path / "log").write_text("starting\nFATAL:  data directory has wrong ownership\n\n")
    line = embedded_start_problem(tmp_path, RuntimeError("pg_ctl failed"))
    assert "data directory has wrong ownership" in line and str(tmp_path / "log") in line
    assert "pg_ctl failed" in embedded_start_problem(tmp_path / "none", RuntimeError(
        "pg_ctl failed"))
