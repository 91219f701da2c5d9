"""/api/tail sends its position as an event id, so a reconnect loses nothing, even one
before the stream's first row (issue 11, point 4)."""

from __future__ import annotations

import http.client
import importlib
import json
import threading
import time
from dataclasses import dataclass
from typing import Any

import pytest

from helpers import query, send_tcp, wait_for_rows
from http_client import local_server
from stored import insert, record

APP = "tester"
endpoint = importlib.import_module("pgsyslog.http.tail")  # pgsyslog.http.tail is also a function


@dataclass(frozen=True)
class Event:
    id: str | None
    row: dict[str, Any] | None  # None: the stream's position, no data


class Stream:
    """/api/tail read as the WHATWG parser reads it: every event, rows and positions."""

    def __init__(self, port: int, path: str, last_event_id: str | None = None) -> None:
        headers = {} if last_event_id is None else {"Last-Event-ID": last_event_id}
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.conn.request("GET", path, headers=headers)
        self.response = self.conn.getresponse()
        assert self.response.status == 200, self.response.read()
        self.last_event_id = last_event_id  # as EventSource would send it on a reconnect
        self.timed_out = False  # http.client reads nothing more after a timeout

    def next_event(self, timeout: float) -> Event | None:
        """The next event with an id or data (comments are skipped); None after ``timeout``
        seconds without one, or at the end of the stream."""
        sock = self.conn.sock
        if self.timed_out or sock is None:
            return None
        deadline = time.monotonic() + timeout
        fields: dict[str, str] = {}
        try:
            while time.monotonic() < deadline:
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                if not (line := self.response.readline().decode()):
                    break
                name, _, value = line.rstrip("\n").partition(": ")
                if line == "\n" and fields:
                    return self._event(fields)
                if line != "\n" and not line.startswith(":"):
                    fields[name] = value
        except TimeoutError:
            self.timed_out = True
        return None

    def _event(self, fields: dict[str, str]) -> Event:
        if "id" in fields:
            self.last_event_id = fields["id"]
        row = json.loads(fields["data"]) if "data" in fields else None
        if row is not None:
            assert fields["id"] == str(row["id"])
        return Event(fields.get("id"), row)

    def rows(self, n: int, timeout: float) -> list[dict[str, Any]]:
        """Up to n rows; fewer when no event comes for ``timeout`` seconds."""
        got: list[dict[str, Any]] = []
        while len(got) < n and (event := self.next_event(timeout)) is not None:
            if event.row is not None:
                got.append(event.row)
        return got

    def close(self) -> None:
        self.response.close()
        self.conn.close()


def commit_order(dsn: str, where: str) -> list[int]:
    """The ids of the rows ``where`` holds, as the batches committed them."""
    rows = query(dsn, "SELECT m.id FROM syslog.messages m JOIN syslog.batches b "
                      "ON m.id BETWEEN b.first_id AND b.last_id "
                      f"WHERE {where} ORDER BY b.seq, m.id")
    return [i for (i,) in rows]


def send_mixed(port: int, senders: int, count: int) -> None:
    """``count`` messages on each of ``senders`` connections at once; 4 in 5 are APP's."""
    def sender(n: int) -> None:
        send_tcp(port, b"".join(b"<14>1 - h %s - - - c%d m%d\n"
                                % (APP.encode() if i % 5 else b"other", n, i)
                                for i in range(count)))

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


