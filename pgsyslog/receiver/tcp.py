"""Syslog over TCP and TLS: the connection protocol (frame bytes, hand them on) and limits.

TLS connections are accepted by tls.py, which completes the handshake before handing the
connection to the same protocol.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import cast

from pgsyslog.receiver.access import AllowList, OncePerPeer
from pgsyslog.receiver.framing import Frame, SyslogStreamDecoder
from pgsyslog.receiver.intake import Intake, peer_ip
from pgsyslog.record import Transport

log = logging.getLogger(__name__)


@dataclass
class StreamListener:
    """What the connections of one TCP or TLS listener share."""

    transport_name: Transport
    intake: Intake
    registry: ConnectionRegistry
    allow: AllowList

    def refusal(self, peer: str | None) -> str | None:
        """Why a new connection from peer is refused (counted and logged), or None."""
        reason = None
        if not self.allow.allows(peer):
            reason = "the source is not in the allowed networks"
        elif len(self.registry.connections) >= self.registry.max_connections:
            reason = f"max_connections ({self.registry.max_connections}) reached"
        if reason is not None:
            self.intake.counters.connections_refused += 1
            self.registry.refusals.warning(peer, "refused %s connection from %s: %s",
                                           self.transport_name, peer, reason)
        return reason


class ConnectionRegistry:
    """The server owns its connections: each registers on connect and leaves on close."""

    def __init__(self, max_connections: int = 1_000_000) -> None:
        self.max_connections = max_connections
        self.connections: set[SyslogStreamProtocol] = set()
        self.refusals = OncePerPeer(log)

    def last_data_age(self) -> float:
        """Seconds since any connection last received bytes (inf with no connections)."""
        if not self.connections:
            return float("inf")
        return time.monotonic() - max(c.last_data for c in self.connections)

    def close_idle(self, idle_timeout: float) -> int:
        """Close the connections that sent nothing for idle_timeout seconds; return how many."""
        cutoff = time.monotonic() - idle_timeout
        idle = [c for c in self.connections if c.last_data < cutoff]
        for connection in idle:
            log.info("closing %s connection from %s: idle for %.0fs",
                     connection.transport_name, connection.peer, idle_timeout)
            connection.close()
        return len(idle)

    def close_all(self) -> None:
        for connection in list(self.connections):
            connection.close()


class SyslogStreamProtocol(asyncio.Protocol):
    def __init__(self, listener: StreamListener, checked: bool = False) -> None:
        self.listener = listener
        self.checked = checked  # the TLS acceptor already applied the limits
        self.intake = listener.intake
        self.transport_name = listener.transport_name
        self.decoder = SyslogStreamDecoder(self.intake.max_length)
        self.transport: asyncio.Transport | None = None
        self.peer: str | None = None
        self.paused = False
        self.last_data = time.monotonic()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio.Transport; they behave as one.
        self.transport = cast(asyncio.Transport, transport)
        self.peer = peer_ip(transport.get_extra_info("peername"))
        if not self.checked and self.listener.refusal(self.peer) is not None:
            self.transport = None
            transport.close()
            return
        self.listener.registry.connections.add(self)
        self.intake.counters.connections_opened += 1
        log.debug("%s connection from %s", self.transport_name, self.peer)

    def data_received(self, data: bytes) -> None:
        self.last_data = time.monotonic()
        decoder = self.decoder
        self._hand_on(decoder.feed(data))
        if decoder.error is not None:
            log.warning("closing %s connection from %s: %s", self.transport_name, self.peer,
                        decoder.error)
            self.intake.counters.framing_errors += 1
            self.close()
            return
        if self.intake.queue.full() and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
            self.intake.queue.call_when_room(self._resume)

    def eof_received(self) -> bool | None:
        self._hand_on(self.decoder.flush())
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        registry = self.listener.registry
        if self not in registry.connections:
            return  # refused at connect
        self._hand_on(self.decoder.flush())
        registry.connections.discard(self)
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
