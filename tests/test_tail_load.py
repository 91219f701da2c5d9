"""Live tails under load: four writers, four senders, `tail -f` and /api/tail at once.

Every stored row must come out of both exactly once and in commit order (batch by batch,
as syslog.batches numbers them), also when the event stream reconnects with Last-Event-ID
halfway, and the follower's memory must not grow with the rows it has shown.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import psutil  # type: ignore[import-untyped]
import pytest

from helpers import query, send_tcp, wait_for_rows

SENDERS = 4
MESSAGES = 200_000  # over SENDERS connections
APP = "load"
# A follower that kept the rows it showed would hold about 1 KiB per row (200 MiB here).
RSS_GROWTH_LIMIT = 64 * 1024 * 1024


def sender_payload(n: int, count: int) -> bytes:
    return b"".join(b"<14>1 - h %s - - - c%d m%d\n" % (APP.encode(), n, i) for i in range(count))


def expected_messages(count: int) -> list[str]:
    per_sender = count // SENDERS
    return [f"c{n} m{i}" for n in range(SENDERS) for i in range(per_sender)]


def in_commit_order(dsn: str) -> list[int]:
    rows = query(dsn, "SELECT m.id FROM syslog.messages m JOIN syslog.batches b "
                      "ON m.id BETWEEN b.first_id AND b.last_id WHERE m.app_name = %s "
                      "ORDER BY b.seq, m.id", (APP,))
    return [i for (i,) in rows]


@dataclass
class Shown:
    """What a client has shown: (id, message) of the rows of APP, in order."""

    rows: list[tuple[int, str]] = field(default_factory=list)
    markers: int = 0
    ended: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None

    def add(self, row: dict[str, Any]) -> None:
        if row["app_name"] == APP:
            self.rows.append((row["id"], row["message"]))
        else:
            self.markers += 1


class TailProcess:
    """`pgsyslog tail -f -o json` as a subprocess; a thread reads its lines."""

    def __init__(self, dsn: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pgsyslog", "tail", "--dsn", dsn, "-n", "0", "-f",
             "-o", "json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.shown = Shown()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        try:
            for line in self.proc.stdout:
                self.shown.add(json.loads(line))
        except BaseException as e:  # reported by the test
            self.shown.error = e
        self.shown.ended.set()

    def stop(self) -> tuple[int, str]:
        """SIGINT, as Ctrl-C: the exit status and what it wrote on stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            status = self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            status = self.proc.wait()
        self.reader.join(15)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        errors = self.proc.stderr.read()
        self.proc.stdout.close()
        self.proc.stderr.close()
        return status, errors


