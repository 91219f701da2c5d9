"""Failed TLS handshakes: told apart by reason, counted per reason, logged per peer at most
once a minute with the count of those not logged; real clients, certificates made here."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families

from helpers import ServerProcess, query, wait_for_rows
from http_client import get
from inprocess import Receiving, run, wait_until
from pgsyslog.receiver.access import REMEMBERED_PEERS, PeerLimit, PeerLog, Turn
from pgsyslog.receiver.tls import failure_reason, make_tls_context
from pki import Issued, Pki

# ----------------------------------------------------------------- the rate limit (pure)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# (seconds since the start, peer) of each event, and what the limit says to each.
PEER_LIMIT_CASES = [
    ("first event logs", [(0, "a")], [Turn()]),
    ("a second within the minute is held back", [(0, "a"), (59.9, "a")], [Turn(), None]),
    ("the next after a minute logs, with the count held back",
     [(0, "a"), (1, "a"), (2, "a"), (60, "a")], [Turn(), None, None, Turn(2, 60)]),
    ("each peer has its own minute", [(0, "a"), (1, "b"), (2, "a"), (3, "b")],
     [Turn(), Turn(), None, None]),
    ("a window opens at the line, not at the first event held back",
     [(0, "a"), (50, "a"), (61, "a"), (100, "a"), (121, "a")],
     [Turn(), None, Turn(1, 61), None, Turn(1, 60)]),
    ("hours later: nothing held back", [(0, "a"), (7200, "a")], [Turn(), Turn(0, 7200)]),
    ("a peer of no address is a peer too", [(0, None), (1, None)], [Turn(), None]),
]


@pytest.mark.parametrize(("events", "turns"), [c[1:] for c in PEER_LIMIT_CASES],
                         ids=[c[0] for c in PEER_LIMIT_CASES])
def test_peer_limit(events: list[tuple[float, str | None]], turns: list[Turn | None]) -> None:
    clock = Clock()
    limit = PeerLimit(60.0, clock)
    start = clock.now
    said = []
    for at, peer in events:
        clock.now = start + at
        said.append(limit.turn(peer))
    assert said == turns


def test_peer_log_lines_say_how_many_were_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    peer_log = PeerLog(logging.getLogger("test.peerlog"), 60.0, clock)
    with caplog.at_level(logging.WARNING, "test.peerlog"):
        logged = [peer_log.warning("10.0.0.5", "failed: %s", i) for i in range(15)]
        clock.now += 60
        logged.append(peer_log.warning("10.0.0.5", "failed: %s", "late"))
    assert logged == [True] + [False] * 14 + [True]
    assert caplog.messages == [
        "failed: 0 (logged at most every 60s per peer)",
        "failed: late (and 14 more from 10.0.0.5 in the last 60s; logged at most every 60s "
        "per peer)"]


# ------------------------------------------------------------------- real clients, reasons


def send_from(source: str, port: int, pki: Pki, client: Issued | None,
              payload: bytes = b"<14>1 - h app - - - must not arrive\n") -> str | None:
    """A TLS client bound to ``source`` (a loopback address); the alert it gets, if any."""
    context = ssl.create_default_context(cafile=pki.ca.cert)
    if client is not None:
        context.load_cert_chain(client.cert, client.key)
    with socket.create_connection(("127.0.0.1", port), timeout=10,
                                  source_address=(source, 0)) as raw:
        try:
            with context.wrap_socket(raw, server_hostname="localhost") as s:
                s.sendall(payload)
                s.recv(1)
        except (ssl.SSLError, ConnectionError) as e:
            return getattr(e, "reason", None) or type(e).__name__
    return None


def send_signed(port: int, pki: Pki) -> None:
    context = ssl.create_default_context(cafile=pki.ca.cert)
    context.load_cert_chain(pki.client.cert, pki.client.key)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(b"<14>1 - h app - - - signed\n")
        s.unwrap()


def send_plain_from(source: str, port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10,
                                  source_address=(source, 0)) as s:
        s.sendall(payload)
        try:
            return s.recv(100)  # the server's alert, then its close
        except ConnectionResetError:
            return b""


def metric_values(port: int) -> dict[str, float]:
    reply = get(port, "/metrics")
    assert reply.status == 200
    return {f"{s.name}{s.labels}": s.value
            for family in text_string_to_metric_families(reply.text) for s in family.samples}


def test_each_failure_is_logged_with_its_reason_and_counted(
        serve: Callable[..., ServerProcess], dsn: str, pki: Pki) -> None:
    server = serve("--tls", "127.0.0.1:0", "--tls-cert", str(pki.server.cert),
                   "--tls-key", str(pki.server.key), "--tls-client-ca", str(pki.ca.cert))
    port = server.port("tls")
    expired = pki.client_named("expired", "old.example.net", expired=True)
    # One sender per loopback address: each one's first failure is logged.
    assert send_from("127.0.0.2", port, pki, expired) == "SSLV3_ALERT_CERTIFICATE_EXPIRED"
    assert send_from("127.0.0.3", port, pki, pki.stranger) == "TLSV1_ALERT_UNKNOWN_CA"
    assert send_from("127.0.0.4", port, pki, None) == "TLSV13_ALERT_CERTIFICATE_REQUIRED"
    send_plain_from("127.0.0.5", port, b"<14>1 - h app - - - plain text to the TLS port\n")
    # The same address again, and again: counted, not logged within the minute.
    for _ in range(3):
        send_from("127.0.0.2", port, pki, pki.stranger)
    send_signed(port, pki)
    assert wait_for_rows(dsn, 1) == 1
    http = server.port("http")
    assert wait_until_sync(lambda: metric_values(http).get(
        "pgsyslog_tls_handshake_failures_total{'reason': 'unknown_ca'}") == 4)
    values = metric_values(http)
    by_reason = {reason: values[f"pgsyslog_tls_handshake_failures_total{{'reason': "
                                f"'{reason}'}}"]
                 for reason in ("expired", "unknown_ca", "no_certificate", "not_tls",
                                "name_not_permitted", "other")}
    assert by_reason == {"expired": 1, "unknown_ca": 4, "no_certificate": 1, "not_tls": 1,
                         "name_not_permitted": 0, "other": 0}
    assert server.stop() == 0
    log = server.log
    expected = [
        "TLS handshake with 127.0.0.2 failed: certificate verify failed: certificate has "
        "expired [reason: expired] (logged at most every 60s per peer)",
        "TLS handshake with 127.0.0.3 failed: certificate verify failed: unable to get local "
        "issuer certificate [reason: unknown_ca] (logged at most every 60s per peer)",
        "TLS handshake with 127.0.0.4 failed: peer did not return a certificate "
        "[reason: no_certificate] (logged at most every 60s per peer)",
        "TLS handshake with 127.0.0.5 failed: wrong version number [reason: not_tls] "
        "(logged at most every 60s per peer)",
    ]
    for line in expected:
        assert line in log, log
    assert log.count("TLS handshake with 127.0.0.2 failed") == 1
    assert query(dsn, "SELECT message FROM syslog.messages") == [("signed",)]
    assert server.final_counters()["tls_handshake_failed"] == 7


def wait_until_sync(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    return asyncio.run(wait_until(predicate, timeout))


def test_failures_held_back_are_reported_when_the_peers_window_is_over(
        pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    """In process, with a window of 0.5 s instead of a minute: the failures held back in
    it are logged, by reason, once it is over, though the peer fails no more; after a
    quiet window the next failure is a line of its own again."""
    receiving = Receiving.make()
    context = make_tls_context(pki.server.cert, pki.server.key, pki.ca.cert)
    expired = pki.client_named("expired", "old.example.net", expired=True)

    def lines() -> list[str]:
        return [m for m in caplog.messages if "127.0.0.7" in m]

    async def scenario() -> None:
        server = await receiving.tls(context)
        server.handshake_failures = PeerLog(logging.getLogger("pgsyslog.receiver.tls"), 0.5)
        port = server.sock.getsockname()[1]
        for client in (pki.stranger, pki.stranger, expired, pki.stranger):
            await asyncio.to_thread(send_from, "127.0.0.7", port, pki, client)
        assert await wait_until(lambda: len(lines()) == 2)
        await asyncio.sleep(1.2)  # a window with nothing held back: forgotten
        await asyncio.to_thread(send_from, "127.0.0.7", port, pki, None)
        assert await wait_until(lambda: len(lines()) == 3)

    with caplog.at_level(logging.WARNING, "pgsyslog.receiver.tls"):
        run(scenario(), receiving)
    first, summary, fresh = lines()
    assert first.startswith("TLS handshake with 127.0.0.7 failed: certificate verify failed: "
                            "unable to get local issuer certificate [reason: unknown_ca] ")
    assert summary.startswith("3 more failed TLS handshakes from 127.0.0.7 in the last ")
    assert summary.endswith("s: unknown_ca 2, expired 1 (logged at most every 0.5s per peer)")
    assert fresh == ("TLS handshake with 127.0.0.7 failed: peer did not return a certificate "
                     "[reason: no_certificate] (logged at most every 0.5s per peer)")
    assert receiving.state.counters.tls_handshake_failures == {
        "unknown_ca": 3, "expired": 1, "no_certificate": 1}


def test_peer_limit_remembers_a_bounded_number_of_peers() -> None:
    clock = Clock()
    limit = PeerLimit(60.0, clock)
    for i in range(REMEMBERED_PEERS + 10):
        assert limit.turn(f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}") == Turn()
        assert limit.remembered <= REMEMBERED_PEERS
    assert limit.remembered == 10  # it started over once full


def test_peer_limit_overdue() -> None:
    clock = Clock()
    limit = PeerLimit(60.0, clock)
    limit.turn("a")
    limit.turn("a", "unknown_ca")
    limit.turn("a", "expired")
    limit.turn("a", "unknown_ca")
    limit.turn("b")  # nothing held back
    clock.now += 30
    assert limit.overdue() == []  # the window is not over
    clock.now += 30
    assert limit.overdue() == [("a", Turn(3, 60, (("unknown_ca", 2), ("expired", 1))))]
    assert limit.turn("b") == Turn()  # forgotten: a line of its own, no count
    assert limit.turn("a") is None  # the summary was a's line for this minute
    clock.now += 60
    assert limit.overdue() == [("a", Turn(1, 60))]


@pytest.mark.parametrize(("make_error", "reason"), [
    (lambda: ssl.SSLError(), "other"),
    (lambda: TimeoutError("not done within 10s"), "timeout"),
    (lambda: ConnectionResetError("the client closed the connection"), "closed"),
    (lambda: ValueError("something else"), "other"),
    # Words are not codes: a message that says "expired" without OpenSSL's codes is other.
    (lambda: ssl.SSLError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate has expired"),
     "other"),
    (lambda: ssl.SSLError(1, "peer did not return a certificate"), "other"),
])
def test_errors_without_ssl_codes(make_error: Callable[[], BaseException], reason: str) -> None:
    assert failure_reason(make_error()) == reason
