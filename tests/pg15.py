"""A PostgreSQL 15 of the distribution that one test owns, to stop, kill, restart or hang.

The server lives in a directory of its own under /tmp (the postgres user must be able to
reach it, and pytest's tmp_path is private to root), listens on 127.0.0.1 on a port
picked free at init and keeps it across restarts, and runs with fsync off (see
SETTINGS). ``sigstop()`` freezes the postmaster and every backend, so the server accepts
connections (the kernel does) and answers nothing, which is how a hung server looks to a
client. Cleanup always stops it, even when frozen.

Used by the fault tests (tests/test_faults_*.py) and bench/faults.py.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo
from system_packages import missing_reason

from pgsyslog.storage import migrate

PG_BIN = Path("/usr/lib/postgresql/15/bin")
SERVICE_USER = "postgres"  # the Debian package's user; PostgreSQL refuses to run as root
DATABASE = "pgsyslog"
CTL_TIMEOUT = 60  # seconds pg_ctl may take to start or stop the server

# Speed over durability against power loss: the tests crash the server on purpose, never
# the machine, and what PostgreSQL wrote survives in the page cache. synchronous_commit
# stays on: with it off, kill9() would lose commits the client was told about.
SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",
    "full_page_writes": "off",
    "max_connections": "100",
    "shared_buffers": "64MB",
    "log_min_messages": "warning",
}


def unavailable_reason() -> str | None:
    """None when PostgreSQL 15 can be used, else why not; installs it with apt when missing
    (one install at a time: tests running at once share the lock of system_packages)."""
    return missing_reason([str(PG_BIN / "pg_ctl")], ["postgresql-15"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_service_user(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", SERVICE_USER, "--", *cmd] if os.geteuid() == 0 else cmd


def _ppid_and_state(pid: int) -> tuple[int, str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat.rsplit(")", 1)[1].split()  # the command name may hold spaces
    return int(fields[1]), fields[0]


def _children(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            info = _ppid_and_state(int(entry.name))
            if info is not None and info[0] == parent:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    info = _ppid_and_state(pid)
    return info is not None and info[1] != "Z"


def _wait_for_state(pids: list[int], states: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = [_ppid_and_state(pid) for pid in pids]
        if all(info is None or info[1] in states for info in current):
            return
        time.sleep(0.01)
    raise RuntimeError(f"processes {pids} did not reach state {states!r} in {timeout} s")


class Pg15:
    """One PostgreSQL 15 cluster in ``directory``; ``dsn`` is its migrated database."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.pgdata = directory / "data"
        self.socket_dir = directory / "sock"
        self.logfile = directory / "server.log"
        self.port = free_port()
        self.frozen: list[int] = []
        self.admin_dsn = make_conninfo(host="127.0.0.1", port=self.port, user="postgres",
                                       dbname="postgres", sslmode="disable")
        self.dsn = make_conninfo(self.admin_dsn, dbname=DATABASE)

    # ------------------------------------------------------------------ lifecycle

    def init(self) -> None:
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.directory, SERVICE_USER)
            shutil.chown(self.socket_dir, SERVICE_USER)
        self._run(str(PG_BIN / "initdb"), "-D", str(self.pgdata), "-U", "postgres",
                  "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync")
        settings = {**SETTINGS, "port": str(self.port),
                    "unix_socket_directories": f"'{self.socket_dir}'"}
        with open(self.pgdata / "postgresql.conf", "a") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    def start(self) -> None:
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.pgdata), "-l", str(self.logfile),
                  "-w", "-t", str(CTL_TIMEOUT), "start")

    def stop(self, mode: str = "fast") -> None:
        """pg_ctl stop; ``mode`` is fast (roll back, disconnect) or immediate (no checkpoint)."""
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.pgdata), "-w",
                  "-t", str(CTL_TIMEOUT), "stop", "-m", mode)

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    @property
    def running(self) -> bool:
        pid = self.postmaster_pid()
        return pid is not None and _alive(pid)

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
        except (FileNotFoundError, ValueError):
            return None

    def processes(self) -> list[int]:
        """The postmaster and its children (backends, checkpointer, walwriter...)."""
        pid = self.postmaster_pid()
        if pid is None or not _alive(pid):
            return []
        return [pid, *_children(pid)]

    def kill9(self) -> None:
        """Crash the server: SIGKILL the postmaster and every child, as a power cut would."""
        pid = self.postmaster_pid()
        if pid is None or not _alive(pid):
            return
        os.kill(pid, signal.SIGSTOP)  # no new children while they are listed
        _wait_for_state([pid], "TtZ")
        victims = [pid, *_children(pid)]
        for victim in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)
        _wait_for_state(victims, "Z")
        self.frozen = []
        self._wait_until_reaped(pid)

    def _wait_until_reaped(self, pid: int, timeout: float = 10.0) -> None:
        """A zombie postmaster still holds its lock file for pg_ctl; wait for init to reap it."""
        deadline = time.monotonic() + timeout
        while _ppid_and_state(pid) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        if _ppid_and_state(pid) is not None:  # a zombie nobody reaps: the lock is stale
            (self.pgdata / "postmaster.pid").unlink(missing_ok=True)

    def sigstop(self) -> None:
        """Freeze the server: connections are accepted by the kernel, nothing answers."""
        pid = self.postmaster_pid()
        if pid is None:
            raise RuntimeError("the server is not running")
        os.kill(pid, signal.SIGSTOP)  # first, so that it forks no backend we would miss
        _wait_for_state([pid], "TtZ")
        self.frozen = [pid, *_children(pid)]
        for child in self.frozen[1:]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGSTOP)
        _wait_for_state(self.frozen, "TtZ")

    def sigcont(self) -> None:
        for pid in reversed(self.frozen):  # backends first, the postmaster last
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self.frozen = []

    def cleanup(self) -> None:
        """Stop the server whatever state it is in, and remove its directory."""
        self.sigcont()
        if self.running:
            try:
                self.stop("immediate")
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
                self.kill9()
        shutil.rmtree(self.directory, ignore_errors=True)

    # ------------------------------------------------------------------ databases

    def create_database(self, name: str | None = None, *, migrated: bool = True) -> str:
        """A new database (migrated to head unless told otherwise); returns its DSN."""
        name = name or f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        dsn = make_conninfo(self.admin_dsn, dbname=name)
        if migrated:
            migrate.upgrade(dsn)
        return dsn

    def dsn_via(self, host: str, port: int, dsn: str | None = None) -> str:
        """``dsn`` (default: the migrated database) reached through another address."""
        return make_conninfo(dsn or self.dsn, host=host, port=port)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.logfile.read_text().splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def _run(self, *cmd: str) -> None:
        done = subprocess.run(_as_service_user(list(cmd)), capture_output=True, text=True,
                              timeout=CTL_TIMEOUT + 30, stdin=subprocess.DEVNULL, cwd="/")
        if done.returncode != 0:
            raise subprocess.CalledProcessError(done.returncode, cmd, done.stdout,
                                                f"{done.stderr}\n{self.log_tail()}")


@contextlib.contextmanager
def running_pg15(*, with_database: bool = True) -> Iterator[Pg15]:
    """A started PostgreSQL 15 (with its migrated ``dsn`` database), stopped at the end."""
    pg = Pg15(Path(tempfile.mkdtemp(prefix="pgsyslog-pg15-")))
    try:
        pg.init()
        pg.start()
        if with_database:
            pg.create_database(DATABASE)
        yield pg
    finally:
        pg.cleanup()
