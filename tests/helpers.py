"""Helpers for tests: queries, a `pgsyslog serve` subprocess, socket senders."""

from __future__ import annotations

import ast
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg

LISTEN_RE = re.compile(r"^listening on (udp|tcp|tls|http)://(.+):(\d+)$")
READY_TIMEOUT = 60.0


def query(dsn: str, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql, params).fetchall()


def wait_for_rows(dsn: str, count: int, timeout: float = 30.0, where: str = "true") -> int:
    """Poll until syslog.messages holds at least count rows; return the final count."""
    deadline = time.monotonic() + timeout
    n = 0
    while time.monotonic() < deadline:
        n = query(dsn, f"SELECT count(*) FROM syslog.messages WHERE {where}")[0][0]
        if n >= count:
            return int(n)
        time.sleep(0.1)
    return int(n)


@dataclass
class ServerProcess:
    """A `pgsyslog serve` subprocess; ports are read back from what it prints."""

    proc: subprocess.Popen[str]
    ports: dict[str, int] = field(default_factory=dict)
    output: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    readers: list[threading.Thread] = field(default_factory=list)

    def port(self, transport: str) -> int:
        return self.ports[transport]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        status = self.proc.wait(timeout)
        self.close()
        return status

    def close(self) -> None:
        """Collect the last output and close the pipes (the process has ended)."""
        for reader in self.readers:
            reader.join(10)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()

    @property
    def log(self) -> str:
        return "\n".join(self.output + self.errors)

    def final_counters(self) -> dict[str, int]:
        """The counters serve logs when it has stopped."""
        for line in reversed(self.errors):
            if "stopped: {" in line:
                counters = line.split("stopped: ", 1)[1].rsplit(", kernel_udp_drops=", 1)[0]
                return {k: v for k, v in ast.literal_eval(counters).items()
                        if isinstance(v, int)}
        raise AssertionError(f"serve logged no counters: {self.log}")


def start_server(args: list[str], env: dict[str, str] | None = None) -> ServerProcess:
    if "--http" not in args:  # never the default fixed port: tests run side by side
        args = [*args, "--http", "127.0.0.1:0"]

    cmd = [sys.executable, "-m", "pgsyslog", "serve", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    server = ServerProcess(proc)
    ready = threading.Event()

    def read_stdout() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            server.output.append(line)
            match = LISTEN_RE.match(line)
            if match:
                server.ports[match.group(1)] = int(match.group(3))
            if line.startswith("then: "):
                ready.set()
        ready.set()

    def read_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            server.errors.append(line.rstrip("\n"))

    server.readers = [threading.Thread(target=read_stdout, daemon=True),
                      threading.Thread(target=read_stderr, daemon=True)]
    for reader in server.readers:
        reader.start()
    if not ready.wait(READY_TIMEOUT) or proc.poll() is not None:
        proc.kill()
        proc.wait()
        server.close()
        raise RuntimeError(f"serve did not start: {server.log}")
    return server


def children_of(pid: int, command_part: bytes) -> list[int]:
    """The processes whose parent is ``pid`` and whose command line holds ``command_part``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmdline = fh.read()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid and command_part in cmdline:
            found.append(int(entry))
    return found


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def send_tcp(port: int, payload: bytes, host: str = "127.0.0.1") -> None:
    with socket.create_connection((host, port)) as s:
        s.sendall(payload)


