"""HTTPS for the HTTP listener (API, console, metrics, health): real clients (Python's
http.client and curl) and certificates made here; plain HTTP refused; the clear-text
token warning."""

from __future__ import annotations

import http.client
import json
import re
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from system_packages import missing_reason

from helpers import ServerProcess
from pgsyslog.cli import cli
from pki import Pki, issue

TOKEN = "s3cret-token-for-https"
HTTPS_RE = re.compile(r"^listening on https://127\.0\.0\.1:(\d+)$")


def https_env(pki: Pki, **more: str) -> dict[str, str]:
    return {"PGSYSLOG_HTTP_TLS_CERT": str(pki.server.cert),
            "PGSYSLOG_HTTP_TLS_KEY": str(pki.server.key), "PGSYSLOG_HTTP_TOKEN": TOKEN,
            **more}


def https_port(server: ServerProcess) -> int:
    for line in server.output:
        match = HTTPS_RE.match(line)
        if match:
            return int(match.group(1))
    raise AssertionError(f"serve announced no https listener: {server.log}")


def https(port: int, pki: Pki, method: str, path: str, headers: dict[str, str] | None = None,
          body: bytes | None = None,
          context: ssl.SSLContext | None = None) -> tuple[http.client.HTTPResponse, str]:
    context = context or ssl.create_default_context(cafile=pki.ca.cert)
    conn = http.client.HTTPSConnection("localhost", port, context=context, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response, response.read().decode()
    finally:
        conn.close()


def test_https_serves_health_and_the_api_and_refuses_http(
        serve: Callable[..., ServerProcess], pki: Pki) -> None:
    server = serve("--tcp", "127.0.0.1:0", env=https_env(pki))
    port = https_port(server)
    health, text = https(port, pki, "GET", "/healthz")
    assert health.status == 200, text
    assert json.loads(text)["status"] == "ok"
    assert https(port, pki, "GET", "/api/search?limit=1")[0].status == 401
    found, text = https(port, pki, "GET", "/api/search?limit=1",
                        {"Authorization": f"Bearer {TOKEN}"})
    assert found.status == 200, text
    metrics, text = https(port, pki, "GET", "/metrics")
    assert metrics.status == 200 and "pgsyslog_serving 1.0" in text
    # Logged in over HTTPS, the browser is told to send its session cookie over HTTPS only.
    login, _ = https(port, pki, "POST", "/api/login", {"Content-Type": "application/json"},
                     json.dumps({"token": TOKEN}).encode())
    assert login.status == 200
    assert "Secure" in login.headers["Set-Cookie"].split("; ")
    # Plain HTTP on the same port gets no answer: its request is no TLS handshake.
    plain = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
        plain.request("GET", "/healthz")
        plain.getresponse()
    plain.close()
    assert server.stop() == 0
    assert "travels in clear text" not in server.log


def test_curl_speaks_https_with_the_ca_and_refuses_without_it(
        serve: Callable[..., ServerProcess], pki: Pki) -> None:
    reason = missing_reason(["curl"], ["curl"])
    if reason:
        pytest.skip(reason)
    server = serve("--tcp", "127.0.0.1:0", env=https_env(pki))
    url = f"https://localhost:{https_port(server)}/api/search?limit=1"
    done = subprocess.run(["curl", "-sS", "--cacert", str(pki.ca.cert), "-H",
                           f"Authorization: Bearer {TOKEN}", "-w",
                           "\n%{http_code} %{ssl_verify_result}", url],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "200 0"
    untrusted = subprocess.run(["curl", "-sS", url], capture_output=True, text=True, timeout=30)
    assert untrusted.returncode == 60, untrusted.stderr  # CURLE_PEER_FAILED_VERIFICATION


def handshake_version(port: int, context: ssl.SSLContext) -> str | None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as s:
        return s.version()


def test_https_takes_tls_min_version(serve: Callable[..., ServerProcess], pki: Pki) -> None:
    default = serve("--tcp", "127.0.0.1:0", env=https_env(pki))
    newest = serve("--tcp", "127.0.0.1:0", env=https_env(pki, PGSYSLOG_TLS_MIN_VERSION="1.3"))
    tls_1_2 = ssl.create_default_context(cafile=pki.ca.cert)
    tls_1_2.maximum_version = ssl.TLSVersion.TLSv1_2
    assert handshake_version(https_port(default), tls_1_2) == "TLSv1.2"
    with pytest.raises(ssl.SSLError):  # asyncio's TLS server closes without an alert
        handshake_version(https_port(newest), tls_1_2)
    any_version = ssl.create_default_context(cafile=pki.ca.cert)
    assert handshake_version(https_port(newest), any_version) == "TLSv1.3"
    assert https(https_port(newest), pki, "GET", "/healthz")[0].status == 200


def test_a_token_over_plain_http_beyond_loopback_is_warned_about(
        serve: Callable[..., ServerProcess], pki: Pki) -> None:
    plain = serve("--tcp", "127.0.0.1:0", "--http", "0.0.0.0:0",
                  env={"PGSYSLOG_HTTP_TOKEN": TOKEN})
    assert plain.stop() == 0
    assert ("listens beyond this machine without HTTPS: http_token travels in clear text; "
            "set http_tls_cert and http_tls_key") in plain.log
    local = serve("--tcp", "127.0.0.1:0", env={"PGSYSLOG_HTTP_TOKEN": TOKEN})
    encrypted = serve("--tcp", "127.0.0.1:0", "--http", "0.0.0.0:0", env=https_env(pki))
    for server in (local, encrypted):
        assert server.stop() == 0
        assert "travels in clear text" not in server.log


@pytest.mark.parametrize(("setting", "bad", "problem"), [
    ("PGSYSLOG_HTTP_TLS_KEY", "junk", "http_tls_key: {path} is not a PEM private key"),
    ("PGSYSLOG_HTTP_TLS_CERT", "junk", "http_tls_cert: {path} is not a PEM certificate"),
])
def test_unusable_https_files_are_one_line_at_check_config(
        pki: Pki, tmp_path: Path, setting: str, bad: str, problem: str) -> None:
    path = tmp_path / "bad.pem"
    path.write_text(bad)
    env = {**https_env(pki), setting: str(path)}
    result = CliRunner().invoke(cli, ["check-config", "--tcp", "127.0.0.1:0"], env=env)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "Error: config: " + problem.format(path=path)), lines


def test_a_key_of_another_certificate_is_one_line(pki: Pki) -> None:
    env = {**https_env(pki), "PGSYSLOG_HTTP_TLS_KEY": str(pki.client.key)}
    result = CliRunner().invoke(cli, ["check-config", "--tcp", "127.0.0.1:0"], env=env)
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"Error: config: http_tls_key: {pki.client.key} is not the key of the certificate "
        f"{pki.server.cert}: give the private key the certificate was made for"]


