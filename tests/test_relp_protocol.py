"""A RELP session fed bytes directly: what it answers, when, and in which order.

The session runs on an event loop with the queue, intake and connection registry serve
builds; a small transport object stands in for the socket and keeps what is written. The
writers' part is played by settling records as a writer does once it has stored them
(queue.Receipts); tests/test_relp_acks.py does that with real writers and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

import pytest

from pgsyslog.receiver.access import AllowList
from pgsyslog.receiver.counters import Counters
from pgsyslog.receiver.intake import Intake, ZoneResolver
from pgsyslog.receiver.queue import RecordQueue
from pgsyslog.receiver.relp import RelpListener, RelpSession, RelpSessions
from pgsyslog.receiver.relp_frames import RelpDecoder, RelpFrame, frame
from pgsyslog.receiver.tcp import ConnectionRegistry
from pgsyslog.record import Record

OPEN = (b"1 open 86 relp_version=0\nrelp_software=librelp,1.11.0,"
        b"http://librelp.adiscon.com\ncommands=syslog\n")


def syslog(txnr: int, n: int) -> bytes:
    return frame(txnr, b"syslog", b"<14>1 - h app - - - n=%08d\n" % n)


@dataclass
class Transport:
    """What the session writes, and what it asks of the socket."""

    written: bytearray = field(default_factory=bytearray)
    reading: bool = True
    closing: bool = False
    eof_written: bool = False
    aborted: bool = False

    def get_extra_info(self, name: str) -> Any:
        return ("192.0.2.7", 40000) if name == "peername" else None

    def write(self, data: bytes) -> None:
        assert not self.closing and not self.eof_written
        self.written += data

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_closing(self) -> bool:
        return self.closing

    def write_eof(self) -> None:
        self.eof_written = True

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = self.aborted = True

    def frames(self) -> list[RelpFrame]:
        decoder = RelpDecoder(1 << 20)
        frames = decoder.feed(bytes(self.written))
        assert decoder.error is None and not decoder.buffered
        return frames

    def answers(self) -> list[tuple[int, str, bytes]]:
        return [(f.txnr, f.command, f.data) for f in self.frames()]


@dataclass
class Session:
    session: RelpSession
    transport: Transport
    queue: RecordQueue
    counters: Counters
    sessions: RelpSessions

    async def feed(self, data: bytes) -> None:
        """As the event loop does: into the session's buffer, as much as it offers, while
        the session reads."""
        while data and self.transport.reading:
            buffer = self.session.get_buffer(-1)
            n = min(len(buffer), len(data))
            buffer[:n] = data[:n]
            self.session.buffer_updated(n)
            data = data[n:]
        await settle_loop()

    async def store(self, records: list[Record] | None = None) -> list[Record]:
        """Settle records as a writer does once it stored them (default: all queued)."""
        records = self.queue.take_all() if records is None else records
        self.queue.receipts.settle(records)
        await settle_loop()
        return records

    def oks(self) -> list[int]:
        return [txnr for txnr, command, data in self.transport.answers()
                if command == "rsp" and data == b"200 OK"]


async def settle_loop() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


def make_session(queue_size: int = 100_000, max_length: int = 65536) -> Session:
    queue = RecordQueue(queue_size, 2000)
    counters = Counters()
    intake = Intake(queue, counters, ZoneResolver(UTC, ()), max_length)
    sessions = RelpSessions()
    listener = RelpListener("relp", intake, ConnectionRegistry(), AllowList(()),
                            sessions=sessions)
    session = RelpSession(listener)
    transport = Transport()
    session.connection_made(transport)  # type: ignore[arg-type]
    return Session(session, transport, queue, counters, sessions)


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())  # type: ignore[arg-type]


def test_rsyslog_session_acknowledged_once_stored() -> None:
    async def scenario() -> None:
        s = make_session()
        await s.feed(OPEN + syslog(2, 1) + syslog(3, 2))
        assert s.transport.answers() == [(1, "rsp", b"200 OK\nrelp_version=0\n"
                                          b"relp_software=pgsyslog,0.1.0\ncommands=syslog")]
        records = await s.store()
        assert [(r.message, r.transport, r.source_ip) for r in records] == [
            ("n=00000001", "relp", "192.0.2.7"), ("n=00000002", "relp", "192.0.2.7")]
        assert s.oks() == [2, 3]
        await s.feed(b"4 close 0\n")
        assert s.transport.answers()[-2:] == [(4, "rsp", b"200 OK"), (0, "serverclose", b"")]
        assert s.transport.eof_written
        assert s.counters.received_by_transport == {"relp": 2}

    run(scenario)


def test_responses_go_out_in_transaction_order_whatever_order_batches_commit() -> None:
    async def scenario() -> None:
        s = make_session()
        await s.feed(OPEN + b"".join(syslog(t, t) for t in range(2, 302)))  # a window of 300
        records = s.queue.take_all()
        await s.store(records[150:])  # the second batch commits first
        assert s.oks() == []
        await s.store(records[:100])
        assert s.oks() == list(range(2, 102))
        await s.store(records[100:150])
        assert s.oks() == list(range(2, 302))

    run(scenario)


def test_close_is_answered_after_the_messages_before_it() -> None:
    async def scenario() -> None:
        s = make_session()
        await s.feed(OPEN + syslog(2, 1) + b"3 close 0\n")
        assert [a[0] for a in s.transport.answers()] == [1]
        assert not s.transport.reading  # no commands after close
        await s.store()
        assert [a[:2] for a in s.transport.answers()] == [
            (1, "rsp"), (2, "rsp"), (3, "rsp"), (0, "serverclose")]

    run(scenario)


def test_syslog_before_open_is_refused_with_500() -> None:
    async def scenario() -> None:
        s = make_session()
        await s.feed(syslog(1, 1))
        assert s.transport.answers() == [
            (1, "rsp", b"500 command disabled: open the session with commands=syslog first")]
        assert len(s.queue) == 0
        await s.feed(frame(2, b"open", b"relp_version=0\ncommands=syslog") + syslog(3, 2))
        await s.store()
        assert [a[2][:6] for a in s.transport.answers()[1:]] == [b"200 OK", b"200 OK"]

    run(scenario)


def test_an_open_without_syslog_leaves_it_disabled() -> None:
    async def scenario() -> None:
        s = make_session()
        await s.feed(frame(1, b"open", b"relp_version=0") + syslog(2, 1))
        assert [a[2][:3] for a in s.transport.answers()] == [b"200", b"500"]
        assert len(s.queue) == 0

    run(scenario)


def test_unknown_command_is_answered_500_and_the_session_goes_on() -> None:
    async def scenario() -> None:
        s = make_session()
        await s.feed(OPEN + frame(2, b"starttls") + syslog(3, 1))
        await s.store()
        assert s.transport.answers()[1:] == [(2, "rsp", b"500 unknown command starttls"),
                                             (3, "rsp", b"200 OK")]
        assert not s.transport.eof_written

    run(scenario)


def test_broken_frame_closes_the_session_with_its_reason(
        caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        s = make_session()
        with caplog.at_level(logging.WARNING, "pgsyslog.receiver.relp"):
            await s.feed(OPEN + syslog(2, 1) + b"3 syslog 5 abcdefgh\n" + syslog(4, 2))
        assert [r.getMessage() for r in caplog.records] == [
            "closing relp session from 192.0.2.7: frame 3 syslog: expected LF after 5 "
            "octets of data, got b'fgh\\n4 syslog'"]
        assert s.counters.framing_errors == 1
        assert len(s.queue) == 1  # the message before it; nothing after
        assert not s.transport.eof_written  # its response is still owed
        await s.store()
        assert [a[:2] for a in s.transport.answers()] == [
            (1, "rsp"), (2, "rsp"), (0, "serverclose")]
        assert s.transport.eof_written

    run(scenario)


def test_transaction_number_out_of_turn_closes_the_session(
        caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        s = make_session()
        await s.feed(OPEN + syslog(3, 1))
        assert "transaction number 3 where 2 was expected" in caplog.text
        assert s.transport.answers()[-1] == (0, "serverclose", b"")
        assert len(s.queue) == 0

    run(scenario)


def test_a_second_open_is_refused_and_ends_the_session() -> None:
    async def scenario() -> None:
        s = make_session()
        await s.feed(OPEN + OPEN.replace(b"1 open", b"2 open"))
        assert s.transport.answers()[1:] == [
            (2, "rsp", b"500 protocol error: connection already open"),
            (0, "serverclose", b"")]

    run(scenario)


def test_an_open_without_relp_version_is_refused() -> None:
    async def scenario() -> None:
        s = make_session()
        await s.feed(frame(1, b"open", b"commands=syslog"))
        assert s.transport.answers() == [
            (1, "rsp", b"500 relp_version offer missing or not a number"),
            (0, "serverclose", b"")]

    run(scenario)


def test_plain_syslog_on_a_relp_port_is_one_logged_line(
        caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        s = make_session()
        await s.feed(b"<14>1 2024-03-01T10:00:00Z host app - - - hello\n")
        assert caplog.text.count("closing relp session from 192.0.2.7: not a RELP frame "
                                 "header: b'<14>1 2024") == 1
        assert s.transport.answers() == [(0, "serverclose", b"")]
        assert s.transport.eof_written and len(s.queue) == 0

    run(scenario)


def test_oversize_message_is_stored_cut_and_acknowledged() -> None:
    async def scenario() -> None:
        s = make_session(max_length=64)
        await s.feed(OPEN + frame(2, b"syslog", b"<14>1 - h app - - - " + b"x" * 200)
                     + syslog(3, 1))
        records = await s.store()
        assert len(records[0].message) < 64
        assert "max_frame_length (64 bytes)" in (records[0].parse_error or "")
        assert records[1].message == "n=00000001"
        assert s.oks() == [2, 3]
        assert s.counters.truncated == 1

    run(scenario)


def test_empty_message_is_acknowledged_at_once_and_not_stored() -> None:
    async def scenario() -> None:
        s = make_session()
        await s.feed(OPEN + frame(2, b"syslog", b"   \n"))
        assert s.oks() == [2]
        assert len(s.queue) == 0 and s.counters.dropped_empty == 1

    run(scenario)


def test_a_full_queue_stops_reading_until_there_is_room() -> None:
    async def scenario() -> None:
        s = make_session(queue_size=2000)
        await s.feed(OPEN + b"".join(syslog(t, t) for t in range(2, 6002)))
        # the read that filled the queue is queued whole; then reading stops
        assert 2000 <= len(s.queue) < 6000 and not s.transport.reading
        s.queue.take_batch()  # a writer takes a batch: the queue is below half
        assert s.transport.reading

    run(scenario)


def test_a_client_that_takes_no_responses_is_not_read() -> None:
    async def scenario() -> None:
        s = make_session()
        s.session.pause_writing()
        assert not s.transport.reading
        s.session.resume_writing()
        assert s.transport.reading

    run(scenario)


def test_a_stop_answers_what_was_taken_then_ends_the_session() -> None:
    async def scenario() -> None:
        s = make_session()
        await s.feed(OPEN + syslog(2, 1))
        s.sessions.stop_reading()
        assert not s.transport.reading
        s.transport.reading = True  # a read the loop had under way
        await s.feed(syslog(3, 2))
        assert len(s.queue) == 1  # not taken
        await s.store()
        assert [a[:2] for a in s.transport.answers()] == [
            (1, "rsp"), (2, "rsp"), (0, "serverclose")]
        assert s.transport.eof_written and s.transport.reading  # until the client closes
        s.session.connection_lost(None)
        assert not s.sessions.open

    run(scenario)


def test_an_idle_session_gets_serverclose() -> None:
    async def scenario() -> None:
        s = make_session()
        await s.feed(OPEN)
        s.session.last_data -= 100
        assert s.session.listener.registry.close_idle(10) == 1
        assert s.transport.answers()[-1] == (0, "serverclose", b"")
        assert s.transport.closing

    run(scenario)
