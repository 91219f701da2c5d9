"""Clients of pgsyslog's HTTP API for tests, and the API server run in a thread of its own.

``local_server`` runs start_http on its own event loop in a thread, so that a test can
set the receiver state it reads (no database yet, listeners down) and its keyword
arguments (pool size, response cap, stream timeout), and still talk to it with blocking
clients over a real socket.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import threading
import time
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web

from pgsyslog.config import Endpoint
from pgsyslog.http import HttpServer, start_http
from pgsyslog.receiver.queue import RecordQueue
from pgsyslog.receiver.state import ReceiverState

T = TypeVar("T")


@dataclass
class Reply:
    status: int
    body: Any  # parsed when JSON, else text
    text: str
    headers: http.client.HTTPMessage


def request(port: int, method: str, path: str, headers: dict[str, str] | None = None,
            body: bytes | None = None) -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        text = response.read().decode()
        parsed: Any = text
        if response.headers.get_content_type() == "application/json":
            parsed = json.loads(text)
        return Reply(response.status, parsed, text, response.headers)
    finally:
        conn.close()


def get(port: int, path: str, token: str | None = None,
        headers: dict[str, str] | None = None) -> Reply:
    given = {"Authorization": f"Bearer {token}"} if token else {}
    return request(port, "GET", path, {**given, **(headers or {})})


def raw_request(port: int, data: bytes, timeout: float = 30.0) -> bytes:
    """Send bytes as they are (headers http.client would refuse) and read the whole answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def settled_log(server: Any, quiet: float = 0.3, timeout: float = 5.0) -> str:
    """The log of a running ``serve`` once it has stopped growing for ``quiet`` seconds.

    What a request logs is written before its answer goes out; this waits for the pipe
    reader to catch up, so that the log of the requests made so far is all there."""
    deadline = time.monotonic() + timeout
    seen = server.log
    while time.monotonic() < deadline:
        time.sleep(quiet)
        if server.log == seen:
            break
        seen = server.log
    return str(seen)


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


class LocalServer:
    """start_http on an event loop of its own, in a thread."""

    def __init__(self, state: ReceiverState, token: str | None, **kwargs: Any) -> None:
        self.state = state
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server: HttpServer = self.run(
            start_http(Endpoint("127.0.0.1", 0), token, state, **kwargs))
        self.port = self.server.port

    @property
    def app(self) -> web.Application:
        return self.server.runner.app

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def close(self) -> None:
        try:
            self.run(self.server.close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


@contextmanager
def local_server(dsn: str | None = None, token: str | None = None, *, serving: bool = True,
                 **kwargs: Any) -> Iterator[LocalServer]:
    state = ReceiverState(RecordQueue(10, 10))
    state.dsn, state.serving = dsn, serving
    server = LocalServer(state, token, **kwargs)
    try:
        yield server
    finally:
        server.close()
