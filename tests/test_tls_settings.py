"""tls_min_version and tls_ciphers on the syslog TLS listener, with real clients; a cipher
string OpenSSL cannot use is one line at start."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable

import pytest
from click.testing import CliRunner

from helpers import ServerProcess, wait_for_rows
from pgsyslog.cli import cli
from pgsyslog.config import build_config
from pgsyslog.receiver.tls import context_from_config
from pki import Pki

ONLY_AES256 = "ECDHE-ECDSA-AES256-GCM-SHA384"


def tls_server(serve: Callable[..., ServerProcess], pki: Pki, **env: str) -> ServerProcess:
    return serve("--tls", "127.0.0.1:0", "--tls-cert", str(pki.server.cert),
                 "--tls-key", str(pki.server.key), env=env)


def client(pki: Pki, maximum: ssl.TLSVersion | None = None,
           ciphers: str | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=pki.ca.cert)
    if maximum is not None:
        context.maximum_version = maximum
    if ciphers is not None:
        context.set_ciphers(ciphers)
    return context


def handshake(port: int, context: ssl.SSLContext) -> tuple[str | None, str]:
    """The version and cipher agreed, after sending one message."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(b"<14>1 - h app - - - hello\n")
        version, cipher = s.version(), s.cipher()
        s.unwrap()
    assert cipher is not None
    return version, cipher[0]


def test_tls_min_version_1_3_refuses_a_tls_1_2_client(
        serve: Callable[..., ServerProcess], dsn: str, pki: Pki) -> None:
    server = tls_server(serve, pki, PGSYSLOG_TLS_MIN_VERSION="1.3")
    port = server.port("tls")
    with pytest.raises(ssl.SSLError, match="TLSV1_ALERT_PROTOCOL_VERSION"):
        handshake(port, client(pki, ssl.TLSVersion.TLSv1_2))
    assert handshake(port, client(pki))[0] == "TLSv1.3"
    assert wait_for_rows(dsn, 1) == 1
    assert server.stop() == 0
    assert "unsupported protocol [reason: protocol_version]" in server.log


def test_tls_ciphers_limit_what_tls_1_2_clients_get(
        serve: Callable[..., ServerProcess], dsn: str, pki: Pki) -> None:
    server = tls_server(serve, pki, PGSYSLOG_TLS_CIPHERS=ONLY_AES256)
    port = server.port("tls")
    assert handshake(port, client(pki, ssl.TLSVersion.TLSv1_2)) == ("TLSv1.2", ONLY_AES256)
    with pytest.raises(ssl.SSLError, match="SSLV3_ALERT_HANDSHAKE_FAILURE"):
        handshake(port, client(pki, ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-CHACHA20-POLY1305"))
    # TLS 1.3 suites are not what an OpenSSL cipher string chooses: they stay as they were.
    assert handshake(port, client(pki))[0] == "TLSv1.3"
    assert wait_for_rows(dsn, 2) == 2
    assert server.stop() == 0
    assert "no shared cipher [reason: no_shared_cipher]" in server.log


def test_the_defaults_are_tls_1_2_and_openssls_ciphers(pki: Pki) -> None:
    context = context_from_config(build_config({
        "tls": ["127.0.0.1:0"], "tls_cert": str(pki.server.cert),
        "tls_key": str(pki.server.key)}))
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    default = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    assert [c["name"] for c in context.get_ciphers()] == \
        [c["name"] for c in default.get_ciphers()]


@pytest.mark.parametrize("args", [[], ["--tls", "127.0.0.1:0"]])
def test_a_cipher_string_openssl_cannot_use_is_one_line(pki: Pki, args: list[str]) -> None:
    env = {"PGSYSLOG_TLS_CIPHERS": "NO-SUCH-CIPHER", "PGSYSLOG_TLS_CERT": str(pki.server.cert),
           "PGSYSLOG_TLS_KEY": str(pki.server.key)}
    for command in ("check-config", "serve"):
        result = CliRunner().invoke(cli, [command, "--tcp", "127.0.0.1:0", *args], env=env)
        assert result.exit_code == 2, result.output
        assert result.output.strip().splitlines() == [
            "Error: config: tls_ciphers: OpenSSL selects no cipher from 'NO-SUCH-CIPHER': "
            "give a cipher string such as ECDHE+AESGCM (try it with openssl ciphers -v "
            "'STRING')"]
