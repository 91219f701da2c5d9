"""RELP (rsyslog's omrelp): a syslog message is acknowledged once it is stored or spooled.

A session speaks RELP as librelp's server does (relp_frames.py has the wire format): the
client opens it with its offers and is answered ``200 OK`` with the accepted ones; each
``syslog`` command carries one message; ``close`` is answered and ends the session;
``serverclose`` (a hint, txnr 0) tells the client that the server ends it. Transaction
numbers must follow each other (1, 2, 3...); responses go out in that order, whatever
order the batches holding the messages are stored in
(tests/test_relp_protocol.py::test_responses_go_out_in_transaction_order_whatever_order_batches_commit).
How many commands a client has outstanding is its own window; the server bounds what it
holds by the queue's bounds (reading stops while the queue is full, as for TCP:
::test_a_full_queue_stops_reading_until_there_is_room) and by the transport's write
buffer (reading stops while the client does not take its responses:
::test_a_client_that_takes_no_responses_is_not_read).

A message's ``rsp 200 OK`` goes out only when the batch holding it committed in
PostgreSQL (or had committed before: a retry after an ambiguous commit), or was written
to the spool and fsynced (with spool_fsync = false: written). The writers settle batches
through queue.Receipts (tests/test_relp_acks.py; tests/test_relp_serve.py::
test_each_acknowledgement_follows_its_row_into_the_table). Rows the database refuses
for good are acknowledged too: they are kept in syslog.unrouted or the spool's rejects
file, and sending them again cannot help.
A message not acknowledged when the receiver dies is sent again by the client, so a
message committed just before a SIGKILL may be stored twice; an acknowledged one is never
lost (tests/test_relp_rsyslog.py::test_sigkill_in_the_middle_loses_nothing).

Limits are TCP's: connection slots (max_connections, max_connections_per_source, shared
with TCP and TLS), tcp_allow for plain RELP and tls_allow over TLS, idle_timeout (the
session gets a ``serverclose``), and max_frame_length: a longer message is stored cut
to it and marked, as rsyslog's imrelp does by default (closing would make omrelp send
the same message again forever). A frame that breaks the grammar, a DATALEN above
relp_frames.MAX_DATALEN or a transaction number out of turn closes that session with one
logged line giving the reason (framing_errors counts them), never the server
(tests/test_relp_serve.py::test_a_broken_frame_ends_only_its_session).

At a stop (server.py) sessions stop reading at once: what a client sent but the receiver
did not take is not acknowledged, and the client sends it again later. Each session
sends the responses of what it took as the writers store or spool it, then
``serverclose``; sessions still waiting after the writers are done are closed
(tests/test_relp_serve.py::test_a_stop_answers_what_it_stored_then_sends_serverclose).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections import deque
from dataclasses import dataclass, field
from typing import cast

from pgsyslog import __version__
from pgsyslog.receiver.framing import Frame
from pgsyslog.receiver.relp_frames import (
    OK,
    SERVERCLOSE,
    OpenRefused,
    RelpDecoder,
    RelpFrame,
    accept_offers,
    next_txnr,
    parse_offers,
    response,
)
from pgsyslog.receiver.tcp import StreamListener, SyslogStreamProtocol
from pgsyslog.receiver.tls import TlsStreamProtocol
from pgsyslog.record import ParseContext

log = logging.getLogger(__name__)

SOFTWARE = f"pgsyslog,{__version__}"
# A session ending for a broken frame or a client's close waits this long at most for
# the responses of the messages it took (stored or spooled well within it, unless the
# database hangs and the spool is off) before it sends serverclose.
REPLIES_WAIT = 30.0
# After serverclose, the client has this long to close its end (librelp does at once).
CLOSE_WAIT = 2.0
# Octets of a command's data kept even when max_frame_length is smaller (a message is cut
# to max_frame_length by the intake): an open's offers are read whole.
DATA_ROOM = 4096
DISABLED = b"500 command disabled: open the session with commands=syslog first"


class RelpSessions:
    """Every RELP session of the receiver, so that a stop can end them after the writers."""

    def __init__(self) -> None:
        self.open: set[RelpSession] = set()
        self.stopping = False

    def stop_reading(self) -> None:
        """A stop begins: sessions take no more commands and end once they have answered."""
        self.stopping = True
        for session in list(self.open):
            session.finish(at_stop=True)

    async def wait_closed(self, until: float) -> None:
        """Until every session has ended (``until``, monotonic, at most); then abort."""
        while self.open and time.monotonic() < until:
            await asyncio.sleep(0.02)
        for session in list(self.open):
            if session.replies:
                log.warning("relp session from %s still waits for %d responses at the end "
                            "of the stop: closing it (its client sends them again)",
                            session.peer, len(session.replies))
            session.abort()


@dataclass
class RelpListener(StreamListener):
    """A StreamListener whose connections are RELP sessions."""

    sessions: RelpSessions = field(default_factory=RelpSessions)


class Reply:
    """The response to one command, in the order of the session's transactions; a syslog
    message's is set by the writers (through queue.Receipts) once it is stored."""

    __slots__ = ("extra", "session", "status", "txnr")

    def __init__(self, session: RelpSession, txnr: int, status: bytes | None = None,
                 extra: bytes = b"") -> None:
        self.session = session
        self.txnr = txnr
        self.status = status  # None until the message is stored or spooled
        self.extra = extra

    def stored(self) -> None:
        self.status = OK
        self.session.reply_ready()


