"""Connection slots: max_connections and max_connections_per_source, TLS handshakes included.

Distinct sources are distinct loopback addresses (Linux routes all of 127/8 to lo).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable

import pytest
from test_limits import closed_by_server

from helpers import ServerProcess, wait_for_rows
from inprocess import Receiving, run, wait_until
from pgsyslog.receiver.tls import make_tls_context
from pki import Pki


def connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), source_address=(source, 0))


def refused(port: int, source: str) -> bool:
    with connect(port, source) as s:
        return closed_by_server(s, 5)


def tls_client(pki: Pki) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=pki.ca.cert)


def tls_deliver(port: int, pki: Pki, source: str, message: bytes) -> None:
    with connect(port, source) as raw, \
            tls_client(pki).wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(message)
        s.unwrap()


def test_one_address_cannot_take_every_tcp_slot(caplog: pytest.LogCaptureFixture) -> None:
    receiving = Receiving.make(max_connections=10, max_connections_per_source=3)
    held: list[socket.socket] = []

    async def scenario() -> None:
        port = await receiving.tcp()
        registry = receiving.state.registry
        held.extend([connect(port, "127.0.0.2") for _ in range(3)])
        assert await wait_until(lambda: len(registry.connections) == 3)
        for _ in range(5):
            assert await asyncio.to_thread(refused, port, "127.0.0.2")
        other = connect(port, "127.0.0.3")
        await asyncio.to_thread(other.sendall, b"<14>1 - h app - - - from another address\n")
        assert await wait_until(lambda: len(receiving.queue) == 1)
        other.close()
        held.pop().close()  # a slot of 127.0.0.2 comes free
        assert await wait_until(lambda: len(registry.connections) == 2)
        again = connect(port, "127.0.0.2")
        await asyncio.to_thread(again.sendall, b"<14>1 - h app - - - its slot again\n")
        assert await wait_until(lambda: len(receiving.queue) == 2)
        again.close()

    with caplog.at_level(logging.WARNING):
        try:
            run(scenario(), receiving)
        finally:
            for s in held:
                s.close()
    counters = receiving.state.counters
    assert (counters.connections_refused, counters.refused_per_source) == (5, 5)
    assert receiving.messages() == ["from another address", "its slot again"]
    refusals = [r.getMessage() for r in caplog.records if "refused tcp" in r.getMessage()]
    assert refusals == ["refused tcp connection from 127.0.0.2: max_connections_per_source "
                        "(3) reached for this address (logged at most every 60s per peer)"]


def test_tls_handshakes_in_progress_hold_slots_until_they_time_out(pki: Pki) -> None:
    receiving = Receiving.make(max_connections=3)
    context = make_tls_context(pki.server.cert, pki.server.key, None)

    async def scenario() -> None:
        server = await receiving.tls(context, handshake_timeout=1.0)
        port = server.sock.getsockname()[1]
        silent = [connect(port, f"127.0.0.{i}") for i in (2, 3, 4)]  # no ClientHello
        registry = receiving.state.registry
        assert await wait_until(lambda: registry.slots_in_use == 3)
        assert not registry.connections  # none of them is a connection yet
        assert await asyncio.to_thread(refused, port, "127.0.0.5")
        # The handshake timeout frees the slots: each silent socket is closed.
        for s in silent:
            assert await asyncio.to_thread(closed_by_server, s, 10)
            s.close()
        assert await wait_until(lambda: registry.slots_in_use == 0)
        await asyncio.to_thread(tls_deliver, port, pki, "127.0.0.5",
                                b"<14>1 - h app - - - after the timeouts\n")
        assert await wait_until(lambda: len(receiving.queue) == 1)

    run(scenario(), receiving)
    counters = receiving.state.counters
    assert (counters.connections_refused, counters.tls_handshake_failed) == (1, 3)
    assert receiving.messages() == ["after the timeouts"]


def test_tls_handshakes_count_against_the_per_source_limit(pki: Pki) -> None:
    receiving = Receiving.make(max_connections=100, max_connections_per_source=2)
    context = make_tls_context(pki.server.cert, pki.server.key, None)

    async def scenario() -> None:
        server = await receiving.tls(context)
        port = server.sock.getsockname()[1]
        silent = [connect(port, "127.0.0.2") for _ in range(2)]
        assert await wait_until(lambda: receiving.state.registry.slots_in_use == 2)
        assert await asyncio.to_thread(refused, port, "127.0.0.2")
        await asyncio.to_thread(tls_deliver, port, pki, "127.0.0.3",
                                b"<14>1 - h app - - - another address\n")
        assert await wait_until(lambda: len(receiving.queue) == 1)
        for s in silent:
            s.close()
        assert await wait_until(lambda: receiving.state.registry.slots_in_use == 0)

    run(scenario(), receiving)
    counters = receiving.state.counters
    assert (counters.connections_refused, counters.refused_per_source) == (1, 1)


def test_pending_tls_handshakes_hold_slots_in_serve_until_their_timeout(
        serve: Callable[..., ServerProcess], dsn: str, pki: Pki) -> None:
    server = serve("--tls", "127.0.0.1:0", "--tls-cert", str(pki.server.cert),
                   "--tls-key", str(pki.server.key), "--max-connections", "3",
                   "--max-connections-per-source", "10", "--tls-handshake-timeout", "1")
    port = server.port("tls")
    silent = [connect(port) for _ in range(3)]
    try:
        # The three are accepted in order: by the time the fourth is, they hold the slots.
        assert not closed_by_server(silent[0], 0.3)
        assert refused(port, "127.0.0.1")
        for s in silent:  # then the handshake timeout closes them, and frees their slots
            assert closed_by_server(s, 10)
    finally:
        for s in silent:
            s.close()
    tls_deliver(port, pki, "127.0.0.1", b"<14>1 - h app - - - a slot again\n")
    assert wait_for_rows(dsn, 1) == 1
    assert server.stop() == 0
    counters = server.final_counters()
    assert (counters["connections_refused"], counters["tls_handshake_failed"]) == (1, 3)
    assert "TLS handshake with 127.0.0.1 failed: not done within 1s" in server.log


def test_one_address_cannot_take_every_slot_in_serve(
        serve: Callable[..., ServerProcess], dsn: str) -> None:
    server = serve("--tcp", "127.0.0.1:0", "--max-connections-per-source", "2")
    port = server.port("tcp")
    held = [connect(port, "127.0.0.2") for _ in range(2)]
    try:
        held[0].sendall(b"<14>1 - h app - - - first of two\n")
        held[1].sendall(b"<14>1 - h app - - - second of two\n")
        assert wait_for_rows(dsn, 2) == 2  # both hold their slots by now
        assert refused(port, "127.0.0.2")
        with connect(port, "127.0.0.3") as other:
            other.sendall(b"<14>1 - h app - - - another address\n")
        assert wait_for_rows(dsn, 3) == 3
    finally:
        for s in held:
            s.close()
    assert server.stop() == 0
    counters = server.final_counters()
    assert (counters["connections_refused"], counters["refused_per_source"]) == (1, 1)
    assert "max_connections_per_source (2) reached for this address" in server.log
