"""Syslog over TLS (RFC 5425) with certificates made here; mutual TLS refuses strangers."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from helpers import ServerProcess, query, wait_for_rows
from inprocess import Receiving, run
from pgsyslog.receiver.tls import TlsContextError, make_tls_context
from pki import Issued, Pki, issue


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
    # TLS 1.3 clients finish their side first; they are told why when they next read.
    assert refusal(port, pki, None) == "TLSV13_ALERT_CERTIFICATE_REQUIRED"
    assert refusal(port, pki, pki.stranger) == "TLSV1_ALERT_UNKNOWN_CA"
    tls_send(port, pki, b"<14>1 - h app - - - signed client\n", pki.client)
    assert wait_for_rows(dsn, 1) == 1
    stop_status = server.stop()
    assert stop_status == 0
    assert query(dsn, "SELECT message FROM syslog.messages") == [("signed client",)]
    assert server.final_counters()["tls_handshake_failed"] == 2


def refusal(port: int, pki: Pki, client: Issued | None) -> str | None:
    """The alert a client gets after sending, or None when the server took its message."""
    context = ssl.create_default_context(cafile=pki.ca.cert)
    if client is not None:
        context.load_cert_chain(client.cert, client.key)
    with socket.create_connection(("127.0.0.1", port)) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(b"<14>1 - h app - - - must not arrive\n")
        s.settimeout(10)
        try:
            s.recv(1)
        except ssl.SSLError as e:
            return e.reason
    return None


def served_certificate(port: int, pki: Pki) -> bytes:
    """The certificate a new client is shown (DER), after a full handshake."""
    client = ssl.create_default_context(cafile=pki.ca.cert)
    with socket.create_connection(("127.0.0.1", port)) as raw, \
            client.wrap_socket(raw, server_hostname="localhost") as s:
        der = s.getpeercert(binary_form=True)
        s.sendall(b"<14>1 - h app - - - hello\n")
        s.unwrap()
    assert der is not None
    return der


def der_of(path: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(path.read_text())


def rotate_server_certificate(pki: Pki, directory: Path) -> None:
    """Issue a new server certificate and key from the same CA, over the old files."""
    ca_cert = x509.load_pem_x509_certificate(pki.ca.cert.read_bytes())
    ca_key = serialization.load_pem_private_key(pki.ca.key.read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    fresh = issue(directory, "rotated", ca_cert, ca_key, server=True)
    pki.server.cert.write_bytes(fresh.cert.read_bytes())
    pki.server.key.write_bytes(fresh.key.read_bytes())


def test_reload_swaps_the_certificate_for_new_handshakes(pki: Pki, tmp_path: Path) -> None:
    receiving = Receiving.make()
    before = der_of(pki.server.cert)

    async def scenario() -> None:
        server = await receiving.tls(make_tls_context(pki.server.cert, pki.server.key, None))
        port = server.sock.getsockname()[1]
        assert await asyncio.to_thread(served_certificate, port, pki) == before
        rotate_server_certificate(pki, tmp_path)
        server.reload(pki.server.cert, pki.server.key, None)
        after = await asyncio.to_thread(served_certificate, port, pki)
        assert after == der_of(pki.server.cert) != before
        # A bad file: one line saying what is wrong, and the current certificate stays.
        good_key = pki.server.key.read_bytes()
        pki.server.key.write_text("not a key\n")
        with pytest.raises(TlsContextError) as bad:
            server.reload(pki.server.cert, pki.server.key, None)
        assert str(bad.value).startswith(f"tls_key: {pki.server.key} is not a PEM private key")
        pki.server.key.write_bytes(good_key)
        with pytest.raises(TlsContextError, match="is not the key of the certificate"):
            server.reload(pki.server.cert, pki.client.key, None)
        with pytest.raises(TlsContextError, match=r"missing\.crt: No such file or directory"):
            server.reload(tmp_path / "missing.crt", pki.server.key, None)
        with pytest.raises(TlsContextError, match=r"^tls_client_ca: .* is not a PEM certificate"):
            server.reload(pki.server.cert, pki.server.key, pki.server.key)
        assert await asyncio.to_thread(served_certificate, port, pki) == after

    run(scenario(), receiving)
    assert len(receiving.queue) == 3
