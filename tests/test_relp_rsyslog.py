"""A real rsyslog forwards numbered lines to pgsyslog with omrelp, configured with the
shipped packaging/rsyslog-relp.conf (only its target host and port changed).

rsyslog reads the lines from a file (imfile), so what it has to send is known exactly;
pgsyslog is killed with SIGKILL, or its database stopped, in the middle. Afterwards every
line is in syslog.messages; over RELP a line committed but not yet acknowledged at a
SIGKILL is sent again, so duplicates are counted and reported, never losses.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from rsyslogd import PLUGINS, RSYSLOGD, start_rsyslogd
from system_packages import missing_reason

from helpers import ServerProcess, free_port, query
from pg15 import Pg15
from pki import Pki

pytest_plugins = ["faultfixtures"]

SHIPPED = Path(__file__).resolve().parent.parent / "packaging" / "rsyslog-relp.conf"
SHIPPED_TARGET = 'target="pgsyslog.example.net" port="2514"'
TOTAL = 50_000
CHUNK = 5_000
MAIN_CONFIG = """
global(workDirectory="{work}")
module(load="imfile")
input(type="imfile" file="{lines}" tag="numbered")
include(file="{snippet}")
"""


# omrelp over TLS (librelp's GnuTLS driver offers no certificate-based cipher suite
# without a certificate of its own, so the client shows one).
OMRELP_TLS = """
module(load="omrelp")
action(type="omrelp" target="localhost" port="{port}" tls="on" tls.caCert="{ca}"
       tls.authMode="name" tls.permittedPeer="localhost" tls.myCert="{cert}"
       tls.myPrivKey="{key}" template="RSYSLOG_SyslogProtocol23Format")
