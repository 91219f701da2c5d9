"""The filters shared by `search`, `tail`, the API and the console: parsing (pure, table
driven), then the same rows through the CLI and /api/search, event-time order and paging."""

from __future__ import annotations

import json
import random
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from ipaddress import ip_network
from typing import Any

import pytest
from click.testing import CliRunner

from http_client import get, local_server
from pgsyslog.cli import cli
from pgsyslog.storage.filters import FilterError, Filters, parse_filters
from stored import insert, record

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("given", "expected"), [
    ({}, Filters()),
    ({"q": ["  "]}, Filters()),
    ({"q": ['"no route" -ipv6']}, Filters(words='"no route" -ipv6')),
    ({"host": ["web1"]}, Filters(hosts=("web1",))),
    ({"host": ["web1", "db1"], "app": ["nginx", "sshd"]},
     Filters(hosts=("web1", "db1"), apps=("nginx", "sshd"))),
    ({"procid": ["1234"], "msgid": ["ID47", "ID48"]},
     Filters(procids=("1234",), msgids=("ID47", "ID48"))),
    ({"source": ["192.0.2.7", "10.1.2.3/8", "2001:db8::/32"]},
     Filters(sources=(ip_network("192.0.2.7/32"), ip_network("10.0.0.0/8"),
                      ip_network("2001:db8::/32")))),
    ({"peer": ["fw1.example.net"]}, Filters(peers=("fw1.example.net",))),
    ({"severity": ["warning"]}, Filters(severity=4)),  # this or worse
    ({"severity": ["3"]}, Filters(severity=3)),
    ({"severity": ["err..crit"]}, Filters(most_severe=2, severity=3)),
    ({"severity": ["crit..err"]}, Filters(most_severe=2, severity=3)),  # either order
    ({"severity": ["2..warning"]}, Filters(most_severe=2, severity=4)),  # names or numbers
    ({"severity": ["info..info"]}, Filters(most_severe=6, severity=6)),
    ({"severity": ["..err"]}, Filters(most_severe=0, severity=3)),
    ({"severity": ["notice.."]}, Filters(most_severe=5, severity=7)),
    ({"facility": ["local3"]}, Filters(facility=19)),
    ({"since": ["2h"], "until": ["15m"]},
     Filters(since=NOW - timedelta(hours=2), until=NOW - timedelta(minutes=15))),
    ({"since": ["2026-12-01T08:00:00"]}, Filters(since=datetime(2026, 12, 1, 8, tzinfo=UTC))),
    ({"time": ["event"], "since": ["1d"]},
     Filters(time="event", since=NOW - timedelta(days=1))),
    ({"time": ["Received"]}, Filters()),
])
def test_parse_filters(given: dict[str, list[str]], expected: Filters) -> None:
    assert parse_filters(given, NOW, UTC) == expected


@pytest.mark.parametrize(("given", "param", "words"), [
    ({"severity": ["loud"]}, "severity", "not a severity"),
    ({"severity": ["err..8"]}, "severity", "not a severity"),
    ({"severity": ["err...crit"]}, "severity", "not a severity"),
    ({"severity": ["err", "crit"]}, "severity", "once"),
    ({"facility": ["local9"]}, "facility", "not a facility"),
    ({"source": ["10.0.0.0/33"]}, "source", "not an IP address or network"),
    ({"source": ["web1"]}, "source", "not an IP address or network"),
    ({"source": ["fe80::1%eth0"]}, "source", "has an IPv6 scope"),
    ({"source": ["fe80::1%eth0/64"]}, "source", "has an IPv6 scope"),
    ({"since": ["last tuesday"]}, "since", "not a time"),
    ({"since": ["99999999999d"]}, "since", "not a value since can take"),
    ({"time": ["device"]}, "time", "received"),
    ({"hots": ["web1"]}, "hots", "unknown filter"),
])
def test_a_bad_filter_names_itself(given: dict[str, list[str]], param: str, words: str) -> None:
    with pytest.raises(FilterError) as caught:
        parse_filters(given, NOW, UTC)
    assert caught.value.param == param
    assert words in str(caught.value) and "\n" not in str(caught.value)


# ------------------------------------------------------------- the same rows everywhere

T0 = datetime.now(UTC) - timedelta(hours=3)


