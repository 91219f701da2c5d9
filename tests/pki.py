"""Certificates made for the tests: a CA, a server, a client and a stranger's client."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


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
          ca_key: ec.EllipticCurvePrivateKey, *, server: bool,
          common_name: str | None = None, dns_names: Sequence[str] = (),
          expired: bool = False) -> Issued:
    """A certificate of the CA; a client's carries the SAN DNS names given (none: no SAN),
    its subject CN is ``common_name`` (default: the stem)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    usage = x509.oid.ExtendedKeyUsageOID.SERVER_AUTH if server else \
        x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH
    # An expired certificate ended an hour ago, within a validity that was real once.
    start, end = (now - timedelta(days=2), now - timedelta(hours=1)) if expired else \
        (now - timedelta(minutes=5), now + timedelta(days=1))
    builder = (x509.CertificateBuilder().subject_name(_name(common_name or stem))
               .issuer_name(ca_cert.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(start).not_valid_after(end)
               .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                         x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
    elif dns_names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(name) for name in dns_names]),
            critical=False)
    return _write(directory, stem, builder.sign(ca_key, hashes.SHA256()), key)


@dataclass
class Pki:
    ca: Issued
    server: Issued
    client: Issued
    stranger: Issued  # a client certificate from another CA
    ca_cert: x509.Certificate
    ca_key: ec.EllipticCurvePrivateKey
    directory: Path

    def client_named(self, stem: str, *dns_names: str, common_name: str | None = None,
                     expired: bool = False) -> Issued:
        """Another client certificate of the CA, with these SAN DNS names (and CN)."""
        return issue(self.directory, stem, self.ca_cert, self.ca_key, server=False,
                     common_name=common_name, dns_names=dns_names, expired=expired)


def make_pki(tmp_path: Path) -> Pki:
    ca, ca_cert, ca_key = make_ca(tmp_path, "test-ca")
    _, other_cert, other_key = make_ca(tmp_path, "other-ca")
    return Pki(ca, issue(tmp_path, "server", ca_cert, ca_key, server=True),
               issue(tmp_path, "client", ca_cert, ca_key, server=False),
               issue(tmp_path, "stranger", other_cert, other_key, server=False),
               ca_cert, ca_key, tmp_path)
