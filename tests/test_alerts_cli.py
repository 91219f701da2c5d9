"""`pgsyslog alerts list | history | test NAME` against a real database."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
from click.testing import CliRunner, Result

from helpers import query
from pgsyslog.alerts.engine import evaluate_all
from pgsyslog.cli import cli
from pgsyslog.config import build_config
from stored import insert, record

RULES = """
[[alert]]
name = "web errors"
app = "nginx"
severity = "err"
window = "5m"
threshold = 3
group_by = "host"
notify = ["http://127.0.0.1:9/hook"]

[[alert]]
name = "firewall silent"
host = "fw1"
window = "10m"
below = 1
"""


def run(dsn: str, tmp_path: Path, *args: str) -> Result:
    config = tmp_path / "alerts.toml"
    config.write_text(RULES)
    return CliRunner().invoke(cli, ["alerts", *args, "--config", str(config), "--dsn", dsn])


def evaluate(dsn: str) -> None:
    import tomllib

    evaluate_all(dsn, build_config(tomllib.loads(RULES)).alert, 30.0)


def test_test_prints_the_count_the_status_and_the_json_and_sends_or_stores_nothing(
        dsn: str, tmp_path: Path) -> None:
    insert(dsn, [record(f"upstream timed out {i}", host="web1", severity=3) for i in range(4)])
    result = run(dsn, tmp_path, "test", "web errors")
    assert result.exit_code == 0, result.output
    first, _, rest = result.output.partition("\n")
    assert first == ("web errors host web1: 4 row(s) (>= 3 in 5m): firing; would notify 1 "
                     "target(s)")
    document = json.loads(rest)
    assert (document["rule"], document["group"], document["count"]) == ("web errors", "web1", 4)
    assert len(document["samples"]) == 4
    assert query(dsn, "SELECT count(*) FROM syslog.alert_state") == [(0,)]
    assert query(dsn, "SELECT count(*) FROM syslog.alert_notifications") == [(0,)]


def test_test_of_an_unknown_rule_is_one_line_and_exit_2(dsn: str, tmp_path: Path) -> None:
    result = run(dsn, tmp_path, "test", "web erors")
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        'Error: alerts test: no rule named "web erors" (rules: "web errors", '
        '"firewall silent")']


def test_list_shows_rules_and_their_state(dsn: str, tmp_path: Path) -> None:
    assert run(dsn, tmp_path, "list").output.splitlines() == [
        "web errors: app=nginx severity=err, >= 3 in 5m, by host -> http://127.0.0.1:9",
        "  not evaluated yet",
        "firewall silent: host=fw1, < 1 in 10m -> no notify target",
        "  not evaluated yet"]
    insert(dsn, [record("e", host="web1", severity=3) for _ in range(3)])
    evaluate(dsn)
    lines = run(dsn, tmp_path, "list").output.splitlines()
    assert lines[1].startswith("  host web1: firing since ")
    assert lines[1].endswith("3 row(s) at " + lines[1].split(" at ")[1])
    assert "(notification pending)" in lines[1]
    assert lines[3].startswith("  firing since ") and "0 row(s)" in lines[3]
    document = json.loads(run(dsn, tmp_path, "list", "-o", "json").output)
    assert [r["name"] for r in document["rules"]] == ["web errors", "firewall silent"]
    assert {(a["rule"], a["group"], a["status"]) for a in document["alerts"]} == {
        ("web errors", "web1", "firing"), ("firewall silent", "", "firing")}


def test_history_lists_changes_newest_first(dsn: str, tmp_path: Path) -> None:
    assert run(dsn, tmp_path, "history").output == "no alert has fired yet\n"
    insert(dsn, [record("e", host="web1", severity=3) for _ in range(3)])
    evaluate(dsn)
    insert(dsn, [record("fw1 up", host="fw1")])
    with psycopg.connect(dsn, autocommit=True) as conn:  # the next round, 20 s later
        conn.execute("UPDATE syslog.alert_state SET evaluated_at = evaluated_at - "
                     "interval '20 seconds'")
    evaluate(dsn)
    lines = run(dsn, tmp_path, "history").output.splitlines()
    assert [line.split("  ", 1)[1] for line in lines] == [
        "resolved  firewall silent  1 row(s)",
        "firing    firewall silent  0 row(s)",  # the same round: in the order of the rules
        "firing    web errors [web1]  3 row(s)"]
    assert len(run(dsn, tmp_path, "history", "--limit", "1").output.splitlines()) == 1
