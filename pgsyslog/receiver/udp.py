"""Syslog over UDP (RFC 5426): one datagram is one message.

The receiver binds each UDP socket (a port in use is one line of error at start) and
hands it to a reader process (udp_reader.py) that only moves datagrams, stamped with
their receive time and peer, from the socket into its memory and on through a unix
stream socket; the listener here reads that stream in large pieces and parses the
datagrams in its own time. So a burst waits in memory, not in the kernel's buffer,
however long parsing, encoding or the database take: with a CPU-bound event loop a
reader *thread* would get the GIL once per switch interval and the kernel would drop.

What is bounded: the reader holds at most ``reader_bytes`` (its share of queue_bytes,
server.py); past it, it leaves the datagrams in the kernel's buffer until the listener
catches up. When the queue is full, the listener leaves the burst with the reader
until it holds half its share; past that, records go to the disk spool
(:class:`Overflow`), the one used while the database is away, and are written when the
database catches up; only a spool that is off, full or failing drops them
(``dropped_queue_full``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mmap
import os
import site
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pgsyslog.config import Endpoint
from pgsyslog.receiver.access import AllowList, PeerLog
from pgsyslog.receiver.counters import Counters
from pgsyslog.receiver.intake import Intake, peer_ip
from pgsyslog.receiver.spooler import Spooler
from pgsyslog.receiver.supervise import ListenerLost, keep_running
from pgsyslog.receiver.udp_frames import LEVEL, Datagram, FrameReader
from pgsyslog.receiver.write_policy import Batch
from pgsyslog.record import Record

log = logging.getLogger(__name__)

READ_SIZE = 256 * 1024  # bytes taken from the reader's channel at a time
CHANNEL_BUFFER = 1 << 20  # asked for the channel's kernel buffer (capped by rmem_max)
READER_BYTES = 64 * 1024 * 1024  # what a reader holds when nobody says (tests)
REAP_WAIT = 5.0  # seconds a stopped reader is given to exit before it is killed
QUEUE_POLL = 0.02  # seconds between looks at a full queue and at what the reader holds
SPILL_AFTER = 0.5  # seconds a part batch of overflow waits before it is spooled anyway
COUNT_LOST_WAIT = 2.0  # seconds a stop reads on to count what the reader still held
SPILL_LOG_EVERY = 60.0  # seconds between the warnings that UDP records go to the spool


def set_receive_buffer(sock: socket.socket, size: int) -> int:
    """Ask for a receive buffer of size bytes; return what the kernel granted.

    SO_RCVBUFFORCE passes net.core.rmem_max when the process may (root or CAP_NET_ADMIN);
    otherwise SO_RCVBUF is capped at rmem_max, which the README explains how to raise.
    """
    force = getattr(socket, "SO_RCVBUFFORCE", None)
    try:
        if force is None:
            raise PermissionError
        sock.setsockopt(socket.SOL_SOCKET, force, size)
    except PermissionError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2  # Linux doubles it
    if granted < size:
        log.warning("UDP receive buffer is %d bytes, not the %d asked for: raise "
                    "net.core.rmem_max to avoid drops in bursts", granted, size)
    return granted


def kernel_drops(inodes: set[int], tables: tuple[str, ...] = ("/proc/net/udp",
                                                              "/proc/net/udp6")) -> int:
    """Datagrams the kernel dropped for these sockets (its buffer was full), from /proc."""
    total = 0
    for table in tables:
        try:
            with open(table) as fh:
                next(fh, None)  # header
                for line in fh:
                    fields = line.split()
                    # ... uid timeout inode ref pointer drops
                    if len(fields) >= 13 and int(fields[9]) in inodes:
                        total += int(fields[12])
        except OSError:
            continue  # not Linux, or no IPv6
    return total


class UdpSocket:
    """A bound UDP socket the receiver never reads itself (its reader process does)."""

    def __init__(self, sock: socket.socket) -> None:
        self.socket = sock
        self.sockname: tuple[Any, ...] = sock.getsockname()
        self.closed = False
        self.on_close: list[Callable[[], None]] = []

    def close(self) -> None:
        """Close it; whoever reads it (the reader process) is told to go."""
        if not self.closed:
            self.closed = True
            self.socket.close()
            for callback in self.on_close:
                callback()


def bind_socket(endpoint: Endpoint, receive_buffer: int) -> UdpSocket:
    family, _, _, _, address = socket.getaddrinfo(
        endpoint.host or None, endpoint.port, type=socket.SOCK_DGRAM,
        flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.bind(address)
        if receive_buffer:
            set_receive_buffer(sock, receive_buffer)
    except BaseException:
        sock.close()
        raise
    return UdpSocket(sock)


def shared_page() -> int | None:
    """A file descriptor of LEVEL.size bytes of memory to share with a reader (Linux)."""
    create = getattr(os, "memfd_create", None)
    if create is None:
        return None
    try:
        fd: int = create("pgsyslog-udp-reader")
        os.ftruncate(fd, LEVEL.size)
    except OSError:
        return None
    return fd


def reader_environment() -> dict[str, str]:
    """The receiver's environment; a source checkout (not installed) goes on PYTHONPATH so
    that ``-m pgsyslog.receiver.udp_reader`` finds the same code. An installed package is
    left alone: site-packages on PYTHONPATH would come before the standard library."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    installed = {str(Path(p).resolve()) for p in site.getsitepackages()}
    if root not in installed:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def exit_status(code: int | None) -> str:
    """A process's return code as the log says it."""
    if code is None:
        return "still running"
    return f"killed by signal {-code}" if code < 0 else f"exit status {code}"


