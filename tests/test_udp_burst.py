"""UDP bursts: a reader process per socket moves datagrams into memory, a full queue spills
to the disk spool, and nothing is lost; the reader goes when the receiver goes."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable

import pytest
from test_backpressure import writer_stalled
from test_listener_restart import send_udp

from helpers import ServerProcess, children_of, query, wait_for_rows
from inprocess import Receiving, run, wait_until

READER = b"pgsyslog.receiver.udp_reader"

# A sender in a process of its own, paced in 100 bursts a second (as bench/ingest.py).
SEND = """
import socket, sys, time
port, count, rate, tag = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
lines = [b"<14>1 - h app - - - %s %06d padding to look like a real line of syslog"
         % (tag.encode(), i) for i in range(count)]
burst = max(1, rate // 100)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
start = time.perf_counter()
for first in range(0, count, burst):
    for line in lines[first:first + burst]:
        s.sendto(line, ("127.0.0.1", port))
    ahead = start + (first + burst) / rate - time.perf_counter()
    if ahead > 0:
        time.sleep(ahead)
"""


def send_burst(port: int, count: int, rate: int, tag: str) -> None:
    subprocess.run([sys.executable, "-c", SEND, str(port), str(count), str(rate), tag],
                   check=True, timeout=300)


def metrics(server: ServerProcess) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port('http')}/metrics",
                                timeout=30) as response:
        text = response.read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name.replace('"', "")] = float(value)
    return values


def wait_for_metric(server: ServerProcess, name: str) -> float:
    """Until the metric is above 0 (60 s at most); its value."""
    deadline = time.monotonic() + 60
    while not (value := metrics(server)[name]):
        assert time.monotonic() < deadline, server.log
        time.sleep(0.1)
    return value


def kernel_udp_drops(server: ServerProcess) -> int:
    for line in reversed(server.errors):
        if match := re.search(r"stopped: .*, kernel_udp_drops=(\d+)$", line):
            return int(match.group(1))
    raise AssertionError(f"no stop line: {server.log}")


def readers_of(pid: int) -> list[int]:
    return children_of(pid, READER)


def running(pid: int) -> bool:
    """Alive, not a zombie (a zombie has exited; PID 1 of a container may never reap it)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_burst_into_a_full_queue_spills_to_the_spool_and_every_datagram_is_stored_once(
        serve: Callable[..., ServerProcess], dsn: str) -> None:
    total, tag = 20_000, "burst-spill"
    server = serve("--udp", "127.0.0.1:0", "--queue-bytes", str(1024 * 1024),
                   "--queue-size", "2000", "--batch-rows", "500")
    with writer_stalled(dsn):  # the writers hold a batch each, the queue fills
        send_burst(server.port("udp"), total, 10_000, tag)
        spilled = wait_for_metric(server, "pgsyslog_udp_spilled_total")
    assert wait_for_rows(dsn, total, timeout=180) == total
    assert server.stop() == 0
    counters = server.final_counters()
    assert query(dsn, "SELECT count(*), count(DISTINCT message) FROM syslog.messages "
                      "WHERE message LIKE %s", (f"{tag} %",)) == [(total, total)]
    assert spilled > 0 and counters["spilled"] >= spilled
    assert counters["received"] == total
    assert counters["dropped_queue_full"] == 0
    assert kernel_udp_drops(server) == 0
    assert "the queue is full: spooling UDP records to" in server.log
    assert "Traceback" not in server.log


def test_without_a_spool_a_full_queue_drops_and_counts(
        serve: Callable[..., ServerProcess], dsn: str) -> None:
    total = 20_000
    server = serve("--udp", "127.0.0.1:0", "--queue-bytes", str(1024 * 1024),
                   "--queue-size", "1000", "--batch-rows", "500", "--spool-max-bytes", "0")
    with writer_stalled(dsn):
        send_burst(server.port("udp"), total, 10_000, "no-spool")
        wait_for_metric(server, "pgsyslog_messages_dropped_total{reason=queue_full}")
    assert server.stop() == 0
    counters = server.final_counters()
    stored = query(dsn, "SELECT count(*) FROM syslog.messages")[0][0]
    assert counters["dropped_queue_full"] > 0 and counters["spilled"] == 0
    assert counters["received"] == total  # what the reader held was taken in at the stop
    assert stored == counters["written"] == total - counters["dropped_queue_full"]


def test_the_reader_process_ends_when_the_receiver_is_killed(
        serve: Callable[..., ServerProcess]) -> None:
    server = serve("--udp", "127.0.0.1:0", "--udp", "127.0.0.1:0")
    readers = readers_of(server.proc.pid)
    assert len(readers) == 2, server.log
    server.proc.kill()
    server.proc.wait(30)
    deadline = time.monotonic() + 30
    while any(running(pid) for pid in readers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(running(pid) for pid in readers)


def test_the_reader_ignores_the_stop_signal_of_its_group_and_the_stop_takes_in_all(
        serve: Callable[..., ServerProcess], dsn: str) -> None:
    """A terminal's ^C or systemd's SIGTERM reaches the whole group: the receiver stops,
    and its reader hands over what it read before it exits, without a traceback."""
    server = serve("--udp", "127.0.0.1:0")
    readers = readers_of(server.proc.pid)
    send_burst(server.port("udp"), 2_000, 20_000, "group-stop")
    for pid in readers:
        os.kill(pid, signal.SIGTERM)
    assert server.stop() == 0
    assert server.final_counters()["received"] == 2_000
    assert wait_for_rows(dsn, 2_000) == 2_000
    assert "Traceback" not in server.log and "udp reader" not in server.log


def test_a_reader_that_dies_is_started_again_on_the_same_socket(
        caplog: pytest.LogCaptureFixture) -> None:
    receiving = Receiving.make()

    async def scenario() -> None:
        listener = await receiving.udp_listener()
        assert await wait_until(lambda: listener.reader is not None)
        first = listener.reader
        assert first is not None
        os.kill(first.pid, signal.SIGKILL)
        assert await wait_until(lambda: listener.reader is not None
                                and listener.reader is not first, timeout=30)
        assert await wait_until(lambda: not receiving.state.listeners_down)
        send_udp(listener.sockname[1], b"<14>1 - h app - - - to the new reader")
        assert await wait_until(lambda: len(receiving.queue) == 1)

    with caplog.at_level(logging.ERROR):
        run(scenario(), receiving)
    assert receiving.messages() == ["to the new reader"]
    assert receiving.state.counters.listener_restarts == 1
    assert "the UDP reader process ended (killed by signal 9)" in caplog.records[0].getMessage()
    assert caplog.records[0].exc_info is None  # the message says it all: no traceback


def kernel_queue(inode: int) -> int:
    """Bytes waiting in the kernel's receive buffer of a UDP socket (rx_queue)."""
    with open("/proc/net/udp") as fh:
        for line in fh:
            fields = line.split()
            if fields[9:10] == [str(inode)]:
                return int(fields[4].split(":")[1], 16)
    raise AssertionError(f"no socket with inode {inode}")


def until_the_reader_took_all(inode: int) -> None:
    """Block (the event loop too) until the kernel holds nothing more for the reader."""
    deadline = time.monotonic() + 30
    while kernel_queue(inode) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert kernel_queue(inode) == 0


def test_the_stop_takes_in_what_the_reader_holds() -> None:
    """Datagrams the reader read while the loop was busy are queued before stop returns."""
    receiving = Receiving.make()

    async def scenario() -> None:
        listener = await receiving.udp_listener()
        assert await wait_until(lambda: listener.reader is not None)
        assert listener.reader is not None
        pid = listener.reader.pid
        send_udp(listener.sockname[1], *(b"<14>1 - h app - - - held %04d" % i
                                         for i in range(1000)))
        until_the_reader_took_all(listener.inode)  # the reader has them, the queue not yet
        await listener.stop(time.monotonic() + 30)
        assert not running(pid)

    run(scenario(), receiving)
    assert receiving.messages() == [f"held {i:04d}" for i in range(1000)]


def test_what_the_reader_holds_past_the_stops_reading_time_is_counted_lost() -> None:
    """A stop whose reading time is over takes nothing more in, and says how many
    datagrams the reader still held (lost_at_stop) instead of losing them silently."""
    receiving = Receiving.make()

    async def scenario() -> None:
        listener = await receiving.udp_listener()
        assert await wait_until(lambda: listener.reader is not None)
        send_udp(listener.sockname[1], *(b"<14>1 - h app - - - late %04d" % i
                                         for i in range(1000)))
        until_the_reader_took_all(listener.inode)  # the loop is blocked: none taken in
        await listener.stop(time.monotonic())  # the reading time is over already

    run(scenario(), receiving)
    assert receiving.messages() == []
    assert receiving.state.counters.lost_at_stop == 1000


def test_records_keep_the_time_the_reader_received_them() -> None:
    receiving = Receiving.make()

    async def scenario() -> float:
        listener = await receiving.udp_listener()
        assert await wait_until(lambda: listener.reader is not None)
        send_udp(listener.sockname[1], b"<14>1 - h app - - - stamped")
        until_the_reader_took_all(listener.inode)
        taken = time.time()  # parsed only after this: the loop was blocked until now
        assert await wait_until(lambda: len(receiving.queue) == 1)
        return taken

    taken = run(scenario(), receiving)
    assert receiving.records()[0].received_at.timestamp() <= taken


def test_the_overflow_counts_what_a_refusing_spool_drops() -> None:
    """Unit: a spool that refuses (full) turns the held records into dropped_queue_full."""
    from pgsyslog.receiver.counters import Counters
    from pgsyslog.receiver.udp import Overflow

    class Refusing:
        enabled = True
        spool = None

        async def put(self, batch: object, *, force: bool = False,
                      outage: bool = True) -> bool:
            return False

    async def scenario() -> Counters:
        counters = Counters()
        overflow = Overflow(Refusing(), counters, 10)  # type: ignore[arg-type]
        from datetime import UTC, datetime

        from pgsyslog.receiver.parsers import parse_message
        from pgsyslog.record import ParseContext
        ctx = ParseContext(datetime.now(UTC), UTC, None, "udp")
        for i in range(25):
            record = parse_message(b"<14>1 - h app - - - %d" % i, ctx)
            assert record is not None and overflow(record)
        await overflow.close()
        return counters

    counters = asyncio.run(scenario())
    assert counters.dropped_queue_full == 25 and counters.spilled == 0


def test_a_full_queue_leaves_the_burst_with_the_reader_and_drops_nothing() -> None:
    """While the reader holds less than half its share, what the queue has no room for
    waits (in the reader, the channel, the listener's last read); the listener takes it
    in as the queue empties: no spool needed, nothing dropped."""
    receiving = Receiving.make(queue_size=10)

    async def scenario() -> list[str]:
        listener = await receiving.udp_listener()
        assert await wait_until(lambda: listener.reader is not None)
        reader = listener.reader
        assert reader is not None
        send_udp(listener.sockname[1], *(b"<14>1 - h app - - - waits %03d" % i
                                         for i in range(300)))
        assert await wait_until(lambda: len(receiving.queue) == 10)  # full: the rest waits
        await asyncio.sleep(0.2)
        assert len(receiving.queue) == 10
        taken: list[str] = []
        deadline = time.monotonic() + 30
        while len(taken) < 300 and time.monotonic() < deadline:  # a writer, at last
            taken += [r.message for r in receiving.queue.take_batch()]
            await asyncio.sleep(0.01)
        return taken

    taken = run(scenario(), receiving)
    assert taken == [f"waits {i:03d}" for i in range(300)]
    assert receiving.state.counters.dropped_queue_full == 0
