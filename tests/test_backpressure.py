"""Back-pressure: with the writer stalled, TCP senders block and memory stays bounded."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import selectors
import socket
import threading
import time
import tracemalloc
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import psycopg
import pytest

from helpers import ServerProcess, query, wait_for_rows
from inprocess import Receiving, numbered, run, wait_until
from pgsyslog.receiver.parsers import parse_message
from pgsyslog.receiver.queue import record_size
from pgsyslog.receiver.tcp import READ_SIZE
from pgsyslog.receiver.udp import kernel_drops
from pgsyslog.record import ParseContext, Record

QUEUE_BYTES = 32 * 1024 * 1024
MIB = 1024 * 1024


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_stalled_writer_blocks_tcp_senders_and_bounds_memory(
        serve: Callable[..., ServerProcess], dsn: str) -> None:
    server = serve("--tcp", "127.0.0.1:0", "--queue-size", "10000000",
                   "--queue-bytes", str(QUEUE_BYTES))
    total = 150_000
    padding = b"x" * 300
    payload = b"".join(b"<14>1 - flood app - - - n=%06d %s\n" % (i, padding)
                       for i in range(total))  # about 50 MB; parsed, about 110 MB of records
    baseline = rss_bytes(server.proc.pid)
    sent = threading.Event()

    def send() -> None:
        with socket.create_connection(("127.0.0.1", server.port("tcp"))) as s:
            s.sendall(payload)
        sent.set()

    with psycopg.connect(dsn) as stall:
        stall.execute("LOCK TABLE syslog.messages IN ACCESS EXCLUSIVE MODE")
        sender = threading.Thread(target=send)
        sender.start()
        peak = baseline
        for _ in range(40):  # 4 s with the writer stalled
            time.sleep(0.1)
            peak = max(peak, rss_bytes(server.proc.pid))
        assert not sent.is_set(), "the sender was never held back"
        stall.rollback()  # the writer resumes
    sender.join(120)
    assert sent.is_set()
    assert wait_for_rows(dsn, total, timeout=120) == total
    assert query(dsn, "SELECT count(DISTINCT message) FROM syslog.messages") == [(total,)]
    print(f"memory growth with the writer stalled: {(peak - baseline) // MIB} MiB")
    # Growth is bounded by queue_bytes plus what is in flight (a read chunk, two batches).
    assert peak - baseline < QUEUE_BYTES + 48 * MIB, (peak - baseline) // MIB


def test_kernel_drops_of_a_udp_socket_are_read_from_proc() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        receiver.bind(("127.0.0.1", 0))
        inode = os.fstat(receiver.fileno()).st_ino
        assert kernel_drops({inode}) == 0
        for _ in range(500):  # nobody reads: the small buffer overflows
            sender.sendto(b"x" * 200, receiver.getsockname())
        assert kernel_drops({inode}) > 0


@contextmanager
def writer_stalled(dsn: str) -> Iterator[None]:
    """A table lock: the writer's COPY waits until the block ends."""
    with psycopg.connect(dsn) as stall:
        stall.execute("LOCK TABLE syslog.messages IN ACCESS EXCLUSIVE MODE")
        yield
        stall.rollback()


def queue_length(server: ServerProcess) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port('http')}/healthz",
                                timeout=30) as response:
        return int(json.load(response)["queue"])


def flood_from_many(port: int, payloads: list[bytes], done: threading.Event) -> None:
    """One connection per payload, all sending at once (non-blocking) until all is sent."""
    selector = selectors.DefaultSelector()
    sockets = []
    for payload in payloads:
        s = socket.create_connection(("127.0.0.1", port))
        s.setblocking(False)
        sockets.append(s)
        selector.register(s, selectors.EVENT_WRITE, memoryview(payload))
    try:
        while selector.get_map():
            for key, _ in selector.select(timeout=1):
                left = key.data
                n = key.fileobj.send(left[:65536])  # type: ignore[union-attr]
                if n == len(left):
                    selector.unregister(key.fileobj)
                else:
                    selector.modify(key.fileobj, selectors.EVENT_WRITE, left[n:])
        done.set()
    finally:
        for s in sockets:
            s.close()


