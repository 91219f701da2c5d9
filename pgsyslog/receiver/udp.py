"""Syslog over UDP (RFC 5426): one datagram is one message."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from typing import Any, cast

import asyncio_dgram

from pgsyslog.config import Endpoint
from pgsyslog.receiver.access import AllowList, PeerLog
from pgsyslog.receiver.intake import Intake, peer_ip
from pgsyslog.receiver.supervise import keep_running

log = logging.getLogger(__name__)


def set_receive_buffer(sock: socket.socket, size: int) -> int:
    """Ask for a receive buffer of size bytes; return what the kernel granted.

    SO_RCVBUFFORCE passes net.core.rmem_max when the process may (root or CAP_NET_ADMIN);
    otherwise SO_RCVBUF is capped at rmem_max, which the README explains how to raise.
    """
    force = getattr(socket, "SO_RCVBUFFORCE", None)
    try:
        if force is None:
            raise PermissionError
        sock.setsockopt(socket.SOL_SOCKET, force, size)
    except PermissionError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2  # Linux doubles it
    if granted < size:
        log.warning("UDP receive buffer is %d bytes, not the %d asked for: raise "
                    "net.core.rmem_max to avoid drops in bursts", granted, size)
    return granted


def kernel_drops(inodes: set[int], tables: tuple[str, ...] = ("/proc/net/udp",
                                                              "/proc/net/udp6")) -> int:
    """Datagrams the kernel dropped for these sockets (its buffer was full), from /proc."""
    total = 0
    for table in tables:
        try:
            with open(table) as fh:
                next(fh, None)  # header
                for line in fh:
                    fields = line.split()
                    # ... uid timeout inode ref pointer drops
                    if len(fields) >= 13 and int(fields[9]) in inodes:
                        total += int(fields[12])
        except OSError:
            continue  # not Linux, or no IPv6
    return total


class UdpListener:
    """One UDP socket and its receive loop.

    The loop restarts after an unexpected error (supervise.py), on a new socket bound to
    the same address when the old one was closed under it; ``listeners_down`` (the
    receiver's state) names it while it is down. Datagrams wait in the kernel meanwhile,
    except while there is no socket at all: the kernel refuses those (uncounted).
    """

    def __init__(self, stream: Any, intake: Intake, allow: AllowList,
                 listeners_down: dict[str, str] | None = None,
                 endpoint: Endpoint | None = None, receive_buffer: int = 0) -> None:
        self.stream = stream
        self.intake = intake
        self.allow = allow
        self.listeners_down = {} if listeners_down is None else listeners_down
        bound = self.sockname
        self.endpoint = Endpoint(endpoint.host if endpoint else bound[0], bound[1])
        self.name = f"udp://{self.endpoint}"  # the key in listeners_down
        self.receive_buffer = receive_buffer
        self._refusals = PeerLog(log)
        self._stopping = False
        self._socket_lost = False
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def bind(cls, endpoint: Endpoint, intake: Intake, receive_buffer: int,
                   allow: AllowList,
                   listeners_down: dict[str, str] | None = None) -> UdpListener:
        stream = await bind_stream(endpoint, receive_buffer)
        return cls(stream, intake, allow, listeners_down, endpoint, receive_buffer)

    @property
    def inode(self) -> int:
        return os.fstat(self.stream.socket.fileno()).st_ino

    @property
    def sockname(self) -> tuple[Any, ...]:
        name: tuple[Any, ...] = self.stream.sockname
        return name

    def start(self) -> None:
        self._task = asyncio.create_task(
            keep_running(self.name, self._serve, self.listeners_down, self.intake.counters,
                         prepare=self._bind_again_if_lost),
            name=self.name)

    async def _bind_again_if_lost(self) -> None:
        if self._socket_lost:
            self.stream.close()
            self.stream = await bind_stream(self.endpoint, self.receive_buffer)
            self._socket_lost = False
            log.info("%s: listening again on a new socket", self.name)

    async def _serve(self) -> None:
        recv, offer, allows = self.stream.recv, self.intake.offer, self.allow.allows
        counters = self.intake.counters
        while True:
            try:
                data, addr = await recv()
            except asyncio_dgram.TransportClosed:
                if self._stopping:
                    return
                self._socket_lost = True
                raise SocketLost("the socket was closed under the receive loop") from None
            source = peer_ip(addr)
            if allows(source):
                offer(data, source)
            else:
                counters.dropped_not_allowed += 1
                self._refusals.warning(source, "dropping UDP from %s: not in udp_allow", source)

    async def stop(self, deadline: float) -> None:
        """Take in what has already arrived (until ``deadline``, monotonic), then close."""
        await self._drain_socket(deadline)
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.stream.close()

    async def _drain_socket(self, deadline: float) -> None:
        # Give the loop a few turns to move datagrams out of the kernel buffer into ours,
        # until a turn brings nothing new (a sender that never pauses: until the deadline).
        before = -1
        while self.intake.counters.received != before and time.monotonic() < deadline:
            before = self.intake.counters.received
            await asyncio.sleep(0.05)


class SocketLost(Exception):
    """The UDP socket was closed by something other than the receiver's stop."""


async def bind_stream(endpoint: Endpoint, receive_buffer: int) -> Any:
    stream = await asyncio_dgram.bind((endpoint.host, endpoint.port))
    if receive_buffer:
        set_receive_buffer(cast(socket.socket, stream.socket), receive_buffer)
    return stream
