"""`pgsyslog stats`: counts by severity, host and app, ingest rate, partitions."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from click.testing import CliRunner, Result

from helpers import send_tcp, wait_for_rows
from pgsyslog.cli import cli
from pgsyslog.storage import partitions
from stored import insert, record

NOW = datetime.now(UTC)


def stats(dsn: str, *args: str) -> Result:
    return CliRunner().invoke(cli, ["stats", "--dsn", dsn, *args])


def test_stats_of_stored_and_just_received_rows(serve: Any, dsn: str) -> None:
    insert(dsn, [
        record("nobody knows", host=None, app=None, severity=0,
               when=NOW - timedelta(hours=23, minutes=30)),
        *(record(f"one of many {i}", host=f"h{i:02}", when=NOW - timedelta(hours=3))
          for i in range(12)),
        *(record(f"GET /{i}", when=NOW - timedelta(hours=2)) for i in range(12)),
        *(record(f"slow query {i}", host="db1", app="postgres", severity=3,
                 when=NOW - timedelta(minutes=10)) for i in range(3)),
    ])
    server = serve("--tcp", "127.0.0.1:0")
    send_tcp(server.port("tcp"), b"".join(b"<12>1 - gw pppd - - - link %d up\n" % i
                                          for i in range(5)))
    assert wait_for_rows(dsn, 33) == 33

    result = stats(dsn, "-o", "json")
    assert result.exit_code == 0, result.output
    s = json.loads(result.output)
    assert s["rows"] == 33
    assert s["by_severity"] == {"emerg": 1, "err": 3, "warning": 5, "info": 24}
    assert s["top_hosts"][:4] == [{"hostname": "web1", "rows": 12}, {"hostname": "gw", "rows": 5},
                                  {"hostname": "db1", "rows": 3}, {"hostname": None, "rows": 1}]
    assert len(s["top_hosts"]) == 10
    assert s["top_apps"] == [{"app_name": "nginx", "rows": 24}, {"app_name": "pppd", "rows": 5},
                             {"app_name": "postgres", "rows": 3}, {"app_name": None, "rows": 1}]
    assert s["rows_per_second_last_minute"] == 5 / 60
    assert s["rows_per_second_last_hour"] == 8 / 3600
    oldest = datetime.fromisoformat(s["oldest_received_at"])
    assert oldest == NOW - timedelta(hours=23, minutes=30)
    assert NOW < datetime.fromisoformat(s["newest_received_at"]) < datetime.now(UTC)
    today = partitions.partition_name(NOW.date())
    assert today in [p["name"] for p in s["partitions"]]

    assert json.loads(stats(dsn, "-o", "json", "--since", "1h").output)["rows"] == 8
    assert json.loads(stats(dsn, "-o", "json", "--since", "all").output)["rows"] == 33

    table = stats(dsn, "--utc").output
    assert "rows since " in table and ": 33" in table.splitlines()[0]
    assert "ingest: 0.1 rows/s over the last minute, 0.0 rows/s over the last hour" in table
    lines = [line.split() for line in table.splitlines()]
    assert ["err", "3"] in lines and ["web1", "12"] in lines and ["postgres", "3"] in lines
    assert [today] == [line[0] for line in lines if line and line[0] == today]


def test_a_bad_since_is_one_line_and_exit_2() -> None:
    result = stats("host=/nonexistent-socket-dir dbname=none", "--since", "ages ago")
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "--since" in lines[0]
