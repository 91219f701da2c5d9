"""What a running receiver knows about itself; read by the HTTP API and its metrics."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pgsyslog.config import Endpoint
from pgsyslog.receiver.counters import Counters
from pgsyslog.receiver.queue import RecordQueue
from pgsyslog.receiver.tcp import ConnectionRegistry

BatchObserver = Callable[[int, float], None]  # (rows, seconds) of each committed batch


@dataclass
class Listening:
    transport: str  # udp, tcp, tls or http
    endpoint: Endpoint  # with the port actually bound


@dataclass
class ReceiverState:
    queue: RecordQueue
    counters: Counters = field(default_factory=Counters)
    registry: ConnectionRegistry = field(default_factory=ConnectionRegistry)
    listening: list[Listening] = field(default_factory=list)
    dsn: str | None = None
    serving: bool = False  # listeners are open and read
    spool_bytes: int = 0  # bytes waiting in the disk spool
    maintenance_runs: int = 0
    partitions_dropped: int = 0
    batch_observers: list[BatchObserver] = field(default_factory=list)
    # Listeners whose receive loop is not running, by "transport://endpoint", with why;
    # /healthz reports them.
    listeners_down: dict[str, str] = field(default_factory=dict)
    database_up: bool = False  # the last write or probe reached the database
    # Datagrams the kernel dropped on our UDP sockets before we could read them.
    kernel_udp_drops: Callable[[], int] = lambda: 0

    def observe_batch(self, rows: int, seconds: float) -> None:
        for observer in self.batch_observers:
            observer(rows, seconds)
