"""Listeners run inside the test process, on real sockets, with their queue in plain sight.

For what a `pgsyslog serve` subprocess cannot show: the queue's length and bytes, a
connection's state, a fault injected into one loop. The event loop is uvloop, as in serve.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any, TypeVar

import uvloop

from pgsyslog.config import Endpoint
from pgsyslog.receiver.access import AllowList
from pgsyslog.receiver.intake import Intake, ZoneResolver
from pgsyslog.receiver.queue import RecordQueue
from pgsyslog.receiver.state import ReceiverState
from pgsyslog.receiver.tcp import StreamListener, SyslogStreamProtocol
from pgsyslog.receiver.tls import TlsServer
from pgsyslog.receiver.udp import UdpListener
from pgsyslog.record import Record

T = TypeVar("T")
# struct tcp_info (linux/tcp.h): eight u8 fields, 24 u32 fields, then u64 pacing_rate,
# u64 max_pacing_rate and u64 bytes_acked, which counts the SYN as one byte.
TCPI_BYTES_ACKED = 8 + 24 * 4 + 2 * 8


def run(coro: Coroutine[Any, Any, T], receiving: Receiving | None = None) -> T:
    """Run a scenario on uvloop; the listeners and connections of ``receiving`` are closed
    afterwards, whatever happened (uvloop does not close a loop with handles open)."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        try:
            return runner.run(coro)
        finally:
            if receiving is not None:
                runner.run(receiving.close())


@dataclass
class Receiving:
    """A queue, an intake and the receiver state, as serve builds them (no writer)."""

    queue: RecordQueue
    intake: Intake
    state: ReceiverState
    servers: list[asyncio.Server | TlsServer] = field(default_factory=list)
    udp: list[UdpListener] = field(default_factory=list)

    @classmethod
    def make(cls, queue_size: int = 1_000_000, queue_bytes: int = 1 << 40,
             max_connections: int = 1_000_000,
             max_connections_per_source: int = 1_000_000,
             intake_type: type[Intake] = Intake) -> Receiving:
        queue = RecordQueue(queue_size, 2_000, queue_bytes)
        state = ReceiverState(queue)
        state.registry.max_connections = max_connections
        state.registry.max_connections_per_source = max_connections_per_source
        intake = intake_type(queue, state.counters, ZoneResolver(UTC, ()), 64 * 1024)
        return cls(queue, intake, state)

    def listener(self, transport: str = "tcp") -> StreamListener:
        return StreamListener(transport, self.intake, self.state.registry,  # type: ignore[arg-type]
                              AllowList(()))

    async def tcp(self) -> int:
        """Listen for TCP on 127.0.0.1; return the port."""
        server = await asyncio.get_running_loop().create_server(
            functools.partial(SyslogStreamProtocol, self.listener()), "127.0.0.1", 0)
        self.servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    async def tls(self, context: ssl.SSLContext, handshake_timeout: float = 10.0) -> TlsServer:
        server = TlsServer.bind(Endpoint("127.0.0.1", 0), self.listener("tls"), context,
                                handshake_timeout, self.state.listeners_down)
        await server.start_serving()
        self.servers.append(server)
        return server

    async def udp_listener(self) -> UdpListener:
        """Listen for UDP on 127.0.0.1, the receive loop started."""
        listener = await UdpListener.bind(Endpoint("127.0.0.1", 0), self.intake, 1 << 20,
                                          AllowList(()), self.state.listeners_down)
        listener.start()
        self.udp.append(listener)
        return listener

    def close_listeners(self) -> None:
        for server in self.servers:
            server.close()

    async def close(self) -> None:
        for listener in self.udp:
            await listener.stop(0)
        self.close_listeners()
        for server in self.servers:
            if isinstance(server, asyncio.Server):
                await server.wait_closed()
        registry = self.state.registry
        for connection in list(registry.connections):
            connection.abort()
        await wait_until(lambda: not registry.connections)

    def messages(self) -> list[str]:
        return [r.message for r in self.records()]

    def records(self) -> list[Record]:
        return list(self.queue._items)


async def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


def bytes_acked(sock: socket.socket) -> int:
    """Payload bytes of ours the peer's kernel acknowledged (TCP_INFO), less the SYN."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    return int(struct.unpack_from("Q", info, TCPI_BYTES_ACKED)[0]) - 1


def in_thread(target: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def numbered(i: int) -> bytes:
    return b"<14>1 - h app - - - n=%08d\n" % i


# A sender in a process of its own (the GIL would pace it to the receiver's speed): it
# sends numbered() frames from START, 100 at a time, as fast as the connection takes them
# (or every PACE seconds), until it is reset, then prints how many bytes the receiver's
# kernel acknowledged.
FLOOD = f"""
import socket, struct, sys, time
port, start, pace = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
s = socket.create_connection(("127.0.0.1", port))
print("connected", flush=True)
i = start
try:
    while True:
        s.sendall(b"".join(b"<14>1 - h app - - - n=%08d\\n" % j for j in range(i, i + 100)))
        i += 100
        if pace:
            time.sleep(pace)
except OSError:
    pass
info = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
print(struct.unpack_from("Q", info, {TCPI_BYTES_ACKED})[0] - 1, flush=True)
"""


def start_flood(port: int, start: int = 0, pace: float = 0.0) -> subprocess.Popen[str]:
    sender = subprocess.Popen([sys.executable, "-c", FLOOD, str(port), str(start), str(pace)],
                              stdout=subprocess.PIPE, text=True)
    assert sender.stdout is not None and sender.stdout.readline() == "connected\n"
    return sender


def acked_by_flood(sender: subprocess.Popen[str]) -> int:
    """The bytes the receiver acknowledged, once the flood was reset."""
    out, _ = sender.communicate(timeout=30)
    return int(out)


def stored_numbers(dsn: str) -> list[int]:
    """The n= of every numbered() row stored, ascending."""
    from helpers import query

    rows = query(dsn, "SELECT message FROM syslog.messages WHERE message ~ '^n=[0-9]{8}$'")
    return sorted(int(m[2:]) for (m,) in rows)


def stored_after_a_restart(serve: Callable[..., Any], data_dir: str, dsn: str,
                           received: int) -> list[int]:
    """Start serve again on data_dir (its spool is replayed); the numbers then stored."""
    from helpers import wait_for_rows

    again = serve("--tcp", "127.0.0.1:0", "--data-dir", data_dir)
    assert wait_for_rows(dsn, received, timeout=60) == received
    assert again.stop() == 0
    return stored_numbers(dsn)
