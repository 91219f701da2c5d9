"""The TLS listener (RFC 5425): accept, take a slot, handshake, then TCP's framing.

pgsyslog undoes TLS itself, with an ``ssl.SSLObject`` over memory BIOs on the plain
socket (:class:`TlsStreamProtocol`), rather than through the event loop's TLS transport:

- pausing for back-pressure pauses the socket itself, so the end of a stream is not read
  while the queue is full; uvloop's TLS layer reads it and drops what it still held
  (tests/test_stop_reading.py::test_a_tls_sender_closing_while_paused_loses_nothing);
- a read is READ_SIZE bytes of TLS records at most, and a stop cuts a TLS connection off
  and reads it to its end exactly as a TCP one (tcp.py);
- a failed handshake is counted and logged per peer, where asyncio's TLS server drops it
  without a word.

A handshake in progress holds a connection slot (max_connections and
max_connections_per_source) and is given ``handshake_timeout`` seconds. The accept loop
restarts after an unexpected error (supervise.py); :meth:`TlsServer.reload` swaps in a
new certificate for the handshakes that follow.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import ssl
import time
from pathlib import Path
from typing import Literal, cast

from pgsyslog.config import PEM_READ_LIMIT, Endpoint, pem_problem
from pgsyslog.receiver.access import PeerLog
from pgsyslog.receiver.intake import peer_ip
from pgsyslog.receiver.supervise import keep_running
from pgsyslog.receiver.tcp import READ_SIZE, StreamListener, SyslogStreamProtocol

log = logging.getLogger(__name__)

# A client has this long to complete its handshake (garbage never completes one).
HANDSHAKE_TIMEOUT = 10.0
BACKLOG = 1024
# accept() failing for want of descriptors or memory: wait this long before the next try.
ACCEPT_RETRY = 0.5
_OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


class TlsContextError(OSError):
    """A certificate, key or CA file cannot be used; the message is one line.

    An OSError, as the file errors it stands for: callers catching those catch it too.
    """


class TlsServer:
    """Listens like an asyncio.Server: start_serving(), close(), sockets."""

    def __init__(self, sock: socket.socket, listener: StreamListener,
                 context: ssl.SSLContext, handshake_timeout: float = HANDSHAKE_TIMEOUT,
                 listeners_down: dict[str, str] | None = None, name: str = "tls") -> None:
        self.sock = sock
        self.listener = listener
        self.context = context
        self.handshake_timeout = handshake_timeout
        self.listeners_down = {} if listeners_down is None else listeners_down
        self.name = name  # "tls://host:port", the key in listeners_down
        self.sockets = [sock]
        self.handshaking: set[TlsStreamProtocol] = set()
        self._accepting: asyncio.Task[None] | None = None
        self._starting: set[asyncio.Task[None]] = set()
        self._accept_failures = PeerLog(log)
        self.handshake_failures = PeerLog(log)

    @classmethod
    def bind(cls, endpoint: Endpoint, listener: StreamListener, context: ssl.SSLContext,
             handshake_timeout: float = HANDSHAKE_TIMEOUT,
             listeners_down: dict[str, str] | None = None) -> TlsServer:
        family = socket.getaddrinfo(endpoint.host, endpoint.port, type=socket.SOCK_STREAM,
                                    flags=socket.AI_PASSIVE)[0][0]
        sock = socket.create_server((endpoint.host, endpoint.port), family=family,
                                    backlog=BACKLOG)
        sock.setblocking(False)
        name = f"tls://{Endpoint(endpoint.host, sock.getsockname()[1])}"
        return cls(sock, listener, context, handshake_timeout, listeners_down, name)

    async def start_serving(self) -> None:
        self._accepting = asyncio.create_task(
            keep_running(self.name, self._accept_forever, self.listeners_down,
                         self.listener.intake.counters),
            name=f"accept {self.name}")

    def reload(self, cert: Path, key: Path, client_ca: Path | None) -> None:
        """Handshakes from now on use this certificate, key and client CA.

        Raises TlsContextError (one line) and keeps the current ones when a file cannot
        be used. Connections already open are not touched.
        """
        self.context = make_tls_context(cert, key, client_ca)

    def close(self) -> None:
        """No new connections; handshakes in progress end. Open connections go on."""
        if self._accepting is not None:
            self._accepting.cancel()
        for task in self._starting:
            task.cancel()
        for protocol in list(self.handshaking):
            protocol.abort()
        self.sock.close()

    async def _accept_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, address = await loop.sock_accept(self.sock)
            except OSError as e:
                if e.errno not in _OUT_OF_RESOURCES:
                    raise
                self._accept_failures.warning(self.name, "accepting a TLS connection on %s "
                                              "failed: %s; retrying", self.name, e)
                await asyncio.sleep(ACCEPT_RETRY)
                continue
            try:
                self._accepted(conn, peer_ip(address))
            except BaseException:
                conn.close()
                raise

    def _accepted(self, conn: socket.socket, peer: str | None) -> None:
        if not self.listener.admit(peer):
            conn.close()
            return
        task = asyncio.create_task(self._start(conn, peer))
        self._starting.add(task)
        task.add_done_callback(self._starting.discard)

    async def _start(self, conn: socket.socket, peer: str | None) -> None:
        """Give the socket to a TlsStreamProtocol, which now holds the slot taken for it."""
        protocol = TlsStreamProtocol(self.listener, self)
        try:
            await asyncio.get_running_loop().connect_accepted_socket(lambda: protocol, conn)
        except OSError as e:  # the connection went before the loop took it
            log.debug("TLS connection from %s lost at once: %s", peer, e)
        finally:
            if protocol.transport is None:  # the protocol never got the connection
                self.listener.registry.release(peer)
                with contextlib.suppress(OSError):
                    conn.close()


class TlsStreamProtocol(SyslogStreamProtocol):
    """TCP's protocol with TLS undone in between: records in, plaintext to the decoder.

    It holds its slot from the moment the socket is accepted; it joins the registry's
    connections (and counts as opened) once the handshake is done.
    """

    def __init__(self, listener: StreamListener, server: TlsServer) -> None:
        super().__init__(listener, admitted=True)
        self.server = server
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = server.context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self.handshaking = True
        self._handshake_failed = False
        self._timeout: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.peer = peer_ip(transport.get_extra_info("peername"))
        self.server.handshaking.add(self)
        self._timeout = asyncio.get_running_loop().call_later(
            self.server.handshake_timeout, self._handshake_timed_out)

    def get_buffer(self, sizehint: int) -> memoryview:
        if self.handshaking:  # no records come of it: the queue's state does not matter
            self._buffer = self.listener.read_buffer
            return self._buffer
        return super().get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        self.last_data = time.monotonic()
        self._incoming.write(self._buffer[:nbytes])
        if self.handshaking and not self._handshake():
            return
        plaintext, closed = self._decrypt()
        if plaintext:
            self._take(plaintext)
        else:
            self._pause_if_full()  # a byte read while full completed no record
        if closed and self.transport is not None and not self.transport.is_closing():
            self._hand_on(self._flush())  # close_notify: the end of the stream
            with contextlib.suppress(ssl.SSLError):
                self._tls.unwrap()
            self._send_records()
            self.close()

    def eof_received(self) -> bool | None:
        if self.handshaking:
            self._failed(ConnectionResetError("the client closed the connection"))
            return None
        plaintext, _ = self._decrypt()
        if plaintext:
            self._take(plaintext)
        return super().eof_received()  # an end without close_notify: the data still counts

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timeout is not None:
            self._timeout.cancel()
        self.server.handshaking.discard(self)
        if self.handshaking:
            if not self.stopping:
                self._count_failure(exc or ConnectionResetError("the connection ended"))
            if self.admitted:
                self.admitted = False
                self.listener.registry.release(self.peer)
            return
        super().connection_lost(exc)

    def _handshake(self) -> bool:
        """Go on with the handshake; True once it is done (the connection is then open)."""
        try:
            self._tls.do_handshake()
        except ssl.SSLWantReadError:
            self._send_records()
            return False
        except (ssl.SSLError, OSError) as e:
            self._send_records()  # the alert, if any
            self._failed(e)
            return False
        self._send_records()
        self.handshaking = False
        if self._timeout is not None:
            self._timeout.cancel()
        self.server.handshaking.discard(self)
        self.listener.registry.connections.add(self)
        self.intake.counters.connections_opened += 1
        log.debug("tls connection from %s (%s)", self.peer, self._tls.version())
        return True

    def _decrypt(self) -> tuple[bytes, bool]:
        """The plaintext of the complete records received, and whether close_notify came."""
        chunks: list[bytes] = []
        closed = False
        try:
            while chunk := self._tls.read(READ_SIZE):
                chunks.append(chunk)
            closed = True  # read() gives b"" once close_notify has come
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLZeroReturnError:
            closed = True
        except ssl.SSLError as e:
            log.warning("closing tls connection from %s: %s", self.peer, e)
            self.close()
        self._send_records()  # a KeyUpdate answered, a session ticket
        return b"".join(chunks), closed

    def _send_records(self) -> None:
        pending = self._outgoing.read()
        # Nothing goes out after a cut-off: the socket no longer sends, and a failed write
        # would close the transport before what the kernel holds is read.
        if pending and not self.stopping and self.transport is not None:
            self.transport.write(pending)

    def _handshake_timed_out(self) -> None:
        self._failed(TimeoutError(f"not done within {self.server.handshake_timeout:g}s"))
        self.abort()

    def _failed(self, e: BaseException) -> None:
        self._count_failure(e)
        self.close()

    def _count_failure(self, e: BaseException) -> None:
        """Count and log a failed handshake, once per connection."""
        if self._handshake_failed:
            return
        self._handshake_failed = True
        self.listener.intake.counters.tls_handshake_failed += 1
        self.server.handshake_failures.warning(
            self.peer, "TLS handshake with %s failed: %s", self.peer,
            _first_line(e) or type(e).__name__)


def _first_line(e: BaseException) -> str:
    text = str(e)
    return text.splitlines()[0] if text else ""


def make_tls_context(cert: Path, key: Path, client_ca: Path | None) -> ssl.SSLContext:
    """The server's context; TlsContextError says in one line which file is wrong and how."""
    _check_pem("tls_cert", cert, "certificate")
    _check_pem("tls_key", key, "key")
    if client_ca is not None:
        _check_pem("tls_client_ca", client_ca, "certificate")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as e:
        if e.reason == "KEY_VALUES_MISMATCH":
            raise TlsContextError(f"tls_key {key} is not the key of the certificate {cert}: "
                                  "give the private key the certificate was made for") from None
        raise TlsContextError(f"tls_cert {cert} / tls_key {key}: {_ssl_reason(e)}") from None
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        try:
            context.load_verify_locations(client_ca)
        except ssl.SSLError as e:
            raise TlsContextError(f"tls_client_ca {client_ca}: {_ssl_reason(e)}") from None
    return context


def _check_pem(setting: str, path: Path, kind: Literal["certificate", "key"]) -> None:
    """The same checks (and words) as the configuration's, at start and at every reload."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(PEM_READ_LIMIT)
    except OSError as e:
        raise TlsContextError(f"{setting}: cannot read {path}: {e.strerror or e}") from None
    problem = pem_problem(kind, data)
    if problem:
        raise TlsContextError(f"{setting}: {path} {problem}")


def _ssl_reason(e: ssl.SSLError) -> str:
    return e.reason or (e.strerror or str(e)).split(" (_ssl.c", 1)[0]
