"""Alert rules in the configuration: read as search reads filters, every mistake one line
naming the rule and the key, exit 2 before any socket opens; check-config shows them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from pgsyslog.alerts.rules import AlertRule, parse_duration, parse_rules
from pgsyslog.cli import cli
from pgsyslog.config import ConfigError, build_config

ISSUE_EXAMPLE = """
alert_interval = 30

[[alert]]
name = "web errors"
query = ""
app = "nginx"
severity = "err"
window = "5m"
threshold = 20
group_by = "host"
notify = ["http://alerts.example/hook"]

[[alert]]
name = "firewall silent"
host = "fw1"
window = "10m"
below = 1
notify = ["http://alerts.example/hook", {url = "http://am.example:9093", format = "alertmanager"}]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pgsyslog.toml"
    path.write_text('tcp = ["127.0.0.1:0"]\n' + text)
    return path


def test_the_issues_example_reads_as_two_rules(tmp_path: Path) -> None:
    import tomllib

    config = build_config(tomllib.loads(ISSUE_EXAMPLE))
    web, silent = config.alert
    assert isinstance(web, AlertRule)
    assert (web.name, web.window, web.threshold, web.below, web.group_by) == (
        "web errors", 300.0, 20, None, "host")
    assert web.filters.apps == ("nginx",) and web.filters.severity == 3
    assert web.filters.words is None
    assert web.fires(20) and not web.fires(19)
    assert silent.filters.hosts == ("fw1",) and silent.window == 600.0
    assert silent.fires(0) and not silent.fires(1)
    assert [(t.url, t.format) for t in silent.notify] == [
        ("http://alerts.example/hook", "json"),
        ("http://am.example:9093/api/v2/alerts", "alertmanager")]


def test_rules_take_searchs_filters_repeated_hosts_and_severity_ranges() -> None:
    (rule,) = parse_rules([{"name": "db", "host": ["db1", "db2"], "severity": "err..crit",
                            "source": "10.0.0.0/8", "query": '"no space" -test',
                            "window": 60, "threshold": 1}])
    assert rule.filters.hosts == ("db1", "db2")
    assert (rule.filters.most_severe, rule.filters.severity) == (2, 3)
    assert str(rule.filters.sources[0]) == "10.0.0.0/8"
    assert rule.filters.words == '"no space" -test'


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("5m", 300), ("2h", 7200),
                                               ("1d", 86400), (90, 90), ("1.5m", 90)])
def test_durations(text: Any, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("table", "message"),
    [({"window": "5m", "below": 1}, "rule 1: name: missing"),
     ({"name": "w", "window": "5 fortnights", "below": 1}, 'rule "w": window: expected a '
      "duration"),
     ({"name": "w", "window": "0s", "below": 1}, 'rule "w": window: must be above 0'),
     ({"name": "w", "window": "5m"}, 'rule "w": threshold: give threshold'),
     ({"name": "w", "window": "5m", "threshold": 1, "below": 1}, 'rule "w": threshold: give'),
     ({"name": "w", "window": "5m", "threshold": 0}, 'rule "w": threshold: must be 1'),
     ({"name": "w", "window": "5m", "threshold": "many"}, 'rule "w": threshold: expected a '
      "whole number"),
     ({"name": "w", "window": "5m", "below": 1, "colour": "red"}, 'rule "w": colour: unknown '
      "key"),
     ({"name": "w", "window": "5m", "below": 1, "notify": ["ftp://x/"]},
      "rule \"w\": notify: 'ftp://x/' is not an http:// or https:// URL"),
     ({"name": "w", "window": "5m", "below": 1, "notify": ["http://127.0.0.1:99999/x"]},
      "rule \"w\": notify: 'http://127.0.0.1:99999/x': the port must be 1-65535"),
     ({"name": "w", "window": "5m", "below": 1, "notify": [{"url": "https://h:0/"}]},
      "rule \"w\": notify: 'https://h:0/': the port must be 1-65535"),
     ({"name": "w", "window": "5m", "below": 1, "notify": ["http://h:web/"]},
      "rule \"w\": notify: 'http://h:web/': the port must be 1-65535"),
     ({"name": "w", "window": "5m", "below": 1, "notify": [{"url": "http://x",
                                                             "format": "slack"}]},
      'rule "w": notify: format: expected json or alertmanager'),
     ({"name": "w", "window": "5m", "below": 1, "severity": "loud"}, 'rule "w": severity: '),
     ({"name": "w", "window": "5m", "below": 1, "group_by": "facility"},
      'rule "w": group_by: expected host or app'),
     ({"name": "w", "window": "5m", "below": 1, "since": "1h"}, 'rule "w": since: unknown key')],
)
def test_a_bad_rule_is_one_error_naming_rule_and_key(table: dict[str, Any],
                                                      message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build_config({"alert": [table]})
    assert str(caught.value).startswith(f"alert: {message}"), str(caught.value)
    assert "\n" not in str(caught.value)


def test_two_rules_with_one_name_are_refused() -> None:
    rule = {"name": "w", "window": "5m", "below": 1}
    with pytest.raises(ConfigError, match='rule "w": name: given to two rules'):
        build_config({"alert": [rule, rule]})


def test_serve_refuses_a_bad_rule_in_one_line_with_exit_2(tmp_path: Path) -> None:
    config = write(tmp_path, '[[alert]]\nname = "web errors"\nwindow = "5x"\nthreshold = 3\n')
    result = CliRunner().invoke(cli, ["serve", "--config", str(config)])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "Error: config: alert: rule \"web errors\": window: expected a duration such as 30s, "
        "5m or 1h, got '5x'"]


def test_check_config_shows_the_rules_without_the_secret_of_a_webhook_url(
        tmp_path: Path) -> None:
    text = ISSUE_EXAMPLE.replace("alerts.example/hook", "hooks.example/T000/secret-token")
    result = CliRunner().invoke(cli, ["check-config", "--config", str(write(tmp_path, text)),
                                      "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("alert rule ")]
    assert lines == [
        "alert rule web errors: app=nginx severity=err, >= 20 in 5m, by host -> "
        "http://hooks.example",
        "alert rule firewall silent: host=fw1, < 1 in 10m -> http://hooks.example, "
        "http://am.example:9093 (alertmanager)"]
    assert "secret-token" not in result.output


def test_rules_from_the_environment_are_refused_in_one_line() -> None:
    from pgsyslog.config import load_config

    with pytest.raises(ConfigError) as caught:
        load_config(None, {"PGSYSLOG_ALERT": "web errors"})
    assert str(caught.value) == ("alert: give alert rules as [[alert]] tables in the "
                                 "configuration file")
