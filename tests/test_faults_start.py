"""Starting without a database (issue 9.4).

serve opens its listeners and receives even while the database it was given is down;
what arrives waits in the queue, then the spool, and when the database comes, serve runs
the migrations, makes the partitions and replays by itself. A DSN that cannot be right is
still a one-line error, before anything opens.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from faultkit import metrics, send, stored, wait_for_received, wait_for_stored, wait_until
from helpers import ServerProcess, free_port
from pg15 import Pg15

pytest_plugins = ["faultfixtures"]


def health(server: ServerProcess) -> tuple[int, dict[str, object]]:
    url = f"http://127.0.0.1:{server.port('http')}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_serve_without_its_database_receives_and_stores_everything_once_it_comes(
        pg: Pg15, servers: Callable[..., ServerProcess], tmp_path: Path) -> None:
    dsn, total = pg.create_database(migrated=False), 5_000
    pg.stop("fast")
    server = servers(dsn, tmp_path / "data", "--db-connect-timeout", "2")
    assert "listening on tcp://" in server.log
    assert health(server)[0] == 503
    assert send(server.port("tcp"), range(total)) == total
    wait_for_received(server, total)
    wait_until(lambda: metrics(server).get("pgsyslog_rows_spooled_total", 0) > 0, 60,
               "rows spooled while the database is away")

    pg.start()
    wait_for_stored(dsn, total, timeout=90)  # migrated, partitioned and replayed by serve
    wait_until(lambda: health(server)[0] == 200, 30, "/healthz ok once the database is up")
    assert server.stop() == 0, server.log
    assert stored(dsn) == (total, total), server.log


def test_a_malformed_dsn_is_one_line_and_exit_2_before_anything_opens(tmp_path: Path) -> None:
    port = free_port()
    done = subprocess.run(
        [sys.executable, "-m", "pgsyslog", "serve", "--dsn", "host=x port=notanumber",
         "--tcp", f"127.0.0.1:{port}", "--http", "127.0.0.1:0",
         "--data-dir", str(tmp_path / "data")],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "listening on" not in done.stdout
    assert "Traceback" not in done.stderr
    said = done.stderr.strip().splitlines()
    assert len(said) == 1 and "port" in said[0], done.stderr
