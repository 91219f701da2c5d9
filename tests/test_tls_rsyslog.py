"""A real rsyslog (omfwd over gtls, x509/name both ways) against tls_permitted_peers: the
permitted relay's messages are stored under its certificate's name, the other relay's
never; certificates made here. The README's gtls example is this configuration."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from rsyslogd import PLUGINS, RSYSLOGD, start_rsyslogd
from system_packages import missing_reason

from helpers import ServerProcess, free_port, query, wait_for_rows
from pki import Issued, Pki

GTLS = f"{PLUGINS}/lmnsd_gtls.so"

# The sender's side of the README's example: it checks the receiver's name as well.
CONFIG = """
global(workDirectory="{work}"
       DefaultNetstreamDriver="gtls"
       DefaultNetstreamDriverCAFile="{ca}"
       DefaultNetstreamDriverCertFile="{cert}"
       DefaultNetstreamDriverKeyFile="{key}")
module(load="imudp")
input(type="imudp" address="127.0.0.1" port="{udp_in}")
action(type="omfwd" target="127.0.0.1" port="{tls_out}" protocol="tcp"
       StreamDriver="gtls" StreamDriverMode="1" StreamDriverAuthMode="x509/name"
       StreamDriverPermittedPeers="localhost"
       TCP_Framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format")
"""


@pytest.fixture
def rsyslog(tmp_path: Path) -> Iterator[Callable[[str, Issued, int, Pki], int]]:
    """Start an rsyslogd relay with this client certificate forwarding over TLS to the
    port; returns its UDP input port."""
    reason = missing_reason([RSYSLOGD, GTLS], ["rsyslog", "rsyslog-gnutls"])
    if reason:
        pytest.skip(reason)
    procs: list[subprocess.Popen[bytes]] = []

    def start(name: str, client: Issued, tls_out: int, pki: Pki) -> int:
        work = tmp_path / name
        work.mkdir()
        udp_in = free_port(socket.SOCK_DGRAM)
        conf = work / "rsyslog.conf"
        conf.write_text(CONFIG.format(work=work, ca=pki.ca.cert, cert=client.cert,
                                      key=client.key, udp_in=udp_in, tls_out=tls_out))
        procs.append(start_rsyslogd(conf, work / "rsyslogd.pid"))
        return udp_in

    yield start
    for proc in procs:
        proc.terminate()
        proc.communicate(timeout=20)


def send_udp(port: int, relay: str, count: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i in range(count):
            s.sendto(b"<14>1 2026-12-02T10:00:00Z app%d prog - - - via %s %d"
                     % (i, relay.encode(), i), ("127.0.0.1", port))


def test_rsyslog_gtls_relays_are_let_in_by_name(
        serve: Callable[..., ServerProcess], rsyslog: Callable[[str, Issued, int, Pki], int],
        dsn: str, pki: Pki) -> None:
    server = serve("--tls", "127.0.0.1:0", "--tls-cert", str(pki.server.cert),
                   "--tls-key", str(pki.server.key), "--tls-client-ca", str(pki.ca.cert),
                   env={"PGSYSLOG_TLS_PERMITTED_PEERS": "*.relays.example.net"})
    port = server.port("tls")
    permitted = rsyslog("permitted", pki.client_named("relay1", "relay1.relays.example.net"),
                        port, pki)
    other = rsyslog("other", pki.client_named("relay9", "relay9.example.org"), port, pki)
    send_udp(other, "other", 5)
    send_udp(permitted, "permitted", 20)
    assert wait_for_rows(dsn, 20) == 20
    deadline = time.monotonic() + 20
    while "[reason: name_not_permitted]" not in server.log and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.stop() == 0
    rows = query(dsn, "SELECT DISTINCT transport, peer_name, split_part(message, ' ', 2) "
                      "FROM syslog.messages")
    assert rows == [("tls", "relay1.relays.example.net", "permitted")]
    assert ("failed: its certificate names 'relay9.example.org', none of them in "
            "tls_permitted_peers [reason: name_not_permitted]") in server.log