class EventClient:
    """A client of /api/tail over http.client: parses Server-Sent Events as they come,
    and once it has ``reconnect_after`` rows, closes and reconnects with Last-Event-ID."""

    def __init__(self, port: int, reconnect_after: int) -> None:
        self.port = port
        self.reconnect_after = reconnect_after
        self.shown = Shown()
        self.last_id: str | None = None
        self.reconnected = False
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self._stream({})
            if not self.stopping.is_set():
                assert self.last_id is not None
                self.reconnected = True
                self._stream({"Last-Event-ID": self.last_id})
        except BaseException as e:  # reported by the test
            self.shown.error = e
        self.shown.ended.set()

    def _stream(self, headers: dict[str, str]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("GET", "/api/tail", headers=headers)
            response = conn.getresponse()
            assert response.status == 200, response.read()
            buffer = b""
            while not self.stopping.is_set():
                try:
                    chunk = response.read1(1 << 16)
                except TimeoutError:
                    continue  # quiet: keep-alive comments come every few seconds
                if not chunk:
                    raise AssertionError("the server ended the event stream")
                *events, buffer = (buffer + chunk).split(b"\n\n")
                for event in events:
                    self._take(event.decode())
                if not self.reconnected and len(self.shown.rows) >= self.reconnect_after:
                    return  # drop the connection in the middle of the stream
        finally:
            conn.close()

    def _take(self, event: str) -> None:
        fields = dict(line.split(": ", 1) for line in event.split("\n")
                      if line and not line.startswith(":"))
        if "data" in fields:
            row = json.loads(fields["data"])
            assert fields["id"] == str(row["id"])
            self.last_id = fields["id"]
            self.shown.add(row)

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(15)


class PeakRss:
    """The largest resident set of a process, sampled by a thread."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def now(self) -> int:
        return int(self.process.memory_info().rss)

    def _sample(self) -> None:
        while not self.stopping.wait(0.1):
            try:
                self.peak = max(self.peak, self.now())
            except psutil.NoSuchProcess:
                return

    def stop(self) -> int:
        self.stopping.set()
        self.thread.join(5)
        return self.peak


def wait_until(condition: Any, deadline: float, what: str | None) -> None:
    """Until ``condition()`` or ``deadline``; then fail, unless ``what`` is None."""
    while not condition():
        if time.monotonic() > deadline:
            if what is None:
                return
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.1)


def check_load(serve: Any, dsn: str, count: int) -> None:
    # When to give up (a bound on a failing run, not a measure): a minute, and a second
    # for each thousand rows, several times what a run takes on a busy two-core machine.
    give_up_after = 60.0 + count / 1000
    deadline = time.monotonic() + give_up_after
    server = serve("--tcp", "127.0.0.1:0", "--writers", "4", "--batch-rows", "500",
                   "--batch-age-ms", "50")
    tail = TailProcess(dsn)
    events = EventClient(server.port("http"), reconnect_after=count // 2)
    clients = (tail.shown, events.shown)
    try:
        # A first message shows both streams are open: every later row must come.
        while not all(c.markers for c in clients):
            send_tcp(server.port("tcp"), b"<14>1 - h marker - - - open?\n")
            wait_until(lambda: all(c.markers for c in clients), time.monotonic() + 2, None)
            assert time.monotonic() < deadline, "the streams did not open"
            assert not any(c.ended.is_set() for c in clients), [c.error for c in clients]
        rss = PeakRss(tail.proc.pid)
        baseline = rss.now()

        senders = [threading.Thread(target=send_tcp, args=(
            server.port("tcp"), sender_payload(n, count // SENDERS))) for n in range(SENDERS)]
        for t in senders:
            t.start()
        for t in senders:
            t.join()
        assert wait_for_rows(dsn, count, timeout=give_up_after / 2, where=f"app_name = '{APP}'"
                             ) == count
        wait_until(lambda: all(len(c.rows) >= count or c.ended.is_set() for c in clients),
                   deadline, "both clients to show every row")
        time.sleep(1.0)  # anything more now would be a row shown twice
        peak = rss.stop()
    finally:
        events.stop()
        status, errors = tail.stop()
    for client in clients:
        assert client.error is None, client.error
    assert (status, "Traceback" in errors) == (0, False), errors
    assert events.reconnected

    order = in_commit_order(dsn)
    assert len(order) == count
    assert sorted(m for _, m in tail.shown.rows) == sorted(expected_messages(count))
    assert [i for i, _ in tail.shown.rows] == order  # each once, in commit order
    assert [i for i, _ in events.shown.rows] == order  # across the reconnection too
    assert peak - baseline < RSS_GROWTH_LIMIT, (baseline, peak)


def test_tail_and_sse_show_every_row_of_four_writers_once(serve: Any, dsn: str) -> None:
    check_load(serve, dsn, 50_000)


@pytest.mark.skipif(not os.environ.get("PGSYSLOG_TAIL_LOAD"),
                    reason="200,000 rows: set PGSYSLOG_TAIL_LOAD=1 to run it")
def test_tail_and_sse_show_200000_rows_of_four_writers_once(serve: Any, dsn: str) -> None:
    check_load(serve, dsn, MESSAGES)
