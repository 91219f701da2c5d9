"""The HTTP API of `serve`: /healthz, /metrics, /api/search and the /api/tail event stream."""

from __future__ import annotations

import asyncio
import http.client
import json
import signal
import socket
import threading
import time
import urllib.parse
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from helpers import send_tcp, wait_for_rows
from pgsyslog.config import Endpoint
from pgsyslog.http import start_http
from pgsyslog.receiver.queue import RecordQueue
from pgsyslog.receiver.state import ReceiverState
from stored import insert, record

NOW = datetime.now(UTC)


def get(port: int, path: str, token: str | None = None) -> tuple[int, Any, http.client.HTTPMessage]:
    """Status, body (parsed when JSON) and headers of GET path."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
        response = conn.getresponse()
        body: Any = response.read().decode()
        if response.headers.get_content_type() == "application/json":
            body = json.loads(body)
        return response.status, body, response.headers
    finally:
        conn.close()


def search(port: int, **params: str) -> Any:
    status, body, _ = get(port, "/api/search?" + urllib.parse.urlencode(params))
    assert status == 200, body
    return body


class EventStream:
    """A client of /api/tail: reads Server-Sent Events as they come."""

    def __init__(self, port: int, path: str, headers: dict[str, str] | None = None) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.conn.request("GET", path, headers=headers or {})
        self.response = self.conn.getresponse()
        self.status = self.response.status
        self.comments: list[str] = []

    def events(self, n: int, timeout: float) -> list[dict[str, Any]]:
        """Up to n events; fewer when none comes for ``timeout`` seconds or the stream ends."""
        assert self.conn.sock is not None
        self.conn.sock.settimeout(timeout)
        got: list[dict[str, Any]] = []
        fields: dict[str, str] = {}
        try:
            while len(got) < n:
                line = self.response.readline().decode()
                if not line:
                    break  # the server ended the stream
                line = line.rstrip("\n")
                if line.startswith(":"):
                    self.comments.append(line)
                elif line:
                    name, _, value = line.partition(": ")
                    fields[name] = value
                elif "data" in fields:
                    event = json.loads(fields["data"])
                    assert fields["id"] == str(event["id"])
                    got.append(event)
                    fields = {}
        except TimeoutError:
            pass
        return got

    def wait_open(self) -> None:
        """The first comment: from here on, every new row is sent."""
        line = self.response.readline().decode()
        assert line.startswith(": pgsyslog live tail"), line

    def close(self) -> None:
        self.response.close()
        self.conn.close()


def metrics(port: int) -> dict[str, float]:
    status, text, headers = get(port, "/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            values[sample.name + (f"{{{labels}}}" if labels else "")] = sample.value
    return values


# ---------------------------------------------------------------------------- /healthz


def test_healthz_is_ok_then_503_while_the_database_refuses(serve: Any, dsn: str,
                                                           admin_dsn: str) -> None:
    server = serve("--tcp", "127.0.0.1:0")
    port = server.port("http")
    status, body, _ = get(port, "/healthz")
    assert (status, body["status"], body["database"]) == (200, "ok", "ok")
    assert f"tcp://127.0.0.1:{server.port('tcp')}" in body["listening"]
    name = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        try:
            status, body, _ = get(port, "/healthz")
        finally:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    assert (status, body["status"]) == (503, "unavailable")
    assert body["reason"].startswith("database: ") and "not" in body["reason"]
    assert get(port, "/healthz")[0] == 200


def test_healthz_is_503_while_the_listeners_do_not_run(dsn: str) -> None:
    async def check() -> list[tuple[int, Any]]:
        state = ReceiverState(RecordQueue(10, 10))
        server = await start_http(Endpoint("127.0.0.1", 0), None, state)
        try:
            first = await asyncio.to_thread(get, server.port, "/healthz")
            state.dsn, state.serving = dsn, False
            second = await asyncio.to_thread(get, server.port, "/healthz")
            state.serving = True
            third = await asyncio.to_thread(get, server.port, "/healthz")
        finally:
            await server.close()
        return [first[:2], second[:2], third[:2]]

    first, second, third = asyncio.run(check())
    assert first == (503, {"status": "unavailable", "database": "not connected yet",
                           "listening": [], "queue": 0,
                           "reason": "the listeners are not running; "
                                     "database: not connected yet"})
    assert second[0] == 503 and second[1]["reason"] == "the listeners are not running"
    assert third[0] == 200


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
                 "pgsyslog_udp_kernel_drops_total", "pgsyslog_tls_handshake_failures_total"):
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
    for query, word in BAD_VALUES:
        status, body, _ = get(api, "/api/search?" + query)
        assert (status, word in body["error"]) == (400, True), (query, body)
    for query, word in [*BAD_VALUES[:3], ("n=-1", "n"), ("limit=5", "limit")]:
        status, body, _ = get(api, "/api/tail?" + query)
        assert (status, word in body["error"]) == (400, True), (query, body)


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
        status, body, headers = get(port, path)
        assert status == 401 and "Bearer" in body["error"]
        assert headers["WWW-Authenticate"].startswith("Bearer")
        assert get(port, path, token="wrong")[0] == 401
    assert get(port, "/api/search", token="s3cret")[:2] == (200, {"rows": [], "next": None})
    stream = EventStream(port, "/api/tail", {"Authorization": "Bearer s3cret"})
    assert stream.status == 200
    stream.close()
    assert get(port, "/healthz")[0] == 200
    assert get(port, "/metrics")[0] == 200
