"""The TLS listener (RFC 5425): accept, take a slot, handshake, then TCP's framing.

pgsyslog undoes TLS itself, with an ``ssl.SSLObject`` over memory BIOs on the plain
socket (:class:`TlsStreamProtocol`), rather than through the event loop's TLS transport:

- pausing for back-pressure pauses the socket itself, so the end of a stream is not read
  while the queue is full; uvloop's TLS layer reads it and drops what it still held
  (tests/test_stop_reading.py::test_a_tls_sender_closing_while_paused_loses_nothing);
- a read is READ_SIZE bytes of TLS records at most, and a stop cuts a TLS connection off
  and reads it to its end exactly as a TCP one (tcp.py);
- a failed handshake is counted by its reason and logged per peer, where asyncio's TLS
  server drops it without a word.

With a client CA, a client must show a certificate the CA signed; with
tls_permitted_peers as well, one of its names must be permitted (peer_names.py). A
certificate with no permitted name ends the connection right after the handshake, before
any of its bytes is read as a message; the name a connection was let in under is stored
in the ``peer_name`` of each of its rows
(tests/test_tls_peers.py::test_only_permitted_names_get_in_and_their_name_is_stored).

Failed handshakes are logged per peer address at most once a minute: the first, then a
summary of those held back once the minute is over (access.PeerLog); and counted by
reason (:data:`FAILURE_REASONS`), told from the ssl error's verify code and reason code
(tests/test_tls_failures.py::test_each_failure_is_logged_with_its_reason_and_counted,
::test_failures_held_back_are_reported_when_the_peers_window_is_over).

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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, cast

from pgsyslog.config import PEM_READ_LIMIT, Config, Endpoint, pem_problem
from pgsyslog.receiver.access import PeerLog
from pgsyslog.receiver.framing import Frame
from pgsyslog.receiver.intake import peer_ip
from pgsyslog.receiver.peer_names import certificate_names, peer_name
from pgsyslog.receiver.supervise import keep_running
from pgsyslog.receiver.tcp import READ_SIZE, StreamListener, SyslogStreamProtocol

log = logging.getLogger(__name__)

# A client has this long to complete its handshake (garbage never completes one).
HANDSHAKE_TIMEOUT = 10.0
BACKLOG = 1024
# accept() failing for want of descriptors or memory: wait this long before the next try.
ACCEPT_RETRY = 0.5
# A peer's held-back failures are reported at most this fraction of a window late.
REPORTS_PER_WINDOW = 6
_OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}

FailureReason = Literal["no_certificate", "unknown_ca", "expired", "name_not_permitted",
                        "not_tls", "protocol_version", "no_shared_cipher", "timeout",
                        "closed", "other"]
FAILURE_REASONS: tuple[FailureReason, ...] = (
    "no_certificate", "unknown_ca", "expired", "name_not_permitted", "not_tls",
    "protocol_version", "no_shared_cipher", "timeout", "closed", "other")
# X509_V_ERR_* codes (openssl/x509_vfy.h) of a client certificate that failed verification.
_VERIFY_REASONS: dict[int, FailureReason] = {
    2: "unknown_ca",  # UNABLE_TO_GET_ISSUER_CERT
    9: "expired",  # CERT_NOT_YET_VALID: outside its validity, as an expired one
    10: "expired",  # CERT_HAS_EXPIRED
    18: "unknown_ca",  # DEPTH_ZERO_SELF_SIGNED_CERT
    19: "unknown_ca",  # SELF_SIGNED_CERT_IN_CHAIN
    20: "unknown_ca",  # UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    21: "unknown_ca",  # UNABLE_TO_VERIFY_LEAF_SIGNATURE
}
# OpenSSL's SSL library reason codes (SSL_R_*), as ssl.SSLError.reason names them.
_SSL_REASONS: dict[str, FailureReason] = {
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": "no_certificate",
    "WRONG_VERSION_NUMBER": "not_tls",  # plain syslog text: "<14>..." is no TLS record
    "HTTP_REQUEST": "not_tls",
    "HTTPS_PROXY_REQUEST": "not_tls",
    "UNKNOWN_PROTOCOL": "not_tls",
    "PACKET_LENGTH_TOO_LONG": "not_tls",
    "RECORD_LAYER_FAILURE": "not_tls",
    "UNSUPPORTED_PROTOCOL": "protocol_version",  # older than tls_min_version
    "NO_PROTOCOLS_AVAILABLE": "protocol_version",
    "VERSION_TOO_LOW": "protocol_version",
    "NO_SHARED_CIPHER": "no_shared_cipher",
}
TLS_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


class NameNotPermitted(Exception):
    """A client certificate the CA signed, with none of the permitted names."""

    def __init__(self, cert: Mapping[str, Any] | None) -> None:
        names = certificate_names(cert or {})
        shown = ", ".join(repr(n) for n in names[:5]) + (", ..." if len(names) > 5 else "")
        super().__init__(f"its certificate names {shown or 'nothing'}, none of them in "
                         "tls_permitted_peers")


def failure_reason(e: BaseException) -> FailureReason:
    """Why a handshake failed, from the error's codes (never from its message text:
    tests/test_tls_failures.py::test_errors_without_ssl_codes)."""
    if isinstance(e, NameNotPermitted):
        return "name_not_permitted"
    if isinstance(e, ssl.SSLCertVerificationError):
        return _VERIFY_REASONS.get(e.verify_code, "other")
    if isinstance(e, ssl.SSLError):
        if getattr(e, "library", None) != "SSL":
            return "other"
        return _SSL_REASONS.get(getattr(e, "reason", None) or "", "other")
    if isinstance(e, TimeoutError):
        return "timeout"
    if isinstance(e, OSError):
        return "closed"
    return "other"


class TlsContextError(OSError):
    """A certificate, key or CA file cannot be used; the message is one line.

    An OSError, as the file errors it stands for: callers catching those catch it too.
    ``setting`` names the setting at fault.
    """

    def __init__(self, message: str, setting: str = "tls") -> None:
        super().__init__(message)
        self.setting = setting


class TlsServer:
    """Listens like an asyncio.Server: start_serving(), close(), sockets."""

    def __init__(self, sock: socket.socket, listener: StreamListener,
                 context: ssl.SSLContext, handshake_timeout: float = HANDSHAKE_TIMEOUT,
                 listeners_down: dict[str, str] | None = None, name: str = "tls",
                 permitted_peers: Sequence[str] = ()) -> None:
        self.sock = sock
        self.listener = listener
        self.context = context
        self.permitted_peers = tuple(permitted_peers)  # empty: any certificate of the CA
        # What reads a connection once accepted: RELP over TLS puts its own subclass here.
        self.protocol: type[TlsStreamProtocol] = TlsStreamProtocol
        self.handshake_timeout = handshake_timeout
        self.listeners_down = {} if listeners_down is None else listeners_down
        self.name = name  # "tls://host:port", the key in listeners_down
        self.sockets = [sock]
        self.handshaking: set[TlsStreamProtocol] = set()
        self._accepting: asyncio.Task[None] | None = None
        self._reporting: asyncio.Task[None] | None = None
        self._starting: set[asyncio.Task[None]] = set()
        self._accept_failures = PeerLog(log)
        self.handshake_failures = PeerLog(log)

    @classmethod
    def bind(cls, endpoint: Endpoint, listener: StreamListener, context: ssl.SSLContext,
             handshake_timeout: float = HANDSHAKE_TIMEOUT,
             listeners_down: dict[str, str] | None = None,
             permitted_peers: Sequence[str] = ()) -> TlsServer:
        family = socket.getaddrinfo(endpoint.host, endpoint.port, type=socket.SOCK_STREAM,
                                    flags=socket.AI_PASSIVE)[0][0]
        sock = socket.create_server((endpoint.host, endpoint.port), family=family,
                                    backlog=BACKLOG)
        sock.setblocking(False)
        name = f"tls://{Endpoint(endpoint.host, sock.getsockname()[1])}"
        return cls(sock, listener, context, handshake_timeout, listeners_down, name,
                   permitted_peers)

    async def start_serving(self) -> None:
        self._accepting = asyncio.create_task(
            keep_running(self.name, self._accept_forever, self.listeners_down,
                         self.listener.intake.counters),
            name=f"accept {self.name}")
        self._reporting = asyncio.create_task(self._report_held_back(),
                                              name=f"handshake failures {self.name}")

    def reload(self, cert: Path, key: Path, client_ca: Path | None,
               min_version: str = "1.2", ciphers: str | None = None) -> None:
        """Handshakes from now on use this certificate, key and client CA.

        Raises TlsContextError (one line) and keeps the current ones when a file cannot
        be used. Connections already open are not touched.
        """
        self.context = make_tls_context(cert, key, client_ca, min_version=min_version,
                                        ciphers=ciphers)

    def close(self) -> None:
        """No new connections; handshakes in progress end. Open connections go on."""
        for task in (self._accepting, self._reporting):
            if task is not None:
                task.cancel()
        for task in self._starting:
            task.cancel()
        for protocol in list(self.handshaking):
            protocol.abort()
        self.sock.close()

    async def _report_held_back(self) -> None:
        """Failures held back in a peer's minute are logged (counted) once it is over,
        even when that peer fails no more (tests/test_tls_failures.py::
        test_failures_held_back_are_reported_when_the_peers_window_is_over)."""
        while True:
            await asyncio.sleep(self.handshake_failures.every / REPORTS_PER_WINDOW)
            self.handshake_failures.report_held_back("failed TLS handshakes")

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
        protocol = self.protocol(self.listener, self)
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
        self.peer_name: str | None = None  # the name its certificate was let in under
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
        if not self._name_permitted():
            return False
        self.handshaking = False
        if self._timeout is not None:
            self._timeout.cancel()
        self.server.handshaking.discard(self)
        self.listener.registry.connections.add(self)
        self.intake.counters.connections_opened += 1
        log.debug("tls connection from %s (%s)", self.peer, self._tls.version())
        return True

    def _name_permitted(self) -> bool:
        """With a client CA: note the certificate's name; refuse it when not permitted."""
        if self._tls.context.verify_mode != ssl.CERT_REQUIRED:
            return True
        cert = self._tls.getpeercert()
        allowed, self.peer_name = peer_name(cert, self.server.permitted_peers)
        if not allowed:
            self._failed(NameNotPermitted(cert))
        return allowed

    def _hand_on(self, frames: list[Frame]) -> None:
        self.intake.put_frames(frames, self.peer, self.transport_name, self.peer_name)

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
        """Count and log a failed handshake, once per connection, with its reason."""
        if self._handshake_failed:
            return
        self._handshake_failed = True
        reason = failure_reason(e)
        counters = self.listener.intake.counters
        counters.tls_handshake_failed += 1
        by_reason = counters.tls_handshake_failures
        by_reason[reason] = by_reason.get(reason, 0) + 1
        self.server.handshake_failures.warning(
            self.peer, "TLS handshake with %s failed: %s [reason: %s]", self.peer,
            describe_failure(e), reason, kind=reason)


