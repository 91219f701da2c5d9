"""`pgsyslog search`: words through the full-text index, filters, outputs, errors."""

from __future__ import annotations

import base64
import json
import os
import random
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner, Result

from helpers import send_tcp, wait_for_rows
from pgsyslog.cli import cli
from pgsyslog.storage import database
from pgsyslog.storage.filters import Filters
from pgsyslog.storage.queries import compile_query, search_statement
from stored import insert, record

NOW = datetime.now(UTC)
SD = {"exampleSDID@32473": {"iut": "3", "eventSource": "Application"}}
# (minutes ago, record): inserted oldest first, so ids follow received_at.
ROWS = {
    "index": (180, record("GET /index.html 200", procid="1234", msgid="ID47",
                          structured_data=SD, event_time=NOW - timedelta(minutes=181))),
    "upstream": (120, record("connect() failed: no route to host while connecting to upstream",
                             severity=3)),
    "ipv6": (90, record("ipv6 no route to host fe80::1", host="router1", app="kernel",
                        severity=4, facility=0, fmt="rfc3164",
                        event_time=NOW - timedelta(minutes=90))),
    "disk": (65, record("could not write to file: No space left on device", host="db1",
                        app="postgres", severity=2, facility=3)),
    "added": (30, record("route added for 10.0.0.0/8", host="web2", severity=5)),
    "checkpoint": (10, record("checkpoint starting: time", host="db1", app="postgres",
                              severity=7, facility=3)),
    "garbage": (5, record("garbage \x01 text", host="10.9.8.7", app=None, severity=5,
                          fmt="raw", parse_error="no PRI", raw=b"garbage \x01 text")),
    "payment": (1, record("payment declined", app="billing", severity=3, fmt="custom")),
}
ORDER = list(ROWS)  # oldest first
STATED_MINUTES_AGO = {"index": 181, "ipv6": 90}  # their event_time, kept relative to now


@pytest.fixture
def logs(dsn: str) -> str:
    """ROWS, dated relative to now: relative filters (45m) read the clock when they run,
    which in a long suite is many minutes after this module was imported."""
    now = datetime.now(UTC)
    for name, (minutes, r) in ROWS.items():
        r.received_at = now - timedelta(minutes=minutes)
        if name in STATED_MINUTES_AGO:
            r.event_time = now - timedelta(minutes=STATED_MINUTES_AGO[name])
    insert(dsn, [r for _, r in ROWS.values()])
    return dsn


def minutes_ago(minutes: int, form: str) -> Callable[[], str]:
    """A time the test computes when it runs, as --since takes it."""
    return lambda: (datetime.now(UTC) - timedelta(minutes=minutes)).strftime(form)


def run(dsn: str, *args: str, color: bool = False) -> Result:
    return CliRunner().invoke(cli, ["search", "--dsn", dsn, *args], color=color)


def found(dsn: str, *args: str) -> list[str]:
    """The names (keys of ROWS) of the rows `search -o json` prints, in order."""
    result = run(dsn, "-o", "json", *args)
    assert result.exit_code == 0, result.output
    by_message = {r.message: name for name, (_, r) in ROWS.items()}
    return [by_message[json.loads(line)["message"]] for line in result.output.splitlines()]


@pytest.mark.parametrize(("words", "expected"), [
    (["route"], {"upstream", "ipv6", "added"}),
    (["no", "route"], {"upstream", "ipv6"}),  # every word, anywhere
    (['"no route"'], {"upstream", "ipv6"}),  # a phrase
    (['"no route" -ipv6'], {"upstream"}),  # an exclusion

    (["route or space"], {"upstream", "ipv6", "added", "disk"}),
    (["postgres"], {"disk", "checkpoint"}),  # app_name is indexed with the message
    (["NO", "SPACE"], {"disk"}),  # words are matched without regard to case
    (["rout"], set()),  # whole words, no stemming
])
def test_words_phrases_and_exclusions(logs: str, words: list[str], expected: set[str]) -> None:
    assert set(found(logs, *words)) == expected