def test_https_needs_both_files(pki: Pki) -> None:
    env = {"PGSYSLOG_HTTP_TLS_CERT": str(pki.server.cert)}
    result = CliRunner().invoke(cli, ["check-config", "--tcp", "127.0.0.1:0"], env=env)
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "Error: config: http_tls_key: HTTPS needs both http_tls_cert and http_tls_key"]


def served_der(port: int, pki: Pki) -> bytes:
    context = ssl.create_default_context(cafile=pki.ca.cert)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as s:
        der = s.getpeercert(binary_form=True)
    assert der is not None
    return der


def wait_for_line(server: ServerProcess, text: str, count: int = 1) -> None:
    deadline = time.monotonic() + 20
    while server.log.count(text) < count:
        assert time.monotonic() < deadline, server.log
        time.sleep(0.05)


def test_sighup_reloads_the_https_certificate_and_keeps_it_when_the_new_files_are_bad(
        serve: Callable[..., ServerProcess], pki: Pki, tmp_path: Path) -> None:
    server = serve("--tcp", "127.0.0.1:0", env=https_env(pki))
    port = https_port(server)
    before = served_der(port, pki)
    fresh = issue(tmp_path, "rotated", pki.ca_cert, pki.ca_key, server=True)
    pki.server.cert.write_bytes(fresh.cert.read_bytes())
    pki.server.key.write_bytes(fresh.key.read_bytes())
    server.proc.send_signal(signal.SIGHUP)
    wait_for_line(server, "SIGHUP: reloaded the HTTPS certificate")
    after = served_der(port, pki)
    assert after == ssl.PEM_cert_to_DER_cert(fresh.cert.read_text()) != before
    pki.server.key.write_text("not a key\n")
    server.proc.send_signal(signal.SIGHUP)
    wait_for_line(server, "SIGHUP: kept the HTTPS certificate in use: cannot load the new "
                          f"files: http_tls_key: {pki.server.key} is not a PEM private key")
    assert served_der(port, pki) == after
    assert https(port, pki, "GET", "/healthz")[0].status == 200
    assert server.stop() == 0
