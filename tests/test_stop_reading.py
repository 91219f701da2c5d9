"""At stop, every connection is read to what its kernel acknowledged (drain_and_close).

The sender's own kernel says how much the receiver's acknowledged (TCP_INFO
tcpi_bytes_acked): every frame inside those bytes must be in the queue.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from helpers import ServerProcess, wait_for_rows
from inprocess import (
    Receiving,
    acked_by_flood,
    in_thread,
    numbered,
    run,
    start_flood,
    stored_after_a_restart,
    stored_numbers,
    wait_until,
)
from pgsyslog.receiver.tcp import CUT_AT_STOP, QUIET_BEFORE_CLOSE, READ_SIZE, stop_listening
from pgsyslog.receiver.tls import make_tls_context
from pki import Pki

FRAME = len(numbered(0))


def numbers(receiving: Receiving) -> list[int]:
    """The n= of every record, in order; a frame cut at the stop is left out."""
    return [int(m[2:]) for m in receiving.messages() if m.startswith("n=") and len(m) == 10]


def test_a_sender_that_never_goes_quiet_loses_nothing_the_kernel_acknowledged() -> None:
    receiving = Receiving.make()

    async def scenario() -> int:
        port = await receiving.tcp()
        sender = await asyncio.to_thread(start_flood, port)
        assert await wait_until(lambda: len(receiving.queue) > 10_000)
        await stop_listening(receiving.servers, time.monotonic() + 5)
        await receiving.state.registry.drain_and_close(time.monotonic() + 0.5)
        return await asyncio.to_thread(acked_by_flood, sender)

    acknowledged_frames = run(scenario(), receiving) // FRAME
    got = numbers(receiving)
    assert acknowledged_frames > 10_000
    assert got == list(range(len(got)))  # in order, once each
    assert len(got) >= acknowledged_frames, (len(got), acknowledged_frames)
    print(f"{acknowledged_frames} frames acknowledged, {len(got)} stored")


def test_a_sender_pausing_then_bursting_at_the_stop_loses_nothing() -> None:
    receiving = Receiving.make()

    def send() -> None:
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"".join(numbered(i) for i in range(100)))
            sending.set()
            time.sleep(0.3)
            s.sendall(b"".join(numbered(i) for i in range(100, 1100)))
            time.sleep(QUIET_BEFORE_CLOSE * 3)  # then quiet, connection open

    sending = threading.Event()

    async def scenario() -> None:
        nonlocal port
        port = await receiving.tcp()
        in_thread(send)
        assert await wait_until(sending.is_set)
        await stop_listening(receiving.servers, time.monotonic() + 5)
        await receiving.state.registry.drain_and_close(time.monotonic() + 30)

    port = 0
    run(scenario(), receiving)
    assert numbers(receiving) == list(range(1100))
    assert not receiving.state.registry.connections


def test_connections_paused_by_a_full_queue_are_read_to_the_end_at_stop() -> None:
    receiving = Receiving.make(queue_size=500)
    starts = [k * 10_000_000 for k in range(3)]

    async def scenario() -> list[int]:
        port = await receiving.tcp()
        senders = [await asyncio.to_thread(start_flood, port, start) for start in starts]
        registry = receiving.state.registry
        assert await wait_until(lambda: len(registry.connections) == 3 and all(
            c.paused for c in registry.connections))
        queued_when_paused = len(receiving.queue)
        await stop_listening(receiving.servers, time.monotonic() + 5)
        await registry.drain_and_close(time.monotonic() + 0.2)
        assert len(receiving.queue) > queued_when_paused  # past the bound, at stop
        return [await asyncio.to_thread(acked_by_flood, sender) for sender in senders]

    acked = run(scenario(), receiving)
    got = numbers(receiving)
    for start, acked_bytes in zip(starts, acked, strict=True):
        mine = [n - start for n in got if n // 10_000_000 == start // 10_000_000]
        assert mine == list(range(len(mine)))
        assert len(mine) >= acked_bytes // FRAME, (start, len(mine), acked_bytes // FRAME)


def test_a_tls_connection_is_read_to_the_end_at_stop(pki: Pki) -> None:
    receiving = Receiving.make()
    client = ssl.create_default_context(cafile=pki.ca.cert)

    def send(port: int) -> None:
        with socket.create_connection(("127.0.0.1", port)) as raw, \
                client.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(b"".join(numbered(i) for i in range(20_000)) + b"<14>1 - h app - - - la")
            time.sleep(QUIET_BEFORE_CLOSE * 3)

    async def scenario() -> None:
        server = await receiving.tls(make_tls_context(pki.server.cert, pki.server.key, None))
        in_thread(lambda: send(server.sock.getsockname()[1]))
        assert await wait_until(lambda: len(receiving.queue) > 0)
        await stop_listening(receiving.servers, time.monotonic() + 5)
        await receiving.state.registry.drain_and_close(time.monotonic() + 30)

    run(scenario(), receiving)
    assert numbers(receiving) == list(range(20_000))
    last = receiving.records()[-1]
    assert (last.message, last.parse_error) == ("la", f"frame cut short: {CUT_AT_STOP}")


def test_connections_not_yet_accepted_at_stop_are_read(pki: Pki) -> None:
    """Completed by the kernel, waiting in the accept queue: their data was acknowledged."""
    receiving = Receiving.make()
    context = make_tls_context(pki.server.cert, pki.server.key, None)
    waiting: list[socket.socket] = []

    async def scenario() -> None:
        port = await receiving.tcp()
        tls_server = await receiving.tls(context)
        # The loop is busy (this coroutine does not yield): nothing is accepted meanwhile.
        for n in range(3):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(numbered(n))
            waiting.append(s)
        assert await wait_until(lambda: len(receiving.state.registry.connections) == 0, 0)
        await stop_listening(receiving.servers, time.monotonic() + 5)
        with pytest.raises(OSError):  # refused now: dropped, then reset
            socket.create_connection(("127.0.0.1", port), timeout=0.5)
        assert tls_server.sock.fileno() == -1
        await receiving.state.registry.drain_and_close(time.monotonic() + 30)

    try:
        run(scenario(), receiving)
    finally:
        for s in waiting:
            s.close()
    assert numbers(receiving) == [0, 1, 2]


def test_a_tls_sender_closing_while_paused_loses_nothing(pki: Pki) -> None:
    """The sender ends its stream (FIN, no close_notify) while the queue is full.

    uvloop's TLS layer read that end and dropped what it still held: 17,970 of 20,000.
    """
    receiving = Receiving.make(queue_size=500)
    client = ssl.create_default_context(cafile=pki.ca.cert)
    ended, done = threading.Event(), threading.Event()

    def send(port: int) -> None:
        with socket.create_connection(("127.0.0.1", port)) as raw, \
                client.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(b"".join(numbered(i) for i in range(20_000)))
            s.shutdown(socket.SHUT_WR)  # the TCP stream ends after the data
            ended.set()
            done.wait(30)

    async def scenario() -> list[str]:
        server = await receiving.tls(make_tls_context(pki.server.cert, pki.server.key, None))
        in_thread(lambda: send(server.sock.getsockname()[1]))
        assert await wait_until(ended.is_set)
        await asyncio.sleep(0.2)  # the end of the stream has arrived, unread
        assert len(receiving.queue) <= 500 + READ_SIZE // FRAME + 16 * 1024 // FRAME
        taken: list[str] = []
        while len(taken) < 20_000 and await wait_until(lambda: len(receiving.queue) > 0, 5):
            taken += [r.message for r in receiving.queue.take_batch()]
        done.set()
        return taken

    assert run(scenario(), receiving) == [f"n={i:08d}" for i in range(20_000)]


# ---------------------------------------------------------------- through serve and SIGTERM


def test_sigterm_with_a_sender_that_never_goes_quiet(
        serve: Callable[..., ServerProcess], dsn: str, tmp_path: Path) -> None:
    data_dir = str(tmp_path / "data")
    server = serve("--tcp", "127.0.0.1:0", "--shutdown-timeout", "6", "--data-dir", data_dir)
    sender = start_flood(server.port("tcp"), pace=0.005)  # ~20,000 messages a second
    assert wait_for_rows(dsn, 5_000) >= 5_000
    server.proc.send_signal(signal.SIGTERM)
    acknowledged_frames = acked_by_flood(sender) // FRAME
    assert server.proc.wait(60) == 0, server.log
    server.close()
    # What the stop could not write is in the spool; the next start writes it.
    got = stored_after_a_restart(serve, data_dir, dsn, server.final_counters()["received"])
    assert got == list(range(len(got)))  # once each
    assert len(got) >= acknowledged_frames, (len(got), acknowledged_frames)


def test_sigterm_then_a_pause_and_a_burst_loses_nothing(
        serve: Callable[..., ServerProcess], dsn: str) -> None:
    server = serve("--tcp", "127.0.0.1:0")
    with socket.create_connection(("127.0.0.1", server.port("tcp"))) as s:
        s.sendall(b"".join(numbered(i) for i in range(100)))
        assert wait_for_rows(dsn, 100) == 100
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        s.sendall(b"".join(numbered(i) for i in range(100, 1100)))
        assert server.proc.wait(60) == 0, server.log
    server.close()
    assert stored_numbers(dsn) == list(range(1100))
