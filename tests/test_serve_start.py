"""Start-up as an operator sees it: sockets first, secrets masked, warnings that matter."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from psycopg.conninfo import make_conninfo

from helpers import ServerProcess, wait_for_rows
from inprocess import acked_by_flood, numbered, start_flood, stored_after_a_restart


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


def signal_mask(pid: int, field: str) -> int:
    """SigIgn or SigCgt of a process: the signals it ignores or catches, as a bit mask."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1], 16)
    return 0


def starting_serve(dsn: str, tmp_path: Path) -> subprocess.Popen[str]:
    """A serve process, once its own code runs (it ignores SIGHUP from then on)."""
    with (tmp_path / "stderr").open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pgsyslog", "serve", "--dsn", dsn, "--tcp", "127.0.0.1:0",
             "--http", "127.0.0.1:0", "--data-dir", str(tmp_path / "data")],
            stdout=subprocess.PIPE, stderr=stderr, text=True)
    deadline = time.monotonic() + 30
    while not signal_mask(proc.pid, "SigIgn") & (1 << (signal.SIGHUP - 1)):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.01)
    return proc


def test_sighup_during_start_up_never_kills_serve(dsn: str, tmp_path: Path) -> None:
    proc = starting_serve(dsn, tmp_path)
    assert proc.stdout is not None
    hups = 0
    reader = threading.Thread(target=lambda: banner.extend(proc.stdout or []), daemon=True)
    banner: list[str] = []
    reader.start()
    deadline = time.monotonic() + 60
    while not any(line.startswith("then:") for line in banner):
        assert proc.poll() is None, (hups, proc.communicate())
        assert time.monotonic() < deadline
        proc.send_signal(signal.SIGHUP)
        hups += 1
        time.sleep(0.05)
    assert hups > 1
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    reader.join(10)
    proc.stdout.close()


def test_sigterm_during_start_up_stops_serve_cleanly_once_it_is_up(dsn: str,
                                                                    tmp_path: Path) -> None:
    proc = starting_serve(dsn, tmp_path)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    err = (tmp_path / "stderr").read_text()
    assert proc.returncode == 0, err
    assert "stopped: {" in err and "Traceback" not in err


def test_a_second_signal_loses_nothing_the_kernel_acknowledged(
        serve: Callable[..., ServerProcess], dsn: str, tmp_path: Path) -> None:
    # A sender that never goes quiet: the first SIGTERM would read it for half of the
    # 30 s stop; the second one cuts it off at once, and what its kernel acknowledged
    # is written or spooled, not dropped.
    data_dir = str(tmp_path / "data")
    server = serve("--tcp", "127.0.0.1:0", "--shutdown-timeout", "30", "--data-dir", data_dir)
    sender = start_flood(server.port("tcp"), pace=0.005)
    assert wait_for_rows(dsn, 5_000) >= 5_000
    server.proc.send_signal(signal.SIGTERM)
    time.sleep(1.5)
    server.proc.send_signal(signal.SIGTERM)
    acknowledged_frames = acked_by_flood(sender) // len(numbered(0))
    assert server.proc.wait(60) == 0, server.log
    server.close()
    got = stored_after_a_restart(serve, data_dir, dsn, server.final_counters()["received"])
    assert got == list(range(len(got)))  # each once, none missing
    assert len(got) >= acknowledged_frames, (len(got), acknowledged_frames)