@pytest.mark.parametrize(("flags", "expected"), [
    (["--host", "db1"], {"disk", "checkpoint"}),
    (["--app", "nginx", "--severity", "err"], {"upstream"}),
    (["--severity", "3", "--app", "nginx"], {"upstream"}),
    (["-p", "warning"], {"upstream", "ipv6", "disk", "payment"}),  # this or worse
    (["--severity", "crit"], {"disk"}),
    (["--facility", "kern"], {"ipv6"}),
    (["--facility", "3"], {"disk", "checkpoint"}),
    (["--since", "45m"], {"added", "checkpoint", "garbage", "payment"}),
    (["--until", "1h"], {"index", "upstream", "ipv6", "disk"}),
    (["--since", "100m", "--until", "20m"], {"ipv6", "disk", "added"}),
    (["--since", minutes_ago(70, "%Y-%m-%dT%H:%M:%S%z")], set(ORDER[3:])),
    (["--utc", "--since", minutes_ago(70, "%Y-%m-%dT%H:%M:%S")], set(ORDER[3:])),
    (["--since", "yesterday"], set(ORDER)),
    (["--host", "db1", "checkpoint"], {"checkpoint"}),
])
def test_filters(logs: str, flags: list[str | Callable[[], str]], expected: set[str]) -> None:
    assert set(found(logs, *(f() if callable(f) else f for f in flags))) == expected


def test_newest_first_reverse_and_limit(logs: str) -> None:
    assert found(logs) == ORDER[::-1]
    assert found(logs, "--reverse") == ORDER
    assert found(logs, "--limit", "3") == ORDER[::-1][:3]
    assert found(logs, "--reverse", "-n", "2") == ORDER[:2]


def test_json_has_every_field_with_iso_times(logs: str) -> None:
    result = run(logs, "-o", "json", "--host", "web1", "GET")
    row = json.loads(result.output)
    assert set(row) == {"id", "received_at", "event_time", "facility", "severity", "hostname",
                        "app_name", "procid", "msgid", "structured_data", "message", "format",
                        "transport", "source_ip", "parse_error", "raw", "peer_name"}
    assert datetime.fromisoformat(row["received_at"]) == ROWS["index"][1].received_at
    assert datetime.fromisoformat(row["event_time"]) == ROWS["index"][1].event_time
    assert (row["procid"], row["msgid"], row["structured_data"]) == ("1234", "ID47", SD)
    assert (row["source_ip"], row["transport"], row["raw"]) == ("192.0.2.7", "tcp", None)
    garbage = json.loads(run(logs, "-o", "json", "garbage").output)
    assert base64.b64decode(garbage["raw"]) == b"garbage \x01 text"
    assert garbage["parse_error"] == "no PRI"


def test_table_is_aligned_and_plain_when_piped(logs: str) -> None:
    result = run(logs)
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert "\x1b[" not in result.output
    header, rows = lines[0], lines[1:]
    assert header.split() == ["TIME", "HOST", "APP", "SEVERITY", "MESSAGE"]
    assert len(rows) == len(ROWS)
    for column in ("HOST", "APP", "SEVERITY", "MESSAGE"):
        start = header.index(column)
        assert all(row[start - 1] == " " and row[start] != " " for row in rows), column
    message_at = header.index("MESSAGE")
    assert rows[-1][message_at:] == "GET /index.html 200"  # oldest last
    assert rows[0].split()[2:5] == ["web1", "billing", "err"]
    assert "garbage \\x01 text" in result.output  # control characters shown escaped


def test_table_colours_severity_on_a_terminal(logs: str) -> None:
    result = run(logs, "--severity", "err", "--app", "nginx", color=True)
    assert "\x1b[31merr" in result.output  # err in red


