"""Zone-less timestamps are read in the default zone, or in the zone of the sender's network."""

from __future__ import annotations

import socket
from collections.abc import Callable
from datetime import UTC, datetime
from ipaddress import ip_network
from zoneinfo import ZoneInfo

from helpers import ServerProcess, query, wait_for_rows
from pgsyslog.config import SourceZone
from pgsyslog.receiver.intake import ZoneResolver

BERLIN, NEW_YORK, TOKYO = ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York"), ZoneInfo(
    "Asia/Tokyo")


def test_most_specific_network_wins() -> None:
    resolver = ZoneResolver(TOKYO, [SourceZone(ip_network("10.1.2.0/24"), NEW_YORK),
                                    SourceZone(ip_network("10.0.0.0/8"), BERLIN)])
    assert resolver.zone_for("10.1.2.3") is NEW_YORK
    assert resolver.zone_for("10.9.9.9") is BERLIN
    assert resolver.zone_for("192.0.2.1") is TOKYO
    assert resolver.zone_for("2001:db8::1") is TOKYO
    assert resolver.zone_for(None) is TOKYO


def send_udp(port: int, line: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(line, ("127.0.0.1", port))


def test_source_zone_overrides_default_zone(serve: Callable[..., ServerProcess],
                                            dsn: str) -> None:
    now = datetime.now(UTC)
    # July: New York is on daylight saving time (UTC-4); the year is the nearest one
    year = min((now.year - 1, now.year, now.year + 1),
               key=lambda y: abs(datetime(y, 7, 4, 17, 59, 58, tzinfo=UTC) - now))
    server = serve("--udp", "127.0.0.1:0", "--default-tz", "Asia/Tokyo",
                   "--source-tz", "127.0.0.0/8=America/New_York", "--source-tz", "10.0.0.0/8=UTC")
    send_udp(server.port("udp"), b"<14>Jul  4 13:59:58 nyc-app01 cron[2044]: job done")
    send_udp(server.port("udp"), b"2026-07-04 13:59:58 billing INFO custom line")
    assert wait_for_rows(dsn, 2) == 2
    rows = dict(query(dsn, "SELECT format, event_time FROM syslog.messages"))
    expected = datetime(year, 7, 4, 17, 59, 58, tzinfo=UTC)
    assert rows["rfc3164"] == expected
    assert rows["custom"] == datetime(2026, 7, 4, 17, 59, 58, tzinfo=UTC)


def test_default_zone_applies_to_other_senders(serve: Callable[..., ServerProcess],
                                               dsn: str) -> None:
    server = serve("--udp", "127.0.0.1:0", "--default-tz", "Asia/Tokyo",
                   "--source-tz", "10.0.0.0/8=UTC")
    send_udp(server.port("udp"), b"2026-07-04 13:59:58 billing INFO custom line")
    assert wait_for_rows(dsn, 1) == 1
    assert query(dsn, "SELECT event_time FROM syslog.messages") == [
        (datetime(2026, 7, 4, 4, 59, 58, tzinfo=UTC),)]
