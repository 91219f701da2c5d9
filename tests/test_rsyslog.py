"""A real rsyslog forwards to pgsyslog with omfwd over TCP, octet-counted.

rsyslog is installed with apt-get when it is missing; the test is skipped, saying why,
only when that cannot be done (no root, no package source).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from rsyslogd import start_rsyslogd
from system_packages import missing_reason

from helpers import ServerProcess, free_port, query, wait_for_rows

CONFIG = """
global(workDirectory="{work}")
module(load="imudp")
input(type="imudp" address="127.0.0.1" port="{udp_in}")
action(type="omfwd" target="127.0.0.1" port="{tcp_out}" protocol="tcp"
       TCP_Framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format")
action(type="omfwd" target="127.0.0.1" port="{tcp_out}" protocol="tcp"
       TCP_Framing="octet-counted" template="RSYSLOG_ForwardFormat")
"""


def ensure_rsyslogd() -> str:
    found = shutil.which("rsyslogd") or (
        "/usr/sbin/rsyslogd" if os.path.exists("/usr/sbin/rsyslogd") else None)
    if found:
        return found
    reason = missing_reason(["/usr/sbin/rsyslogd"], ["rsyslog"])  # one apt-get at a time
    if reason:
        pytest.skip(reason)
    return shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"


@pytest.fixture
def rsyslog(tmp_path: Path) -> Iterator[Callable[[int], int]]:
    """Start rsyslogd forwarding to the given TCP port; returns its UDP input port."""
    ensure_rsyslogd()
    procs: list[subprocess.Popen[bytes]] = []

    def start(tcp_out: int) -> int:
        udp_in = free_port(socket.SOCK_DGRAM)
        conf = tmp_path / "rsyslog.conf"
        conf.write_text(CONFIG.format(work=tmp_path, udp_in=udp_in, tcp_out=tcp_out))
        proc = start_rsyslogd(conf, tmp_path / "rsyslogd.pid")
        procs.append(proc)
        return udp_in

    yield start
    for proc in procs:
        proc.terminate()
        proc.communicate(timeout=20)


def test_rsyslog_omfwd_octet_counted(serve: Callable[..., ServerProcess], dsn: str,
                                     rsyslog: Callable[[int], int]) -> None:
    server = serve("--tcp", "127.0.0.1:0", "--default-tz", "UTC")
    udp_in = rsyslog(server.port("tcp"))
    for i in range(5):
        subprocess.run(["logger", "-n", "127.0.0.1", "-P", str(udp_in), "-d", "--rfc3164",
                        "-p", "daemon.notice", "-t", "payments", "--id=31337",
                        f"relayed by rsyslog {i}: amount=12.50 EUR [ok]"], check=True)
    # each message arrives twice: once per forwarding template
    assert wait_for_rows(dsn, 10) == 10
    rows = query(dsn, """SELECT format, hostname, app_name, procid, message, facility, severity,
                                parse_error FROM syslog.messages ORDER BY format, message""")
    expected_messages = [f"relayed by rsyslog {i}: amount=12.50 EUR [ok]" for i in range(5)]
    for fmt, chunk in (("rfc3164", rows[:5]), ("rfc5424", rows[5:])):
        assert [r[0] for r in chunk] == [fmt] * 5
        assert {r[1] for r in chunk} == {socket.gethostname()}
        assert {(r[2], r[3]) for r in chunk} == {("payments", "31337")}
        assert [r[4] for r in chunk] == expected_messages
        assert {(r[5], r[6], r[7]) for r in chunk} == {(3, 5, None)}