def test_raw_is_close_to_the_original_syslog_text(logs: str) -> None:
    result = run(logs, "-o", "raw", "--utc", "--reverse")
    lines = dict(zip(ORDER, result.output.splitlines(), strict=True))
    event = ROWS["index"][1].event_time
    assert event is not None
    assert lines["index"] == (
        f"<14>1 {event.isoformat().replace('+00:00', 'Z')} web1 nginx 1234 ID47 "
        '[exampleSDID@32473 iut="3" eventSource="Application"] GET /index.html 200')
    ipv6_time = ROWS["ipv6"][1].event_time
    assert ipv6_time is not None
    month = ipv6_time.strftime("%b")
    assert lines["ipv6"] == (f"<4>{month} {ipv6_time.day:2d} {ipv6_time:%H:%M:%S} router1 "
                             "kernel: ipv6 no route to host fe80::1")
    assert lines["garbage"] == "garbage \x01 text"  # the original bytes, kept with the error
    payment_time = ROWS["payment"][1].received_at
    assert lines["payment"] == f"{payment_time.isoformat()} billing ERR payment declined"


@pytest.mark.parametrize(("flags", "flag"), [
    (["--severity", "loud"], "--severity"),
    (["-p", "8"], "--severity"),
    (["--facility", "local9"], "--facility"),
    (["--since", "last tuesday"], "--since"),
    (["--until", "2024-13-01"], "--until"),
])
def test_a_bad_filter_is_one_line_and_exit_2(flags: list[str], flag: str) -> None:
    unreachable = "host=/nonexistent-socket-dir dbname=none connect_timeout=1"
    result = CliRunner().invoke(cli, ["search", "--dsn", unreachable, *flags])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: Invalid value for") and flag in lines[0]


def test_search_finds_what_serve_received(serve: object, dsn: str) -> None:
    server = serve("--tcp", "127.0.0.1:0")  # type: ignore[operator]
    lines = [b"<11>1 2024-03-01T10:00:00Z gw1 pppd - - - no route to host 192.0.2.1",
             b"<14>1 2024-03-01T10:00:01Z gw1 pppd - - - route to host 192.0.2.1 is up",
             b"<11>1 2024-03-01T10:00:02Z gw2 pppd - - - no route to host 2001:db8::1 (ipv6)"]
    send_tcp(server.port("tcp"), b"\n".join(lines) + b"\n")
    assert wait_for_rows(dsn, 3) == 3
    result = run(dsn, "-o", "raw", '"no route" -ipv6')
    assert result.output == lines[0].decode() + "\n"  # the original line, written back


def test_a_word_search_uses_the_full_text_index(dsn: str) -> None:
    """On 200,000 rows, PostgreSQL finds a word through the GIN index, not by reading rows."""
    rnd = random.Random(5)
    vocabulary = [f"w{i}" for i in range(2000)]
    insert(dsn, [record(" ".join(rnd.choices(vocabulary, k=8))
                        + (" needle" if i % 4000 == 0 else ""),
                        host=f"host{i % 50}", when=NOW - timedelta(seconds=i / 10))
                 for i in range(200_000)])
    with database.connect(dsn, autocommit=True) as conn:
        conn.execute("ANALYZE syslog.messages")
        indexes = {row[0] for row in conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'syslog.messages_fulltext'::regclass")}
        query = compile_query(search_statement(Filters(words="needle"), 100))
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + query.sql, query.params))
        assert conn.execute("SELECT count(*) FROM syslog.messages").fetchone() == (200_000,)
    used = [name for name in indexes if f"Bitmap Index Scan on {name}" in plan]
    assert used, plan
    result = run(dsn, "-o", "json", "needle", "--limit", "1000")
    assert len(result.output.splitlines()) == 50


@pytest.mark.parametrize("command", ["search", "tail", "stats"])
def test_help_opens_no_database(command: str) -> None:
    env = {**os.environ, "PGSYSLOG_DSN": "host=/nonexistent-socket-dir dbname=none"}
    result = subprocess.run([sys.executable, "-m", "pgsyslog", command, "--help"],
                            capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout
