"""The HTTP API's bounds: the database pool, the size of an answer, clients that stop reading.

Each test runs the API server in a thread (tests/http_client.py) with the limit under test
set small, over a real database and real sockets.
"""

from __future__ import annotations

import logging
import socket
import time
import urllib.parse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest

from helpers import query
from http_client import EventStream, get, local_server
from pgsyslog.http.context import STREAMS
from stored import insert, record

KIB = 1024


def sessions(dsn: str, application: str) -> int:
    return int(query(dsn, "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                          "current_database() AND application_name = %s", (application,))[0][0])


def eventually(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.05)


def waiting_for_lock(dsn: str) -> bool:
    return bool(query(dsn, "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                           "'pgsyslog api' AND wait_event_type = 'Lock'")[0][0])


# -------------------------------------------------------------------------------- pool


def test_a_request_that_finds_no_free_connection_gets_503(dsn: str) -> None:
    with local_server(dsn, db_connections=1) as server:
        port = server.port
        assert get(port, "/api/search").status == 200
        tails = [EventStream(port, "/api/tail") for _ in range(2)]
        for stream in tails:
            stream.wait_open()
        # A search that waits for a lock holds the pool's only connection.
        with psycopg.connect(dsn) as locker, ThreadPoolExecutor(8) as clients:
            locker.execute("LOCK TABLE syslog.messages IN ACCESS EXCLUSIVE MODE")
            held = clients.submit(get, port, "/api/search?host=held")
            eventually(lambda: waiting_for_lock(dsn))
            others = [clients.submit(get, port, f"/api/search?host=h{i}") for i in range(6)]
            replies = [f.result() for f in others]
            health = get(port, "/healthz")
            api, tail = sessions(dsn, "pgsyslog api"), sessions(dsn, "pgsyslog tail")
            locker.rollback()
            assert held.result().status == 200
        for stream in tails:
            stream.close()
    assert [r.status for r in replies] == [503] * 6
    for reply in replies:
        assert reply.body == {"error": "database: all 1 API connections are busy; try again "
                                       "shortly (the setting http_db_connections)"}
    assert (health.status, health.body["database"]) == (
        200, "ok; all 1 API connections are busy; try again shortly "
             "(the setting http_db_connections)")
    assert (api, tail) == (1, 2)  # the cap, and one connection per live tail


# ------------------------------------------------------------------------ response cap


def pages(port: int, **params: str) -> list[tuple[int, dict[str, Any]]]:
    """Every page of a search, following ``next``: (body size, body) each."""
    got = []
    while True:
        reply = get(port, "/api/search?" + urllib.parse.urlencode(params))
        assert reply.status == 200, reply.body
        got.append((len(reply.text.encode()), reply.body))
        if reply.body["next"] is None:
            return got
        params["cursor"] = reply.body["next"]


@pytest.mark.parametrize("reverse", ["false", "true"])
def test_a_page_larger_than_the_cap_is_cut_at_a_row_boundary(dsn: str, reverse: str) -> None:
    cap = 64 * KIB
    insert(dsn, [record(f"row{i} " + "x" * 10_000, host="big") for i in range(30)]
           + [record("huge " + "y" * 100_000, host="big")])
    with local_server(dsn, max_response_bytes=cap) as server:
        got = pages(server.port, host="big", limit="1000", reverse=reverse)
    rows = [row for _, body in got for row in body["rows"]]
    assert len(rows) == 31 and len({row["id"] for row in rows}) == 31
    ids = [row["id"] for row in rows]
    assert ids == sorted(ids, reverse=reverse == "false")
    for size, body in got:
        assert size <= cap or len(body["rows"]) == 1  # one row alone may exceed the cap
        assert body["truncated"] == (body["next"] is not None)
        if body["next"] is not None:
            assert body["next"] == str(body["rows"][-1]["id"])
    assert len(got) >= 5  # 31 rows of 10 KB and more do not fit in a few pages of 64 KiB
    assert any(len(body["rows"]) == 1 and body["rows"][0]["message"].startswith("huge")
               for _, body in got)


def test_the_row_limit_still_counts_under_the_cap(dsn: str) -> None:
    insert(dsn, [record(f"small {i}") for i in range(5)])
    with local_server(dsn, max_response_bytes=64 * KIB) as server:
        body = get(server.port, "/api/search?limit=2").body
    assert (len(body["rows"]), body["truncated"]) == (2, False)
    assert body["next"] == str(body["rows"][-1]["id"])


# --------------------------------------------------------------------- slow SSE clients


def test_a_tail_client_that_stops_reading_is_dropped(dsn: str,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pgsyslog.http")
    with local_server(dsn, stream_timeout=1.0) as server:
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting
        try:
            client.connect(("127.0.0.1", server.port))
            client.sendall(b"GET /api/tail HTTP/1.1\r\nHost: test\r\n\r\n")
            head = b""
            while b": pgsyslog live tail" not in head:
                head += client.recv(1024)
            assert head.startswith(b"HTTP/1.1 200")
            assert sessions(dsn, "pgsyslog tail") == 1
            # Then it reads nothing while rows arrive, MiBs more than the buffers hold.
            for batch in range(6):
                insert(dsn, [record(f"b{batch} r{i} " + "z" * 1000) for i in range(2_000)])
                if sessions(dsn, "pgsyslog tail") == 0:
                    break
            eventually(lambda: sessions(dsn, "pgsyslog tail") == 0)
            eventually(lambda: server.app[STREAMS].open == 0)
        finally:
            client.close()
        again = EventStream(server.port, "/api/tail")  # its slot is free again
        again.wait_open()
        again.close()
    assert any("dropped: it took nothing for 1 s" in r.getMessage() for r in caplog.records)
