"""Limits against broken or hostile senders: each one configurable, each one tested."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

from test_tls import tls_send

from helpers import ServerProcess, query, send_tcp, wait_for_rows
from pki import Pki


def closed_by_server(s: socket.socket, within: float) -> bool:
    """True when the server closes the connection within the given seconds."""
    s.settimeout(within)
    try:
        return s.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def wait_for_log(server: ServerProcess, text: str, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while text not in server.log and time.monotonic() < deadline:
        time.sleep(0.05)
    return text in server.log


def test_connections_beyond_max_connections_are_refused(
        serve: Callable[..., ServerProcess], dsn: str) -> None:
    server = serve("--tcp", "127.0.0.1:0", "--max-connections", "2")
    port = server.port("tcp")
    first, second = socket.create_connection(("127.0.0.1", port)), socket.create_connection(
        ("127.0.0.1", port))
    try:
        for i, s in enumerate((first, second)):
            s.sendall(b"<14>1 - h app - - - kept %d\n" % i)
        assert wait_for_rows(dsn, 2) == 2  # both are registered by now
        with socket.create_connection(("127.0.0.1", port)) as third:
            assert closed_by_server(third, 5)
        assert not closed_by_server(first, 0.2)  # the others go on
        first.sendall(b"<14>1 - h app - - - still here\n")
        assert wait_for_rows(dsn, 3) == 3
    finally:
        first.close()
        second.close()
    assert server.stop() == 0
    assert server.final_counters()["connections_refused"] == 1
    assert "max_connections (2) reached" in server.log


def test_idle_connections_are_closed(serve: Callable[..., ServerProcess]) -> None:
    server = serve("--tcp", "127.0.0.1:0", "--idle-timeout", "1")
    with socket.create_connection(("127.0.0.1", server.port("tcp"))) as s:
        s.sendall(b"<14>1 - h app - - - then silence\n")
        assert closed_by_server(s, 10)
    assert wait_for_log(server, "idle for 1s")


def test_sources_outside_the_allowed_networks(serve: Callable[..., ServerProcess],
                                              dsn: str) -> None:
    server = serve("--tcp", "127.0.0.1:0", "--udp", "127.0.0.1:0", "--tcp-allow", "10.0.0.0/8",
                   "--udp-allow", "192.0.2.0/24")
    with socket.create_connection(("127.0.0.1", server.port("tcp"))) as s:
        assert closed_by_server(s, 5)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i in range(5):
            s.sendto(b"<14>1 - h app - - - not allowed %d" % i, ("127.0.0.1", server.port("udp")))
    time.sleep(0.5)
    assert server.stop() == 0
    counters = server.final_counters()
    assert (counters["connections_refused"], counters["dropped_not_allowed"]) == (1, 5)
    assert query(dsn, "SELECT count(*) FROM syslog.messages") == [(0,)]
    assert server.log.count("not in udp_allow (logged at most every 60s per peer)") == 1


def test_allowed_networks_let_their_senders_in(serve: Callable[..., ServerProcess],
                                               dsn: str) -> None:
    server = serve("--tcp", "127.0.0.1:0", "--tcp-allow", "10.0.0.0/8,127.0.0.0/8")
    send_tcp(server.port("tcp"), b"<14>1 - h app - - - allowed\n")
    assert wait_for_rows(dsn, 1) == 1


def test_broken_octet_counting_closes_only_that_connection(
        serve: Callable[..., ServerProcess], dsn: str) -> None:
    server = serve("--tcp", "127.0.0.1:0")
    port = server.port("tcp")
    with socket.create_connection(("127.0.0.1", port)) as good:
        for payload, reason in ((b"7 <14>one999999999 x", "ceiling"),
                                (b"7 <14>two12x4 <14>garbage", "expected an octet count")):
            with socket.create_connection(("127.0.0.1", port)) as bad:
                bad.sendall(payload)
                assert closed_by_server(bad, 5)
            assert wait_for_log(server, reason)
        good.sendall(b"9 <14>three")
        assert wait_for_rows(dsn, 3) == 3
    assert sorted(m for (m,) in query(dsn, "SELECT message FROM syslog.messages")) == [
        "one", "three", "two"]
    assert server.stop() == 0
    assert server.final_counters()["framing_errors"] == 2


def test_garbage_and_plain_text_on_the_tls_port(serve: Callable[..., ServerProcess], dsn: str,
                                                pki: Pki, tmp_path: Path) -> None:
    server = serve("--tls", "127.0.0.1:0", "--tls-cert", str(pki.server.cert),
                   "--tls-key", str(pki.server.key), "--tls-handshake-timeout", "2")
    port = server.port("tls")
    # The last looks like the start of a handshake record: only the timeout ends it.
    for payload in (os.urandom(512), b"<14>1 - h app - - - plain text\n", b"\x16\x03\x01" * 50):
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(payload)
            assert closed_by_server(s, 15)
    tls_send(port, pki, b"<14>1 - h app - - - after the garbage\n")
    assert wait_for_rows(dsn, 1) == 1
    assert server.stop() == 0
    assert server.final_counters()["tls_handshake_failed"] == 3
    assert server.log.count("TLS handshake with 127.0.0.1 failed") == 1
    assert query(dsn, "SELECT message FROM syslog.messages") == [("after the garbage",)]
