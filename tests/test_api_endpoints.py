"""/api/histogram, /api/facets, /api/context, /api/stats and /api/partitions, each against
what the database holds (asked separately with SQL)."""

from __future__ import annotations

import itertools
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from helpers import query
from http_client import get, local_server
from pgsyslog.http import aggregate
from pgsyslog.storage import database, partitions
from stored import insert, record

NOW = datetime.now(UTC)
RETENTION = 7


def api(port: int, path: str, params: list[tuple[str, str]] | None = None,
        status: int = 200) -> Any:
    reply = get(port, path + "?" + urllib.parse.urlencode(params or []))
    assert reply.status == status, reply.body
    return reply.body


def _records() -> list[Any]:
    """web1 logs every 5 minutes over the last 2 hours; db1 now and then; one old row."""
    rows = [record(f"GET /{i} {'error' if i % 4 == 0 else 'ok'}", host="web1", app="nginx",
                   severity=3 if i % 4 == 0 else 6, when=NOW - timedelta(minutes=5 * i))
            for i in range(24)]
    rows += [record(f"checkpoint {i}", host="db1", app="postgres", severity=5,
                    when=NOW - timedelta(minutes=7 * i + 1)) for i in range(6)]
    rows += [record("router reboot", host="gw", app="kernel", severity=2,
                    when=NOW - timedelta(hours=20))]
    rows.sort(key=lambda r: r.received_at)  # ids follow received_at
    return rows


@pytest.fixture
def port(dsn: str) -> Iterator[int]:
    insert(dsn, _records())
    with local_server(dsn, retention_days=RETENTION) as server:
        yield server.port


def counted(dsn: str, where: str, params: Any = None) -> int:
    return int(query(dsn, f"SELECT count(*) FROM syslog.messages WHERE {where}", params)[0][0])


# ---------------------------------------------------------------------------- histogram


def assert_continuous(body: dict[str, Any], step: timedelta) -> list[datetime]:
    starts = [datetime.fromisoformat(b["start"]) for b in body["buckets"]]
    since, until = (datetime.fromisoformat(body[k]) for k in ("since", "until"))
    assert all(b - a == step for a, b in itertools.pairwise(starts))
    assert starts[0] <= since < starts[0] + step and starts[-1] < until <= starts[-1] + step
    assert body["total"] == sum(b["count"] for b in body["buckets"])
    return starts


def test_the_histogram_counts_every_minute_of_two_hours(port: int, dsn: str) -> None:
    since, until = NOW - timedelta(hours=2), NOW + timedelta(seconds=1)
    body = api(port, "/api/histogram", [("since", since.isoformat()),
                                        ("until", until.isoformat())])
    assert body["interval"] == "minute"
    starts = assert_continuous(body, timedelta(minutes=1))
    assert len(starts) in (121, 122)
    assert body["total"] == counted(dsn, "received_at >= %s AND received_at < %s",
                                    (since, until))
    by_start = {datetime.fromisoformat(b["start"]): b["count"] for b in body["buckets"]}
    for start, count in list(by_start.items())[::13]:  # a sample of buckets, empty ones too
        assert count == counted(dsn, "received_at >= %s AND received_at < %s",
                                (max(start, since), start + timedelta(minutes=1)))
    assert 0 in by_start.values()


def test_the_histogram_takes_the_filters_and_an_interval(port: int, dsn: str) -> None:
    body = api(port, "/api/histogram", [("q", "error"), ("host", "web1"),
                                        ("interval", "hour")])
    assert body["interval"] == "hour"
    assert_continuous(body, timedelta(hours=1))
    assert len(body["buckets"]) in (24, 25)  # 24 h by default
    assert body["total"] == 6 == counted(dsn, "message LIKE '%%error%%'")
    by_day = api(port, "/api/histogram", [("since", "30d"), ("severity", "crit")])
    assert (by_day["interval"], by_day["total"]) == ("day", 1)
    assert_continuous(by_day, timedelta(days=1))
    default = api(port, "/api/histogram")
    assert (default["interval"], default["total"]) == ("hour", 31)