def _rows() -> dict[str, Any]:
    """name -> record; received a minute apart in this order."""
    rows = {
        "web1-nginx": record("GET / 200", host="web1", app="nginx", severity=6,
                             source_ip="192.0.2.7", procid="100", msgid="ACCESS"),
        "web2-nginx": record("GET /x 404", host="web2", app="nginx", severity=4,
                             source_ip="192.0.2.8", procid="101", msgid="ACCESS"),
        "db1-postgres": record("checkpoint starting", host="db1", app="postgres", severity=5,
                               source_ip="10.1.0.5", procid="200"),
        "db1-crit": record("could not write: no space", host="db1", app="postgres",
                           severity=2, source_ip="10.1.0.5", procid="201"),
        "fw-err": record("deny tcp 10.0.0.1", host="fw1", app="filter", severity=3,
                         source_ip="10.200.0.1", msgid="DENY"),
        "fw-alert": record("link down", host="fw1", app="kernel", severity=1, facility=0,
                           source_ip="2001:db8::1"),
        "v6-info": record("dhcp lease", host="gw6", app="dhcpd", severity=6,
                          source_ip="2001:db8:1::2", msgid="LEASE"),
    }
    for i, r in enumerate(rows.values()):
        r.received_at = T0 + timedelta(minutes=i)
        r.event_time = T0 - timedelta(minutes=10 * i)  # stated times run backwards
    rows["fw-err"].peer_name = "fw1.example.net"
    rows["fw-alert"].peer_name = "fw1.example.net"
    rows["v6-info"].peer_name = "gw6.example.net"
    rows["v6-info"].event_time = None  # states no time of its own
    return rows


ROWS = _rows()


@pytest.fixture
def logs(dsn: str) -> str:
    insert(dsn, list(_rows().values()))
    return dsn


# (CLI flags, API parameters, rows expected, newest first)
CASES = [
    (["--host", "web1", "--host", "db1"], [("host", "web1"), ("host", "db1")],
     ["db1-crit", "db1-postgres", "web1-nginx"]),
    (["--app", "kernel", "--app", "dhcpd"], [("app", "kernel"), ("app", "dhcpd")],
     ["v6-info", "fw-alert"]),
    (["--procid", "200"], [("procid", "200")], ["db1-postgres"]),
    (["--msgid", "ACCESS", "--msgid", "DENY"], [("msgid", "ACCESS"), ("msgid", "DENY")],
     ["fw-err", "web2-nginx", "web1-nginx"]),
    (["--source", "192.0.2.8"], [("source", "192.0.2.8")], ["web2-nginx"]),
    (["--source", "10.0.0.0/8"], [("source", "10.0.0.0/8")], ["fw-err", "db1-crit",
                                                              "db1-postgres"]),
    (["--source", "10.1.0.0/16", "--source", "2001:db8::/32"],
     [("source", "10.1.0.0/16"), ("source", "2001:db8::/32")],
     ["v6-info", "fw-alert", "db1-crit", "db1-postgres"]),
    (["--peer", "fw1.example.net"], [("peer", "fw1.example.net")], ["fw-alert", "fw-err"]),
    (["--severity", "err"], [("severity", "err")], ["fw-alert", "fw-err", "db1-crit"]),
    (["-p", "err..crit"], [("severity", "err..crit")], ["fw-err", "db1-crit"]),
    (["-p", "warning..3"], [("severity", "warning..3")], ["fw-err", "web2-nginx"]),
    (["-p", "notice..warning", "--app", "nginx"],
     [("severity", "notice..warning"), ("app", "nginx")], ["web2-nginx"]),
    (["--host", "fw1", "deny"], [("host", "fw1"), ("q", "deny")], ["fw-err"]),
    # By the stated time: newest stated first, the row without one left out.
    (["--time", "event"], [("time", "event")],
     ["web1-nginx", "web2-nginx", "db1-postgres", "db1-crit", "fw-err", "fw-alert"]),
    (["--time", "event", "--since", (T0 - timedelta(minutes=25)).isoformat()],
     [("time", "event"), ("since", (T0 - timedelta(minutes=25)).isoformat())],
     ["web1-nginx", "web2-nginx", "db1-postgres"]),
    # Words with a received range: since inclusive, until exclusive, to the microsecond.
    (["GET", "--since", (T0 + timedelta(minutes=1)).isoformat()],
     [("q", "GET"), ("since", (T0 + timedelta(minutes=1)).isoformat())], ["web2-nginx"]),
    (["GET", "--until", (T0 + timedelta(minutes=1)).isoformat()],
     [("q", "GET"), ("until", (T0 + timedelta(minutes=1)).isoformat())], ["web1-nginx"]),
    (["GET", "--since", T0.isoformat(), "--until", (T0 + timedelta(minutes=2)).isoformat()],
     [("q", "GET"), ("since", T0.isoformat()),
      ("until", (T0 + timedelta(minutes=2)).isoformat())], ["web2-nginx", "web1-nginx"]),
    (["--since", (T0 + timedelta(minutes=4)).isoformat()],
     [("since", (T0 + timedelta(minutes=4)).isoformat())], ["v6-info", "fw-alert", "fw-err"]),
]


def _names(messages: list[str]) -> list[str]:
    by_message = {r.message: name for name, r in ROWS.items()}
    return [by_message[m] for m in messages]


def cli_names(dsn: str, *flags: str) -> list[str]:
    result = CliRunner().invoke(cli, ["search", "--dsn", dsn, "-o", "json", *flags])
    assert result.exit_code == 0, result.output
    return _names([json.loads(line)["message"] for line in result.output.splitlines()])


