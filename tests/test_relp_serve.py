"""`pgsyslog serve --relp/--relp-tls` with a RELP client on a real socket: acknowledgements
follow the rows into the table, TLS, limits, idle sessions and a stop."""

from __future__ import annotations

import re
import signal
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from faultkit import wait_for_received
from faultproxy import FaultProxy
from helpers import ServerProcess, query
from pg15 import Pg15
from pgsyslog.receiver.relp_frames import RelpDecoder, RelpFrame, frame, next_txnr
from pki import Pki

pytest_plugins = ["faultfixtures"]

OFFERS = b"relp_version=0\nrelp_software=test,1\ncommands=syslog"


class RelpClient:
    """What omrelp does on the wire, one command at a time or a window at once."""

    def __init__(self, port: int, context: ssl.SSLContext | None = None) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.sock: socket.socket = (context.wrap_socket(raw, server_hostname="localhost")
                                    if context else raw)
        self.decoder = RelpDecoder(1 << 20)
        self.pending: list[RelpFrame] = []
        self.txnr = 1

    def send(self, command: bytes, data: bytes = b"") -> int:
        txnr, self.txnr = self.txnr, next_txnr(self.txnr)
        self.sock.sendall(frame(txnr, command, data))
        return txnr

    def read(self) -> RelpFrame:
        while not self.pending:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("the server closed the connection")
            self.pending += self.decoder.feed(data)
            assert self.decoder.error is None
        return self.pending.pop(0)

    def open(self) -> None:
        self.send(b"open", OFFERS)
        answer = self.read()
        assert (answer.command, answer.data[:7]) == ("rsp", b"200 OK\n"), answer

    def close(self) -> None:
        self.sock.close()


Connect = Callable[..., RelpClient]


@pytest.fixture
def connect() -> Iterator[Connect]:
    """Open RelpClients; every one is closed at the end of the test."""
    clients: list[RelpClient] = []

    def open_client(port: int, context: ssl.SSLContext | None = None) -> RelpClient:
        clients.append(RelpClient(port, context))
        return clients[-1]

    yield open_client
    for client in clients:
        client.close()


def relp_port(server: ServerProcess, scheme: str = "relp") -> int:
    for line in server.output:
        match = re.match(rf"listening on {scheme}://.+:(\d+)$", line)
        if match:
            return int(match.group(1))
    raise AssertionError(f"serve printed no {scheme} listener: {server.log}")


def stored(dsn: str, like: str) -> int:
    return int(query(dsn, "SELECT count(*) FROM syslog.messages WHERE transport = 'relp' "
                          "AND message LIKE %s", (like,))[0][0])


def test_each_acknowledgement_follows_its_row_into_the_table(
        connect: Connect, serve: Callable[..., ServerProcess], dsn: str) -> None:
    server = serve("--relp", "127.0.0.1:0")
    client = connect(relp_port(server))
    client.open()
    for i in range(20):
        txnr = client.send(b"syslog", b"<14>1 - h app - - - one at a time %d" % i)
        assert client.read() == RelpFrame(txnr, "rsp", b"200 OK")
        assert stored(dsn, f"one at a time {i}") == 1  # stored before it was acknowledged
    window = [client.send(b"syslog", b"<14>1 - h app - - - window %d" % i) for i in range(500)]
    assert [client.read() for _ in window] == [RelpFrame(t, "rsp", b"200 OK") for t in window]
    assert stored(dsn, "window %") == 500
    txnr = client.send(b"close")
    assert [client.read(), client.read()] == [RelpFrame(txnr, "rsp", b"200 OK"),
                                             RelpFrame(0, "serverclose", b"")]


def test_relp_over_tls(connect: Connect, serve: Callable[..., ServerProcess], dsn: str,
                       pki: Pki) -> None:
    server = serve("--relp-tls", "127.0.0.1:0", "--tls-cert", str(pki.server.cert),
                   "--tls-key", str(pki.server.key))
    client = connect(relp_port(server, "relp_tls"),
                        ssl.create_default_context(cafile=pki.ca.cert))
    client.open()
    window = [client.send(b"syslog", b"<14>1 - h app - - - over tls %d" % i) for i in range(50)]
    assert [client.read() for _ in window] == [RelpFrame(t, "rsp", b"200 OK") for t in window]
    assert stored(dsn, "over tls %") == 50


