"""From framed bytes to a queued record: parse, count, pick the zone of the source."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, tzinfo

from pgsyslog.config import SourceZone
from pgsyslog.receiver.counters import Counters
from pgsyslog.receiver.framing import Frame, strip_datagram_count
from pgsyslog.receiver.parsers import parse_message
from pgsyslog.receiver.queue import RecordQueue
from pgsyslog.record import ParseContext, Record, Transport


class ZoneResolver:
    """The default time zone of a sender: the most specific matching CIDR, else the default."""

    def __init__(self, default: tzinfo, overrides: Sequence[SourceZone]) -> None:
        self.default = default
        self.overrides = overrides
        self._cache: dict[str | None, tzinfo] = {}

    def zone_for(self, source_ip: str | None) -> tzinfo:
        zone = self._cache.get(source_ip)
        if zone is None:
            zone = self._lookup(source_ip)
            if len(self._cache) > 65536:  # many distinct senders: start over, stay bounded
                self._cache.clear()
            self._cache[source_ip] = zone
        return zone

    def _lookup(self, source_ip: str | None) -> tzinfo:
        if source_ip is None or not self.overrides:
            return self.default
        address = ipaddress.ip_address(source_ip)
        for override in self.overrides:
            if address.version == override.network.version and address in override.network:
                return override.zone
        return self.default


def peer_ip(peername: object) -> str | None:
    """The address part of a socket peer name; IPv4-mapped IPv6 is shown as IPv4."""
    if not isinstance(peername, tuple) or not peername:
        return None
    host = str(peername[0]).split("%", 1)[0]
    if host.startswith("::ffff:") and "." in host:
        host = host[7:]
    return host


class Intake:
    """Shared by every listener: one call per message."""

    def __init__(
        self, queue: RecordQueue, counters: Counters, zones: ZoneResolver, max_length: int
    ) -> None:
        self.queue = queue
        self.counters = counters
        self.zones = zones
        self.max_length = max_length
        # Where a UDP record goes when the queue is full (udp.Overflow: the spool); True
        # when it took the record. None, or False from it: dropped and counted.
        self.overflow: Callable[[Record], bool] | None = None

    def context(self, source_ip: str | None, transport: Transport,
                received_at: datetime | None = None) -> ParseContext:
        """One context per read: the frames of one TCP chunk share their receive time
        (now, unless ``received_at`` says when they came)."""
        return ParseContext(received_at or datetime.now(UTC),
                            self.zones.zone_for(source_ip), source_ip, transport)

    def parse(self, data: bytes, ctx: ParseContext, truncated: bool = False,
              cut: str | None = None) -> Record | None:
        """One message to a record (None when empty); ``cut`` says why its frame ended early."""
        counters = self.counters
        counters.received += 1
        if len(data) > self.max_length:
            data, truncated = data[: self.max_length], True
        record = parse_message(data, ctx)
        if record is None:
            counters.dropped_empty += 1
            return None
        by_format = counters.parsed_by_format
        by_format[record.format] = by_format.get(record.format, 0) + 1
        if truncated:
            counters.truncated += 1
            record.add_error(f"message truncated to max_frame_length ({self.max_length} bytes)",
                             data)
        if cut is not None:
            counters.cut_short += 1
            record.add_error(f"frame cut short: {cut}", data)
        if record.parse_error is not None:
            counters.parse_failed += 1
        return record

    def _count_received(self, transport: Transport, n: int) -> None:
        by_transport = self.counters.received_by_transport
        by_transport[transport] = by_transport.get(transport, 0) + n

    def put_frames(self, frames: list[Frame], source_ip: str | None,
                   transport: Transport, peer_name: str | None = None) -> None:
        """For stream transports: always queue; the caller pauses reading when full.

        ``peer_name``: the name of the TLS client's certificate, stored with each record.
        """
        if not frames:
            return
        ctx = self.context(source_ip, transport)
        self._count_received(transport, len(frames))
        parse, put = self.parse, self.queue.put
        for data, truncated, cut in frames:
            record = parse(data, ctx, truncated, cut)
            if record is not None:
                record.peer_name = peer_name
                put(record)

    def offer(self, data: bytes, source_ip: str | None,
              received_at: datetime | None = None) -> None:
        """For UDP: queue when there is room, else hand to ``overflow``, else drop and count.

        ``received_at``: the time the UDP reader process stamped (a burst may be parsed
        seconds after it arrived). A datagram framed with an octet count of its own length
        (syslog-ng's loggen) is taken without the count.
        """
        self._count_received("udp", 1)
        record = self.parse(strip_datagram_count(data),
                            self.context(source_ip, "udp", received_at))
        if record is not None and not self.queue.offer(record):
            overflow = self.overflow
            if overflow is None or not overflow(record):
                self.counters.dropped_queue_full += 1
