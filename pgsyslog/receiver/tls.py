"""The TLS listener (RFC 5425): accept, take a slot, handshake, then the TCP protocol.

asyncio's own TLS server drops a failed handshake without a word; accepting the socket
here and handshaking with ``loop.connect_accepted_socket`` lets pgsyslog count it and log
it per peer. A handshake in progress holds a connection slot (max_connections and
max_connections_per_source) and is given ``handshake_timeout`` seconds. Framing and
everything after the handshake is tcp.py's.

The accept loop restarts after an unexpected error (supervise.py); :meth:`TlsServer.reload`
swaps in a new certificate for the handshakes that follow.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import ssl
from pathlib import Path

from pgsyslog.config import Endpoint
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
        self._accepting: asyncio.Task[None] | None = None
        self._handshakes: set[asyncio.Task[None]] = set()
        self._accept_failures = PeerLog(log)

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
        task = asyncio.create_task(self._handshake(conn, peer))
        self._handshakes.add(task)
        task.add_done_callback(self._handshakes.discard)

    async def _handshake(self, conn: socket.socket, peer: str | None) -> None:
        """Hand the socket to the TCP protocol once the handshake is done; the slot is
        freed here when it fails, and by the protocol when its connection ends."""
        loop = asyncio.get_running_loop()
        protocol = SyslogStreamProtocol(self.listener, admitted=True)
        try:
            transport, _ = await loop.connect_accepted_socket(
                lambda: protocol, conn, ssl=self.context,
                ssl_handshake_timeout=self.handshake_timeout)
        except (OSError, ssl.SSLError, TimeoutError) as e:
            self._failed(peer, e)
        else:
            # Encrypted bytes the TLS layer may read ahead while we have paused reading.
            limit_read_ahead = getattr(transport, "set_read_buffer_limits", None)
            if limit_read_ahead is not None:
                limit_read_ahead(high=READ_SIZE)
        finally:
            if protocol.transport is None:  # the protocol never got the connection
                self.listener.registry.release(peer)
                with contextlib.suppress(OSError):
                    conn.close()

    def _failed(self, peer: str | None, e: BaseException) -> None:
        self.listener.intake.counters.tls_handshake_failed += 1
        self.listener.registry.refusals.warning(
            peer, "TLS handshake with %s failed: %s", peer, e or type(e).__name__)


def make_tls_context(cert: Path, key: Path, client_ca: Path | None) -> ssl.SSLContext:
    """The server's context; TlsContextError says in one line which file is wrong and how."""
    for setting, path in (("tls_cert", cert), ("tls_key", key), ("tls_client_ca", client_ca)):
        if path is not None:
            _check_readable(setting, path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as e:
        raise TlsContextError(_chain_problem(cert, key, e)) from None
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        try:
            context.load_verify_locations(client_ca)
        except ssl.SSLError as e:
            raise TlsContextError(f"tls_client_ca {client_ca}: {_ssl_reason(e)}") from None
    return context


def _check_readable(setting: str, path: Path) -> None:
    try:
        with open(path, "rb"):
            pass
    except OSError as e:
        raise TlsContextError(f"{setting} {path}: {e.strerror or e}") from None


def _chain_problem(cert: Path, key: Path, e: ssl.SSLError) -> str:
    """Which of the two files OpenSSL refused, and why, in one line."""
    if b"-----BEGIN CERTIFICATE-----" not in cert.read_bytes():
        return f"tls_cert {cert}: no PEM certificate in the file"
    if b"PRIVATE KEY-----" not in key.read_bytes():
        return f"tls_key {key}: no PEM private key in the file"
    return f"tls_cert {cert} / tls_key {key}: {_ssl_reason(e)}"


def _ssl_reason(e: ssl.SSLError) -> str:
    reasons = {
        "KEY_VALUES_MISMATCH": "the key does not belong to the certificate",
        "NO_CERTIFICATE_OR_CRL_FOUND": "no PEM certificate in the file",
        "CA_MD_TOO_WEAK": "the certificate is signed with a digest too weak to accept",
        "EE_KEY_TOO_SMALL": "the key is too small to accept",
    }
    if e.reason in reasons:
        return reasons[e.reason]
    return e.reason or (e.strerror or str(e)).split(" (_ssl.c", 1)[0]