class RelpSession(SyslogStreamProtocol):
    """One RELP session over TCP (TlsRelpSession: over TLS)."""

    def __init__(self, listener: StreamListener, admitted: bool = False) -> None:
        super().__init__(listener, admitted)
        self.sessions = cast(RelpListener, listener).sessions
        self.frames = RelpDecoder(max(self.intake.max_length, DATA_ROOM))
        self.peer_name: str | None = None
        self.is_open = False  # answered an open
        self.syslog_enabled = False  # the open offered commands=syslog
        self.expected_txnr = 1
        self.replies: deque[Reply] = deque()  # in transaction order, oldest first
        self.finishing = False  # takes no more commands; ends once its replies are out
        self.ended = False  # serverclose sent: waiting for the client to close
        self.write_paused = False  # the client does not take its responses
        self._reading = True
        self._send_soon = False
        self._timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------ connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self.admitted:
            self._joined()

    def _joined(self) -> None:
        self.sessions.open.add(self)
        if self.sessions.stopping:
            self.finish(at_stop=True)

    def connection_lost(self, exc: Exception | None) -> None:
        self.sessions.open.discard(self)
        if self._timer is not None:
            self._timer.cancel()
        super().connection_lost(exc)

    def eof_received(self) -> bool | None:
        return None  # the client is gone: responses still owed cannot reach it

    def get_buffer(self, sizehint: int) -> memoryview:
        if self.finishing:  # nothing read from now on is taken
            self._buffer = self.listener.read_buffer
            return self._buffer
        return super().get_buffer(sizehint)

    def pause_writing(self) -> None:
        self.write_paused = True
        self._apply_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self._apply_reading()

    def _pause(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.paused = True
        self._apply_reading()
        self.queue.call_when_room(self._resume)

    def _resume(self) -> None:
        if not self.paused:
            return
        self.paused = False
        self.last_data = time.monotonic()  # it was waiting for us, not idle
        self._apply_reading()

    def _apply_reading(self) -> None:
        """Read unless the queue is full, the client takes no responses, or the session is
        ending (after serverclose it reads again, to see the client close)."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        hold = self.paused or self.write_paused or (self.finishing and not self.ended)
        if hold and self._reading:
            transport.pause_reading()
        elif not hold and not self._reading:
            transport.resume_reading()
        self._reading = not hold

    def cut_off(self) -> None:
        """The TCP connections' stop step: a session finishes instead (RelpSessions)."""
        self.finish(at_stop=True)

    def close(self) -> None:
        """End the session now (idle, a TLS error): the responses ready, serverclose, close."""
        if not self.ended:
            self._write_ready()
            self._send(SERVERCLOSE)
        self.ended = self.finishing = True
        super().close()

    # ------------------------------------------------------------------ commands

    def _flush(self) -> list[Frame]:
        return []  # a RELP frame cut short is sent again by its client, never stored

    def _take(self, data: bytes) -> None:
        if self.finishing:
            return
        frames = self.frames.feed(data)
        if frames:
            ctx = self.intake.context(self.peer, "relp")
            for frame in frames:
                self._dispatch(frame, ctx)
                if self.finishing:
                    break
            # Its client waits for these responses before it sends more than its window:
            # waiting for a full batch (batch_age_ms) would cap it at a window per age.
            self.queue.hurry()
        if self.frames.error is not None and not self.finishing:
            self._broken(self.frames.error)
        self._pause_if_full()

    def _dispatch(self, frame: RelpFrame, ctx: ParseContext) -> None:
        if frame.txnr == 0:
            log.debug("relp hint %r from %s ignored", frame.command, self.peer)
            return
        if frame.txnr != self.expected_txnr:
            self._broken(f"transaction number {frame.txnr} where {self.expected_txnr} was "
                         "expected")
            return
        self.expected_txnr = next_txnr(frame.txnr)
        if frame.command == "syslog":
            self._syslog(frame, ctx)
        elif frame.command == "open":
            self._open(frame)
        elif frame.command == "close":
            self._reply(frame.txnr, OK)
            self.finish()
        else:
            self._reply(frame.txnr, b"500 unknown command " + frame.command.encode())

    def _syslog(self, frame: RelpFrame, ctx: ParseContext) -> None:
        if not self.syslog_enabled:
            self._reply(frame.txnr, DISABLED)
            return
        reply = Reply(self, frame.txnr)
        self.replies.append(reply)
        by_transport = self.intake.counters.received_by_transport
        by_transport["relp"] = by_transport.get("relp", 0) + 1
        record = self.intake.parse(frame.data, ctx, frame.truncated)
        if record is None:  # empty: counted, nothing to store
            reply.stored()
            return
        record.peer_name = self.peer_name
        self.queue.receipts.expect(record, reply)
        self.queue.put(record)

    def _open(self, frame: RelpFrame) -> None:
        if self.is_open:
            self._reply(frame.txnr, b"500 protocol error: connection already open")
            self._broken("a second open")
            return
        try:
            offers, syslog = accept_offers(parse_offers(frame.data), SOFTWARE)
        except OpenRefused as e:
            self._reply(frame.txnr, b"500 " + str(e).encode())
            self._broken(f"open refused: {e}")
            return
        self.is_open, self.syslog_enabled = True, syslog
        self._reply(frame.txnr, OK, offers)

    # ------------------------------------------------------------------ responses

    def _reply(self, txnr: int, status: bytes, extra: bytes = b"") -> None:
        self.replies.append(Reply(self, txnr, status, extra))
        self.reply_ready()

    def reply_ready(self) -> None:
        """A response can go out: send the answered ones at the head, once per loop turn
        (a batch settles many of a session's messages at once)."""
        if not self._send_soon:
            self._send_soon = True
            asyncio.get_running_loop().call_soon(self._send_replies)

    def _send_replies(self) -> None:
        self._send_soon = False
        if self.ended:
            return
        self._write_ready()
        if self.finishing and not self.replies:
            self._end()

    def _write_ready(self) -> None:
        """Send the responses at the head of the line that are answered."""
        replies, out = self.replies, []
        while replies and replies[0].status is not None:
            reply = replies.popleft()
            out.append(response(reply.txnr, cast(bytes, reply.status), reply.extra))
        if out:
            self._send(b"".join(out))

    def _send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def finish(self, at_stop: bool = False) -> None:
        """Take no more commands; send serverclose once every response is out.

        At a stop the session leaves the TCP connections (whose stop would close it before
        the writers are done) and RelpSessions.wait_closed bounds the wait; otherwise it
        waits REPLIES_WAIT at most.
        """
        if at_stop:
            self.listener.registry.connections.discard(self)
        if self.finishing:
            return
        self.finishing = True
        self._apply_reading()
        if not at_stop:
            self._timer = asyncio.get_running_loop().call_later(REPLIES_WAIT, self._end)
        self.reply_ready()

    def _broken(self, reason: str) -> None:
        log.warning("closing relp session from %s: %s", self.peer, reason)
        self.intake.counters.framing_errors += 1
        self.finish()

    def _end(self) -> None:
        """serverclose, then our side's FIN; read (and drop) until the client closes."""
        if self.ended:
            return
        self.ended = True
        if self._timer is not None:
            self._timer.cancel()
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        self._send(SERVERCLOSE)
        self._close_write()
        self._apply_reading()
        self._timer = asyncio.get_running_loop().call_later(CLOSE_WAIT, self.abort)

    def _close_write(self) -> None:
        assert self.transport is not None
        try:
            self.transport.write_eof()
        except (OSError, RuntimeError, NotImplementedError):
            self.transport.close()


class TlsRelpSession(TlsStreamProtocol, RelpSession):
    """RELP over TLS: TlsStreamProtocol undoes TLS, RelpSession reads the plaintext."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # TLS's: the session is open from the accept
        self._joined()

    def connection_lost(self, exc: Exception | None) -> None:
        self.sessions.open.discard(self)  # also when the handshake failed
        super().connection_lost(exc)

    def buffer_updated(self, nbytes: int) -> None:
        if self.ended:
            return  # after serverclose: waiting for the client to close
        super().buffer_updated(nbytes)

    def _send(self, data: bytes) -> None:
        if self.handshaking:
            return
        with contextlib.suppress(ssl.SSLError):
            self._tls.write(data)
        self._send_records()

    def _close_write(self) -> None:
        with contextlib.suppress(ssl.SSLError):
            self._tls.unwrap()  # our close_notify (the client's has not come yet)
        self._send_records()
        super()._close_write()
