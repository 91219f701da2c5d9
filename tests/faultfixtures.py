"""Fixtures of the fault tests: PostgreSQL 15, the fault proxy, serve subprocesses.

A test module uses them with ``pytest_plugins = ["faultfixtures"]`` (and never imports this
module itself, so that pytest can load it as a plugin).
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from faultproxy import FaultProxy, running_proxy
from helpers import ServerProcess, start_server
from pg15 import Pg15, running_pg15, unavailable_reason


@pytest.fixture
def pg() -> Iterator[Pg15]:
    """A PostgreSQL 15 of this test's own, with a migrated database at ``pg.dsn``."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    with running_pg15() as server:
        yield server


@pytest.fixture
def proxy(pg: Pg15) -> Iterator[FaultProxy]:
    """The fault proxy in front of ``pg``; ``proxy.dsn(pg.dsn)`` goes through it."""
    with running_proxy("127.0.0.1", pg.port) as fault_proxy:
        yield fault_proxy


@pytest.fixture
def servers() -> Iterator[Callable[..., ServerProcess]]:
    """Start `pgsyslog serve` with a TCP listener; whatever is still running is killed."""
    started: list[ServerProcess] = []

    def start(dsn: str | None, data_dir: Path, *args: str) -> ServerProcess:
        dsn_args = ["--dsn", dsn] if dsn else []
        server = start_server([*dsn_args, "--data-dir", str(data_dir),
                               "--tcp", "127.0.0.1:0", *args])
        started.append(server)
        return server

    yield start
    for server in started:
        if server.proc.poll() is None:
            server.stop(signal.SIGKILL)
