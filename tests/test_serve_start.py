"""Start-up as an operator sees it: sockets first, secrets masked, warnings that matter."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from psycopg.conninfo import make_conninfo

from helpers import ServerProcess


def test_the_banner_masks_the_password_of_the_dsn(serve: Callable[..., ServerProcess],
                                                   dsn: str) -> None:
    # trust authentication ignores the password, so the DSN still works
    server = serve("--tcp", "127.0.0.1:0", "--dsn", make_conninfo(dsn, password="s3cr3t"))
    assert "s3cr3t" not in server.log
    assert "password=***" in server.log


def test_an_http_api_open_to_the_network_without_a_token_is_warned_about(
        serve: Callable[..., ServerProcess]) -> None:
    open_server = serve("--tcp", "127.0.0.1:0", "--http", "0.0.0.0:0")
    closed_server = serve("--tcp", "127.0.0.1:0", "--http", "0.0.0.0:0", "--http-token", "t0k")
    loopback = serve("--tcp", "127.0.0.1:0", "--http", "127.0.0.1:0")
    time.sleep(0.5)
    assert "open to the network without http_token" in open_server.log
    assert "without http_token" not in closed_server.log + loopback.log
    assert "t0k" not in closed_server.log


def test_an_http_port_in_use_fails_at_once_before_the_database_is_tried(
        tmp_path: Path) -> None:
    with socket.socket() as taken, socket.socket() as nothing_there:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        nothing_there.bind(("127.0.0.1", 0))  # bound, never listening: refuses connections
        http_port = taken.getsockname()[1]
        db_port = nothing_there.getsockname()[1]
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "pgsyslog", "serve", "--tcp", "127.0.0.1:0",
             "--http", f"127.0.0.1:{http_port}", "--data-dir", str(tmp_path),
             "--dsn", f"host=127.0.0.1 port={db_port} dbname=x connect_timeout=30"],
            capture_output=True, text=True, timeout=60)
        took = time.monotonic() - started
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines == [f"Error: cannot listen on http 127.0.0.1:{http_port}: the address is "
                     "already in use by another program"], done.stderr
    assert took < 20  # not after a 30 s connection attempt
