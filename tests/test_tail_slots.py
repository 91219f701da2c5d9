"""Live tails that never read: what bounds them is the slot count (and the token), since a
client that reads nothing is noticed only once its writes back up (test_http_limits.py::
test_a_tail_client_that_stops_reading_is_dropped)."""

from __future__ import annotations

import importlib
import socket
import time
from collections.abc import Callable

import pytest

from http_client import EventStream, get, local_server
from pgsyslog.http.context import STREAMS

endpoint = importlib.import_module("pgsyslog.http.tail")  # pgsyslog.http.tail is also a function
SLOTS = 3
TOKEN = "slots-Token-0123456789"


def eventually(check: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "not within the time given"
        time.sleep(0.05)


def silent_tail(port: int, token: str) -> socket.socket:
    """A client that asks for a live tail and then never reads a byte."""
    client = socket.create_connection(("127.0.0.1", port))
    client.sendall(f"GET /api/tail HTTP/1.1\r\nHost: t\r\n"
                   f"Authorization: Bearer {token}\r\n\r\n".encode())
    return client


def test_silent_tails_hold_at_most_the_slots_and_need_the_token(
        dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(endpoint, "MAX_STREAMS", SLOTS)
    monkeypatch.setattr(endpoint, "KEEPALIVE", 0.2)  # keep-alives go out, and are taken
    with local_server(dsn, TOKEN) as server:
        clients = [silent_tail(server.port, "wrong-token") for _ in range(SLOTS)]
        time.sleep(0.5)
        assert server.app[STREAMS].open == 0  # without the token, none holds a slot
        for client in clients:
            client.close()
        clients = [silent_tail(server.port, TOKEN) for _ in range(SLOTS)]
        try:
            eventually(lambda: server.app[STREAMS].open == SLOTS)
            time.sleep(1.0)  # keep-alives meanwhile: the kernel's buffers take them all
            assert server.app[STREAMS].open == SLOTS
            reply = get(server.port, "/api/tail", token=TOKEN)
            assert (reply.status, reply.body) == (
                503, {"error": f"{SLOTS} live tails are open already; try again later"})
        finally:
            for client in clients:
                client.close()
        eventually(lambda: server.app[STREAMS].open == 0)  # a closed client frees its slot
        stream = EventStream(server.port, "/api/tail", {"Authorization": f"Bearer {TOKEN}"})
        stream.wait_open()
        stream.close()
