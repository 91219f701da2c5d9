"""Back-pressure: with the writer stalled, TCP senders block and memory stays bounded."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable

import psycopg

from helpers import ServerProcess, query, wait_for_rows
from pgsyslog.receiver.udp import kernel_drops

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
