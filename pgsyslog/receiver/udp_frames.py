"""The channel from a UDP reader process to the receiver: datagrams with their receive
time and peer, framed on a unix stream socket.

A frame is a header (little-endian: receive time as float seconds since the epoch, the
datagram's length u32, the peer's port u16, the length of the peer's host u8), the
datagram, then the peer's host as ASCII text (what recvfrom gives, IPv6 scope included).
The host comes last so that the reader can receive a datagram straight into its place
(recvfrom_into) and write the header around it once it knows the peer.
"""

from __future__ import annotations

import struct

HEADER = struct.Struct("<dIHB")
LEVEL = struct.Struct("<Q")  # the bytes a reader holds, in a page it shares with the receiver
MAX_DATAGRAM = 65535  # a UDP length field's limit (IPv4 payloads stop at 65507)
MAX_HOST = 255
MAX_FRAME = HEADER.size + MAX_DATAGRAM + MAX_HOST

# (receive time, peer host, peer port, datagram)
Datagram = tuple[float, str, int, bytes]


class ChannelError(Exception):
    """The channel holds something that is not a frame: a bug, never the network's doing."""


def frame(when: float, host: str, port: int, data: bytes) -> bytes:
    """One frame (the reader writes them in place with :func:`close_frame`)."""
    encoded = host.encode("ascii")
    return HEADER.pack(when, len(data), port, len(encoded)) + data + encoded


def close_frame(buf: bytearray, start: int, when: float, length: int, host: bytes,
                port: int) -> int:
    """The datagram of ``length`` bytes is in ``buf`` after the header's room at ``start``:
    write the header and the host around it; return where the next frame starts."""
    end = start + HEADER.size + length
    HEADER.pack_into(buf, start, when, length, port, len(host))
    buf[end:end + len(host)] = host
    return end + len(host)


class FrameReader:
    """Frames from the chunks a stream socket hands out, cut anywhere."""

    def __init__(self) -> None:
        self._rest = b""
        self._hosts: dict[bytes, str] = {}

    @property
    def buffered(self) -> int:
        """Bytes of a frame begun but not finished."""
        return len(self._rest)

    def feed(self, chunk: bytes) -> list[Datagram]:
        data = self._rest + chunk if self._rest else chunk
        out: list[Datagram] = []
        append, unpack, size = out.append, HEADER.unpack_from, HEADER.size
        hosts = self._hosts
        pos, end = 0, len(data)
        while end - pos >= size:
            when, length, port, host_length = unpack(data, pos)
            if length > MAX_DATAGRAM:
                raise ChannelError(f"a frame of {length} bytes: the channel is out of step")
            body = pos + size
            host_at = body + length
            after = host_at + host_length
            if after > end:
                break
            raw_host = data[host_at:after]
            host = hosts.get(raw_host)
            if host is None:
                host = raw_host.decode("ascii")
                if len(hosts) > 4096:  # many distinct senders: start over, stay bounded
                    hosts.clear()
                hosts[raw_host] = host
            append((when, host, port, data[body:host_at]))
            pos = after
        self._rest = data[pos:]
        return out
