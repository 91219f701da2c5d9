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
from pgsyslog.receiver.access import AllowList, OncePerPeer
from pgsyslog.receiver.intake import Intake, peer_ip

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
    def __init__(self, stream: Any, intake: Intake, allow: AllowList) -> None:
        self.stream = stream
        self.intake = intake
        self.allow = allow
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def bind(cls, endpoint: Endpoint, intake: Intake, receive_buffer: int,
                   allow: AllowList) -> UdpListener:
        stream = await asyncio_dgram.bind((endpoint.host, endpoint.port))
        set_receive_buffer(cast(socket.socket, stream.socket), receive_buffer)
        return cls(stream, intake, allow)

    @property
    def inode(self) -> int:
        return os.fstat(self.stream.socket.fileno()).st_ino

    @property
    def sockname(self) -> tuple[Any, ...]:
        name: tuple[Any, ...] = self.stream.sockname
        return name

    def start(self) -> None:
        self._task = asyncio.create_task(self._serve(), name=f"udp {self.sockname}")

    async def _serve(self) -> None:
        recv, offer, allows = self.stream.recv, self.intake.offer, self.allow.allows
        counters = self.intake.counters
        refusals = OncePerPeer(log)
        while True:
            try:
                data, addr = await recv()
            except asyncio_dgram.TransportClosed:
                return
            source = peer_ip(addr)
            if allows(source):
                offer(data, source)
            else:
                counters.dropped_not_allowed += 1
                refusals.warning(source, "dropping UDP from %s: not in udp_allow", source)

    async def stop(self, deadline: float) -> None:
        """Take in what has already arrived (until ``deadline``, monotonic), then close."""
        await self._drain_socket(deadline)
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
