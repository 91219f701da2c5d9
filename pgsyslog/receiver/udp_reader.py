"""The UDP reader process: moves datagrams from one socket into memory, nothing else.

    python -m pgsyslog.receiver.udp_reader SOCKET_FD CHANNEL_FD MAX_BYTES PARENT_PID [LEVEL_FD]

The receiver binds the socket and starts one of these per UDP listener (udp.py), so that
reading never waits behind parsing, encoding or the database: a CPU-bound event loop
would get a reader *thread* the GIL once per switch interval, and the kernel's buffer
overflows meanwhile. Each wake-up reads until the socket is empty, stamps each datagram
with its peer and receive time (one per wake-up, as a TCP read's frames share theirs),
and queues the frames in memory; they are written to the channel (a unix stream socket)
as fast as the receiver reads it. Past MAX_BYTES held (plus one datagram) the socket
is left alone (the kernel's buffer holds more, then drops and counts), so that memory
stays bounded. The bytes it holds are kept up to date in LEVEL_FD (8 bytes of shared
memory, a memfd): the receiver reads them to choose between waiting for room in its
queue and spilling to the spool.

When the receiver shuts the channel for writing (its stop), the reader empties the socket
once more, hands over everything, and exits. It exits too when the receiver is gone: the
channel reports the hang-up, a write fails, and on Linux the kernel kills it with the
parent (PR_SET_PDEATHSIG). It ignores the stop signals a terminal or a service manager
sends to the whole group: the receiver decides when it stops. It never prints a
traceback: an unexpected error is one line on stderr and exit status 1 (the receiver
starts a new reader).
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import select
import signal
import socket
import sys
import time
from collections import deque

from pgsyslog.parent import die_with_parent
from pgsyslog.receiver.udp_frames import HEADER, LEVEL, MAX_DATAGRAM, MAX_FRAME, close_frame

AREA = 1 << 20  # frames of one wake-up are gathered here, then copied out in one piece
WRITE_PIECES = 64  # buffers handed to one sendmsg
CHANNEL_BUFFER = 1 << 20  # asked for the channel's kernel buffer (capped by wmem_max)
STAMP_EVERY = 256  # datagrams of one wake-up that share a receive time


class Reader:
    def __init__(self, sock: socket.socket, channel: socket.socket, max_bytes: int,
                 level: mmap.mmap | None = None) -> None:
        self.sock = sock
        self.channel = channel
        self.max_bytes = max_bytes
        self.held: deque[memoryview] = deque()
        self.held_bytes = 0
        self.area = bytearray(AREA + MAX_FRAME)
        self.view = memoryview(self.area)
        self._hosts: dict[str, bytes] = {}
        self.level = level

    def _report(self) -> None:
        if self.level is not None:
            LEVEL.pack_into(self.level, 0, self.held_bytes)

    def read_burst(self) -> int:
        """Read until the socket is empty (or the area is full); return datagrams read."""
        recv, view, area, hosts = self.sock.recvfrom_into, self.view, self.area, self._hosts
        # One receive time per wake-up (refreshed every STAMP_EVERY datagrams), as the
        # frames of one TCP read share theirs: the parser's caches key on it.
        pos, count, stamp = 0, 0, time.time()
        header = HEADER.size
        # Held stays under max_bytes plus one frame (at least one datagram per wake-up).
        limit = max(1, min(AREA, self.max_bytes - self.held_bytes))
        while pos < limit:
            try:
                length, peer = recv(view[pos + header:pos + header + MAX_DATAGRAM])
            except (BlockingIOError, InterruptedError):
                break
            host = hosts.get(peer[0])
            if host is None:
                host = str(peer[0]).encode("ascii")
                if len(hosts) > 4096:
                    hosts.clear()
                hosts[peer[0]] = host
            pos = close_frame(area, pos, stamp, length, host, peer[1])
            count += 1
            if not count % STAMP_EVERY:
                stamp = time.time()
        if pos:
            self.held.append(memoryview(bytes(view[:pos])))
            self.held_bytes += pos
            self._report()
        return count

    def write_some(self) -> None:
        """Hand over what the channel takes now."""
        held = self.held
        while held:
            pieces = [held[i] for i in range(min(len(held), WRITE_PIECES))]
            try:
                sent = self.channel.sendmsg(pieces)
            except (BlockingIOError, InterruptedError):
                return
            self.held_bytes -= sent
            self._report()
            while sent:
                first = held[0]
                if sent >= len(first):
                    sent -= len(first)
                    held.popleft()
                else:
                    held[0] = first[sent:]
                    sent = 0

    def run(self) -> None:
        poller = select.poll()
        sock_fd, channel_fd = self.sock.fileno(), self.channel.fileno()
        reading = writing = None
        while True:
            want_read = self.held_bytes < self.max_bytes
            want_write = bool(self.held)
            if want_read != reading:
                if want_read:
                    poller.register(sock_fd, select.POLLIN)
                else:
                    poller.unregister(sock_fd)
                reading = want_read
            if want_write != writing:
                poller.register(channel_fd, select.POLLIN | (select.POLLOUT if want_write
                                                             else 0))
                writing = want_write
            for fd, events in poller.poll():
                if fd == sock_fd:
                    self.read_burst()
                    continue
                if events & (select.POLLHUP | select.POLLERR):
                    return  # the receiver is gone
                if events & select.POLLIN and not self.channel.recv(1):
                    self.finish()
                    return
                if events & select.POLLOUT:
                    self.write_some()

    def finish(self) -> None:
        """The receiver stops: empty the socket once more, hand over everything, close."""
        while self.held_bytes < self.max_bytes and self.read_burst():
            pass
        self.channel.setblocking(True)
        while self.held:
            self.write_some()
        self.channel.close()


def main(argv: list[str]) -> int:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    try:
        sock_fd, channel_fd, max_bytes, parent = (int(a) for a in argv[:4])
        die_with_parent(parent)
        level = mmap.mmap(int(argv[4]), LEVEL.size) if len(argv) > 4 else None
        sock = socket.socket(fileno=sock_fd)
        channel = socket.socket(fileno=channel_fd)
        sock.setblocking(False)
        channel.setblocking(False)
        with contextlib.suppress(OSError):
            channel.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, CHANNEL_BUFFER)
        Reader(sock, channel, max_bytes, level).run()
    except (BrokenPipeError, ConnectionResetError):
        return 0  # the receiver is gone
    except OSError as e:
        if e.errno in (errno.EPIPE, errno.ECONNRESET):
            return 0
        print(f"pgsyslog udp reader: {e.strerror or e}", file=sys.stderr, flush=True)
        return 1
    except SystemExit as e:
        return int(e.code or 0)
    except BaseException as e:  # never a traceback in front of an operator
        print(f"pgsyslog udp reader: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