def test_the_histogram_by_event_time(port: int, dsn: str) -> None:
    stated = NOW - timedelta(days=3)
    insert(dsn, [record("late delivery", host="late", event_time=stated)])
    params = [("time", "event"), ("since", (stated - timedelta(hours=1)).isoformat()),
              ("until", (stated + timedelta(hours=1)).isoformat())]
    body = api(port, "/api/histogram", params)
    assert (body["interval"], body["total"]) == ("minute", 1)
    hit = [b for b in body["buckets"] if b["count"]]
    assert datetime.fromisoformat(hit[0]["start"]) == stated.replace(second=0, microsecond=0)
    assert api(port, "/api/histogram", params[1:])["total"] == 0  # by received_at: none


@pytest.mark.parametrize(("params", "word"), [
    ([("interval", "week")], "interval"),
    ([("interval", "minute"), ("since", "30d")], "interval"),  # 43,200 bars
    ([("since", "1h"), ("until", "2h")], "since"),
    ([("severity", "err..loud")], "severity"),
    ([("limit", "5")], "limit"),
])
def test_a_bad_histogram_request_is_one_line(port: int, params: list[tuple[str, str]],
                                             word: str) -> None:
    body = api(port, "/api/histogram", params, status=400)
    assert word in body["error"] and "\n" not in body["error"]


# ------------------------------------------------------------------------------- facets


def test_facets_count_the_top_values(port: int, dsn: str) -> None:
    body = api(port, "/api/facets")
    assert body["host"] == [{"value": "web1", "count": 24}, {"value": "db1", "count": 6},
                            {"value": "gw", "count": 1}]
    assert body["app"][0] == {"value": "nginx", "count": 24}
    assert body["severity"] == [{"value": 6, "label": "info", "count": 18},
                                {"value": 3, "label": "err", "count": 6},
                                {"value": 5, "label": "notice", "count": 6},
                                {"value": 2, "label": "crit", "count": 1}]
    top = api(port, "/api/facets", [("limit", "1"), ("severity", "err")])
    assert top == {"host": [{"value": "web1", "count": 6}],
                   "app": [{"value": "nginx", "count": 6}],
                   "severity": [{"value": 3, "label": "err", "count": 6}]}
    # "30m" is read from the clock of the request, minutes after NOW in a long suite.
    half_an_hour_ago = datetime.now(UTC) - timedelta(minutes=30)
    recent = api(port, "/api/facets", [("since", "30m"), ("host", "db1"), ("host", "gw")])
    assert recent["host"] == [{"value": "db1", "count": counted(
        dsn, "hostname = 'db1' AND received_at >= %s", (half_an_hour_ago,))}]
    assert api(port, "/api/facets", [("q", "nothing-like-this")]) == {
        "host": [], "app": [], "severity": []}


def test_facets_default_to_the_last_day(port: int, dsn: str) -> None:
    with database.connect(dsn, autocommit=True) as conn:
        partitions.create_partition(conn, (NOW - timedelta(days=2)).date())
    insert(dsn, [record("two days ago", host="old", when=NOW - timedelta(days=2))])
    assert "old" not in [f["value"] for f in api(port, "/api/facets")["host"]]
    assert "old" in [f["value"] for f in api(port, "/api/facets", [("since", "3d")])["host"]]


# ------------------------------------------------------------------------------ context


def ids_of(dsn: str, host: str) -> list[int]:
    return [row[0] for row in query(dsn, "SELECT id FROM syslog.messages WHERE hostname = %s "
                                         "ORDER BY received_at, id", (host,))]


def test_context_is_the_rows_of_the_same_host_around_a_row(port: int, dsn: str) -> None:
    web1 = ids_of(dsn, "web1")
    middle = web1[10]
    body = api(port, "/api/context", [("id", str(middle)), ("before", "3"), ("after", "4")])
    assert body["row"]["id"] == middle
    assert [r["id"] for r in body["before"]] == web1[7:10]  # oldest first
    assert [r["id"] for r in body["after"]] == web1[11:15]
    assert {r["hostname"] for r in body["before"] + body["after"]} == {"web1"}
    edge = api(port, "/api/context", [("id", str(web1[-1]))])
    assert ([r["id"] for r in edge["before"]], edge["after"]) == (web1[-21:-1], [])
    alone = api(port, "/api/context", [("id", str(ids_of(dsn, "gw")[0]))])
    assert (alone["before"], alone["after"]) == ([], [])


