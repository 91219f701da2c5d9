"""Starting a real rsyslogd for a test or a benchmark: in the foreground, on a config of
its own, ready once it has written its pid file."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

RSYSLOGD = "/usr/sbin/rsyslogd"
PLUGINS = "/usr/lib/x86_64-linux-gnu/rsyslog"  # where Debian puts omrelp.so, ompgsql.so...
START_TIMEOUT = 20.0  # seconds rsyslogd may take to read its config and write its pid file
INPUTS_OPEN = 0.5  # seconds its inputs may take to listen after the pid file is written


def start_rsyslogd(config: Path, pidfile: Path) -> subprocess.Popen[bytes]:
    """rsyslogd -n on ``config``; RuntimeError with what it printed if it does not start."""
    pidfile.unlink(missing_ok=True)
    proc = subprocess.Popen([RSYSLOGD, "-n", "-f", str(config), "-i", str(pidfile)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + START_TIMEOUT
    while not pidfile.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            out = proc.communicate()[0].decode(errors="replace")
            raise RuntimeError(f"rsyslogd did not start: {out}")
        time.sleep(0.05)
    time.sleep(INPUTS_OPEN)
    return proc