def describe_failure(e: BaseException) -> str:
    """One line for the log: OpenSSL's words without the ``[SSL: X]`` and ``_ssl.c`` parts."""
    if isinstance(e, ssl.SSLCertVerificationError) and e.verify_message:
        return f"certificate verify failed: {e.verify_message}"
    text = str(e.args[1] if isinstance(e, ssl.SSLError) and len(e.args) > 1 else e)
    text = text.split(" (_ssl.c", 1)[0]
    if text.startswith("[") and "] " in text:
        text = text.split("] ", 1)[1]
    first = text.splitlines()[0] if text.strip() else ""
    return first or type(e).__name__


def context_from_config(config: Config) -> ssl.SSLContext:
    """The context of the syslog TLS and RELP-TLS listeners: tls_cert, tls_key,
    tls_client_ca, tls_min_version, tls_ciphers. Raises TlsContextError (one line)."""
    assert config.tls_cert is not None and config.tls_key is not None  # check_consistency
    return make_tls_context(config.tls_cert, config.tls_key, config.tls_client_ca,
                            min_version=config.tls_min_version, ciphers=config.tls_ciphers)


def https_context_from_config(config: Config) -> ssl.SSLContext | None:
    """The HTTP listener's context (http_tls_cert, http_tls_key, the same version and
    ciphers), or None for plain HTTP. Raises TlsContextError (one line)."""
    if config.http_tls_cert is None or config.http_tls_key is None:
        return None
    return make_tls_context(config.http_tls_cert, config.http_tls_key, None,
                            min_version=config.tls_min_version, ciphers=config.tls_ciphers,
                            settings=("http_tls_cert", "http_tls_key"))