@pytest.fixture
def api(logs: str) -> Iterator[int]:
    with local_server(logs) as server:
        yield server.port


def api_search(port: int, params: list[tuple[str, str]]) -> Any:
    reply = get(port, "/api/search?" + urllib.parse.urlencode(params))
    assert reply.status == 200, reply.body
    return reply.body


def test_the_cli_and_the_api_find_the_same_rows(logs: str, api: int) -> None:
    for flags, params, expected in CASES:
        assert cli_names(logs, *flags) == expected, flags
        assert _names([r["message"] for r in api_search(api, params)["rows"]]) == expected, params


def test_rows_carry_the_peer_name(api: int) -> None:
    row = api_search(api, [("peer", "gw6.example.net")])["rows"][0]
    assert (row["peer_name"], row["source_ip"], row["event_time"]) == (
        "gw6.example.net", "2001:db8:1::2", None)


def test_no_entries_is_said_in_a_table_and_silent_in_json(logs: str) -> None:
    for command in ("search", "tail"):
        table = CliRunner().invoke(cli, [command, "--dsn", logs, "--host", "nowhere"])
        assert (table.exit_code, table.output) == (0, "-- No entries --\n"), command
        for output in ("json", "raw"):
            quiet = CliRunner().invoke(cli, [command, "--dsn", logs, "--host", "nowhere",
                                             "-o", output])
            assert (quiet.exit_code, quiet.output) == (0, ""), (command, output)


def test_a_bad_flag_is_one_line_naming_it(logs: str) -> None:
    for flags, flag in [(["--source", "web1"], "--source"), (["-p", "err..loud"], "--severity"),
                        (["--since", "soon"], "--since")]:
        result = CliRunner().invoke(cli, ["search", "--dsn", logs, *flags])
        lines = result.output.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1, result.output
        assert lines[0].startswith(f"Error: Invalid value for '{flag}'"), lines


def test_the_api_refuses_what_it_cannot_page_by(api: int) -> None:
    for params, word in [([("time", "event"), ("cursor", "12")], "cursor"),
                         ([("cursor", "abc")], "cursor"),
                         ([("source", "10.0.0.0/40")], "source"),
                         ([("severity", "err"), ("severity", "crit")], "severity"),
                         ([("time", "device")], "time")]:
        reply = get(api, "/api/search?" + urllib.parse.urlencode(params))
        assert reply.status == 400, (params, reply.body)
        assert reply.body["error"].startswith(word), reply.body


SCOPED = "fe80::1%eth0"


def test_a_scoped_address_is_refused_by_the_cli_the_api_and_rules(
        api: int, logs: str, tmp_path: Any) -> None:
    for path in ("/api/search", "/api/histogram", "/api/facets", "/api/tail"):
        reply = get(api, f"{path}?" + urllib.parse.urlencode({"source": SCOPED}))
        assert reply.status == 400, (path, reply.text)
        assert reply.body["error"].startswith("source") and "\n" not in reply.body["error"]
    result = CliRunner().invoke(cli, ["search", "--dsn", logs, "--source", SCOPED])
    assert result.exit_code == 2 and "IPv6 scope" in result.output, result.output
    config = tmp_path / "scoped.toml"
    config.write_text(f'[[alert]]\nname = "scoped"\nsource = "{SCOPED}"\nwindow = "5m"\n'
                      'threshold = 1\nnotify = ["http://127.0.0.1:9/hook"]\n')
    result = CliRunner().invoke(cli, ["check-config", "--config", str(config),
                                      "--data-dir", str(tmp_path / "data")])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and "IPv6 scope" in lines[0], lines


# ------------------------------------------------------------------- event-time paging


@pytest.fixture
def shuffled(dsn: str) -> Iterator[int]:
    """60 rows whose stated times are out of received order, with ties among them."""
    rnd = random.Random(11)
    base = datetime.now(UTC) - timedelta(hours=1)
    records = []
    for i in range(60):
        r = record(f"row {i}", host="pager", when=base + timedelta(seconds=i))
        r.event_time = base - timedelta(minutes=rnd.randrange(20))  # many share a minute
        records.append(r)
    insert(dsn, records)
    with local_server(dsn) as server:
        yield server.port


@pytest.mark.parametrize("reverse", ["false", "true"])
def test_event_time_pages_meet_without_gaps_or_repeats(shuffled: int, reverse: str) -> None:
    params = [("host", "pager"), ("time", "event"), ("limit", "7"), ("reverse", reverse)]
    seen: list[dict[str, Any]] = []
    body = api_search(shuffled, params)
    while True:
        seen += body["rows"]
        if body["next"] is None:
            break
        body = api_search(shuffled, [*params, ("cursor", body["next"])])
    keys = [(datetime.fromisoformat(r["event_time"]), r["id"]) for r in seen]
    assert len(keys) == len(set(keys)) == 60
    assert keys == sorted(keys, reverse=reverse == "false")
    assert len({k[0] for k in keys}) < 60  # ties were paged through
