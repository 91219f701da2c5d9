"""The HTTP API of `serve`: /healthz, /metrics, /api/search and the /api/tail event stream.

Limits (pool, response cap, slow clients) are in test_http_limits.py, the token and
sessions in test_http_auth.py, bad input in test_http_fuzz.py.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from psycopg.conninfo import make_conninfo

from helpers import query, send_tcp, wait_for_rows
from http_client import EventStream, get, local_server, request
from pgsyslog.config import Config
from pgsyslog.http import context
from pgsyslog.storage import database, migrate, partitions
from stored import insert, record

NOW = datetime.now(UTC)


def search(port: int, **params: str) -> Any:
    reply = get(port, "/api/search?" + urllib.parse.urlencode(params))
    assert reply.status == 200, reply.body
    return reply.body


def metrics(port: int) -> dict[str, float]:
    reply = get(port, "/metrics")
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("text/plain")
    values = {}
    for family in text_string_to_metric_families(reply.text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            values[sample.name + (f"{{{labels}}}" if labels else "")] = sample.value
    return values


# ---------------------------------------------------------------------------- /healthz


def api_connections(dsn: str) -> int:
    """The sessions the API's pool holds on the database of ``dsn``."""
    return int(query(dsn, "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                          "current_database() AND application_name = 'pgsyslog api'")[0][0])


def wait_for_health(port: int, status: int, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (reply := get(port, "/healthz")).status != status:
        assert time.monotonic() < deadline, reply.body
        time.sleep(0.2)
    return dict(reply.body)


def test_healthz_is_503_while_the_database_refuses_and_ok_again_by_itself(
        serve: Any, dsn: str, admin_dsn: str) -> None:
    server = serve("--tcp", "127.0.0.1:0")
    port = server.port("http")
    body = get(port, "/healthz").body
    assert (body["status"], body["database"]) == ("ok", "ok")
    assert f"tcp://127.0.0.1:{server.port('tcp')}" in body["listening"]
    name = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        # The database refuses new sessions and the API's open ones are cut.
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        try:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = %s AND application_name = 'pgsyslog api'", (name,))
            body = wait_for_health(port, 503)
        finally:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    assert body["status"] == "unavailable"
    assert body["reason"] == f"database: {body['database']}"
    assert "not currently accepting connections" in body["database"]
    assert wait_for_health(port, 200)["database"] == "ok"  # no restart
    assert "Traceback" not in server.log


def sessions_opened(dsn: str) -> int:
    """Sessions ever established on the database of ``dsn`` (this query's included)."""
    return int(query(dsn, "SELECT sessions FROM pg_stat_database "
                          "WHERE datname = current_database()")[0][0])


def test_healthz_uses_the_pool_and_opens_no_connection_per_probe(dsn: str) -> None:
    with local_server(dsn, db_connections=2) as server:
        before = sessions_opened(dsn)
        for _ in range(20):
            assert get(server.port, "/healthz").status == 200
        # At most the pool's two, and the one of sessions_opened itself.
        assert sessions_opened(dsn) - before <= 2 + 1
        assert api_connections(dsn) <= 2


def test_healthz_says_which_listeners_are_down(dsn: str) -> None:
    with local_server(dsn, serving=False) as server:
        reply = get(server.port, "/healthz")
        assert (reply.status, reply.body["reason"]) == (503, "the listeners are not running")
        server.state.serving = True
        server.state.listeners_down["tcp://127.0.0.1:5514"] = "accept failed: too many open files"
        reply = get(server.port, "/healthz")
        assert reply.status == 503
        assert reply.body["reason"] == "tcp://127.0.0.1:5514: accept failed: too many open files"
        assert reply.body["listeners_down"] == {
            "tcp://127.0.0.1:5514": "accept failed: too many open files"}
        assert reply.body["database"] == "ok"
        del server.state.listeners_down["tcp://127.0.0.1:5514"]
        assert get(server.port, "/healthz").status == 200


# ------------------------------------------------------------------ before the database


def test_before_the_database_is_ready_every_endpoint_says_so(dsn: str) -> None:
    with local_server(None, serving=False) as server:
        port = server.port
        reply = get(port, "/healthz")
        assert (reply.status, reply.body["database"]) == (503, "not ready")
        assert reply.body["reason"] == "the listeners are not running; database: not ready"
        for path in ("/api/search", "/api/search?q=x", "/api/tail", "/api/tail?n=5"):
            reply = get(port, path)
            assert (reply.status, reply.body) == (503, {"error": "database: not ready"}), path
            assert "\n" not in reply.text
        assert get(port, "/metrics").status == 200
        insert(dsn, [record("first database")])
        server.state.dsn, server.state.serving = dsn, True  # the pool is made now
        assert messages(search(port)) == ["first database"]
        assert get(port, "/healthz").status == 200


@pytest.fixture
def other_dsn(admin_dsn: str) -> Iterator[str]:
    """A second migrated database."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        other = make_conninfo(admin_dsn, dbname=name)
        migrate.upgrade(other)
        with database.connect(other, autocommit=True) as conn:
            partitions.ensure_partitions(conn, datetime.now(UTC).date(), 1)
        yield other
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_a_new_dsn_gets_a_new_pool(dsn: str, other_dsn: str) -> None:
    insert(dsn, [record("first database")])
    insert(other_dsn, [record("second database")])
    with local_server(dsn) as server:
        assert messages(search(server.port)) == ["first database"]
        server.state.dsn = other_dsn
        assert messages(search(server.port)) == ["second database"]
        deadline = time.monotonic() + 10
        while api_connections(dsn):  # the old pool is closed
            assert time.monotonic() < deadline
            time.sleep(0.1)


def test_unknown_paths_and_methods_get_one_line_json_errors(dsn: str) -> None:
    with local_server(dsn) as server:
        missing = get(server.port, "/api/nothing")
        wrong_method = request(server.port, "POST", "/api/search")
    assert (missing.status, missing.body) == (404, {"error": "Not Found"})
    assert (wrong_method.status, wrong_method.body) == (405, {"error": "Method Not Allowed"})


def test_the_default_limits_are_those_of_the_config() -> None:
    config = Config()
    defaults = (context.DEFAULT_DB_CONNECTIONS, context.DEFAULT_MAX_RESPONSE_BYTES,
                context.DEFAULT_STREAM_TIMEOUT)
    assert defaults == (config.http_db_connections, config.http_max_response_bytes,
                        config.http_stream_timeout)


# ---------------------------------------------------------------------------- /metrics


def test_metrics_count_what_was_received_and_written(serve: Any, dsn: str) -> None:
    server = serve("--tcp", "127.0.0.1:0", "--udp", "127.0.0.1:0")
    send_tcp(server.port("tcp"), b"".join(b"<14>1 - h app - - - tcp %d\n" % i for i in range(5))
             + b"   \n")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        for i in range(3):
            udp.sendto(b"<14>1 - h app - - - udp %d" % i, ("127.0.0.1", server.port("udp")))
    assert wait_for_rows(dsn, 8) == 8
    deadline = time.monotonic() + 10
    while (values := metrics(server.port("http")))["pgsyslog_rows_written_total"] < 8:
        assert time.monotonic() < deadline, values
        time.sleep(0.1)
    assert values["pgsyslog_messages_received_total{transport=tcp}"] == 6
    assert values["pgsyslog_messages_received_total{transport=udp}"] == 3
    assert values["pgsyslog_messages_parsed_total{format=rfc5424}"] == 8
    assert values["pgsyslog_messages_dropped_total{reason=empty}"] == 1
    assert values["pgsyslog_messages_dropped_total{reason=queue_full}"] == 0
    assert values["pgsyslog_messages_dropped_total{reason=not_allowed}"] == 0
    assert values["pgsyslog_connections_opened_total"] == 1
    assert values["pgsyslog_parse_errors_total"] == 0
    assert values["pgsyslog_batches_total"] >= 1
    assert values["pgsyslog_batch_duration_seconds_count"] == values["pgsyslog_batches_total"]
    assert values["pgsyslog_queue_depth"] == 0
    assert values["pgsyslog_serving"] == 1
    assert values["pgsyslog_maintenance_runs_total"] >= 0
    for name in ("pgsyslog_spool_bytes", "pgsyslog_partitions_dropped_total",
                 "pgsyslog_rows_spooled_total", "pgsyslog_batch_retries_total",
                 "pgsyslog_udp_kernel_drops_total",
                 "pgsyslog_tls_handshake_failures_total{reason=unknown_ca}",
                 "pgsyslog_messages_cut_short_total", "pgsyslog_rows_duplicate_skipped_total",
                 "pgsyslog_rows_spool_failed_total", "pgsyslog_rows_lost_at_stop_total",
                 "pgsyslog_spool_damaged_bytes_total", "pgsyslog_writer_restarts_total",
                 "pgsyslog_listener_restarts_total",
                 "pgsyslog_connections_refused_per_source_total"):
        assert name in values


# ------------------------------------------------------------------------- /api/search


@pytest.fixture
def api(serve: Any, dsn: str) -> int:
    """A server over a database holding some rows; its HTTP port."""
    insert(dsn, [
        record("connect() failed: no route to host", severity=3,
               when=NOW - timedelta(minutes=120)),
        record("ipv6 no route to host", host="router1", app="kernel", severity=4, facility=0,
               when=NOW - timedelta(minutes=90)),
        record("route added", host="web2", severity=5, when=NOW - timedelta(minutes=30)),
        *(record(f"page {i}", host="pager", when=NOW - timedelta(minutes=20, seconds=-i))
          for i in range(25)),
    ])
    return int(serve("--tcp", "127.0.0.1:0").port("http"))


def messages(body: Any) -> list[str]:
    return [row["message"] for row in body["rows"]]


def test_search_filters_like_the_cli(api: int) -> None:
    assert messages(search(api, q='"no route" -ipv6')) == ["connect() failed: no route to host"]
    assert messages(search(api, q="route", severity="warning")) == [
        "ipv6 no route to host", "connect() failed: no route to host"]
    assert messages(search(api, facility="kern")) == ["ipv6 no route to host"]
    assert messages(search(api, host="web2")) == ["route added"]
    assert messages(search(api, q="route", since="45m")) == ["route added"]
    assert messages(search(api, q="route", until=(NOW - timedelta(hours=1)).isoformat(),
                           reverse="true")) == ["connect() failed: no route to host",
                                                "ipv6 no route to host"]
    row = search(api, host="web2")["rows"][0]
    assert datetime.fromisoformat(row["received_at"]) == NOW - timedelta(minutes=30)
    assert row["source_ip"] == "192.0.2.7"


@pytest.mark.parametrize("reverse", ["false", "true"])
def test_search_pages_with_the_next_cursor(api: int, reverse: str) -> None:
    seen: list[int] = []
    params = {"host": "pager", "limit": "10", "reverse": reverse}
    pages = 0
    while True:
        body = search(api, **params)
        pages += 1
        seen += [row["id"] for row in body["rows"]]
        if body["next"] is None:
            break
        params["cursor"] = body["next"]
    assert (pages, len(seen), len(set(seen))) == (3, 25, 25)
    assert seen == sorted(seen, reverse=reverse == "false")


BAD_VALUES = [
    ("severity=loud", "severity"),
    ("facility=99", "facility"),
    ("since=last+week", "since"),
    ("limit=0", "limit"),
    ("limit=100000", "limit"),
    ("cursor=abc", "cursor"),
    ("reverse=maybe", "reverse"),
    ("sevrity=err", "sevrity"),
]


def test_search_and_tail_say_which_value_is_wrong(api: int) -> None:
    for params, word in BAD_VALUES:
        reply = get(api, "/api/search?" + params)
        assert (reply.status, word in reply.body["error"]) == (400, True), (params, reply.body)
    for params, word in [*BAD_VALUES[:3], ("n=-1", "n"), ("limit=5", "limit")]:
        reply = get(api, "/api/tail?" + params)
        assert (reply.status, word in reply.body["error"]) == (400, True), (params, reply.body)


# --------------------------------------------------------------------------- /api/tail


def test_tail_streams_each_new_row_exactly_once(serve: Any, dsn: str) -> None:
    # Two writers and small batches: batches commit out of id order now and then.
    server = serve("--tcp", "127.0.0.1:0", "--writers", "2", "--batch-rows", "5",
                   "--batch-age-ms", "10")
    insert(dsn, [record("tester before", app="tester")])
    stream = EventStream(server.port("http"), "/api/tail?app=tester&n=1")
    try:
        assert stream.status == 200
        assert stream.response.headers["Content-Type"] == "text/event-stream"
        stream.wait_open()
        assert [e["message"] for e in stream.events(1, 10)] == ["tester before"]

        def sender(n: int) -> None:
            send_tcp(server.port("tcp"), b"".join(
                b"<14>1 - h %s - - - c%d m%d\n" % (b"tester" if i % 5 else b"other", n, i)
                for i in range(50)))

        threads = [threading.Thread(target=sender, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        got = stream.events(160, timeout=10)
        got += stream.events(1, timeout=1.5)  # anything more would be a duplicate
    finally:
        stream.close()
    assert sorted(e["message"] for e in got) == sorted(
        f"c{n} m{i}" for n in range(4) for i in range(50) if i % 5)
    assert len({e["id"] for e in got}) == 160
    assert {e["app_name"] for e in got} == {"tester"}


def test_tail_resumes_after_last_event_id(serve: Any, dsn: str) -> None:
    server = serve("--tcp", "127.0.0.1:0")
    port = server.port("http")
    stream = EventStream(port, "/api/tail")
    stream.wait_open()
    send_tcp(server.port("tcp"), b"<14>1 - h app - - - first\n")
    first = stream.events(1, 10)
    stream.close()
    send_tcp(server.port("tcp"), b"<14>1 - h app - - - second\n<14>1 - h app - - - third\n")
    assert wait_for_rows(dsn, 3) == 3
    again = EventStream(port, "/api/tail", {"Last-Event-ID": str(first[0]["id"])})
    try:
        assert [e["message"] for e in again.events(2, 10)] == ["second", "third"]
    finally:
        again.close()


def test_a_stop_ends_open_streams(serve: Any) -> None:
    server = serve("--tcp", "127.0.0.1:0")
    stream = EventStream(server.port("http"), "/api/tail")
    try:
        stream.wait_open()
        started = time.monotonic()
        assert server.stop(signal.SIGTERM) == 0
        assert time.monotonic() - started < 10
        assert stream.events(1, 10) == []  # the stream ended
    finally:
        stream.close()


# ------------------------------------------------------------------------------ token


def test_the_token_guards_the_api_only(serve: Any) -> None:
    port = serve("--tcp", "127.0.0.1:0", "--http-token", "s3cret").port("http")
    for path in ("/api/search", "/api/tail"):
        reply = get(port, path)
        assert reply.status == 401 and "Bearer" in reply.body["error"]
        assert reply.headers["WWW-Authenticate"].startswith("Bearer")
        assert get(port, path, token="wrong").status == 401
    reply = get(port, "/api/search", token="s3cret")
    assert (reply.status, reply.body) == (200, {"rows": [], "next": None, "truncated": False})
    stream = EventStream(port, "/api/tail", {"Authorization": "Bearer s3cret"})
    assert stream.status == 200
    stream.close()
    assert get(port, "/healthz").status == 200
    assert get(port, "/metrics").status == 200
