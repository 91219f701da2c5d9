"""SIGHUP (issue 9.7): serve keeps running and reloads its TLS certificate and key.

A renewed certificate is picked up without a restart: new TLS connections get it, open
ones and the messages around the reload are untouched. Files that do not load keep the
certificate in use, and the log says why.
"""

from __future__ import annotations

import shutil
import signal
import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path

from cryptography import x509

from faultkit import stored, wait_for_stored, wait_until
from helpers import ServerProcess
from pki import Issued, issue, make_ca

ServeFixture = Callable[..., ServerProcess]


def tls_client(ca: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    context.check_hostname = False  # the certificates name localhost and 127.0.0.1
    return context


def certificate_seen(port: int, ca: Path) -> bytes:
    """The DER certificate a new TLS client gets from 127.0.0.1:port."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            tls_client(ca).wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def der_of(issued: Issued) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    return x509.load_pem_x509_certificate(issued.cert.read_bytes()).public_bytes(Encoding.DER)


def send_tls(port: int, ca: Path, ids: range) -> None:
    payload = b"".join(b"<14>1 2026-11-21T11:59:58Z tlshost reload - - - id=%07d\n" % i
                       for i in ids)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            tls_client(ca).wrap_socket(raw) as tls:
        tls.sendall(payload)


def hang_up(server: ServerProcess) -> list[str]:
    """SIGHUP, then the lines serve logged about it (waits for the first one)."""
    mark = len(server.errors)
    server.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: any("SIGHUP" in line or "reload" in line.lower()
                           for line in server.errors[mark:]), 15, "serve logs the SIGHUP")
    time.sleep(0.3)  # let a second line show up if there is one
    assert server.proc.poll() is None, f"SIGHUP ended serve: {server.log}"
    return [line for line in server.errors[mark:]
            if "SIGHUP" in line or "reload" in line.lower()]


def test_sighup_reloads_the_tls_certificate_and_keeps_it_when_the_new_files_are_bad(
        serve: ServeFixture, dsn: str, tmp_path: Path) -> None:
    ca, ca_cert, ca_key = make_ca(tmp_path, "reload-ca")
    first = issue(tmp_path, "first", ca_cert, ca_key, server=True)
    second = issue(tmp_path, "second", ca_cert, ca_key, server=True)
    live = Issued(tmp_path / "live.crt", tmp_path / "live.key")
    shutil.copy(first.cert, live.cert)
    shutil.copy(first.key, live.key)
    server = serve("--tls", "127.0.0.1:0", "--tls-cert", str(live.cert),
                   "--tls-key", str(live.key))
    port = server.port("tls")
    assert certificate_seen(port, ca.cert) == der_of(first)
    send_tls(port, ca.cert, range(0, 100))

    said = hang_up(server)  # same files: reloaded all the same
    assert len(said) == 1, said
    assert certificate_seen(port, ca.cert) == der_of(first)

    shutil.copy(second.cert, live.cert)
    shutil.copy(second.key, live.key)
    said = hang_up(server)
    assert len(said) == 1 and str(live.cert) in said[0], said
    assert certificate_seen(port, ca.cert) == der_of(second)

    live.cert.write_text("not a certificate\n")
    said = hang_up(server)
    assert len(said) == 1 and ("kept" in said[0] or "keep" in said[0]), said
    assert certificate_seen(port, ca.cert) == der_of(second)

    send_tls(port, ca.cert, range(100, 200))
    wait_for_stored(dsn, 200)
    assert server.stop() == 0, server.log
    assert stored(dsn) == (200, 200)


def test_sighup_without_tls_keeps_serve_running(serve: ServeFixture, dsn: str) -> None:
    server = serve("--tcp", "127.0.0.1:0")
    said = hang_up(server)
    assert len(said) == 1, said
    with socket.create_connection(("127.0.0.1", server.port("tcp"))) as s:
        s.sendall(b"<14>1 - host app - - - id=0000001 after the SIGHUP\n")
    wait_for_stored(dsn, 1)
    assert server.stop() == 0, server.log
