"""The TLS listener (RFC 5425): accept, apply the limits, handshake, then the TCP protocol.

asyncio's own TLS server drops a failed handshake without a word; accepting the socket
here and handshaking with ``loop.connect_accepted_socket`` lets pgsyslog count it and log
it once per peer. Framing and everything after the handshake is tcp.py's.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import ssl
from pathlib import Path

from pgsyslog.config import Endpoint
from pgsyslog.receiver.intake import peer_ip
from pgsyslog.receiver.tcp import StreamListener, SyslogStreamProtocol

log = logging.getLogger(__name__)

# A client has this long to complete its handshake (garbage never completes one).
HANDSHAKE_TIMEOUT = 10.0
BACKLOG = 1024


class TlsServer:
    """Listens like an asyncio.Server: start_serving(), close(), sockets."""

    def __init__(self, sock: socket.socket, listener: StreamListener,
                 context: ssl.SSLContext) -> None:
        self.sock = sock
        self.listener = listener
        self.context = context
        self.sockets = [sock]
        self._accepting: asyncio.Task[None] | None = None
        self._handshakes: set[asyncio.Task[None]] = set()

    @classmethod
    def bind(cls, endpoint: Endpoint, listener: StreamListener,
             context: ssl.SSLContext) -> TlsServer:
        family = socket.getaddrinfo(endpoint.host, endpoint.port, type=socket.SOCK_STREAM,
                                    flags=socket.AI_PASSIVE)[0][0]
        sock = socket.create_server((endpoint.host, endpoint.port), family=family,
                                    backlog=BACKLOG)
        sock.setblocking(False)
        return cls(sock, listener, context)

    async def start_serving(self) -> None:
        self._accepting = asyncio.create_task(self._accept_forever(), name="tls accept")

    def close(self) -> None:
        if self._accepting is not None:
            self._accepting.cancel()
        for task in self._handshakes:
            task.cancel()
        self.sock.close()

    async def _accept_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, address = await loop.sock_accept(self.sock)
            except OSError as e:  # out of file descriptors, say: keep accepting
                log.warning("accepting a TLS connection failed: %s", e)
                await asyncio.sleep(0.1)
                continue
            if self.listener.refusal(peer_ip(address)) is not None:
                conn.close()
                continue
            task = asyncio.create_task(self._handshake(conn, peer_ip(address)))
            self._handshakes.add(task)
            task.add_done_callback(self._handshakes.discard)

    async def _handshake(self, conn: socket.socket, peer: str | None) -> None:
        loop = asyncio.get_running_loop()
        factory = functools.partial(SyslogStreamProtocol, self.listener, True)
        try:
            await loop.connect_accepted_socket(factory, conn, ssl=self.context,
                                               ssl_handshake_timeout=HANDSHAKE_TIMEOUT)
        except (OSError, ssl.SSLError, TimeoutError) as e:
            self.listener.intake.counters.tls_handshake_failed += 1
            self.listener.registry.refusals.warning(
                peer, "TLS handshake with %s failed: %s", peer, e or type(e).__name__)
            with contextlib.suppress(OSError):
                conn.close()


def make_tls_context(cert: Path, key: Path, client_ca: Path | None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(client_ca)
    return context
