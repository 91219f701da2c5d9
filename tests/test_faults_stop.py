"""Stopping while the database is down or hung (issue 9.3).

A stop is bounded by --shutdown-timeout whatever the database does: what could not be
written by then goes to the spool, in frames of at most batch_rows, even past
--spool-max-bytes (a stop never throws rows away to respect a cap), and the next start
with the database back stores all of it once. A second SIGTERM during the stop spools what
is in memory and exits at once. Without a spool, what could not be written is counted
and logged in one line. Every one of these exits prints the `stopped: {...}` summary.
Long: about 30 s each for the 100,000-message tests.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from faultkit import (
    send,
    spool_contents,
    spool_frames,
    stop_in_time,
    stored,
    wait_for_received,
    wait_for_stored,
    wait_until,
)
from faultproxy import FaultProxy
from helpers import ServerProcess
from pg15 import Pg15

pytest_plugins = ["faultfixtures"]

SHUTDOWN_TIMEOUT = 5
GRACE = 15  # seconds past the shutdown timeout that exiting may take on a busy machine
BATCH_ROWS = 2_000
SPOOL_CAP = ("--spool-max-bytes", "1048576")


def stop_in_time_and_read_spool(server: ServerProcess, data_dir: Path, sent: int) -> list[str]:
    assert stop_in_time(server, SHUTDOWN_TIMEOUT + GRACE) == 0, server.log
    return spool_problems(data_dir, sent)


def spool_problems(data_dir: Path, sent: int) -> list[str]:
    """What is wrong with the spool: it must hold every message sent, each once, in frames
    of at most batch_rows (empty when all is well)."""
    spool = spool_contents(data_dir)
    problems = []
    if len(set(spool.messages)) != sent:
        problems.append(f"the spool holds {len(set(spool.messages))} of the {sent} messages")
    if spool.rows != sent:
        frames_again = len(spool.batch_ids) - len(set(spool.batch_ids))
        problems.append(f"the spool holds {spool.rows} rows for {sent} messages "
                        f"({frames_again} frames repeat a batch id)")
    if spool.frame_rows and max(spool.frame_rows) > BATCH_ROWS:
        problems.append(f"a spool frame of {max(spool.frame_rows)} rows")
    return problems


def explain(problems: list[str], after: tuple[int, int], server: ServerProcess) -> str:
    return (f"{'; '.join(problems) or 'spool ok'}; (rows, distinct) stored after the next "
            f"start: {after}\n{server.log}")


def start_again(servers: Callable[..., ServerProcess], dsn: str, data_dir: Path,
                check_dsn: str, sent: int) -> tuple[int, int]:
    """Start serve on the data directory again; (rows, distinct) once the spool replayed."""
    again = servers(dsn, data_dir)
    wait_for_stored(check_dsn, sent, timeout=120)
    assert again.stop() == 0, again.log
    assert spool_frames(data_dir) == [], "the spool was not emptied by the replay"
    return stored(check_dsn)


@pytest.mark.timeout(240)
def test_stop_with_the_database_down_spools_100000_rows_and_the_next_start_stores_them(
        pg: Pg15, servers: Callable[..., ServerProcess], tmp_path: Path) -> None:
    data_dir, total = tmp_path / "data", 100_000
    server = servers(pg.dsn, data_dir, "--shutdown-timeout", str(SHUTDOWN_TIMEOUT),
                     "--batch-rows", str(BATCH_ROWS), *SPOOL_CAP)
    pg.stop("fast")
    assert send(server.port("tcp"), range(total)) == total
    wait_for_received(server, total)
    problems = stop_in_time_and_read_spool(server, data_dir, total)

    pg.start()
    after = start_again(servers, pg.dsn, data_dir, pg.dsn, total)
    assert (problems, after) == ([], (total, total)), explain(problems, after, server)


@pytest.mark.timeout(240)
def test_stop_with_the_database_hung_spools_100000_rows_and_the_next_start_stores_them(
        pg: Pg15, proxy: FaultProxy, servers: Callable[..., ServerProcess],
        tmp_path: Path) -> None:
    data_dir, total = tmp_path / "data", 100_000
    # The default statement timeout (30 s) is longer than the stop may take.
    server = servers(proxy.dsn(pg.dsn), data_dir, "--shutdown-timeout", str(SHUTDOWN_TIMEOUT),
                     "--batch-rows", str(BATCH_ROWS), *SPOOL_CAP)
    proxy.hang()
    assert send(server.port("tcp"), range(total)) == total
    wait_for_received(server, total)
    problems = stop_in_time_and_read_spool(server, data_dir, total)

    proxy.pass_through()  # batches held in the hang may commit now: the replay skips them
    after = start_again(servers, proxy.dsn(pg.dsn), data_dir, pg.dsn, total)
    assert (problems, after) == ([], (total, total)), explain(problems, after, server)


def test_a_second_sigterm_spools_what_is_in_memory_and_exits_at_once(
        pg: Pg15, proxy: FaultProxy, servers: Callable[..., ServerProcess],
        tmp_path: Path) -> None:
    data_dir, total = tmp_path / "data", 20_000
    server = servers(proxy.dsn(pg.dsn), data_dir, "--shutdown-timeout", "300",
                     "--batch-rows", str(BATCH_ROWS))
    proxy.hang()
    assert send(server.port("tcp"), range(total)) == total
    wait_for_received(server, total)
    server.proc.send_signal(signal.SIGTERM)
    wait_until(lambda: "stopping" in server.log, 10, "serve logs that it is stopping")
    server.proc.send_signal(signal.SIGTERM)
    # Far sooner than the 300 s the first stop would wait for the database.
    assert stop_in_time(server, GRACE) == 0, server.log
    problems = spool_problems(data_dir, total)

    proxy.pass_through()
    after = start_again(servers, proxy.dsn(pg.dsn), data_dir, pg.dsn, total)
    assert (problems, after) == ([], (total, total)), explain(problems, after, server)


def test_without_a_spool_what_could_not_be_written_is_counted_and_logged_once(
        pg: Pg15, servers: Callable[..., ServerProcess], tmp_path: Path) -> None:
    total = 1_000
    server = servers(pg.dsn, tmp_path / "data", "--spool-max-bytes", "0",
                     "--shutdown-timeout", "3")
    pg.stop("fast")
    assert send(server.port("tcp"), range(total)) == total
    wait_for_received(server, total)
    assert stop_in_time(server, 3 + GRACE) == 0, server.log
    assert server.final_counters()["lost_at_stop"] == total
    said = [line for line in server.errors
            if re.search(rf"\b{total} rows\b", line) and "stopped: {" not in line]
    assert len(said) == 1, f"expected one line about the {total} rows: {server.log}"
