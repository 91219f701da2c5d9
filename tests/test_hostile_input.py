"""Hostile and odd senders against a real `pgsyslog serve`: what each one costs.

Header fields far past RFC 5424's limits, Python's logging module (NUL-framed TCP),
rsyslog's omrelp on a plain TCP port, frames cut short by the end of a connection or by
the receiver's stop, and syslog-ng loggen's octet-counted datagrams.
"""

from __future__ import annotations

import glob
import logging
import logging.handlers
import os
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from test_framing import OMRELP_OPEN, OMRELP_SYSLOG, loggen_datagram
from test_limits import closed_by_server, wait_for_log

from helpers import ServerProcess, free_port, query, send_tcp, wait_for_rows

HUGE = "x" * 3000


def frame(message: bytes) -> bytes:
    return b"%d %s" % (len(message), message)


def send_udp(port: int, *datagrams: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for datagram in datagrams:
            s.sendto(datagram, ("127.0.0.1", port))


def test_3000_character_header_fields_are_cut_and_ingestion_goes_on(
        serve: Callable[..., ServerProcess], dsn: str) -> None:
    # Uncut, such a hostname or app_name is too big for its btree index entry: PostgreSQL
    # refuses the row (SQLSTATE 54000) and, with it, the batch it came in.
    server = serve("--udp", "127.0.0.1:0", "--tcp", "127.0.0.1:0")
    hostile = [f"<14>1 - {HUGE} app - - - hostile hostname",
               f"<14>1 - host {HUGE} - - - hostile app_name",
               f"<13>Nov 21 11:59:58 host {HUGE}[7]: hostile tag"]
    send_udp(server.port("udp"), *(f"{line} over udp".encode() for line in hostile))
    lines = [f"<14>1 - web{i % 7} nginx - - - good line {i}" for i in range(200)]
    for at, line in zip((50, 100, 150), hostile, strict=True):
        lines.insert(at, f"{line} over tcp")
    send_tcp(server.port("tcp"), "".join(f"{line}\n" for line in lines).encode())
    assert wait_for_rows(dsn, 206, timeout=15) == 206
    assert server.stop() == 0
    counters = server.final_counters()
    assert (counters["spooled"], counters["rejected"], counters["unrouted"]) == (0, 0, 0)
    rows = query(dsn, "SELECT hostname, app_name, procid, message, parse_error, raw "
                      "FROM syslog.messages WHERE parse_error IS NOT NULL ORDER BY message")
    assert [(r[0], r[1], r[2], r[4]) for r in rows] == [
        ("host", "x" * 48, None, "app_name cut to 48 characters")] * 2 + [
        ("x" * 255, "app", None, "hostname cut to 255 characters")] * 2 + [
        ("host", "x" * 48, "7", "app_name cut to 48 characters")] * 2
    assert [r[3] for r in rows] == [f"hostile {what} over {transport}"
                                    for what in ("app_name", "hostname", "tag")
                                    for transport in ("tcp", "udp")]
    assert all(HUGE.encode() in r[5] for r in rows)  # raw keeps the bytes as they came
    good = query(dsn, "SELECT count(*) FROM syslog.messages WHERE message LIKE 'good line %' "
                      "AND parse_error IS NULL")
    assert good == [(200,)]


def test_python_logging_syslog_handler_over_tcp(serve: Callable[..., ServerProcess],
                                                dsn: str) -> None:
    # SysLogHandler ends each message with NUL and no LF: each one is a row as soon as it
    # arrives, while the connection stays open.
    server = serve("--tcp", "127.0.0.1:0")
    handler = logging.handlers.SysLogHandler(("127.0.0.1", server.port("tcp")),
                                             facility="local4", socktype=socket.SOCK_STREAM)
    handler.setFormatter(logging.Formatter("%(name)s[%(process)d]: %(message)s"))
    app_log = logging.getLogger("billing")
    app_log.propagate = False
    app_log.addHandler(handler)
    try:
        for i in range(3):
            app_log.warning("invoice %d declined: card expired", i)
        assert wait_for_rows(dsn, 3) == 3
        rows = query(dsn, "SELECT facility, severity, app_name, procid, message, parse_error "
                          "FROM syslog.messages ORDER BY id")
    finally:
        app_log.removeHandler(handler)
        handler.close()
    assert rows == [(20, 4, "billing", str(os.getpid()), f"invoice {i} declined: card expired",
                     None) for i in range(3)]


@pytest.mark.parametrize("session", [OMRELP_OPEN, OMRELP_OPEN + OMRELP_SYSLOG],
                         ids=["open", "open-and-syslog"])
def test_a_relp_session_on_the_tcp_port_is_closed_and_stores_nothing(
        serve: Callable[..., ServerProcess], dsn: str, session: bytes) -> None:
    server = serve("--tcp", "127.0.0.1:0")
    with socket.create_connection(("127.0.0.1", server.port("tcp"))) as relp:
        relp.sendall(session)
        assert closed_by_server(relp, 5)
    send_tcp(server.port("tcp"), b"<14>1 - h app - - - plain syslog still welcome\n")
    assert wait_for_rows(dsn, 1) == 1
    assert server.stop() == 0
    assert query(dsn, "SELECT message FROM syslog.messages") == [
        ("plain syslog still welcome",)]
    assert server.final_counters()["framing_errors"] == 1
    assert server.log.count("closing tcp connection from 127.0.0.1: the sender speaks RELP") == 1


def omrelp_module() -> str | None:
    found = glob.glob("/usr/lib/*/rsyslog/omrelp.so") + glob.glob("/usr/lib/rsyslog/omrelp.so")
    return found[0] if found else None


@pytest.mark.rsyslog
@pytest.mark.skipif(omrelp_module() is None,
                    reason="rsyslog's omrelp is not installed (Debian: rsyslog-relp)")
def test_rsyslog_omrelp_pointed_at_the_tcp_port(serve: Callable[..., ServerProcess],
                                                dsn: str, tmp_path: Path) -> None:
    server = serve("--tcp", "127.0.0.1:0")
    udp_in = free_port(socket.SOCK_DGRAM)
    conf = tmp_path / "rsyslog.conf"
    conf.write_text(f"""
global(workDirectory="{tmp_path}")
module(load="imudp")
module(load="omrelp")
input(type="imudp" address="127.0.0.1" port="{udp_in}")
action(type="omrelp" target="127.0.0.1" port="{server.port('tcp')}")
""")
    pidfile = tmp_path / "rsyslogd.pid"
    rsyslogd = subprocess.Popen(["/usr/sbin/rsyslogd", "-n", "-f", str(conf), "-i",
                                 str(pidfile)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not pidfile.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # inputs open right after the pid file is written
        send_udp(udp_in, b"<14>Nov 21 11:59:58 h app: sent with omrelp")
        assert wait_for_log(server, "the sender speaks RELP (it opened with b'1 open ", 20)
    finally:
        rsyslogd.terminate()
        rsyslogd.wait(20)
    assert server.stop() == 0
    assert query(dsn, "SELECT count(*) FROM syslog.messages") == [(0,)]


def test_frames_cut_by_the_end_of_the_connection_are_stored_without_their_count(
        serve: Callable[..., ServerProcess], dsn: str) -> None:
    server = serve("--tcp", "127.0.0.1:0")
    port = server.port("tcp")
    send_tcp(port, frame(b"<14>1 - h app - - - whole") + b"500 <14>1 - h app - - - half of it")
    send_tcp(port, b"<14>1 - h app - - - one line\n<14>1 - h app - - - no LF at the end")
    assert wait_for_rows(dsn, 4) == 4
    rows = query(dsn, "SELECT message, parse_error, raw FROM syslog.messages ORDER BY id")
    assert rows == [
        ("whole", None, None),
        ("half of it", "frame cut short: the connection ended before the frame did "
                       "(30 of 500 octets)", b"<14>1 - h app - - - half of it"),
        ("one line", None, None),
        ("no LF at the end", "frame cut short: the connection ended before the frame did",
         b"<14>1 - h app - - - no LF at the end"),
    ]
    assert server.stop() == 0
    assert server.final_counters()["cut_short"] == 2


def test_a_frame_cut_by_the_receivers_stop_is_stored(serve: Callable[..., ServerProcess],
                                                     dsn: str) -> None:
    server = serve("--tcp", "127.0.0.1:0")
    with socket.create_connection(("127.0.0.1", server.port("tcp"))) as s:
        s.sendall(frame(b"<14>1 - h app - - - before") + b"200 <14>1 - h app - - - in flight")
        assert wait_for_rows(dsn, 1) == 1
        assert server.stop() == 0  # the sender is still connected, its frame unfinished
    rows = query(dsn, "SELECT message, parse_error, raw FROM syslog.messages ORDER BY id")
    assert rows[0] == ("before", None, None)
    assert rows[1][0] == "in flight"
    assert rows[1][1].startswith("frame cut short: ") and "(29 of 200 octets)" in rows[1][1]
    assert rows[1][2] == b"<14>1 - h app - - - in flight"
    assert len(rows) == 2


def test_loggen_octet_counted_datagrams(serve: Callable[..., ServerProcess], dsn: str) -> None:
    server = serve("--udp", "127.0.0.1:0")
    send_udp(server.port("udp"), loggen_datagram(), b"12 monkeys")
    assert wait_for_rows(dsn, 2) == 2
    rows = query(dsn, "SELECT format, hostname, app_name, procid, left(message, 16), "
                      "parse_error FROM syslog.messages ORDER BY id")
    assert rows == [("rfc5424", "localhost", "prg00000", "1234", "seq: 0000000007,", None),
                    ("raw", "127.0.0.1", None, None, "12 monkeys",
                     "no PRI, no RFC 3164 header and not the custom format")]