def test_context_of_rows_received_at_the_same_moment(dsn: str) -> None:
    same = NOW - timedelta(minutes=1)
    insert(dsn, [record(f"burst {i}", host="burst", when=same) for i in range(5)])
    ids = ids_of(dsn, "burst")
    with local_server(dsn) as server:
        body = api(server.port, "/api/context", [("id", str(ids[2]))])
    assert ([r["id"] for r in body["before"]], [r["id"] for r in body["after"]]) == (
        ids[:2], ids[3:])


def test_context_of_an_unknown_row_is_404(port: int) -> None:
    assert api(port, "/api/context", [("id", "999999999")], status=404) == {
        "error": "no row has the id 999999999"}
    for params, word in [([], "id"), ([("id", "x")], "id"),
                         ([("id", "1"), ("before", "100000")], "before")]:
        assert api(port, "/api/context", params, status=400)["error"].startswith(word)


# ------------------------------------------------------------------- stats, partitions


def test_stats_hold_health_ingest_counters_and_the_stats_command(port: int, dsn: str) -> None:
    body = api(port, "/api/stats")
    assert body["health"]["status"] == "ok" and body["health"]["database"] == "ok"
    minutes = body["ingest_per_minute"]
    assert len(minutes) == 60
    last = datetime.fromisoformat(minutes[-1]["start"])
    assert last <= datetime.now(UTC) < last + timedelta(minutes=1)
    first = datetime.fromisoformat(minutes[0]["start"])
    assert sum(m["count"] for m in minutes) == counted(dsn, "received_at >= %s", (first,))
    assert datetime.fromisoformat(body["oldest"]) == min(r.received_at for r in _records())
    assert datetime.fromisoformat(body["newest"]) == max(r.received_at for r in _records())
    assert body["retention_days"] == RETENTION
    assert body["counters"]["received"] == 0 and "written" in body["counters"]
    assert body["top"]["rows"] == 31
    assert body["top"]["top_hosts"][0] == {"hostname": "web1", "rows": 24}
    assert body["top"]["by_severity"] == {"crit": 1, "err": 6, "notice": 6, "info": 18}


def test_partitions_list_each_day_with_size_and_expiry(port: int, dsn: str) -> None:
    with database.connect(dsn, autocommit=True) as conn:
        conn.execute("ANALYZE syslog.messages")
        expected = partitions.list_partitions(conn)
    body = api(port, "/api/partitions")
    assert body["retention_days"] == RETENTION
    assert [p["name"] for p in body["partitions"]] == [p.name for p in expected]
    today = next(p for p in body["partitions"] if p["day"] == NOW.date().isoformat())
    assert today["name"] == partitions.partition_name(NOW.date())
    assert today["expires"] == (NOW.date() + timedelta(days=RETENTION + 1)).isoformat()
    assert today["bytes"] > 0
    assert sum(p["rows"] for p in body["partitions"]) == 31  # estimates, right after ANALYZE


def test_without_retention_nothing_expires(dsn: str) -> None:
    with local_server(dsn) as server:
        body = api(server.port, "/api/partitions")
    assert body["retention_days"] is None
    assert {p["expires"] for p in body["partitions"]} == {None}


# --------------------------------------------------------------------- token, database

PATHS = ["/api/histogram", "/api/facets", "/api/context?id=1", "/api/stats", "/api/partitions"]


def test_the_new_endpoints_need_the_token(dsn: str) -> None:
    with local_server(dsn, token="s3cret") as server:
        for path in PATHS:
            assert get(server.port, path).status == 401, path
            assert get(server.port, path, token="s3cret").status in (200, 404), path


def test_the_new_endpoints_say_when_the_database_is_not_ready() -> None:
    with local_server(None) as server:
        for path in PATHS:
            reply = get(server.port, path)
            assert (reply.status, reply.body) == (503, {"error": "database: not ready"}), path


def test_an_aggregate_that_runs_too_long_is_a_503(port: int, dsn: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A histogram waiting on a lock counts against the statement timeout too."""
    monkeypatch.setattr(aggregate, "STATEMENT_TIMEOUT_MS", 300)
    today = partitions.partition_name(NOW.date())
    with database.connect(dsn) as blocker:
        blocker.execute(f"LOCK TABLE syslog.{today} IN ACCESS EXCLUSIVE MODE")
        reply = get(port, "/api/histogram")
        blocker.rollback()
    assert reply.status == 503
    assert reply.body == {"error": "the histogram took longer than 0.3 s; narrow it with "
                                   "since, until, host or app"}
    assert api(port, "/api/histogram")["total"] == 31  # the connection is fine afterwards