def test_1000_flooding_connections_hold_the_queue_bound(
        serve: Callable[..., ServerProcess], dsn: str) -> None:
    queue_size, connections, per_connection = 1000, 1000, 40
    server = serve("--tcp", "127.0.0.1:0", "--queue-size", str(queue_size), "--batch-rows", "500",
                   "--max-connections", str(connections + 10),
                   "--max-connections-per-source", str(connections + 10))
    padding = b"x" * 900
    payloads = [b"".join(b"<14>1 - flood app - - - c=%04d n=%02d %s\n" % (c, n, padding)
                         for n in range(per_connection)) for c in range(connections)]
    frame = len(payloads[0]) // per_connection
    # Past queue_size: what one read turns into, and one frame per connection (see tcp.py).
    bound = queue_size + READ_SIZE // frame + connections
    baseline = rss_bytes(server.proc.pid)
    sent = threading.Event()
    with writer_stalled(dsn):
        threading.Thread(target=flood_from_many, args=(server.port("tcp"), payloads, sent),
                         daemon=True).start()
        peak_queue, peak_rss = 0, baseline
        # With the writer stalled: until the queue has been full for 3 s (a loaded machine
        # takes a while to open 1,000 connections), 60 s at most.
        full_since = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            time.sleep(0.1)
            peak_queue = max(peak_queue, queue_length(server))
            assert server.proc.poll() is None, server.log
            peak_rss = max(peak_rss, rss_bytes(server.proc.pid))
            if peak_queue >= queue_size:
                full_since = full_since or time.monotonic()
                if time.monotonic() - full_since >= 3:
                    break
    total = connections * per_connection
    assert wait_for_rows(dsn, total, timeout=120) == total
    assert sent.wait(30)
    assert query(dsn, "SELECT count(DISTINCT message) FROM syslog.messages") == [(total,)]
    growth = (peak_rss - baseline) // MIB
    print(f"queue peak {peak_queue} (bound {bound}), memory growth {growth} MiB")
    assert queue_size <= peak_queue <= bound
    # 1,000 records of ~2 KB, two batches of 500 in the stalled writers, and what 1,000
    # connections cost (their objects in the loop): under 10 MiB. Unbounded: ~50 MiB.
    assert growth < 24, growth