class ReaderProcess:
    """The reader process of one socket and the parent's end of its channel."""

    def __init__(self, sock: socket.socket, max_bytes: int) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with contextlib.suppress(OSError):
            ours.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, CHANNEL_BUFFER)
        self.max_bytes = max_bytes
        self._level: mmap.mmap | None = None
        level_fd = shared_page()
        args, fds = [str(sock.fileno()), str(theirs.fileno()), str(max_bytes),
                     str(os.getpid())], [sock.fileno(), theirs.fileno()]
        try:
            if level_fd is not None:
                self._level = mmap.mmap(level_fd, LEVEL.size)
                args.append(str(level_fd))
                fds.append(level_fd)
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pgsyslog.receiver.udp_reader", *args],
                pass_fds=fds, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                env=reader_environment())
        except BaseException:
            ours.close()
            if self._level is not None:
                self._level.close()
            raise
        finally:
            theirs.close()
            if level_fd is not None:
                os.close(level_fd)
        ours.setblocking(False)
        self.channel = ours

    def held(self) -> int:
        """Bytes the reader holds now; max_bytes when it cannot say (no shared memory)."""
        if self._level is None:
            return self.max_bytes
        return int(LEVEL.unpack_from(self._level, 0)[0])

    @property
    def pid(self) -> int:
        return self.proc.pid

    def finish(self) -> None:
        """Ask the reader to hand over what it holds and exit (it sees end of input)."""
        with contextlib.suppress(OSError):
            self.channel.shutdown(socket.SHUT_WR)

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.kill()

    async def status(self, wait: float = 1.0) -> str:
        """How the process ended, for the log (it closed its channel: it is ending)."""
        deadline = time.monotonic() + wait
        while self.proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return exit_status(self.proc.returncode)

    async def close(self) -> int | None:
        """Close the channel and reap the process (killed if it lingers); its status."""
        self.channel.close()
        if self._level is not None:
            self._level.close()
            self._level = None
        deadline = time.monotonic() + REAP_WAIT
        while self.proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if self.proc.poll() is None:
            self.kill()
            await asyncio.to_thread(self.proc.wait)
        return self.proc.returncode


