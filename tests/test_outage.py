"""Database outages: a PostgreSQL 15 of the test's own is stopped, crashed and started.

Nothing that was received is lost and nothing is stored twice: the writer retries, spools
to disk while the database is away, and replays the spool when it answers again, also
after a restart of serve.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from faultkit import Sender, send, spool_frames, stored, wait_for_stored
from helpers import ServerProcess
from pg15 import Pg15

pytest_plugins = ["faultfixtures"]


def go_away(pg: Pg15, how: str) -> None:
    if how == "kill9":
        pg.kill9()  # a crash: the next start runs crash recovery
    else:
        pg.stop(how)


@pytest.mark.parametrize("how", ["fast", "kill9"])
def test_database_away_mid_stream_loses_nothing_and_stores_nothing_twice(
        pg: Pg15, servers: Callable[..., ServerProcess], tmp_path: Path, how: str) -> None:
    server = servers(pg.dsn, tmp_path / "data")
    total, rate = 20_000, 2_000  # 10 s of sending; the database is away from 2 s to 7 s
    sender = Sender(server.port("tcp"), range(total), rate=rate)
    sender.start()

    def outage() -> None:
        time.sleep(2)
        go_away(pg, how)
        time.sleep(5)
        pg.start()

    away = threading.Thread(target=outage)
    away.start()
    away.join(60)
    assert sender.finish() == total
    wait_for_stored(pg.dsn, total, timeout=60, server=server)
    assert server.stop() == 0, server.log
    assert stored(pg.dsn) == (total, total), server.log
    assert "spooling batches to" in server.log
    assert "replayed" in server.log


def test_stop_with_the_database_down_spools_and_the_next_start_replays(
        pg: Pg15, servers: Callable[..., ServerProcess], tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = servers(pg.dsn, data_dir, "--shutdown-timeout", "3")
    pg.stop("fast")
    assert send(server.port("tcp"), range(500)) == 500
    time.sleep(1)
    server.proc.send_signal(signal.SIGTERM)
    assert server.stop() == 0, server.log
    assert sum(spool_frames(data_dir)) == 500, server.log

    pg.start()
    again = servers(pg.dsn, data_dir)
    wait_for_stored(pg.dsn, 500)
    assert again.stop() == 0
    assert stored(pg.dsn) == (500, 500)
    assert spool_frames(data_dir) == []
    assert again.final_counters()["replayed"] == 500, again.log
