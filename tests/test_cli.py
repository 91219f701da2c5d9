"""The command line: one-line errors with a fix, thin commands, --help opens nothing."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys

import pytest
from alembic.script import ScriptDirectory
from click.testing import CliRunner

from helpers import query
from pgsyslog.cli import cli
from pgsyslog.cli.db import database_url
from pgsyslog.config import load_config
from pgsyslog.storage import database, migrate

UNREACHABLE_DSN = "host=/nonexistent-socket-dir dbname=none connect_timeout=1"


def pgsyslog(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pgsyslog", *args], capture_output=True,
                          text=True, timeout=60, **kwargs)  # type: ignore[call-overload]


def test_privileged_port_without_permission_says_how_to_fix_it() -> None:
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root and setpriv is missing: cannot drop the capability")
        prefix = ["setpriv", "--bounding-set", "-net_bind_service"]
    else:
        prefix = []
    result = subprocess.run([*prefix, sys.executable, "-m", "pgsyslog", "serve", "--udp",
                             "127.0.0.1:514", "--dsn", UNREACHABLE_DSN],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "permission denied" in lines[0] and "CAP_NET_BIND_SERVICE" in lines[0]
    assert "5514" in lines[0]


def test_port_in_use_is_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = pgsyslog("serve", "--tcp", f"127.0.0.1:{port}", "--dsn", UNREACHABLE_DSN)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"Error: cannot listen on tcp 127.0.0.1:{port}: the address is already in use by "
        "another program")


def test_serve_without_listeners_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["serve", "--dsn", UNREACHABLE_DSN])
    assert result.exit_code == 2
    assert "give at least one listener" in result.output


@pytest.mark.parametrize("command", [[], ["serve"], ["parse"], ["dsn"], ["db", "upgrade"],
                                     ["search"], ["tail"], ["stats"], ["partitions", "list"],
                                     ["check-config"], ["import"], ["alerts"],
                                     ["alerts", "list"], ["alerts", "history"],
                                     ["alerts", "test"]])
def test_help_opens_no_database(command: list[str]) -> None:
    result = pgsyslog(*command, "--help", env={**os.environ, "PGSYSLOG_DSN": UNREACHABLE_DSN})
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout


def test_dsn_prints_the_given_url() -> None:
    result = CliRunner().invoke(cli, ["dsn", "--dsn", "postgresql://u@db.example/logs"])
    assert result.exit_code == 0
    assert result.output == "postgresql://u@db.example/logs\n"


def test_db_upgrade_migrates_an_empty_database(empty_dsn: str) -> None:
    result = pgsyslog("db", "upgrade", "--dsn", empty_dsn)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "database schema is up to date"
    head = ScriptDirectory.from_config(migrate.alembic_config(empty_dsn)).get_current_head()
    assert query(empty_dsn, "SELECT version_num FROM alembic_version") == [(head,)]
    assert query(empty_dsn, "SELECT to_regclass('syslog.messages') IS NOT NULL") == [(True,)]


def test_dsn_masks_the_password_unless_asked() -> None:
    given = "postgresql://u:s3cret@db.example/logs"
    masked = CliRunner().invoke(cli, ["dsn", "--dsn", given])
    assert masked.exit_code == 0
    assert masked.output == "postgresql://u:***@db.example/logs\n"
    shown = CliRunner().invoke(cli, ["dsn", "--dsn", given, "--show-password"])
    assert shown.output == given + "\n"


def test_commands_connect_with_the_configured_timeouts(dsn: str) -> None:
    config = load_config(None, {"PGSYSLOG_DB_STATEMENT_TIMEOUT": "7",
                                "PGSYSLOG_DB_KEEPALIVE_IDLE": "12"}, {"dsn": dsn})
    with database_url(config) as url, database.connect(url) as conn:
        assert conn.execute("SHOW statement_timeout").fetchone() == ("7s",)
        assert conn.info.get_parameters()["keepalives_idle"] == "12"
