"""The channel between a UDP reader process and the receiver: its frames, and the reader
itself on real sockets (a UDP socket, a unix socketpair)."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import time

import pytest

from pgsyslog.receiver.udp_frames import (
    HEADER,
    MAX_FRAME,
    ChannelError,
    FrameReader,
    close_frame,
    frame,
)

DATAGRAMS = [
    (1764672000.123456, "192.0.2.7", 514, b"<14>1 - h app - - - one"),
    (1764672000.5, "2001:db8::1", 65535, b"<13>Nov 21 11:59:58 h app: two"),
    (1764672001.0, "fe80::1%eth0", 1, b""),  # an empty datagram, a scoped IPv6 peer
    (1764672002.0, "198.51.100.1", 40000, b"x" * 65507),  # the largest IPv4 payload
]


def test_frames_come_back_as_they_went_in() -> None:
    stream = b"".join(frame(*d) for d in DATAGRAMS)
    assert FrameReader().feed(stream) == DATAGRAMS


def test_frames_cut_anywhere_come_back_whole() -> None:
    stream = b"".join(frame(*d) for d in DATAGRAMS)
    for size in (1, 7, HEADER.size, 1000, 65536):
        reader = FrameReader()
        out = []
        for start in range(0, len(stream), size):
            out += reader.feed(stream[start:start + size])
        assert out == DATAGRAMS, size
        assert reader.buffered == 0


def test_a_frame_begun_waits_for_its_end() -> None:
    whole = frame(*DATAGRAMS[3])
    reader = FrameReader()
    assert reader.feed(whole[:-1]) == []
    assert reader.buffered == len(whole) - 1
    assert reader.feed(whole[-1:]) == [DATAGRAMS[3]]


def test_close_frame_writes_the_header_and_host_around_a_datagram_in_place() -> None:
    when, host, port, data = DATAGRAMS[1]
    buf = bytearray(MAX_FRAME * 2)
    buf[HEADER.size:HEADER.size + len(data)] = data  # as recvfrom_into puts it
    end = close_frame(buf, 0, when, len(data), host.encode(), port)
    assert bytes(buf[:end]) == frame(when, host, port, data)
    second = close_frame(buf, end, when, 0, b"::1", 9)
    assert FrameReader().feed(bytes(buf[:second])) == [DATAGRAMS[1], (when, "::1", 9, b"")]


def test_a_channel_out_of_step_is_an_error() -> None:
    with pytest.raises(ChannelError):
        FrameReader().feed(HEADER.pack(0.0, 1 << 20, 0, 0) + b"x" * 100)


# ------------------------------------------------------------------ the reader process

def start_reader(sock: socket.socket, max_bytes: int = 1 << 20
                 ) -> tuple[subprocess.Popen[bytes], socket.socket]:
    ours, theirs = socket.socketpair()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pgsyslog.receiver.udp_reader", str(sock.fileno()),
         str(theirs.fileno()), str(max_bytes), str(os.getpid())],
        pass_fds=(sock.fileno(), theirs.fileno()), stderr=subprocess.PIPE)
    theirs.close()
    return proc, ours


def ended(proc: subprocess.Popen[bytes]) -> tuple[int, bytes]:
    """The reader's exit status and what it wrote on stderr, once it has exited."""
    _, err = proc.communicate(timeout=30)
    return proc.returncode, err


def read_frames(channel: socket.socket, count: int, timeout: float = 30.0) -> list[tuple[
        float, str, int, bytes]]:
    reader, out = FrameReader(), []
    deadline = time.monotonic() + timeout
    while len(out) < count and time.monotonic() < deadline:
        if select.select([channel], [], [], 1)[0]:
            chunk = channel.recv(1 << 16)
            if not chunk:
                break
            out += reader.feed(chunk)
    return out


@pytest.mark.parametrize("family,host", [(socket.AF_INET, "127.0.0.1"),
                                         (socket.AF_INET6, "::1")])
def test_the_reader_hands_over_datagrams_with_their_peer_and_receive_time(
        family: int, host: str) -> None:
    with socket.socket(family, socket.SOCK_DGRAM) as sock, \
            socket.socket(family, socket.SOCK_DGRAM) as sender:
        sock.bind((host, 0))
        sender.bind((host, 0))
        proc, channel = start_reader(sock)
        before = time.time()
        sent = [b"<14>1 - h app - - - %d" % i for i in range(200)] + [b"y" * 65507]
        for datagram in sent:
            sender.sendto(datagram, sock.getsockname()[:2])
            time.sleep(0.0005)  # loopback drops nothing at this pace
        frames = read_frames(channel, len(sent))
        channel.close()
        assert ended(proc) == (0, b"")
        peer = (host, sender.getsockname()[1])
    assert [f[3] for f in frames] == sent
    assert {(f[1], f[2]) for f in frames} == {peer}
    assert all(before - 1 <= f[0] <= time.time() + 1 for f in frames)  # a wall clock stamp


def test_end_of_input_makes_the_reader_hand_over_everything_and_exit() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sock.bind(("127.0.0.1", 0))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        # Sent before the reader starts: in the kernel's buffer, read at its first wake-up
        # or at the end of input at the latest.
        for i in range(1000):
            sender.sendto(b"<14>1 - h app - - - %04d" % i, sock.getsockname())
        proc, channel = start_reader(sock)
        channel.shutdown(socket.SHUT_WR)
        frames = read_frames(channel, 1001)
        assert ended(proc) == (0, b"")
        channel.close()
    assert [f[3] for f in frames] == [b"<14>1 - h app - - - %04d" % i for i in range(1000)]


def test_a_reader_nobody_reads_holds_max_bytes_and_leaves_the_rest_in_the_kernel() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sock.bind(("127.0.0.1", 0))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        proc, channel = start_reader(sock, max_bytes=256 * 1024)
        datagram = b"z" * 1000
        for _ in range(2500):  # 2.5 MB: more than the reader and the channel hold
            sender.sendto(datagram, sock.getsockname())
            time.sleep(0.0001)
        time.sleep(1)  # let the reader take what it will
        queued = os.fstat(sock.fileno())  # the socket is still there, shared with the reader
        assert queued.st_ino
        with open("/proc/net/udp") as fh:
            row = next(line.split() for line in fh
                       if line.split()[9:10] == [str(queued.st_ino)])
        left_in_kernel = int(row[4].split(":")[1], 16)  # rx_queue
        assert left_in_kernel > 0
        frames = read_frames(channel, 2500)
        channel.close()
        assert ended(proc) == (0, b"")
    assert len(frames) == 2500  # nothing lost: what the reader did not hold waited