@pytest.mark.parametrize("backlog", [0, 2])
def test_a_reconnect_before_any_row_gets_every_row_once(serve: Any, dsn: str, backlog: int
                                                        ) -> None:
    # Two writers and small batches: batches commit out of id order now and then.
    server = serve("--tcp", "127.0.0.1:0", "--writers", "2", "--batch-rows", "5",
                   "--batch-age-ms", "10")
    # The newest row is not APP's: the position is past the last row shown.
    insert(dsn, [record(f"old {i}", app=APP if i % 2 else "other") for i in range(7)])
    first = Stream(server.port("http"), f"/api/tail?app={APP}&n={backlog}")
    try:
        old = first.rows(backlog, timeout=10)
        position = first.next_event(timeout=10)
    finally:
        first.close()  # before any new row
    assert [r["message"] for r in old] == ["old 3", "old 5"][2 - backlog:]
    assert position is not None and position.row is None and position.id is not None
    assert int(position.id) == max(i for (i,) in query(dsn, "SELECT id FROM syslog.messages"))

    send_mixed(server.port("tcp"), senders=4, count=50)  # while no client is connected
    assert wait_for_rows(dsn, 7 + 200) == 7 + 200
    again = Stream(server.port("http"), f"/api/tail?app={APP}", first.last_event_id)
    try:
        got = again.rows(160, timeout=10)
        got += again.rows(1, timeout=1.5)  # anything more would be a row twice
    finally:
        again.close()
    assert sorted(r["message"] for r in got) == sorted(
        f"c{n} m{i}" for n in range(4) for i in range(50) if i % 5)
    assert [r["id"] for r in got] == commit_order(
        dsn, f"m.app_name = '{APP}' AND m.message NOT LIKE 'old%'")


def test_an_old_client_resumes_after_a_row_id(serve: Any, dsn: str) -> None:
    server = serve("--tcp", "127.0.0.1:0")
    insert(dsn, [record(f"row {i}", app=APP) for i in range(4)])
    ids = [i for (i,) in query(dsn, "SELECT id FROM syslog.messages ORDER BY id")]
    stream = Stream(server.port("http"), f"/api/tail?app={APP}", str(ids[1]))
    try:
        assert [r["message"] for r in stream.rows(2, timeout=10)] == ["row 2", "row 3"]
        assert stream.next_event(timeout=1.0) is None  # the position is the last row's id
    finally:
        stream.close()
    assert stream.last_event_id == str(ids[3])


def test_a_reconnect_at_the_position_is_not_sent_it_back(dsn: str) -> None:
    insert(dsn, [record("shown", app=APP), record("unrelated", app="other")])
    with local_server(dsn) as server:
        first = Stream(server.port, f"/api/tail?app={APP}&n=1")
        try:
            rows, position = first.rows(1, timeout=10), first.next_event(timeout=10)
        finally:
            first.close()
        assert [r["message"] for r in rows] == ["shown"]
        assert position is not None and position.row is None
        again = Stream(server.port, f"/api/tail?app={APP}", position.id)
        try:
            assert again.next_event(timeout=1.0) is None  # nothing new: not even its id
        finally:
            again.close()


def test_a_filtered_stream_moves_its_position_while_quiet(dsn: str,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    monkeypatch.setattr(endpoint, "KEEPALIVE", 1.0)
    with local_server(dsn) as server:
        stream = Stream(server.port, f"/api/tail?app={APP}")
        try:
            start = stream.next_event(timeout=10)
            insert(dsn, [record(f"unrelated {i}", app="other") for i in range(20)])
            newest = query(dsn, "SELECT max(id) FROM syslog.messages")[0][0]
            deadline = time.monotonic() + 20
            moved = stream.next_event(timeout=10)
            while moved is not None and moved.id != str(newest) and time.monotonic() < deadline:
                moved = stream.next_event(timeout=10)
        finally:
            stream.close()
        assert start is not None and start.id == "0"  # an empty table: before every row
        assert moved is not None and moved.row is None, "no row matched"
        assert moved.id == str(newest)  # past the 20 rows: a reconnect starts after them

        insert(dsn, [record("wanted", app=APP), record("unrelated", app="other")])
        again = Stream(server.port, f"/api/tail?app={APP}", stream.last_event_id)
        try:
            assert [r["message"] for r in again.rows(2, timeout=3)] == ["wanted"]
        finally:
            again.close()
