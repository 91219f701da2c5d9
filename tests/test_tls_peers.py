"""tls_permitted_peers end to end: which certificates get in, and the name stored with
each of their rows (peer_name); real clients, certificates made here."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable

from helpers import ServerProcess, query, send_tcp, wait_for_rows
from pki import Issued, Pki


def tls_send(port: int, pki: Pki, client: Issued, payload: bytes) -> bool:
    """Send and close; False when the server had closed the connection first."""
    context = ssl.create_default_context(cafile=pki.ca.cert)
    context.load_cert_chain(client.cert, client.key)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as s:
        try:
            s.sendall(payload)
            s.unwrap()  # close_notify, and the server's in answer
        except (ssl.SSLError, OSError):
            return False
    return True


def mutual_tls(serve: Callable[..., ServerProcess], pki: Pki, permitted: str | None,
               *args: str) -> ServerProcess:
    env = {"PGSYSLOG_TLS_PERMITTED_PEERS": permitted} if permitted else {}
    return serve("--tls", "127.0.0.1:0", "--tls-cert", str(pki.server.cert),
                 "--tls-key", str(pki.server.key), "--tls-client-ca", str(pki.ca.cert),
                 *args, env=env)


def test_only_permitted_names_get_in_and_their_name_is_stored(
        serve: Callable[..., ServerProcess], dsn: str, pki: Pki) -> None:
    server = mutual_tls(serve, pki, "*.example.net, relay.example.org", "--tcp", "127.0.0.1:0")
    port = server.port("tls")
    web1 = pki.client_named("web1", "x.other.org", "WEB1.example.net")
    cn_only = pki.client_named("db1", common_name="db1.example.net")
    relay = pki.client_named("relay", "relay.example.org")
    # The CN would match, but the certificate has SAN DNS names, and none of them does.
    other = pki.client_named("other", "web1.example.com", common_name="web1.example.net")
    too_deep = pki.client_named("deep", "a.b.example.net")
    taken = [tls_send(port, pki, client, b"<14>1 - h app - - - " + text + b"\n")
             for client, text in [(web1, b"from web1"), (cn_only, b"from db1"),
                                  (relay, b"from relay"), (other, b"from other"),
                                  (too_deep, b"from deep")]]
    assert taken == [True, True, True, False, False]
    send_tcp(server.port("tcp"), b"<14>1 - h app - - - over tcp\n")
    assert wait_for_rows(dsn, 4) == 4
    assert server.stop() == 0
    rows = query(dsn, "SELECT message, transport, peer_name FROM syslog.messages "
                      "ORDER BY message")
    assert rows == [("from db1", "tls", "db1.example.net"),
                    ("from relay", "tls", "relay.example.org"),
                    ("from web1", "tls", "WEB1.example.net"),
                    ("over tcp", "tcp", None)]
    counters = server.final_counters()
    assert counters["tls_handshake_failed"] == 2
    assert counters["received"] == 4  # nothing of the refused connections was read
    assert ("TLS handshake with 127.0.0.1 failed: its certificate names 'web1.example.com', "
            "none of them in tls_permitted_peers [reason: name_not_permitted]") in server.log


def test_without_a_permitted_list_the_first_name_is_stored(
        serve: Callable[..., ServerProcess], dsn: str, pki: Pki) -> None:
    server = mutual_tls(serve, pki, None)
    port = server.port("tls")
    tls_send(port, pki, pki.client_named("two", "first.example.net", "second.example.net"),
             b"<14>1 - h app - - - two names\n")
    tls_send(port, pki, pki.client, b"<14>1 - h app - - - the cn\n")  # CN "client", no SAN
    assert wait_for_rows(dsn, 2) == 2
    assert query(dsn, "SELECT message, peer_name FROM syslog.messages ORDER BY message") == [
        ("the cn", "client"), ("two names", "first.example.net")]


def test_without_client_certificates_no_name_is_stored(
        serve: Callable[..., ServerProcess], dsn: str, pki: Pki) -> None:
    server = serve("--tls", "127.0.0.1:0", "--tls-cert", str(pki.server.cert),
                   "--tls-key", str(pki.server.key))
    context = ssl.create_default_context(cafile=pki.ca.cert)
    with socket.create_connection(("127.0.0.1", server.port("tls"))) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(b"<14>1 - h app - - - anonymous\n")
        s.unwrap()
    assert wait_for_rows(dsn, 1) == 1
    assert query(dsn, "SELECT peer_name FROM syslog.messages") == [(None,)]
