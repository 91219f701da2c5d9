"""A fault-injecting TCP proxy for PostgreSQL connections, run in a thread of the test.

It listens on 127.0.0.1 (a port of its own, read back from ``port``) and forwards to one
upstream address. Modes:

- ``pass``: forward both ways.
- ``hang``: forward nothing either way and read nothing, on open connections and on new
  ones (they are accepted, as a hung server's kernel would): a stuck server, pooler or
  black-holed network. Bytes wait in the kernel and go on when the mode is ``pass`` again.
- ``reset``: every open connection is closed with a TCP RST (SO_LINGER 0) at once, and so
  is each new one, until the mode changes.

``cut_after_commit(n)`` arms a fault for the next ``n`` commits: the client's COMMIT goes
to the server, the server's answer is read and thrown away, and both connections are
reset, so that the transaction is committed while the client only sees a lost
connection: the ambiguous commit. A COMMIT is a simple-Query ('Q') message whose text is
COMMIT, or a Parse ('P') of COMMIT followed by Sync, in the PostgreSQL wire protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any, Literal

Mode = Literal["pass", "hang", "reset"]

# Untyped messages a client may send before its StartupMessage: the server answers each
# with one byte (S or N) before the StartupMessage follows.
SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CUT_ANSWER_TIMEOUT = 10.0  # seconds to wait for the server's answer to a cut COMMIT


# ----------------------------------------------------------------------------- wire format


class MessageSplitter:
    """Splits one direction of a PostgreSQL connection into whole messages.

    ``feed`` returns (type, body, raw bytes) for each message completed; the startup
    phase of the client side has untyped messages, reported with type ``b""``.
    """

    def __init__(self, *, startup: bool) -> None:
        self.startup = startup
        self.raw_bytes = 0  # single untyped bytes expected next (answers to SSLRequest)
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[bytes, bytes, bytes]]:
        self._buffer += data
        messages = []
        while (message := self._next()) is not None:
            messages.append(message)
        return messages

    def _next(self) -> tuple[bytes, bytes, bytes] | None:
        buf = self._buffer
        if self.raw_bytes and buf:
            self.raw_bytes -= 1
            raw = bytes(buf[:1])
            del buf[:1]
            return raw, b"", raw
        header = 4 if self.startup else 5
        if len(buf) < header:
            return None
        length = struct.unpack_from(">I", buf, header - 4)[0]
        end = header - 4 + length
        if len(buf) < end:
            return None
        raw = bytes(buf[:end])
        del buf[:end]
        if self.startup:
            code = struct.unpack_from(">I", raw, 4)[0] if len(raw) >= 8 else 0
            self.startup = code in (SSL_REQUEST, GSSENC_REQUEST)
            return b"", raw[4:], raw
        return raw[:1], raw[5:], raw


def query_text(kind: bytes, body: bytes) -> str | None:
    """The SQL of a simple Query or of a Parse message, else None."""
    if kind == b"Q":
        return body.rstrip(b"\0").decode(errors="replace")
    if kind == b"P":
        _name, _, rest = body.partition(b"\0")
        return rest.split(b"\0", 1)[0].decode(errors="replace")
    return None


def is_commit(sql: str | None) -> bool:
    return sql is not None and sql.strip().rstrip(";").strip().upper() in ("COMMIT", "END")


# ----------------------------------------------------------------------------- the proxy


def _reset(transport: asyncio.BaseTransport | None) -> None:
    """Close with a TCP RST rather than a FIN."""
    if transport is None or transport.is_closing():
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()  # type: ignore[attr-defined]


class _Side(asyncio.Protocol):
    """One socket of a pipe; everything it reads goes to the pipe."""

    def __init__(self, pipe: _Pipe, client: bool) -> None:
        self.pipe = pipe
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.write_paused = False  # our transport's buffer is full: stop reading the peer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self.client:
            self.pipe.client_connected()

    def data_received(self, data: bytes) -> None:
        if self.client:
            self.pipe.from_client(data)
        else:
            self.pipe.from_server(data)

    def eof_received(self) -> bool | None:
        self.pipe.close()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.pipe.close()

    def pause_writing(self) -> None:
        self.write_paused = True
        self.pipe.update_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self.pipe.update_reading()


class _Pipe:
    """A client connection and its upstream connection."""

    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy
        self.client = _Side(self, client=True)
        self.server: _Side | None = None
        self.to_server: list[bytes] = []  # client bytes not forwarded yet
        self.frontend = MessageSplitter(startup=True)
        self.backend = MessageSplitter(startup=False)
        self.connecting = False
        self.closed = False
        self.commit_parsed = False  # a Parse of COMMIT waits for its Sync
        self.cutting = False  # a COMMIT went to the server: swallow its answer, then cut
        self._reading: dict[bool, bool] = {True: True, False: True}

    # -- connection set-up
    def client_connected(self) -> None:
        self.proxy.pipes.add(self)
        if self.proxy.mode == "reset":
            self.reset()
            return
        self.update_reading()
        if self.proxy.mode == "pass":
            self.connect_upstream()

    def connect_upstream(self) -> None:
        if self.connecting or self.server is not None or self.closed:
            return
        self.connecting = True
        asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        host, port = self.proxy.upstream
        try:
            _, side = await loop.create_connection(lambda: _Side(self, client=False), host, port)
        except OSError:
            self.reset()  # as a server that is down: the client sees its connection drop
            return
        self.server = side
        if self.closed:
            _reset(side.transport)
            return
        self.update_reading()
        self._flush_to_server()

    # -- data
    def from_client(self, data: bytes) -> None:
        for kind, body, raw in self.frontend.feed(data):
            if self.cutting:
                break  # the client waits for an answer it will never get
            if kind == b"" and len(body) == 4 and struct.unpack(">I", body)[0] in (
                    SSL_REQUEST, GSSENC_REQUEST):
                self.backend.raw_bytes += 1
            self.to_server.append(raw)
            sql = query_text(kind, body)
            if (kind == b"Q" and is_commit(sql)) or (kind == b"S" and self.commit_parsed):
                self.commit_parsed = False
                if self.proxy.take_cut():
                    self.cutting = True
                    self.proxy.loop_call_later(CUT_ANSWER_TIMEOUT, self.cut)
            elif kind == b"P":
                self.commit_parsed = is_commit(sql)
        self._flush_to_server()

    def _flush_to_server(self) -> None:
        if self.server is None or self.server.transport is None or not self.to_server:
            return
        self.server.transport.write(b"".join(self.to_server))
        self.to_server.clear()

    def from_server(self, data: bytes) -> None:
        if not self.cutting:
            if self.client.transport is not None:
                self.client.transport.write(data)
            return
        for kind, _body, _raw in self.backend.feed(data):
            if kind == b"Z":  # ReadyForQuery: the COMMIT is done; its answer is dropped
                self.cut()
                return

    # -- faults
    def cut(self) -> None:
        if not self.closed:
            self.proxy.cuts_done += 1
            self.reset()

    def reset(self) -> None:
        self.closed = True
        self.proxy.pipes.discard(self)
        _reset(self.client.transport)
        if self.server is not None:
            _reset(self.server.transport)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.proxy.pipes.discard(self)
        for side in (self.client, self.server):
            if side is not None and side.transport is not None:
                side.transport.close()

    def update_reading(self) -> None:
        """Read a side only in pass mode and while its peer can take more."""
        passing = self.proxy.mode == "pass"
        server = self.server
        for side, peer in ((self.client, server), (server, self.client)):
            if side is None or side.transport is None or side.transport.is_closing():
                continue
            want = passing and not (peer is not None and peer.write_paused)
            if want != self._reading[side.client]:
                self._reading[side.client] = want
                if want:
                    side.transport.resume_reading()
                else:
                    side.transport.pause_reading()


class FaultProxy:
    """The proxy; its control methods are called from the test's thread."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.mode: Mode = "pass"
        self.pipes: set[_Pipe] = set()
        self.cuts_armed = 0
        self.cuts_done = 0  # commits whose answer was dropped so far
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="faultproxy",
                                        daemon=True)

    # -- control, from the test
    def start(self) -> None:
        self._thread.start()
        self._call(self._listen())

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def set_mode(self, mode: Mode) -> None:
        self._call(self._set_mode(mode))

    def pass_through(self) -> None:
        self.set_mode("pass")

    def hang(self) -> None:
        self.set_mode("hang")

    def reset(self) -> None:
        """Reset every open connection now; new ones are reset too until pass_through()."""
        self.set_mode("reset")

    def cut_after_commit(self, count: int = 1) -> None:
        """Commit, then drop the answer and the connection, for the next ``count`` commits."""
        self._call(self._arm(count))

    @property
    def connections(self) -> int:
        return len(self.pipes)

    def dsn(self, dsn: str) -> str:
        """``dsn`` pointed at this proxy."""
        from psycopg.conninfo import make_conninfo

        return make_conninfo(dsn, host="127.0.0.1", port=self.port)

    # -- inside the loop
    def take_cut(self) -> bool:
        if self.cuts_armed <= 0:
            return False
        self.cuts_armed -= 1
        return True

    def loop_call_later(self, delay: float, callback: Any) -> None:
        self._loop.call_later(delay, callback)

    async def _listen(self) -> None:
        self._server = await self._loop.create_server(lambda: _Pipe(self).client,
                                                      "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for pipe in list(self.pipes):
            pipe.reset()

    async def _set_mode(self, mode: Mode) -> None:
        self.mode = mode
        for pipe in list(self.pipes):
            if mode == "reset":
                pipe.reset()
                continue
            pipe.update_reading()
            if mode == "pass":
                pipe.connect_upstream()

    async def _arm(self, count: int) -> None:
        self.cuts_armed = count

    def _call(self, coro: Any) -> None:
        future: Future[None] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        future.result(10)


@contextlib.contextmanager
def running_proxy(upstream_host: str, upstream_port: int) -> Iterator[FaultProxy]:
    proxy = FaultProxy(upstream_host, upstream_port)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.close()
