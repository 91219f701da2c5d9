"""util-linux `logger` sends to a real `pgsyslog serve`; every stored field is checked."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from helpers import ServerProcess, query, wait_for_rows

pytestmark = pytest.mark.skipif(shutil.which("logger") is None,
                                reason="util-linux logger is not installed")

COLUMNS = ("facility, severity, hostname, app_name, procid, msgid, structured_data, message, "
           "format, transport, host(source_ip), parse_error, raw, event_time, received_at")


def run_logger(*args: str) -> None:
    subprocess.run(["logger", *args], check=True, timeout=10)


def stored(dsn: str, marker: str) -> dict[str, Any]:
    assert wait_for_rows(dsn, 1, where=f"message LIKE '%{marker}%'") == 1
    row = query(dsn, f"SELECT {COLUMNS} FROM syslog.messages WHERE message LIKE %s",
                (f"%{marker}%",))[0]
    names = [c.strip().replace("host(source_ip)", "source_ip") for c in COLUMNS.split(",")]
    return dict(zip(names, row, strict=True))


@pytest.mark.parametrize(
    ("transport", "framing"),
    [("udp", ["-d"]), ("tcp", ["-T"]), ("tcp", ["-T", "--octet-count"])],
    ids=["udp", "tcp-lf", "tcp-octet-count"],
)
def test_logger_rfc5424(serve: Callable[..., ServerProcess], dsn: str, transport: str,
                        framing: list[str]) -> None:
    server = serve("--udp", "127.0.0.1:0", "--tcp", "127.0.0.1:0")
    marker = f"five424-{transport}-{len(framing)}"
    run_logger("-n", "127.0.0.1", "-P", str(server.port(transport)), *framing, "--rfc5424",
               "-p", "local3.warning", "-t", "billing", "--id=4242", "--msgid", "INV7",
               "--sd-id", "order@32473", "--sd-param", 'id="17"', "--sd-param", 'cur="EUR"',
               f"{marker} invoice Zürich ✓")
    row = stored(dsn, marker)
    assert row["facility"] == 19 and row["severity"] == 4
    assert row["hostname"] == socket.gethostname()
    assert (row["app_name"], row["procid"], row["msgid"]) == ("billing", "4242", "INV7")
    assert row["structured_data"]["order@32473"] == {"id": "17", "cur": "EUR"}
    assert row["message"] == f"{marker} invoice Zürich ✓"
    assert (row["format"], row["transport"], row["source_ip"]) == ("rfc5424", transport,
                                                                    "127.0.0.1")
    assert row["parse_error"] is None and row["raw"] is None
    now = datetime.now(UTC)
    assert abs(row["event_time"] - now) < timedelta(minutes=1)
    assert abs(row["received_at"] - now) < timedelta(minutes=1)


@pytest.mark.parametrize(
    ("transport", "framing"),
    [("udp", ["-d"]), ("tcp", ["-T"]), ("tcp", ["-T", "--octet-count"])],
    ids=["udp", "tcp-lf", "tcp-octet-count"],
)
def test_logger_rfc3164(serve: Callable[..., ServerProcess], dsn: str, transport: str,
                        framing: list[str]) -> None:
    server = serve("--udp", "127.0.0.1:0", "--tcp", "127.0.0.1:0", "--default-tz", "UTC")
    marker = f"bsd3164-{transport}-{len(framing)}"
    run_logger("-n", "127.0.0.1", "-P", str(server.port(transport)), *framing, "--rfc3164",
               "-p", "auth.err", "-t", "sshd", "--id=2222", f"{marker} Failed password")
    row = stored(dsn, marker)
    assert (row["facility"], row["severity"]) == (4, 3)
    assert row["hostname"] == socket.gethostname()
    assert (row["app_name"], row["procid"], row["msgid"]) == ("sshd", "2222", None)
    assert row["message"] == f"{marker} Failed password"
    assert (row["format"], row["transport"]) == ("rfc3164", transport)
    assert row["parse_error"] is None and row["structured_data"] is None
    # logger writes local time without a zone; the machine's zone here is the default.
    assert row["event_time"] is not None


def test_message_without_hostname_gets_the_source_address(
        serve: Callable[..., ServerProcess], dsn: str) -> None:
    server = serve("--udp", "127.0.0.1:0")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"<13>1 2026-11-21T11:59:58Z - app - - - nohost-1", ("127.0.0.1",
                                                                        server.port("udp")))
    assert wait_for_rows(dsn, 1, where="message = 'nohost-1'") == 1
    assert query(dsn, "SELECT hostname FROM syslog.messages") == [("127.0.0.1",)]


def test_ipv6_listener(serve: Callable[..., ServerProcess], dsn: str) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("::1 is not available")
    server = serve("--udp", "[::1]:0", "--tcp", "[::1]:0")
    assert "listening on udp://[::1]:" in server.log
    run_logger("-n", "::1", "-P", str(server.port("udp")), "-d", "--rfc5424", "-t", "v6",
               "over-udp6")
    with socket.create_connection(("::1", server.port("tcp"))) as s:
        s.sendall(b"<14>1 2026-11-21T11:59:58Z h6 v6 - - - over-tcp6\n")
    assert wait_for_rows(dsn, 2, where="app_name = 'v6'") == 2
    assert set(query(dsn, "SELECT host(source_ip) FROM syslog.messages")) == {("::1",)}
