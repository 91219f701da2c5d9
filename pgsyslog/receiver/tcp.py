"""Syslog over TCP and TLS: the connection protocol (frame bytes, hand them on) and limits.

TLS connections are accepted by tls.py, which takes their slot, and are read by a
subclass of this protocol that undoes TLS before the same framing.

Memory: a read takes at most READ_SIZE bytes into one buffer shared by the listener's
connections (asyncio.BufferedProtocol), and, while the queue is full, one byte. So past
the queue's bounds there are at most the records of the one read that filled it, plus
one frame per connection (the one a single byte can complete; over TLS, one TLS record
of at most 16 KiB). Each connection also holds the unfinished frame its decoder is
assembling (under max_frame_length) and, over TLS, an unfinished TLS record.
tests/test_backpressure.py::test_the_queue_holds_its_bound_plus_one_read checks the
bound, and ::test_1000_flooding_connections_hold_the_queue_bound the receiver's memory.

Stopping, in two steps the receiver takes after SIGTERM or SIGINT:

1. :func:`stop_listening`: new connection attempts are dropped and the connections the
   kernel already completed (and whose data it acknowledged) are accepted, then the
   listening sockets close.
2. :meth:`ConnectionRegistry.drain_and_close`: each connection is read until its sender
   has been quiet for QUIET_BEFORE_CLOSE or the deadline passes; then it is cut off with
   shutdown(SHUT_RDWR) and read to its end. From that call on Linux acknowledges nothing
   more on the connection (data arriving in FIN-WAIT after a shutdown of both directions
   is answered with a reset and never acknowledged: net/ipv4/tcp_input.c,
   tcp_rcv_state_process, LINUX_MIB_TCPABORTONDATA), while what it had acknowledged stays
   readable. shutdown(SHUT_RD) alone would not do: Linux goes on acknowledging and
   queueing, and close() would then throw the unread bytes away with a reset.

So everything the kernel acknowledged is read and stored: tests/test_stop_reading.py
checks it against the sender's own count (TCP_INFO tcpi_bytes_acked).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import select
import socket
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from pgsyslog.receiver.access import AllowList, PeerLog
from pgsyslog.receiver.framing import Frame, SyslogStreamDecoder
from pgsyslog.receiver.intake import Intake, peer_ip
from pgsyslog.record import Transport

log = logging.getLogger(__name__)

# One read from a connection: large enough that a busy sender costs few reads (a batch of
# rsyslog's is well under it), small enough that 1,000 connections filling the queue at
# once overshoot it by little.
READ_SIZE = 64 * 1024
# At a stop, a connection whose sender has sent nothing for this long is taken to be done:
# longer than the pauses between a sender's bursts (test: 0.3 s), short enough that a stop
# with idle connections open stays quick.
QUIET_BEFORE_CLOSE = 1.0
# After the cut-off, the event loop reads what the kernel holds; this is ample for that.
FINAL_READ_TIMEOUT = 5.0
CUT_AT_STOP = "cut by the receiver's stop"
SO_ATTACH_FILTER = getattr(socket, "SO_ATTACH_FILTER", 26)  # Linux's value


def shared_read_buffer() -> memoryview:
    return memoryview(bytearray(READ_SIZE))


@dataclass
class StreamListener:
    """What the connections of one TCP or TLS listener share."""

    transport_name: Transport
    intake: Intake
    registry: ConnectionRegistry
    allow: AllowList
    # Reads go here and are copied out at once (into the decoder) before the next read.
    read_buffer: memoryview = field(default_factory=shared_read_buffer)

    def admit(self, peer: str | None) -> bool:
        """Take a connection slot for peer; False when it is refused (counted and logged)."""
        registry, counters = self.registry, self.intake.counters
        if not self.allow.allows(peer):
            reason = "the source is not in the allowed networks"
        elif registry.slots_in_use >= registry.max_connections:
            reason = f"max_connections ({registry.max_connections}) reached"
        elif registry.slots_held_by(peer) >= registry.max_connections_per_source:
            reason = (f"max_connections_per_source ({registry.max_connections_per_source}) "
                      "reached for this address")
            counters.refused_per_source += 1
        else:
            registry.claim(peer)
            return True
        counters.connections_refused += 1
        registry.refusals.warning(peer, "refused %s connection from %s: %s",
                                  self.transport_name, peer, reason)
        return False


class ConnectionRegistry:
    """The server owns its connections: each registers on connect and leaves on close.

    Slots: every open connection and every TLS handshake in progress holds one, counted
    against max_connections and against max_connections_per_source for its address.
    """

    def __init__(self, max_connections: int = 1_000_000,
                 max_connections_per_source: int = 1_000_000) -> None:
        self.max_connections = max_connections
        self.max_connections_per_source = max_connections_per_source
        self.connections: set[SyslogStreamProtocol] = set()
        self.slots_in_use = 0
        self._slots_by_source: dict[str | None, int] = {}
        self.refusals = PeerLog(log)

    def slots_held_by(self, peer: str | None) -> int:
        return self._slots_by_source.get(peer, 0)

    def claim(self, peer: str | None) -> None:
        """Take a slot for peer (StreamListener.admit checked the limits)."""
        self.slots_in_use += 1
        self._slots_by_source[peer] = self._slots_by_source.get(peer, 0) + 1

    def release(self, peer: str | None) -> None:
        self.slots_in_use -= 1
        held = self._slots_by_source.pop(peer, 1) - 1
        if held > 0:
            self._slots_by_source[peer] = held

    def close_idle(self, idle_timeout: float) -> int:
        """Close the connections that sent nothing for idle_timeout seconds; return how many.

        A connection pgsyslog paused itself (the queue is full) is not idle: its sender is
        waiting for us (tests/test_backpressure.py::test_paused_connections_are_not_closed_as_idle).
        """
        cutoff = time.monotonic() - idle_timeout
        idle = [c for c in self.connections
                if c.last_data < cutoff and not c.paused and not c.stopping]
        for connection in idle:
            log.info("closing %s connection from %s: idle for %.0fs",
                     connection.transport_name, connection.peer, idle_timeout)
            connection.close()
        return len(idle)

    async def drain_and_close(self, deadline: float,
                              quiet: float = QUIET_BEFORE_CLOSE) -> None:
        """At stop, once the listening sockets are closed: read every connection to its end.

        Each is read until its sender has been quiet for ``quiet`` seconds (a connection
        paused for back-pressure counts as quiet) or ``deadline`` (monotonic) has passed,
        then cut off: the kernel acknowledges nothing more, and what it did acknowledge is
        read and handed on, past the queue's bounds if need be. Returns when every
        connection is closed (stragglers are aborted FINAL_READ_TIMEOUT after the cut-off).
        """
        while True:
            now = time.monotonic()
            waiting = [c for c in self.connections if not c.stopping]
            for connection in waiting:
                if now >= deadline or now - connection.last_data >= quiet:
                    connection.cut_off()
            if all(c.stopping for c in waiting):
                break
            await asyncio.sleep(0.05)
        await self._wait_closed(time.monotonic() + FINAL_READ_TIMEOUT)

    async def _wait_closed(self, until: float) -> None:
        while self.connections and time.monotonic() < until:
            await asyncio.sleep(0.01)
        for connection in list(self.connections):
            log.warning("%s connection from %s still open %.0fs after it was cut off: "
                        "aborting it", connection.transport_name, connection.peer,
                        FINAL_READ_TIMEOUT)
            connection.abort()


class SyslogStreamProtocol(asyncio.BufferedProtocol):
    def __init__(self, listener: StreamListener, admitted: bool = False) -> None:
        self.listener = listener
        self.admitted = admitted  # holds a slot (TLS: taken before the handshake)
        self.intake = listener.intake
        self.queue = listener.intake.queue
        self.transport_name = listener.transport_name
        self.decoder = SyslogStreamDecoder(self.intake.max_length)
        self.transport: asyncio.Transport | None = None
        self.peer: str | None = None
        self.paused = False  # by pgsyslog, because the queue is full
        self.stopping = False  # cut off at stop: read to the end, never pause again
        self.last_data = time.monotonic()
        self._buffer: memoryview = listener.read_buffer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio.Transport; they behave as one.
        self.transport = cast(asyncio.Transport, transport)
        self.peer = peer_ip(transport.get_extra_info("peername"))
        if not self.admitted and not self.listener.admit(self.peer):
            self.transport = None
            transport.close()
            return
        self.admitted = True
        self.listener.registry.connections.add(self)
        self.intake.counters.connections_opened += 1
        log.debug("%s connection from %s", self.transport_name, self.peer)

    def get_buffer(self, sizehint: int) -> memoryview:
        if self.queue.full() and not self.stopping:
            self._buffer = self.listener.read_buffer[:1]
        else:
            self._buffer = self.listener.read_buffer
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.last_data = time.monotonic()
        self._take(bytes(self._buffer[:nbytes]))

    def _take(self, data: bytes) -> None:
        """Frame the bytes read, hand the frames on, and pause when the queue is full."""
        decoder = self.decoder
        self._hand_on(decoder.feed(data))
        if decoder.error is not None:
            log.warning("closing %s connection from %s: %s", self.transport_name, self.peer,
                        decoder.error)
            self.intake.counters.framing_errors += 1
            self.close()
            return
        self._pause_if_full()

    def _pause_if_full(self) -> None:
        if self.queue.full() and not self.paused and not self.stopping:
            self._pause()

    def eof_received(self) -> bool | None:
        self._hand_on(self._flush())
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.admitted:
            return  # refused at connect
        self.admitted = False
        self._hand_on(self._flush())
        registry = self.listener.registry
        registry.connections.discard(self)
        registry.release(self.peer)
        self.intake.counters.connections_closed += 1
        if exc is not None and not self.stopping:
            log.info("%s connection from %s lost: %s", self.transport_name, self.peer, exc)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def cut_off(self) -> None:
        """Stop the kernel acknowledging more, then read what it did acknowledge to the end."""
        self.stopping = True
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        shutdown_both_ways(transport.get_extra_info("socket"))
        if self.paused:
            self.paused = False
            transport.resume_reading()

    def _flush(self) -> list[Frame]:
        return self.decoder.flush(CUT_AT_STOP if self.stopping else None)

    def _hand_on(self, frames: list[Frame]) -> None:
        self.intake.put_frames(frames, self.peer, self.transport_name)

    def _pause(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.paused = True
        self.transport.pause_reading()
        self.queue.call_when_room(self._resume)

    def _resume(self) -> None:
        if not self.paused:
            return  # cut off at stop meanwhile
        self.paused = False
        self.last_data = time.monotonic()  # it was waiting for us, not idle
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()


class ListeningServer(Protocol):
    """asyncio.Server or TlsServer: what stop_listening needs of them."""

    @property
    def sockets(self) -> Sequence[Any]: ...

    def close(self) -> None: ...


async def stop_listening(servers: Sequence[ListeningServer], until: float) -> None:
    """Take no new connections, accept those the kernel already completed, then close.

    A connection the kernel completed sits in the listening socket's accept queue, and the
    kernel acknowledges what its sender sends: closing the listening socket would reset it
    and lose that. So new connection attempts are dropped first (a socket filter that
    passes nothing; their senders retry and are refused once the socket is closed), and
    the queue is accepted (until ``until``, monotonic), before the sockets close.
    tests/test_stop_reading.py::test_connections_not_yet_accepted_at_stop_are_read.
    """
    sockets = [sock for server in servers for sock in server.sockets]
    for sock in sockets:
        refuse_new_connections(sock)
    while any(_accept_queue_waiting(sock) for sock in sockets) and time.monotonic() < until:
        await asyncio.sleep(0.01)
    for server in servers:
        server.close()


def refuse_new_connections(sock: Any) -> None:
    """Attach a classic BPF program that drops every packet to a listening socket.

    Sockets it already accepted or completed have filters of their own (none), so only
    connection attempts are dropped. Linux only; elsewhere nothing changes.
    """
    # struct sock_filter {u16 code; u8 jt; u8 jf; u32 k} = BPF_RET|BPF_K, k=0: drop.
    program = ctypes.create_string_buffer(struct.pack("HBBI", 0x06, 0, 0, 0))
    fprog = struct.pack("HL", 1, ctypes.addressof(program))  # struct sock_fprog
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def _accept_queue_waiting(sock: Any) -> bool:
    try:
        readable, _, _ = select.select([sock.fileno()], [], [], 0)
    except (OSError, ValueError):
        return False  # closed already
    return bool(readable)


def shutdown_both_ways(sock: Any) -> None:
    """shutdown(SHUT_RDWR) on a transport's socket (the event loop keeps it open), and a
    reset when it is closed: a sender blocked on a full window learns at once that what it
    has not had acknowledged was not taken, instead of waiting for tcp_fin_timeout."""
    if sock is None:
        return
    try:
        fd = sock.fileno()
        if fd < 0:
            return
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        return
    # A socket object around the same descriptor, detached again: the loop's own (uvloop's
    # PseudoSocket) refuses shutdown(), and a dup() could fail when descriptors run out.
    handle = socket.socket(sock.family, sock.type, fileno=fd)
    try:
        handle.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # the peer reset it already: what it holds is still read
    finally:
        handle.detach()
