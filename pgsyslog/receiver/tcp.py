"""Syslog over TCP and TLS (TLS is TCP plus an ssl.SSLContext): frame bytes, hand them on."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from pathlib import Path
from typing import cast

from pgsyslog.receiver.framing import Frame, SyslogStreamDecoder
from pgsyslog.receiver.intake import Intake, peer_ip
from pgsyslog.record import Transport

log = logging.getLogger(__name__)


class ConnectionRegistry:
    """The server owns its connections: each registers on connect and leaves on close."""

    def __init__(self) -> None:
        self.connections: set[SyslogStreamProtocol] = set()

    def last_data_age(self) -> float:
        """Seconds since any connection last received bytes (inf with no connections)."""
        if not self.connections:
            return float("inf")
        return time.monotonic() - max(c.last_data for c in self.connections)

    def close_all(self) -> None:
        for connection in list(self.connections):
            connection.close()


class SyslogStreamProtocol(asyncio.Protocol):
    def __init__(
        self, intake: Intake, registry: ConnectionRegistry, transport_name: Transport
    ) -> None:
        self.intake = intake
        self.registry = registry
        self.transport_name = transport_name
        self.decoder = SyslogStreamDecoder(intake.max_length)
        self.transport: asyncio.Transport | None = None
        self.peer: str | None = None
        self.paused = False
        self.last_data = time.monotonic()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio.Transport; they behave as one.
        self.transport = cast(asyncio.Transport, transport)
        self.peer = peer_ip(transport.get_extra_info("peername"))
        self.registry.connections.add(self)
        self.intake.counters.connections_opened += 1
        log.debug("%s connection from %s", self.transport_name, self.peer)

    def data_received(self, data: bytes) -> None:
        self.last_data = time.monotonic()
        self._hand_on(self.decoder.feed(data))
        if self.intake.queue.full() and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
            self.intake.queue.call_when_room(self._resume)

    def eof_received(self) -> bool | None:
        self._hand_on(self.decoder.flush())
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._hand_on(self.decoder.flush())
        self.registry.connections.discard(self)
        self.intake.counters.connections_closed += 1
        if exc is not None:
            log.info("%s connection from %s lost: %s", self.transport_name, self.peer, exc)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _hand_on(self, frames: list[Frame]) -> None:
        self.intake.put_frames(frames, self.peer, self.transport_name)

    def _resume(self) -> None:
        self.paused = False
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()


def make_tls_context(cert: Path, key: Path, client_ca: Path | None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(client_ca)
    return context
