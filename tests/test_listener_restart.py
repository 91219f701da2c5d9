"""A listener loop that fails is logged, reported as down, and restarted: never dead silently."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from datetime import datetime
from typing import Any

import aiohttp
import pytest

from inprocess import Receiving, run, wait_until
from pgsyslog.config import Endpoint
from pgsyslog.http import start_http
from pgsyslog.receiver import supervise
from pgsyslog.receiver.access import AllowList
from pgsyslog.receiver.intake import Intake
from pgsyslog.receiver.tcp import StreamListener
from pgsyslog.receiver.tls import TlsServer, make_tls_context
from pki import Pki

BOOM = b"<14>1 - h app - - - boom"


class IntakeWithABug(Intake):
    """A parser bug, reproduced: one particular datagram makes the intake raise."""

    def offer(self, data: bytes, source_ip: str | None,
              received_at: datetime | None = None) -> None:
        if data == BOOM:
            raise RuntimeError("a bug met this datagram")
        super().offer(data, source_ip, received_at)


def send_udp(port: int, *datagrams: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for datagram in datagrams:
            s.sendto(datagram, ("127.0.0.1", port))


def errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == logging.ERROR]


def test_an_error_in_the_udp_loop_is_logged_reported_and_the_loop_restarts(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervise, "FIRST_BACKOFF", 1.5)  # time to ask /healthz meanwhile
    receiving = Receiving.make(intake_type=IntakeWithABug)
    receiving.state.serving = True
    seen_down: list[dict[str, str]] = []
    health: list[tuple[int, Any]] = []

    async def healthz(port: int) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as session, \
                session.get(f"http://127.0.0.1:{port}/healthz") as response:
            return response.status, await response.json()

    async def scenario() -> None:
        http = await start_http(Endpoint("127.0.0.1", 0), None, receiving.state)
        try:
            await break_twice(http.port)
        finally:
            await http.close()

    async def break_twice(http_port: int) -> None:
        listener = await receiving.udp_listener()
        port = listener.sockname[1]
        down = receiving.state.listeners_down
        for n in range(2):
            send_udp(port, BOOM, b"<14>1 - h app - - - after boom %d" % n)
            assert await wait_until(lambda: bool(down))
            seen_down.append(dict(down))
            health.append(await healthz(http_port))
            assert await wait_until(lambda n=n: len(receiving.queue) == n + 1)  # type: ignore[misc]
            assert not down

    with caplog.at_level(logging.ERROR):
        run(scenario(), receiving)
    assert receiving.messages() == ["after boom 0", "after boom 1"]
    name = next(iter(seen_down[0]))
    assert name.startswith("udp://127.0.0.1:")
    assert seen_down == [{name: "RuntimeError: a bug met this datagram"}] * 2
    status, body = health[0]
    assert status == 503 and body["listeners_down"] == seen_down[0]
    assert f"{name}: RuntimeError: a bug met this datagram" in body["reason"]
    assert receiving.state.counters.listener_restarts == 2
    first, second = errors(caplog)
    assert first.getMessage() == (f"{name} stopped: RuntimeError: a bug met this datagram; "
                                  "restarting in 1.5s")
    assert first.exc_info is not None  # the traceback, the first time
    assert second.exc_info is None and "restarting in 3s" in second.getMessage()


def test_a_udp_socket_closed_under_the_loop_is_bound_again(
        caplog: pytest.LogCaptureFixture) -> None:
    receiving = Receiving.make()

    async def scenario() -> None:
        listener = await receiving.udp_listener()
        port = listener.sockname[1]
        listener.stream.close()  # as an error of the transport would
        assert await wait_until(lambda: bool(receiving.state.listeners_down))
        assert await wait_until(lambda: not receiving.state.listeners_down)
        assert listener.sockname[1] == port
        send_udp(port, b"<14>1 - h app - - - on the new socket")
        assert await wait_until(lambda: len(receiving.queue) == 1)

    with caplog.at_level(logging.ERROR):
        run(scenario(), receiving)
    assert receiving.messages() == ["on the new socket"]
    assert "the socket was closed under the receive loop" in errors(caplog)[0].getMessage()


class ListenerWithABug(StreamListener):
    """The first connection makes the accept loop raise (a bug in the limits, say)."""

    failed = False

    def admit(self, peer: str | None) -> bool:
        if not self.failed:
            self.failed = True
            raise ValueError("a bug met this peer")
        return super().admit(peer)


def test_an_error_in_the_tls_accept_loop_is_logged_and_the_loop_restarts(
        pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    receiving = Receiving.make()
    listener = ListenerWithABug("tls", receiving.intake, receiving.state.registry,
                                AllowList(()))
    client = ssl.create_default_context(cafile=pki.ca.cert)

    def deliver(port: int, message: bytes) -> None:
        with socket.create_connection(("127.0.0.1", port)) as raw, \
                client.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(message)
            s.unwrap()

    async def scenario() -> None:
        server = TlsServer.bind(Endpoint("127.0.0.1", 0), listener,
                                make_tls_context(pki.server.cert, pki.server.key, None),
                                listeners_down=receiving.state.listeners_down)
        receiving.servers.append(server)
        await server.start_serving()
        port = server.sock.getsockname()[1]
        first = socket.create_connection(("127.0.0.1", port))
        assert await wait_until(lambda: bool(receiving.state.listeners_down))
        assert receiving.state.listeners_down == {
            f"tls://127.0.0.1:{port}": "ValueError: a bug met this peer"}
        first.close()
        await asyncio.to_thread(deliver, port, b"<14>1 - h app - - - after the bug\n")
        assert await wait_until(lambda: len(receiving.queue) == 1)
        assert not receiving.state.listeners_down

    with caplog.at_level(logging.ERROR):
        run(scenario(), receiving)
    assert receiving.messages() == ["after the bug"]
    assert receiving.state.counters.listener_restarts == 1
    assert errors(caplog)[0].exc_info is not None
