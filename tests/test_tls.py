"""Syslog over TLS (RFC 5425) with certificates made here; mutual TLS refuses strangers."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable

import pytest

from helpers import ServerProcess, query, wait_for_rows
from pgsyslog.receiver.tls import make_tls_context
from pki import Issued, Pki


def tls_send(port: int, pki: Pki, payload: bytes, client: Issued | None = None) -> None:
    context = ssl.create_default_context(cafile=pki.ca.cert)
    if client is not None:
        context.load_cert_chain(client.cert, client.key)
    with socket.create_connection(("127.0.0.1", port)) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(payload)
        s.unwrap()


def test_tls_delivers_octet_counted_messages(serve: Callable[..., ServerProcess], dsn: str,
                                             pki: Pki) -> None:
    server = serve("--tls", "127.0.0.1:0", "--tls-cert", str(pki.server.cert),
                   "--tls-key", str(pki.server.key))
    messages = [f"<14>1 2026-11-21T11:59:58Z tlshost app - - - secret {i}".encode()
                for i in range(50)]
    tls_send(server.port("tls"), pki, b"".join(b"%d %s" % (len(m), m) for m in messages))
    assert wait_for_rows(dsn, 50) == 50
    rows = query(dsn, "SELECT DISTINCT transport, hostname FROM syslog.messages")
    assert rows == [("tls", "tlshost")]


def test_tls_1_2_is_accepted_and_older_versions_are_not_offered(
        serve: Callable[..., ServerProcess], dsn: str, pki: Pki) -> None:
    context = make_tls_context(pki.server.cert, pki.server.key, None)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    server = serve("--tls", "127.0.0.1:0", "--tls-cert", str(pki.server.cert),
                   "--tls-key", str(pki.server.key))
    client = ssl.create_default_context(cafile=pki.ca.cert)
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_connection(("127.0.0.1", server.port("tls"))) as raw, \
            client.wrap_socket(raw, server_hostname="localhost") as s:
        assert s.version() == "TLSv1.2"
        s.sendall(b"<14>1 - h app - - - over tls 1.2\n")
    assert wait_for_rows(dsn, 1) == 1


def test_mutual_tls(serve: Callable[..., ServerProcess], dsn: str, pki: Pki) -> None:
    server = serve("--tls", "127.0.0.1:0", "--tls-cert", str(pki.server.cert),
                   "--tls-key", str(pki.server.key), "--tls-client-ca", str(pki.ca.cert))
    port = server.port("tls")
    for client in (None, pki.stranger):
        with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
            tls_send(port, pki, b"<14>1 - h app - - - must not arrive\n", client)
    tls_send(port, pki, b"<14>1 - h app - - - signed client\n", pki.client)
    assert wait_for_rows(dsn, 1) == 1
    stop_status = server.stop()
    assert stop_status == 0
    assert query(dsn, "SELECT message FROM syslog.messages") == [("signed client",)]