def make_tls_context(cert: Path, key: Path, client_ca: Path | None, *,
                     min_version: str = "1.2", ciphers: str | None = None,
                     settings: tuple[str, str] = ("tls_cert", "tls_key")) -> ssl.SSLContext:
    """The server's context; TlsContextError says in one line which file (or setting) is
    wrong and how. ``settings`` names the certificate and key settings in those lines."""
    cert_setting, key_setting = settings
    _check_pem(cert_setting, cert, "certificate")
    _check_pem(key_setting, key, "key")
    if client_ca is not None:
        _check_pem("tls_client_ca", client_ca, "certificate")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = TLS_VERSIONS[min_version]
    if ciphers is not None:
        set_ciphers(context, ciphers)
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as e:
        if getattr(e, "reason", None) == "KEY_VALUES_MISMATCH":
            raise TlsContextError(f"{key_setting}: {key} is not the key of the certificate "
                                  f"{cert}: give the private key the certificate was made "
                                  "for", key_setting) from None
        raise TlsContextError(f"{cert_setting}: cannot load {cert} with {key_setting} {key}: "
                              f"{_ssl_reason(e)}", cert_setting) from None
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        try:
            context.load_verify_locations(client_ca)
        except ssl.SSLError as e:
            raise TlsContextError(f"tls_client_ca: cannot load {client_ca}: {_ssl_reason(e)}",
                                  "tls_client_ca") from None
    return context


def set_ciphers(context: ssl.SSLContext, ciphers: str) -> None:
    """tls_ciphers (an OpenSSL cipher string; TLS 1.3 suites are not affected)."""
    try:
        context.set_ciphers(ciphers)
    except ssl.SSLError:
        raise TlsContextError(f"tls_ciphers: OpenSSL selects no cipher from {ciphers!r}: "
                              "give a cipher string such as ECDHE+AESGCM (try it with "
                              "openssl ciphers -v 'STRING')", "tls_ciphers") from None


def _check_pem(setting: str, path: Path, kind: Literal["certificate", "key"]) -> None:
    """The same checks (and words) as the configuration's, at start and at every reload."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(PEM_READ_LIMIT)
    except OSError as e:
        raise TlsContextError(f"{setting}: cannot read {path}: {e.strerror or e}",
                              setting) from None
    problem = pem_problem(kind, data)
    if problem:
        raise TlsContextError(f"{setting}: {path} {problem}", setting)


def _ssl_reason(e: ssl.SSLError) -> str:
    reason: str | None = getattr(e, "reason", None)
    return reason or (e.strerror or str(e)).split(" (_ssl.c", 1)[0]