"""


def numbered_lines(start: int, stop: int) -> str:
    return "".join(f"n={i:08d}\n" for i in range(start, stop))


class Rsyslog:
    """rsyslogd reading ``lines`` (imfile) and forwarding with the shipped omrelp action."""

    def __init__(self, work: Path, relp_port: int) -> None:
        self.work = work
        self.lines = work / "numbered.log"
        self.lines.touch()
        shipped = SHIPPED.read_text()
        assert shipped.count(SHIPPED_TARGET) == 1, "the shipped snippet's target changed"
        snippet = work / "90-pgsyslog-relp.conf"
        snippet.write_text(shipped.replace(
            SHIPPED_TARGET, f'target="127.0.0.1" port="{relp_port}"'))
        self.config = work / "rsyslog.conf"
        self.config.write_text(MAIN_CONFIG.format(work=work, lines=self.lines,
                                                  snippet=snippet))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = start_rsyslogd(self.config, self.work / "rsyslogd.pid")

    def append(self, start: int, stop: int) -> None:
        with self.lines.open("a") as fh:
            fh.write(numbered_lines(start, stop))

    def stop(self) -> str:
        if self.proc is None:
            return ""
        self.proc.terminate()
        return self.proc.communicate(timeout=30)[0].decode(errors="replace")


@pytest.fixture
def rsyslog(tmp_path: Path) -> Iterator[Callable[[int], Rsyslog]]:
    reason = missing_reason([RSYSLOGD, f"{PLUGINS}/omrelp.so", f"{PLUGINS}/imfile.so"],
                            ["rsyslog", "rsyslog-relp"])
    if reason:
        pytest.skip(reason)
    started: list[Rsyslog] = []

    def start(relp_port: int) -> Rsyslog:
        work = tmp_path / f"rsyslog-{len(started)}"
        work.mkdir()
        instance = Rsyslog(work, relp_port)
        instance.start()
        started.append(instance)
        return instance

    yield start
    for instance in started:
        instance.stop()


def stored_counts(dsn: str) -> dict[int, int]:
    """How many times each numbered line is stored (over RELP)."""
    rows = query(dsn, "SELECT substr(message, 3)::int, count(*) FROM syslog.messages "
                      "WHERE transport = 'relp' AND message ~ '^n=[0-9]{8}$' GROUP BY 1")
    return {n: c for n, c in rows}


def wait_for_lines(dsn: str, count: int, timeout: float) -> dict[int, int]:
    deadline = time.monotonic() + timeout
    counts = stored_counts(dsn)
    while len(counts) < count and time.monotonic() < deadline:
        time.sleep(0.2)
        counts = stored_counts(dsn)
    return counts


def losses_and_duplicates(counts: dict[int, int], total: int) -> tuple[list[int], int]:
    missing = [i for i in range(total) if i not in counts]
    return missing, sum(c - 1 for c in counts.values())


def test_sigkill_in_the_middle_loses_nothing(serve: Callable[..., ServerProcess], dsn: str,
                                             rsyslog: Callable[[int], Rsyslog],
                                             tmp_path: Path) -> None:
    port = free_port()
    data_dir = str(tmp_path / "data")
    relp = ["--relp", f"127.0.0.1:{port}", "--data-dir", data_dir]
    first = serve(*relp)
    sender = rsyslog(port)
    sender.append(0, 4 * CHUNK)
    in_the_middle = wait_for_lines(dsn, CHUNK, timeout=60)
    first.stop(signal.SIGKILL)
    assert CHUNK <= len(in_the_middle) < 4 * CHUNK
    sender.append(4 * CHUNK, TOTAL)  # sent while pgsyslog is away, and after
    time.sleep(1)
    again = serve(*relp)
    counts = wait_for_lines(dsn, TOTAL, timeout=120)
    missing, duplicates = losses_and_duplicates(counts, TOTAL)
    assert not missing, (f"{len(missing)} of {TOTAL} lines lost (first {missing[:10]}); "
                         f"{duplicates} duplicates; rsyslog: {sender.stop()[-2000:]}")
    assert again.stop() == 0
    print(f"SIGKILL after {len(in_the_middle)} lines stored: {TOTAL} lines, none lost, "
          f"{duplicates} stored twice (committed, not yet acknowledged at the kill)")
    # what cannot be a duplicate of the kill: lines sent after it went in once
    assert all(counts[i] == 1 for i in range(4 * CHUNK, TOTAL)), duplicates


def test_omrelp_over_tls(serve: Callable[..., ServerProcess], dsn: str,
                        rsyslog: Callable[[int], Rsyslog], pki: Pki) -> None:
    port = free_port()
    serve("--relp-tls", f"127.0.0.1:{port}", "--tls-cert", str(pki.server.cert),
          "--tls-key", str(pki.server.key))
    sender = rsyslog(port)
    snippet = next(sender.work.glob("90-*.conf"))
    snippet.write_text(OMRELP_TLS.format(port=port, ca=pki.ca.cert, cert=pki.client.cert,
                                         key=pki.client.key))
    sender.stop()
    sender.start()  # with the TLS action instead of the shipped one
    sender.append(0, CHUNK)
    counts = wait_for_lines(dsn, CHUNK, timeout=60)
    assert losses_and_duplicates(counts, CHUNK) == ([], 0), sender.stop()[-2000:]


def test_database_stopped_for_10s_loses_nothing(pg: Pg15,
                                                servers: Callable[..., ServerProcess],
                                                rsyslog: Callable[[int], Rsyslog],
                                                tmp_path: Path) -> None:
    port = free_port()
    server = servers(pg.dsn, tmp_path / "data", "--relp", f"127.0.0.1:{port}")
    sender = rsyslog(port)
    sender.append(0, 2 * CHUNK)
    assert len(wait_for_lines(pg.dsn, 2 * CHUNK, timeout=60)) == 2 * CHUNK
    pg.stop()
    try:
        sender.append(2 * CHUNK, TOTAL)  # acknowledged from the spool meanwhile
        time.sleep(10)
    finally:
        pg.start()
    counts = wait_for_lines(pg.dsn, TOTAL, timeout=120)
    missing, duplicates = losses_and_duplicates(counts, TOTAL)
    assert not missing, (f"{len(missing)} of {TOTAL} lines lost (first {missing[:10]}); "
                         f"{duplicates} duplicates; serve: {server.log[-3000:]}")
    assert server.stop() == 0
    assert duplicates == 0, f"{duplicates} lines stored twice"
    assert "spooling batches" in server.log  # acknowledged from the spool, not held back
    assert os.path.isdir(tmp_path / "data" / "spool")
