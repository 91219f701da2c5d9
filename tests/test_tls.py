"""Syslog over TLS (RFC 5425) with certificates made here; mutual TLS refuses strangers."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from helpers import ServerProcess, query, wait_for_rows
from pgsyslog.receiver.tcp import make_tls_context


@dataclass
class Issued:
    cert: Path
    key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(directory: Path, stem: str, cert: x509.Certificate,
           key: ec.EllipticCurvePrivateKey) -> Issued:
    cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return Issued(cert_path, key_path)


def make_ca(directory: Path, name: str) -> tuple[Issued, x509.Certificate,
                                                  ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(_name(name))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return _write(directory, name, cert, key), cert, key


def issue(directory: Path, stem: str, ca_cert: x509.Certificate,
          ca_key: ec.EllipticCurvePrivateKey, *, server: bool) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    usage = x509.oid.ExtendedKeyUsageOID.SERVER_AUTH if server else \
        x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (x509.CertificateBuilder().subject_name(_name(stem)).issuer_name(ca_cert.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - timedelta(minutes=5))
               .not_valid_after(now + timedelta(days=1))
               .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                         x509.IPAddress(__import__("ipaddress")
                                                        .ip_address("127.0.0.1"))]),
            critical=False)
    return _write(directory, stem, builder.sign(ca_key, hashes.SHA256()), key)


@dataclass
class Pki:
    ca: Issued
    server: Issued
    client: Issued
    stranger: Issued  # a client certificate from another CA


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca, ca_cert, ca_key = make_ca(tmp_path, "test-ca")
    _, other_cert, other_key = make_ca(tmp_path, "other-ca")
    return Pki(ca, issue(tmp_path, "server", ca_cert, ca_key, server=True),
               issue(tmp_path, "client", ca_cert, ca_key, server=False),
               issue(tmp_path, "stranger", other_cert, other_key, server=False))


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