def test_a_stop_answers_what_it_stored_then_sends_serverclose(
        connect: Connect, serve: Callable[..., ServerProcess], dsn: str) -> None:
    server = serve("--relp", "127.0.0.1:0")
    client = connect(relp_port(server))
    client.open()
    window = [client.send(b"syslog", b"<14>1 - h app - - - at stop %d" % i) for i in range(300)]
    server.proc.send_signal(signal.SIGTERM)
    answers: list[RelpFrame] = []
    with pytest.raises(EOFError):
        while True:
            answers.append(client.read())
    assert answers[-1] == RelpFrame(0, "serverclose", b"")
    acknowledged = [f.txnr for f in answers[:-1]]
    assert acknowledged == window[:len(acknowledged)]  # in order, none skipped
    assert all(f.data == b"200 OK" for f in answers[:-1])
    assert server.stop() == 0
    # what was acknowledged is stored; the rest its client sends again
    assert stored(dsn, "at stop %") >= len(acknowledged)


def read_to_the_end(client: RelpClient) -> list[RelpFrame]:
    answers: list[RelpFrame] = []
    with pytest.raises(EOFError):
        while True:
            answers.append(client.read())
    return answers


def test_a_stop_with_the_database_hung_spools_then_acknowledges(
        connect: Connect, pg: Pg15, proxy: FaultProxy,
        servers: Callable[..., ServerProcess], tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = servers(proxy.dsn(pg.dsn), data_dir, "--relp", "127.0.0.1:0",
                     "--shutdown-timeout", "3", "--db-statement-timeout", "60")
    client = connect(relp_port(server))
    client.open()
    first = client.send(b"syslog", b"<14>1 - h app - - - before the hang")
    assert client.read() == RelpFrame(first, "rsp", b"200 OK")
    proxy.hang()  # the writers wait for a database that answers nothing
    window = [client.send(b"syslog", b"<14>1 - h app - - - in the hang %d" % i)
              for i in range(200)]
    wait_for_received(server, 201)  # all taken: a stop leaves what it did not take unread
    server.proc.send_signal(signal.SIGTERM)
    answers = read_to_the_end(client)  # spooled at the stop's deadline, then answered
    assert answers == [*(RelpFrame(t, "rsp", b"200 OK") for t in window),
                       RelpFrame(0, "serverclose", b"")]
    assert server.stop() == 0
    assert "rows spooled for the next start" in server.log
    proxy.pass_through()
    again = servers(pg.dsn, data_dir)  # replays the spool
    deadline = time.monotonic() + 60
    while stored(pg.dsn, "in the hang %") < 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert again.stop() == 0
    assert query(pg.dsn, "SELECT count(*), count(DISTINCT message) FROM syslog.messages "
                         "WHERE message LIKE 'in the hang %'") == [(200, 200)]


def test_a_broken_frame_ends_only_its_session(connect: Connect,
                                              serve: Callable[..., ServerProcess]) -> None:
    server = serve("--relp", "127.0.0.1:0")
    port = relp_port(server)
    broken = connect(port)
    broken.open()
    broken.sock.sendall(b"2 syslog 3 abcdef\n")
    assert broken.read() == RelpFrame(0, "serverclose", b"")
    other = connect(port)
    other.open()
    txnr = other.send(b"syslog", b"<14>1 - h app - - - still served")
    assert other.read() == RelpFrame(txnr, "rsp", b"200 OK")
    assert server.stop() == 0
    assert "closing relp session from 127.0.0.1: frame 2 syslog: expected LF after 3 " \
           "octets of data, got b'def\\n'" in server.log
    assert "Traceback" not in server.log


def test_relp_sessions_take_connection_slots(connect: Connect,
        serve: Callable[..., ServerProcess]) -> None:
    server = serve("--relp", "127.0.0.1:0", "--max-connections-per-source", "1")
    first = connect(relp_port(server))
    first.open()
    second = connect(relp_port(server))
    second.send(b"open", OFFERS)
    with pytest.raises((EOFError, ConnectionResetError)):
        second.read()
    assert server.stop() == 0
    assert "max_connections_per_source (1) reached" in server.log


def test_tcp_allow_applies_to_relp(connect: Connect,
        serve: Callable[..., ServerProcess]) -> None:
    server = serve("--relp", "127.0.0.1:0", "--tcp-allow", "192.0.2.0/24")
    client = connect(relp_port(server))
    client.send(b"open", OFFERS)
    with pytest.raises((EOFError, ConnectionResetError)):
        client.read()
    assert server.stop() == 0
    assert "refused relp connection from 127.0.0.1: the source is not in the allowed " \
           "networks" in server.log


def test_an_idle_session_gets_serverclose(connect: Connect,
        serve: Callable[..., ServerProcess]) -> None:
    server = serve("--relp", "127.0.0.1:0", "--idle-timeout", "1")
    client = connect(relp_port(server))
    client.open()
    assert client.read() == RelpFrame(0, "serverclose", b"")
    assert server.stop() == 0
    assert "closing relp connection from 127.0.0.1: idle for 1s" in server.log