class Overflow:
    """UDP records that found the queue full: spooled in batches of ``batch_rows`` (the
    spool of database outages, replayed as soon as the database keeps up), so that a
    burst costs disk, not datagrams. Dropped, and counted in ``dropped_queue_full``, only
    when the spool is off, full or failing. Shared by the UDP listeners; one append at a
    time, and a listener pauses while a full batch waits behind it (:attr:`busy`)."""

    def __init__(self, spooler: Spooler, counters: Counters, batch_rows: int) -> None:
        self.spooler = spooler
        self.counters = counters
        self.batch_rows = batch_rows
        self._held: list[Record] = []
        self._append: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._room = asyncio.Event()
        self._room.set()
        self._warned = False
        self._logged_at = -SPILL_LOG_EVERY

    def __call__(self, record: Record) -> bool:
        """Take a record the queue refused; False: there is no spool to put it in."""
        if not self.spooler.enabled:
            return False
        held = self._held
        held.append(record)
        if len(held) >= self.batch_rows:
            self._spool_held()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(SPILL_AFTER, self._spool_held)
        return True

    @property
    def busy(self) -> bool:
        return len(self._held) >= self.batch_rows and self._append is not None

    async def room(self) -> None:
        while self.busy:
            self._room.clear()
            await self._room.wait()

    def _spool_held(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._append is not None or not self._held:
            return  # the append in flight takes these next
        batch, self._held = Batch.new(self._held[:self.batch_rows]), self._held[self.batch_rows:]
        self._append = asyncio.ensure_future(self._put(batch))

    async def _put(self, batch: Batch, force: bool = False) -> None:
        try:
            stored = await self.spooler.put(batch, force=force, outage=False)
        finally:
            self._append = None
        rows = len(batch.records)
        if stored:
            self.counters.spilled += rows
            if time.monotonic() - self._logged_at >= SPILL_LOG_EVERY:
                self._logged_at = time.monotonic()
                log.warning("the queue is full: spooling UDP records to %s (%d so far); they "
                            "are written when the database catches up",
                            self.spooler.spool and self.spooler.spool.directory,
                            self.counters.spilled)
            self._warned = False
        else:
            self.counters.dropped_queue_full += rows
            if not self._warned:
                self._warned = True
                log.error("the queue is full and the spool refused %d UDP records (full or "
                          "failing): they are dropped", rows)
        if self._held:
            self._spool_held()
        self._room.set()

    async def close(self) -> None:
        """The receiver stops: spool what is held, past spool_max_bytes (as the stop does)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._append is not None:
            await asyncio.shield(self._append)
        while self._held:
            batch = Batch.new(self._held[:self.batch_rows])
            self._held = self._held[self.batch_rows:]
            await self._put(batch, force=True)


class UdpListener:
    """One UDP socket, its reader process and the loop that takes in what it read.

    The loop restarts after an unexpected error (supervise.py): on a new reader when the
    reader ended, on a new socket bound to the same address when the old one was closed
    under it; ``listeners_down`` (the receiver's state) names it while it is down.
    Datagrams wait in the kernel meanwhile, except while there is no socket at all: the
    kernel refuses those (uncounted).
    """

    def __init__(self, stream: UdpSocket, intake: Intake, allow: AllowList,
                 listeners_down: dict[str, str] | None = None,
                 endpoint: Endpoint | None = None, receive_buffer: int = 0,
                 reader_bytes: int = READER_BYTES, overflow: Overflow | None = None) -> None:
        self.stream = stream
        self.intake = intake
        self.allow = allow
        self.listeners_down = {} if listeners_down is None else listeners_down
        bound = self.sockname
        self.endpoint = Endpoint(endpoint.host if endpoint else bound[0], bound[1])
        self.name = f"udp://{self.endpoint}"  # the key in listeners_down
        self.receive_buffer = receive_buffer
        self.reader_bytes = reader_bytes
        self.overflow = overflow
        self.reader: ReaderProcess | None = None
        self._frames = FrameReader()
        self._pending: deque[Datagram] = deque()  # read from the reader, not offered yet
        self._refusals = PeerLog(log)
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        stream.on_close.append(self._kill_reader)

    @classmethod
    async def bind(cls, endpoint: Endpoint, intake: Intake, receive_buffer: int,
                   allow: AllowList, listeners_down: dict[str, str] | None = None,
                   reader_bytes: int = READER_BYTES,
                   overflow: Overflow | None = None) -> UdpListener:
        stream = bind_socket(endpoint, receive_buffer)
        return cls(stream, intake, allow, listeners_down, endpoint, receive_buffer,
                   reader_bytes, overflow)

    @property
    def inode(self) -> int:
        return os.fstat(self.stream.socket.fileno()).st_ino

    @property
    def sockname(self) -> tuple[Any, ...]:
        return self.stream.sockname

    def start(self) -> None:
        self._task = asyncio.create_task(
            keep_running(self.name, self._serve, self.listeners_down, self.intake.counters,
                         prepare=self._prepare_restart),
            name=self.name)

    def _kill_reader(self) -> None:
        if self.reader is not None:
            self.reader.kill()

    async def _prepare_restart(self) -> None:
        """Before a restart: a new socket if ours was closed, a new reader if ours ended
        (a reader that still runs, the loop having failed on a datagram, is kept)."""
        reader = self.reader
        if reader is not None and (self.stream.closed or reader.proc.poll() is not None):
            self.reader = None
            status = await reader.close()
            log.info("%s: the UDP reader process ended (%s)", self.name, exit_status(status))
            self._frames = FrameReader()  # a frame it left half written is gone with it
        if self.stream.closed:
            self.stream = bind_socket(self.endpoint, self.receive_buffer)
            self.stream.on_close.append(self._kill_reader)
            log.info("%s: listening again on a new socket", self.name)

    async def _serve(self) -> None:
        if self.reader is None:
            if self.stream.closed:
                raise SocketLost("the socket was closed under the receive loop")
            self.reader = ReaderProcess(self.stream.socket, self.reader_bytes)
        channel = self.reader.channel
        loop = asyncio.get_running_loop()
        overflow = self.overflow
        reader = self.reader
        while True:
            self._offer_pending(reader)
            if overflow is not None and overflow.busy:
                await overflow.room()
            await self._while_queue_full(reader)
            if self._pending:
                continue  # what was read first
            try:
                data = await loop.sock_recv(channel, READ_SIZE)
            except OSError:
                data = b""
            if not data:
                if self._stopping:
                    return
                if self.stream.closed:
                    raise SocketLost("the socket was closed under the receive loop")
                raise ReaderLost(f"the UDP reader process ended "
                                 f"({await reader.status()})")
            self._pending.extend(self._frames.feed(data))

    async def _while_queue_full(self, reader: ReaderProcess) -> None:
        """While the queue is full, leave the burst with the reader (raw datagrams: five
        times smaller than records, and not parsed twice) until it holds half its share;
        past that, go on, and what the queue refuses is spilled to the spool. Not at the
        stop: all the reader holds is taken in then."""
        full = self.intake.queue.full
        while full() and self._may_wait(reader):
            await asyncio.sleep(QUEUE_POLL)

    def _may_wait(self, reader: ReaderProcess) -> bool:
        return not self._stopping and reader.held() < reader.max_bytes // 2

    def _offer_pending(self, reader: ReaderProcess) -> None:
        """Offer what was read, one datagram at a time, until the queue is full while the
        reader may keep the rest (:meth:`_while_queue_full`). A datagram that makes the
        intake fail is taken off first, so that a restart goes on with the next."""
        pending, offer, allows = self._pending, self.intake.offer, self.allow.allows
        counters, full = self.intake.counters, self.intake.queue.full
        from_timestamp, stamp, received_at = datetime.fromtimestamp, -1.0, None
        while pending:
            if full() and self._may_wait(reader):
                return
            when, host, port, data = pending.popleft()
            if when != stamp or received_at is None:  # one per wake-up of the reader
                stamp, received_at = when, from_timestamp(when, UTC)
            source = peer_ip((host, port))
            if allows(source):
                offer(data, source, received_at)
            else:
                counters.dropped_not_allowed += 1
                self._refusals.warning(source, "dropping UDP from %s: not in udp_allow", source)

    async def stop(self, deadline: float) -> None:
        """Take in what the reader read (until ``deadline``, monotonic), then close."""
        self._stopping = True
        reader, task = self.reader, self._task
        if reader is not None:
            reader.finish()  # hand over everything, then exit
        if reader is not None and task is not None and not task.done() \
                and deadline > time.monotonic():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task),
                                       max(0.0, deadline - time.monotonic()))
        handed_over = task is None or task.done()
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if reader is not None and not handed_over:
            await self._count_what_is_lost(reader)
        if self.reader is not None:
            self.reader.kill()
            await self.reader.close()
            self.reader = None
        self.stream.on_close.clear()
        self.stream.close()


    async def _count_what_is_lost(self, reader: ReaderProcess) -> None:
        """The stop's reading time is over before the reader handed over all it read:
        count the datagrams not taken in (lost_at_stop), reading the rest of the channel
        without parsing it, for COUNT_LOST_WAIT at most."""
        lost = len(self._pending)
        self._pending.clear()
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + COUNT_LOST_WAIT
        ended = False
        while not ended and time.monotonic() < deadline:
            try:
                data = await asyncio.wait_for(loop.sock_recv(reader.channel, READ_SIZE),
                                              max(0.0, deadline - time.monotonic()))
            except (TimeoutError, OSError):
                break
            ended = not data
            lost += len(self._frames.feed(data))
        if not lost:
            return
        self.intake.counters.lost_at_stop += lost
        log.warning("%s: the stop's reading time ran out before the UDP reader handed over "
                    "all it had read: %s%d datagrams lost (counted in lost_at_stop)",
                    self.name, "" if ended else "at least ", lost)


class SocketLost(ListenerLost):
    """The UDP socket was closed by something other than the receiver's stop."""


class ReaderLost(ListenerLost):
    """The reader process of a UDP socket ended by something other than the stop."""