@pytest.mark.parametrize("bound", ["queue_size", "queue_bytes"])
def test_the_queue_holds_its_bound_plus_one_read(bound: str) -> None:
    """In process, to see the queue itself: 200 connections flood it, nobody takes from it."""
    by_records = bound == "queue_size"
    receiving = Receiving.make(queue_size=500 if by_records else 10**9,
                               queue_bytes=10**12 if by_records else 512 * 1024)
    queue, connections, per_connection = receiving.queue, 200, 600
    payloads = [b"".join(numbered(c * 1000 + n) for n in range(per_connection))
                for c in range(connections)]
    sent = threading.Event()

    def settled() -> bool:
        before = len(queue)
        time.sleep(0.3)  # blocks the loop: nothing can be read meanwhile either
        return sent.is_set() and len(queue) == before

    async def scenario() -> list[int]:
        port = await receiving.tcp()
        threading.Thread(target=flood_from_many, args=(port, payloads, sent),
                         daemon=True).start()
        assert await wait_until(lambda: len(receiving.state.registry.connections) == 200)
        await asyncio.sleep(0.5)
        assert await wait_until(settled, timeout=30)
        frames_per_read = READ_SIZE // len(numbered(0))
        largest = max(record_size(r) for r in receiving.records())
        if by_records:
            assert 500 <= len(queue) <= 500 + frames_per_read + connections
        else:
            assert 512 * 1024 <= queue.bytes <= 512 * 1024 + largest * (
                frames_per_read + connections)
        taken: list[int] = []
        while len(taken) < connections * per_connection:  # the writer, at last
            batch = queue.take_batch()
            taken += [int(r.message[2:]) for r in batch]
            await asyncio.sleep(0 if batch else 0.01)
        return taken

    taken = run(scenario(), receiving)
    for c in range(connections):  # each connection's frames, whole and in order
        assert [n % 1000 for n in taken if n // 1000 == c] == list(range(per_connection))


def sd_datagram(elements: int, params: int, value: bytes = b"v") -> bytes:
    sd = b"".join(b"[e%d " % e + b" ".join(b'p%d="%s"' % (p, value) for p in range(params))
                  + b"]" for e in range(elements))
    return b"<14>1 - h app - - " + sd + b" m"


@pytest.mark.parametrize("datagram", [
    b"<14>1 2026-11-21T11:59:58Z web1 nginx 812 ID1 - GET /index.html 200",
    b"<13>Nov 21 11:59:58 web1 sshd[812]: Accepted publickey for root",
    sd_datagram(1, 3),
    sd_datagram(128, 8),  # many small elements: dicts cost more than their text
    sd_datagram(1, 1024),  # many params
    sd_datagram(1, 1024, b"x" * 56),  # 65 KB
    sd_datagram(200, 1),  # cut at 128 elements: raw kept
    b"<999>" + b"z" * 65_000,  # raw
], ids=["rfc5424", "rfc3164", "sd", "128-elements", "1024-params", "65k-sd", "cut-sd", "raw"])
def test_record_size_is_what_a_record_holds(datagram: bytes) -> None:
    """The estimate the queue counts is within 0.8× and 3× of tracemalloc's measure."""
    ctx = ParseContext(datetime.now(UTC), UTC, "192.0.2.1", "udp")
    gc.collect()
    tracemalloc.start()
    records = [parse_message(datagram[:-1] + datagram[-1:], ctx) for _ in range(20)]
    held = tracemalloc.get_traced_memory()[0] / len(records)
    tracemalloc.stop()
    estimate = record_size(records[0])  # type: ignore[arg-type]
    assert 0.8 * held <= estimate <= 3 * held + 1000, (estimate, held)


def test_structured_data_datagrams_count_what_they_hold(
        serve: Callable[..., ServerProcess], dsn: str) -> None:
    """65 KB of SD (1,024 params) hold ~200 KB parsed; counted at ~1 KB, 600 would take
    ~120 MiB past a 4 MiB queue_bytes."""
    queue_bytes, sent = 4 * MIB, 600
    # Without a spool, so that a full queue drops (with one, it spills: test_udp_burst.py).
    server = serve("--udp", "127.0.0.1:0", "--queue-bytes", str(queue_bytes),
                   "--spool-max-bytes", "0")
    datagram = sd_datagram(1, 1024, b"x" * 56)
    assert 64_000 < len(datagram) < 65_507
    baseline = rss_bytes(server.proc.pid)
    peak = baseline
    with writer_stalled(dsn), \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i in range(sent):
            s.sendto(datagram, ("127.0.0.1", server.port("udp")))
            time.sleep(0.002)
            if i % 50 == 0:
                peak = max(peak, rss_bytes(server.proc.pid))
        time.sleep(1)
        peak = max(peak, rss_bytes(server.proc.pid))
    assert server.stop() == 0
    counters = server.final_counters()
    stored = query(dsn, "SELECT count(*) FROM syslog.messages")[0][0]
    assert counters["dropped_queue_full"] > 0
    assert stored == counters["written"] == counters["received"] - counters["dropped_queue_full"]
    growth = (peak - baseline) // MIB
    print(f"{stored} stored, {counters['dropped_queue_full']} dropped, growth {growth} MiB")
    # The queue, and a batch in each of the two stalled writers taken from it: 3 × 4 MiB.
    assert growth < 3 * queue_bytes // MIB + 24, growth


def test_paused_connections_are_not_closed_as_idle(
        serve: Callable[..., ServerProcess], dsn: str) -> None:
    server = serve("--tcp", "127.0.0.1:0", "--idle-timeout", "1", "--queue-size", "2000")
    total, padding = 15_000, b"x" * 1000
    payload = b"".join(b"<14>1 - h app - - - waiting %05d %s\n" % (i, padding)
                       for i in range(total))  # 15 MB: more than the socket buffers hold
    sent = threading.Event()

    def send() -> None:
        with socket.create_connection(("127.0.0.1", server.port("tcp"))) as s:
            s.sendall(payload)
        sent.set()

    with writer_stalled(dsn):
        threading.Thread(target=send, daemon=True).start()
        time.sleep(3.5)  # idle_timeout 1 s: swept every 0.25 s
        assert not sent.is_set(), "the sender was never held back"
    assert sent.wait(60)
    assert wait_for_rows(dsn, total) == total
    assert "idle for" not in server.log


def test_a_text_outside_latin_1_counts_the_bytes_it_holds() -> None:
    # One emoji makes Python keep the whole text at 4 bytes a character.
    ascii_only = Record(datetime.now(UTC), None, 1, 5, "h", None, None, None, None,
                        "x" * 10_000, "raw", "udp", None, None, None)
    with_emoji = Record(datetime.now(UTC), None, 1, 5, "h", None, None, None, None,
                        "x" * 9_999 + "\N{GRINNING FACE}", "raw", "udp", None, None, None)
    assert record_size(with_emoji) - record_size(ascii_only) >= 3 * 10_000
