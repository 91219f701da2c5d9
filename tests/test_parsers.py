"""The parsers against real captures, named after their sender, with every field exact.

The captures are anonymised (documentation addresses, made-up hosts) but keep the shape
each sender really produces. Context: received 2026-11-21 12:00:00 UTC over UDP from
192.0.2.50, default zone UTC, unless a test says otherwise.
"""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from pgsyslog.receiver.parsers import parse_message
from pgsyslog.record import ParseContext, Record

RECEIVED = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
PEER = "192.0.2.50"


def parse(
    line: str | bytes, tz: str = "UTC", fmt: Any = "auto", received_at: datetime = RECEIVED
) -> Record:
    data = line.encode() if isinstance(line, str) else line
    record = parse_message(data, ParseContext(received_at, ZoneInfo(tz), PEER, "udp"), fmt)
    assert record is not None
    return record


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def fields(
    format: str,
    pri: int,
    message: str,
    *,
    time: str | None = None,
    host: str | None = PEER,
    app: str | None = None,
    procid: str | None = None,
    msgid: str | None = None,
    sd: dict[str, Any] | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    facility, severity = divmod(pri, 8)
    return {
        "format": format,
        "facility": facility,
        "severity": severity,
        "event_time": None if time is None else at(time),
        "hostname": host,
        "app_name": app,
        "procid": procid,
        "msgid": msgid,
        "structured_data": sd,
        "message": message,
        "parse_error": error,
    }


def assert_record(record: Record, expected: dict[str, Any]) -> None:
    assert {name: getattr(record, name) for name in expected} == expected
    assert (record.received_at, record.transport, record.source_ip) == (RECEIVED, "udp", PEER)
    assert (record.raw is None) == (record.parse_error is None)


RFC5424_SENDERS = [
    pytest.param(
        "<30>1 2026-11-21T12:59:58.412193+01:00 app03 systemd 1 - - Started Daily apt download"
        " activities.",
        fields(
            "rfc5424", 30, "Started Daily apt download activities.",
            time="2026-11-21T11:59:58.412193Z", host="app03", app="systemd", procid="1",
        ),
        id="rsyslog_syslog_protocol23_format",
    ),
    pytest.param(
        "<29>1 2026-11-21T11:59:58.123456+00:00 web01 payments 31337 - -  relayed from 3164\n",
        fields(
            "rfc5424", 29, "relayed from 3164",
            time="2026-11-21T11:59:58.123456Z", host="web01", app="payments", procid="31337",
        ),
        id="rsyslog_syslog_protocol23_format_of_a_3164_message_two_spaces",
    ),
    pytest.param(
        '<78>1 2026-11-21T11:59:58+00:00 cron01 CROND 31337 - [meta sequenceId="42"'
        ' sysUpTime="1234"] (root) CMD (run-parts /etc/cron.hourly)',
        fields(
            "rfc5424", 78, "(root) CMD (run-parts /etc/cron.hourly)",
            time="2026-11-21T11:59:58Z", host="cron01", app="CROND", procid="31337",
            sd={"meta": {"sequenceId": "42", "sysUpTime": "1234"}},
        ),
        id="syslog_ng_syslog_driver_ietf",
    ),
    pytest.param(
        '<14>1 2026-11-21T11:59:58.421Z srx-fw01 RT_FLOW - RT_FLOW_SESSION_DENY'
        ' [junos@2636.1.1.1.2.129 source-address="198.51.100.7" source-port="51514"'
        ' destination-address="10.0.0.1" destination-port="22" service-name="junos-ssh"'
        ' policy-name="deny-all" source-zone-name="untrust"] session denied'
        " 198.51.100.7/51514->10.0.0.1/22 junos-ssh 6(0) deny-all untrust trust",
        fields(
            "rfc5424", 14,
            "session denied 198.51.100.7/51514->10.0.0.1/22 junos-ssh 6(0) deny-all untrust trust",
            time="2026-11-21T11:59:58.421Z", host="srx-fw01", app="RT_FLOW",
            msgid="RT_FLOW_SESSION_DENY",
            sd={"junos@2636.1.1.1.2.129": {
                "source-address": "198.51.100.7", "source-port": "51514",
                "destination-address": "10.0.0.1", "destination-port": "22",
                "service-name": "junos-ssh", "policy-name": "deny-all",
                "source-zone-name": "untrust",
            }},
        ),
        id="juniper_srx_structured_syslog",
    ),
    pytest.param(
        '<30>1 2026-11-21T11:59:58.123456+00:00 server01 systemd 1 - [timeQuality tzKnown="1"'
        ' isSynced="1" syncAccuracy="215000"] Started Session 42 of User alice.',
        fields(
            "rfc5424", 30, "Started Session 42 of User alice.",
            time="2026-11-21T11:59:58.123456Z", host="server01", app="systemd", procid="1",
            sd={"timeQuality": {"tzKnown": "1", "isSynced": "1", "syncAccuracy": "215000"}},
        ),
        id="systemd_journal_netlogd",
    ),
    pytest.param(
        '<14>1 2026-11-21T12:59:58.123456+01:00 WIN-DC01 Microsoft-Windows-Security-Auditing'
        ' 636 - [NXLOG@14506 EventReceivedTime="2026-11-21 12:59:59"'
        ' SourceModuleName="eventlog" SourceModuleType="im_msvistalog" EventID="4624"]'
        " An account was successfully logged on.",
        fields(
            "rfc5424", 14, "An account was successfully logged on.",
            time="2026-11-21T11:59:58.123456Z", host="WIN-DC01",
            app="Microsoft-Windows-Security-Auditing", procid="636",
            sd={"NXLOG@14506": {
                "EventReceivedTime": "2026-11-21 12:59:59", "SourceModuleName": "eventlog",
                "SourceModuleType": "im_msvistalog", "EventID": "4624",
            }},
        ),
        id="windows_nxlog_to_syslog_ietf",
    ),
    pytest.param(
        '<13>1 2026-11-21T11:59:58.123456+00:00 myhost alice - - [timeQuality tzKnown="1"'
        ' isSynced="1" syncAccuracy="123"] test message',
        fields(
            "rfc5424", 13, "test message",
            time="2026-11-21T11:59:58.123456Z", host="myhost", app="alice",
            sd={"timeQuality": {"tzKnown": "1", "isSynced": "1", "syncAccuracy": "123"}},
        ),
        id="util_linux_logger_rfc5424",
    ),
    pytest.param(
        "<134>1 2026-11-21T12:59:58.123456+01:00 pfsense.home.arpa filterlog 7044 - -"
        " 84,,,1000102433,em0,match,pass,out,4,0x0,,64,0,0,DF,17,udp,76,192.168.1.1,"
        "203.0.113.123,123,123,56",
        fields(
            "rfc5424", 134,
            "84,,,1000102433,em0,match,pass,out,4,0x0,,64,0,0,DF,17,udp,76,192.168.1.1,"
            "203.0.113.123,123,123,56",
            time="2026-11-21T11:59:58.123456Z", host="pfsense.home.arpa", app="filterlog",
            procid="7044",
        ),
        id="pfsense_filterlog_rfc5424",
    ),
]  # fmt: skip

RFC3164_SENDERS = [
    pytest.param(
        "<30>2026-11-21T11:59:58.412193+00:00 app03 systemd[1]: Started Session 42 of User"
        " alice.",
        fields(
            "rfc3164", 30, "Started Session 42 of User alice.",
            time="2026-11-21T11:59:58.412193Z", host="app03", app="systemd", procid="1",
        ),
        id="rsyslog_forward_format",
    ),
    pytest.param(
        "<13>Nov 21 11:59:58 app03 alice: hello from logger",
        fields("rfc3164", 13, "hello from logger", time="2026-11-21T11:59:58Z", host="app03",
               app="alice"),
        id="rsyslog_traditional_forward_format",
    ),
    pytest.param(
        "<13>Nov 21 11:59:58 alice: logged on the local socket",
        fields("rfc3164", 13, "logged on the local socket", time="2026-11-21T11:59:58Z",
               app="alice"),
        id="util_linux_logger_dev_log_no_hostname",
    ),
    pytest.param(
        "<22>Nov 21 11:59:58 mail01 postfix/smtpd[2877]: connect from unknown[203.0.113.9]",
        fields("rfc3164", 22, "connect from unknown[203.0.113.9]", time="2026-11-21T11:59:58Z",
               host="mail01", app="postfix/smtpd", procid="2877"),
        id="syslog_ng_bsd_postfix",
    ),
    pytest.param(
        "<30>Nov 21 11:59:58 server01 systemd[1]: Starting Cleanup of Temporary Directories...",
        fields("rfc3164", 30, "Starting Cleanup of Temporary Directories...",
               time="2026-11-21T11:59:58Z", host="server01", app="systemd", procid="1"),
        id="systemd_journal_forward_to_syslog",
    ),
    pytest.param(
        "<6>Nov 21 11:59:58 server01 kernel: [ 1234.567890] EXT4-fs (sda1): mounted filesystem"
        " with ordered data mode. Opts: (null)",
        fields("rfc3164", 6, "[ 1234.567890] EXT4-fs (sda1): mounted filesystem with ordered"
               " data mode. Opts: (null)", time="2026-11-21T11:59:58Z", host="server01",
               app="kernel"),
        id="linux_kernel",
    ),
    pytest.param(
        "<3>Nov 21 11:59:58 db01 kernel: Out of memory: Killed process 4242 (postgres)"
        " total-vm:8388608kB",
        fields("rfc3164", 3, "Out of memory: Killed process 4242 (postgres) total-vm:8388608kB",
               time="2026-11-21T11:59:58Z", host="db01", app="kernel"),
        id="linux_kernel_oom",
    ),
    pytest.param(
        "<28>Nov 21 11:59:58 mx01 mgd[4321]: UI_COMMIT: User 'admin' requested 'commit'"
        " operation (comment: none)",
        fields("rfc3164", 28, "UI_COMMIT: User 'admin' requested 'commit' operation"
               " (comment: none)", time="2026-11-21T11:59:58Z", host="mx01", app="mgd",
               procid="4321"),
        id="juniper_junos_bsd",
    ),
    pytest.param(
        "<189>57: *Mar  1 00:03:26.711: %LINEPROTO-5-UPDOWN: Line protocol on Interface Vlan1,"
        " changed state to up",
        fields("rfc3164", 189, "57: *Mar  1 00:03:26.711: %LINEPROTO-5-UPDOWN: Line protocol"
               " on Interface Vlan1, changed state to up"),
        id="cisco_ios_seqno_clock_not_set",
    ),
    pytest.param(
        "<187>88: .Nov 21 11:59:58.500: %LINK-3-UPDOWN: Interface GigabitEthernet0/1, changed"
        " state to down",
        fields("rfc3164", 187, "88: .Nov 21 11:59:58.500: %LINK-3-UPDOWN: Interface"
               " GigabitEthernet0/1, changed state to down", time="2026-11-21T11:59:58.5Z"),
        id="cisco_ios_seqno_clock_not_synchronised",
    ),
    pytest.param(
        "<189>1234: rtr-core-01: Nov 21 12:59:58.123 CET: %SYS-5-CONFIG_I: Configured from"
        " console by admin on vty0 (10.0.0.5)",
        fields("rfc3164", 189, "1234: rtr-core-01: Nov 21 12:59:58.123 CET: %SYS-5-CONFIG_I:"
               " Configured from console by admin on vty0 (10.0.0.5)",
               time="2026-11-21T11:59:58.123Z", host="rtr-core-01"),
        id="cisco_ios_origin_id_show_timezone",
    ),
    pytest.param(
        "<189>Nov 21 11:59:58.123: %SYS-5-RESTART: System restarted --",
        fields("rfc3164", 189, "Nov 21 11:59:58.123: %SYS-5-RESTART: System restarted --",
               time="2026-11-21T11:59:58.123Z"),
        id="cisco_ios_no_seqno",
    ),
    pytest.param(
        "<189>4711: %SYS-5-CONFIG_I: Configured from console by vty0",
        fields("rfc3164", 189, "4711: %SYS-5-CONFIG_I: Configured from console by vty0"),
        id="cisco_ios_seqno_no_timestamps",
    ),
    pytest.param(
        "<189>2026 Nov 21 11:59:58 UTC: %ETHPORT-5-IF_UP: Interface Ethernet1/1 is up in mode"
        " access",
        fields("rfc3164", 189, "2026 Nov 21 11:59:58 UTC: %ETHPORT-5-IF_UP: Interface"
               " Ethernet1/1 is up in mode access", time="2026-11-21T11:59:58Z"),
        id="cisco_nxos",
    ),
    pytest.param(
        "<166>%ASA-6-302013: Built outbound TCP connection 1234 for outside:203.0.113.7/443"
        " (203.0.113.7/443) to inside:10.1.2.3/51514 (198.51.100.2/40211)",
        fields("rfc3164", 166, "Built outbound TCP connection 1234 for outside:203.0.113.7/443"
               " (203.0.113.7/443) to inside:10.1.2.3/51514 (198.51.100.2/40211)",
               app="%ASA-6-302013"),
        id="cisco_asa_default",
    ),
    pytest.param(
        "<166>Nov 21 2026 11:59:58: %ASA-6-302014: Teardown TCP connection 1234 for"
        " outside:203.0.113.7/443 to inside:10.1.2.3/51514 duration 0:00:30 bytes 5120 TCP FINs",
        fields("rfc3164", 166, "Nov 21 2026 11:59:58: %ASA-6-302014: Teardown TCP connection"
               " 1234 for outside:203.0.113.7/443 to inside:10.1.2.3/51514 duration 0:00:30"
               " bytes 5120 TCP FINs", time="2026-11-21T11:59:58Z"),
        id="cisco_asa_logging_timestamp",
    ),
    pytest.param(
        '<164>Nov 21 2026 11:59:58 asa-fw01 : %ASA-4-106023: Deny tcp src'
        ' outside:198.51.100.7/51514 dst inside:10.0.0.1/22 by access-group "outside_in"'
        " [0x0, 0x0]",
        fields("rfc3164", 164, 'Deny tcp src outside:198.51.100.7/51514 dst inside:10.0.0.1/22'
               ' by access-group "outside_in" [0x0, 0x0]', time="2026-11-21T11:59:58Z",
               host="asa-fw01", app="%ASA-4-106023"),
        id="cisco_asa_device_id_hostname",
    ),
    pytest.param(
        '<185>date=2026-11-21 time=11:59:58 devname="FG100E" devid="FG100E4Q17000001"'
        ' logid="0100032001" type="event" subtype="system" level="alert" vd="root"'
        ' logdesc="Admin login failed" user="admin" srcip=198.51.100.7 action="login"'
        ' status="failed"',
        fields("rfc3164", 185, 'date=2026-11-21 time=11:59:58 devname="FG100E"'
               ' devid="FG100E4Q17000001" logid="0100032001" type="event" subtype="system"'
               ' level="alert" vd="root" logdesc="Admin login failed" user="admin"'
               ' srcip=198.51.100.7 action="login" status="failed"'),
        id="fortigate_kv",
    ),
    pytest.param(
        "<134>Nov 21 11:59:58 filterlog[7044]: 84,,,1000102433,em0,match,pass,out,4,0x0,,64,0,"
        "0,DF,17,udp,76,192.168.1.1,203.0.113.123,123,123,56",
        fields("rfc3164", 134, "84,,,1000102433,em0,match,pass,out,4,0x0,,64,0,0,DF,17,udp,76,"
               "192.168.1.1,203.0.113.123,123,123,56", time="2026-11-21T11:59:58Z",
               app="filterlog", procid="7044"),
        id="pfsense_filterlog_bsd",
    ),
    pytest.param(
        "<4>Nov 21 11:59:58 ubnt-er4 kernel: [WAN_IN-10-D]IN=eth0 OUT=eth1"
        " SRC=198.51.100.77 DST=10.0.0.20 LEN=60 PROTO=TCP SPT=51234 DPT=3389 SYN URGP=0",
        fields("rfc3164", 4, "[WAN_IN-10-D]IN=eth0 OUT=eth1 SRC=198.51.100.77 DST=10.0.0.20"
               " LEN=60 PROTO=TCP SPT=51234 DPT=3389 SYN URGP=0", time="2026-11-21T11:59:58Z",
               host="ubnt-er4", app="kernel"),
        id="ubiquiti_edgerouter_firewall",
    ),
    pytest.param(
        # UniFi APs put "model,mac,version:" where the hostname goes: a TAG by rule 4.
        "<30>Nov 21 11:59:58 U7PG2,802aa8d0c1b2,v4.3.28.11361: hostapd: ath0: STA"
        " 44:85:00:aa:bb:cc IEEE 802.11: associated",
        fields("rfc3164", 30, "hostapd: ath0: STA 44:85:00:aa:bb:cc IEEE 802.11: associated",
               time="2026-11-21T11:59:58Z", app="U7PG2,802aa8d0c1b2,v4.3.28.11361"),
        id="ubiquiti_unifi_ap",
    ),
    pytest.param(
        "<13>Nov 21 11:59:58 WIN-FS02 Microsoft-Windows-Security-Auditing[4]: A network share"
        " object was accessed.\tSubject:\t\tSecurity ID:\t\tS-1-5-21-1111",
        fields("rfc3164", 13, "A network share object was accessed.\tSubject:\t\tSecurity"
               " ID:\t\tS-1-5-21-1111", time="2026-11-21T11:59:58Z", host="WIN-FS02",
               app="Microsoft-Windows-Security-Auditing", procid="4"),
        id="windows_nxlog_to_syslog_bsd",
    ),
    pytest.param(
        "Nov 21 11:59:58 web03 nginx[811]: 2026/11/21 11:59:58 [error] 811#811: *1 open()"
        ' "/srv/www/favicon.ico" failed (2: No such file or directory)',
        fields("rfc3164", 13, '2026/11/21 11:59:58 [error] 811#811: *1 open()'
               ' "/srv/www/favicon.ico" failed (2: No such file or directory)',
               time="2026-11-21T11:59:58Z", host="web03", app="nginx", procid="811"),
        id="syslog_file_line_without_pri",
    ),
]  # fmt: skip

CUSTOM_SENDERS = [
    pytest.param(
        "2026-11-21 11:59:58,123 billing WARNING retrying charge for invoice 551",
        fields("custom", 13, "retrying charge for invoice 551", time="2026-11-21T11:59:58.123Z",
               app="billing") | {"severity": 4},
        id="python_logging",
    ),
    pytest.param(
        '2026-11-21T11:59:58.123456789Z api-gateway error upstream timed out {"ms":30000}',
        fields("custom", 11, 'upstream timed out {"ms":30000}',
               time="2026-11-21T11:59:58.123456Z", app="api-gateway"),
        id="go_zap_nanoseconds",
    ),
    pytest.param(
        "2026-11-21T12:59:58+0100 worker Info job 17 done",
        fields("custom", 14, "job 17 done", time="2026-11-21T11:59:58Z", app="worker"),
        id="java_logback_offset_without_colon",
    ),
    pytest.param(
        "2026-11-21 11:59:58,123 billing INFO     charged invoice 551",
        fields("custom", 14, "charged invoice 551", time="2026-11-21T11:59:58.123Z",
               app="billing"),
        id="python_logging_padded_levelname",
    ),
    pytest.param(
        "2026-11-21T11:59:58Z svc CRITICAL",
        fields("custom", 10, "", time="2026-11-21T11:59:58Z", app="svc"),
        id="severity_without_message",
    ),
]  # fmt: skip

RAW_SENDERS = [
    pytest.param(
        '{"level":"info","ts":1795780798.123,"msg":"hello"}',
        fields("raw", 13, '{"level":"info","ts":1795780798.123,"msg":"hello"}',
               error="no PRI, no RFC 3164 header and not the custom format"),
        id="json_lines_without_pri",
    ),
    pytest.param(
        "<1911>Nov 21 11:59:58 host app: four digits",
        fields("raw", 13, "<1911>Nov 21 11:59:58 host app: four digits",
               error="invalid PRI '<1911>': must be 1-3 digits with a value of 0-191"),
        id="pri_with_four_digits",
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("line", "expected"), RFC5424_SENDERS + RFC3164_SENDERS + CUSTOM_SENDERS + RAW_SENDERS
)
def test_real_captures(line: str, expected: dict[str, Any]) -> None:
    assert_record(parse(line), expected)


@pytest.mark.parametrize("pri", ["<0>", "<00>", "<000>", "<7>", "<013>", "<13>", "<191>", "<099>"])
def test_valid_pri(pri: str) -> None:
    value = int(pri[1:-1])
    record = parse(f"{pri}Nov 21 11:59:58 host app: text")
    assert (record.format, record.facility, record.severity) == ("rfc3164", *divmod(value, 8))


@pytest.mark.parametrize(
    "pri", ["<192>", "<999>", "<1910>", "<-1>", "< 13>", "<1 3>", "<+13>", "<١٣>", "<>", "<13"]
)
def test_invalid_pri_is_raw_with_the_whole_text(pri: str) -> None:
    line = f"{pri}Nov 21 11:59:58 host app: text"
    record = parse(line)
    assert (record.format, record.facility, record.severity, record.message) == (
        "raw", 1, 5, line,
    )  # fmt: skip
    assert record.parse_error is not None and "PRI" in record.parse_error
    assert record.raw == line.encode()


def test_no_hostname_gives_the_peer_and_the_parse_context_is_copied() -> None:
    record = parse("<13>Nov 21 11:59:58 sshd[1]: hi")
    assert (record.hostname, record.source_ip, record.transport) == (PEER, PEER, "udp")
    assert record.received_at is RECEIVED


@pytest.mark.parametrize(
    ("received_at", "stamp", "expected"),
    [
        ("2026-01-01T00:00:30", "Dec 31 23:59:50", "2025-12-31T23:59:50"),
        ("2026-12-31T23:59:00", "Jan  1 00:00:10", "2027-01-01T00:00:10"),
        ("2026-11-21T12:00:00", "Feb  5 17:32:18", "2027-02-05T17:32:18"),
        ("2026-11-21T12:00:00", "May 22 12:00:00", "2026-05-22T12:00:00"),
        ("2026-11-21T12:00:00", "May 20 12:00:00", "2027-05-20T12:00:00"),
        ("2028-03-01T00:00:00", "Feb 29 10:00:00", "2028-02-29T10:00:00"),
        ("2027-01-10T00:00:00", "Feb 29 10:00:00", "2028-02-29T10:00:00"),
        ("2026-11-21T12:00:00", "Nov 21 2019 11:59:58", "2019-11-21T11:59:58"),
    ],
)
def test_year_is_the_nearest_to_received_at(received_at: str, stamp: str, expected: str) -> None:
    received = datetime.fromisoformat(received_at).replace(tzinfo=UTC)
    record = parse(f"<13>{stamp} host app: x", received_at=received)
    assert record.event_time == at(expected + "Z")


def test_a_header_read_before_is_read_again_for_another_context() -> None:
    """Repeated headers are read once per context (rfc3164._header_time): the same text
    under another receive time or zone is another time."""
    line = "<13>Dec 31 23:59:50 host app: x"
    in_january = datetime(2027, 1, 1, 0, 0, 30, tzinfo=UTC)
    in_june = datetime(2026, 6, 1, tzinfo=UTC)
    assert parse(line, received_at=in_january).event_time == at("2026-12-31T23:59:50Z")
    assert parse(line, received_at=in_january).event_time == at("2026-12-31T23:59:50Z")
    assert parse(line, received_at=in_june).event_time == at("2025-12-31T23:59:50Z")
    assert parse(line, "Europe/Berlin", received_at=in_june).event_time == at(
        "2025-12-31T22:59:50Z")
    assert parse(line, received_at=in_january).event_time == at("2026-12-31T23:59:50Z")


@pytest.mark.parametrize(
    ("tz", "stamp", "expected"),
    [
        ("Europe/Berlin", "Nov 21 12:59:58", "2026-11-21T11:59:58Z"),
        ("Europe/Berlin", "Jul  4 13:59:58", "2026-07-04T11:59:58Z"),
        ("America/New_York", "Jul  4 13:59:58", "2026-07-04T17:59:58Z"),
        ("America/New_York", "Nov 21 06:59:58", "2026-11-21T11:59:58Z"),
        ("Asia/Kolkata", "Nov 21 17:29:58", "2026-11-21T11:59:58Z"),
        # Clocks go back at 03:00 CEST on 25 Oct 2026: 02:30 happens twice, the first counts.
        ("Europe/Berlin", "Oct 25 02:30:00", "2026-10-25T00:30:00Z"),
        # Clocks go forward at 02:00 CET on 29 Mar 2026: 02:30 does not exist, read as CET.
        ("Europe/Berlin", "Mar 29 2026 02:30:00", "2026-03-29T01:30:00Z"),
        # An offset or a zone the message states wins over the default zone.
        ("Europe/Berlin", "2026-11-21T11:59:58Z", "2026-11-21T11:59:58Z"),
        ("Europe/Berlin", "2026-11-21 12:59:58", "2026-11-21T11:59:58Z"),
    ],
)
def test_zoneless_times_are_read_in_the_default_zone(tz: str, stamp: str, expected: str) -> None:
    assert parse(f"<13>{stamp} host app: x", tz=tz).event_time == at(expected)


def test_cisco_zone_abbreviation_wins_over_the_default_zone() -> None:
    line = "<190>3942: Nov 21 11:59:58.004 UTC: %SEC-6-IPACCESSLOGP: list 101 denied tcp"
    assert parse(line, tz="Europe/Berlin").event_time == at("2026-11-21T11:59:58.004Z")


@pytest.mark.parametrize(
    "line",
    [
        "<13>Feb 30 11:59:58 host app: no such day",
        "<13>Nov 21 25:61:61 host app: no such time",
        "<13>2026-13-45T25:61:61Z host app: no such day",
    ],
)
def test_impossible_bsd_time_is_an_error_but_the_rest_is_parsed(line: str) -> None:
    record = parse(line)
    assert (record.format, record.event_time, record.hostname, record.app_name) == (
        "rfc3164", None, "host", "app",
    )  # fmt: skip
    assert record.parse_error is not None and "timestamp" in record.parse_error
    assert record.message.startswith("no such")


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        ("2026-11-21T11:59:58Z", "2026-11-21T11:59:58Z"),
        ("2026-11-21t11:59:58z", "2026-11-21T11:59:58Z"),
        ("2026-11-21T11:59:58.123456789Z", "2026-11-21T11:59:58.123456Z"),
        ("2026-11-21T23:59:58-12:00", "2026-11-22T11:59:58Z"),
        ("2016-12-31T23:59:60Z", "2016-12-31T23:59:59Z"),  # a leap second is kept as :59
    ],
)
def test_rfc5424_timestamps(stamp: str, expected: str) -> None:
    record = parse(f"<13>1 {stamp} host app - - - x")
    assert (record.event_time, record.parse_error) == (at(expected), None)
    assert record.event_time is not None and record.event_time.tzinfo is UTC


@pytest.mark.parametrize(
    "stamp",
    [
        "2026-11-21T11:59:58",  # no zone
        "2026-11-21T11:59:58+0100",  # offset without colon
        "2026-11-21 11:59:58Z",  # space instead of T
        "2026-11-21T11:59Z",  # no seconds
        "2026-11-21",
        "Nov 21 11:59:58",
        "0001-01-01T00:00:00+01:00",  # before year 1 in UTC
    ],
)
def test_rfc5424_timestamp_that_is_not_rfc3339(stamp: str) -> None:
    stamp_tokens = stamp.replace(" ", "_")  # keep the header's field count
    record = parse(f"<13>1 {stamp_tokens} host app 7 ID - the rest")
    assert (record.format, record.event_time, record.hostname, record.message) == (
        "rfc5424", None, "host", "the rest",
    )  # fmt: skip
    assert record.parse_error is not None and "RFC 3339" in record.parse_error


@pytest.mark.parametrize(
    ("line", "message", "error_part"),
    [
        ("<14>1 2026-11-21T11:59:58Z host app", "", "PROCID is missing"),
        ("<14>1 ", "", "TIMESTAMP is missing"),
        ("<14>1 - - - - -", "", "STRUCTURED-DATA is missing"),
        ("<14>1 - host app - - hello world", "hello world", "neither '-' nor"),
        ('<14>1 - host app - - [a x="1"]glued', "glued", "no space between"),
        ('<14>1 - host app - - [a x="1" y="2', '[a x="1" y="2', "not terminated"),
        ('<14>1 - host app - - [a x="1"][b y=2] m', '[a x="1"][b y=2] m', "malformed"),
        ("<14>1 - host app - - [a x] m", "[a x] m", "malformed"),
    ],
)
def test_rfc5424_damaged_header_keeps_the_text(line: str, message: str, error_part: str) -> None:
    record = parse(line)
    assert (record.format, record.facility, record.severity) == ("rfc5424", 1, 6)
    assert record.message == message
    assert record.parse_error is not None and error_part in record.parse_error
    assert record.raw == line.encode()


def test_rfc5424_extra_spaces_between_header_fields_are_tolerated() -> None:
    record = parse("<14>1  2026-11-21T11:59:58Z  host   app 7 ID  - hello")
    assert (record.hostname, record.app_name, record.procid, record.msgid) == (
        "host", "app", "7", "ID",
    )  # fmt: skip
    assert (record.message, record.parse_error) == ("hello", None)


@pytest.mark.parametrize(
    ("sd", "expected"),
    [
        ('[a x="1"]', {"a": {"x": "1"}}),
        ("[a]", {"a": {}}),
        ('[a x="1" ]', {"a": {"x": "1"}}),
        ('[a x="" y="2"]', {"a": {"x": "", "y": "2"}}),
        ('[a x="1" x="2" y="3" x="4"]', {"a": {"x": ["1", "2", "4"], "y": "3"}}),
        ('[a x="1"][a x="2" y="3"]', {"a": {"x": ["1", "2"], "y": "3"}}),
        ('[a v="q\\"b\\\\s\\]e"]', {"a": {"v": 'q"b\\s]e'}}),
        ('[a v="\\\\]"]', {"a": {"v": "\\]"}}),
        ('[a v="\\n\\t\\x"]', {"a": {"v": "\\n\\t\\x"}}),
        ('[a v="x]y[z"]', {"a": {"v": "x]y[z"}}),
        ('[a v="two\nlines"]', {"a": {"v": "two\nlines"}}),
        ('[a@32473 v="ü €"][b@1.2.3 w="-"]', {"a@32473": {"v": "ü €"}, "b@1.2.3": {"w": "-"}}),
    ],
)
def test_structured_data(sd: str, expected: dict[str, Any]) -> None:
    record = parse(f"<14>1 - host app - - {sd} msg")
    assert (record.structured_data, record.message, record.parse_error) == (expected, "msg", None)


@pytest.mark.parametrize(
    ("fmt", "line", "expected_format", "error"),
    [
        ("rfc5424", "<14>1 2026-11-21T11:59:58Z host app - - - m", "rfc5424", None),
        ("rfc5424", "<14>Nov 21 11:59:58 host app: m", "raw", "not RFC 5424"),
        ("rfc5424", "2026-11-21T11:59:58Z svc INFO m", "raw", "not RFC 5424"),
        ("rfc3164", "<14>1 2026-11-21T11:59:58Z host app - - - m", "rfc3164", None),
        ("rfc3164", "<14>Nov 21 11:59:58 host app: m", "rfc3164", None),
        ("rfc3164", "2026-11-21T11:59:58Z svc INFO m", "rfc3164", None),
        ("rfc3164", "just words", "raw", "not RFC 3164"),
        ("custom", "2026-11-21T11:59:58Z svc INFO m", "custom", None),
        ("custom", "<14>2026-11-21T11:59:58Z svc INFO m", "raw", "not the custom format"),
        ("custom", "Nov 21 11:59:58 host app: m", "raw", "not the custom format"),
        ("auto", "<14>2026-11-21T11:59:58Z svc INFO m", "rfc3164", None),
    ],
)
def test_forced_format(fmt: str, line: str, expected_format: str, error: str | None) -> None:
    record = parse(line, fmt=fmt)
    assert record.format == expected_format
    if error is None:
        assert record.parse_error is None
    else:
        assert record.parse_error is not None and error in record.parse_error
        assert record.message == line
        expected_pri = (1, 6) if line.startswith("<14>") else (1, 5)
        assert (record.facility, record.severity) == expected_pri


def test_forced_format_keeps_a_valid_pri() -> None:
    record = parse("<165>Nov 21 11:59:58 host app: m", fmt="rfc5424")
    assert (record.format, record.facility, record.severity) == ("raw", 20, 5)


def test_unknown_format_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown format"):
        parse("<14>x", fmt="rfc9999")


@pytest.mark.parametrize(
    "data", [b"", b" ", b"\t \t", b"\r\n", b"\n", b"\x00\x00", b" \r\x00", b"\x0b\x0c"]
)
def test_blank_messages_are_dropped(data: bytes) -> None:
    ctx = ParseContext(RECEIVED, UTC, PEER, "udp")
    assert parse_message(data, ctx) is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"<13>Nov 21 11:59:58 h a: \xef\xbb\xbfbom", "bom"),
        (b"<13>Nov 21 11:59:58 h a: text\r\n\x00\r", "text"),
        (b"<13>Nov 21 11:59:58 h a: a\x00b", "a\ufffdb"),
        (b"<13>Nov 21 11:59:58 h a: \xff\xfe", "\ufffd\ufffd"),
        (b"<13>Nov 21 11:59:58 h a: trailing spaces stay  ", "trailing spaces stay  "),
        (b"<13>Nov 21 11:59:58 h a:  one space is eaten", " one space is eaten"),
        (b"<13>Nov 21 11:59:58 h a:", ""),
        (b"<13>1 - - - - - - \xef\xbb\xbfbom", "bom"),
    ],
)
def test_message_text_rules(data: bytes, message: str) -> None:
    assert parse(data).message == message


@pytest.mark.parametrize(
    ("data", "expected_format", "message"),
    [
        (b"   <14>Nov 21 11:59:58 h a: indented", "rfc3164", "indented"),
        (b"\xef\xbb\xbf<14>Nov 21 11:59:58 h a: file with a BOM", "rfc3164", "file with a BOM"),
        (b"  plain words", "raw", "  plain words"),
    ],
)
def test_leading_spaces_and_bom_before_pri(data: bytes, expected_format: str, message: str) -> None:
    record = parse(data)
    assert (record.format, record.message) == (expected_format, message)


@pytest.mark.parametrize(
    "line",
    [
        '<13>1 - h a - - [x v="' + "\\a" * 50_000,
        "<13>1 - h a - - [x" + ' v="1"' * 50_000,
        "<13>1 - h a - - [x" + " " * 100_000 + "v",
        "<13>1 - h a - - " + "[x]" * 50_000 + "[",
        "<13>" + "Nov 21 11:59:58 " * 20_000,
        "<13>" + "1: " * 50_000,
        "2026-11-21T11:59:58Z" + " a" * 50_000,
        "<13>Nov 21 11:59:58 " + ":" * 100_000,
    ],
)
def test_pathological_input_is_parsed_quickly(line: str) -> None:
    started = time.perf_counter()
    parse(line)
    assert time.perf_counter() - started < 1.0


def test_parsers_are_pure_no_io_modules_are_imported() -> None:
    code = (
        "import sys, pgsyslog.receiver.parsers\n"
        "print(sorted({'asyncio', 'socket', 'ssl', 'logging'} & set(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert (result.returncode, result.stdout.strip()) == (0, "[]"), result.stderr


def test_rfc5424_drops_one_leading_space_of_msg_only() -> None:
    # rsyslog writes "%STRUCTURED-DATA% %msg%" where msg kept the space after a 3164 TAG
    assert parse("<14>1 - h app - - -  one").message == "one"
    assert parse("<14>1 - h app - - -   indented").message == " indented"
    assert parse('<14>1 - h app - - [a@1 b="c"]  after sd').message == "after sd"


HOSTILE = "x" * 3000


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        pytest.param(
            f"<14>1 2026-11-21T11:59:58Z {HOSTILE} app 12 ID1 - text",
            fields("rfc5424", 14, "text", time="2026-11-21T11:59:58Z", host="x" * 255,
                   app="app", procid="12", msgid="ID1", error="hostname cut to 255 characters"),
            id="rfc5424_hostname",
        ),
        pytest.param(
            f"<14>1 - h {HOSTILE} {'p' * 129} {'m' * 33} - text",
            fields("rfc5424", 14, "text", host="h", app="x" * 48, procid="p" * 128,
                   msgid="m" * 32, error="app_name cut to 48 characters; procid cut to 128 "
                                         "characters; msgid cut to 32 characters"),
            id="rfc5424_app_procid_msgid",
        ),
        pytest.param(
            f"<14>1 not-a-time h {HOSTILE} - - - text",
            fields("rfc5424", 14, "text", host="h", app="x" * 48,
                   error="TIMESTAMP 'not-a-time' is not RFC 3339; app_name cut to 48 characters"),
            id="rfc5424_cut_and_bad_timestamp",
        ),
        pytest.param(
            f"<14>1 - h {HOSTILE}",
            fields("rfc5424", 14, "", host="h", app="x" * 48,
                   error="RFC 5424 header is cut off: PROCID is missing; "
                         "app_name cut to 48 characters"),
            id="rfc5424_cut_off_header",
        ),
        pytest.param(
            f"<13>Nov 21 11:59:58 {HOSTILE} sshd[42]: text",
            fields("rfc3164", 13, "text", time="2026-11-21T11:59:58Z", host="x" * 255,
                   app="sshd", procid="42", error="hostname cut to 255 characters"),
            id="rfc3164_hostname",
        ),
        pytest.param(
            f"<13>Nov 21 11:59:58 host {HOSTILE}[{'9' * 200}]: text",
            fields("rfc3164", 13, "text", time="2026-11-21T11:59:58Z", host="host",
                   app="x" * 48, procid="9" * 128,
                   error="app_name cut to 48 characters; procid cut to 128 characters"),
            id="rfc3164_tag_and_pid",
        ),
        pytest.param(
            f"<13>{HOSTILE}: text without a timestamp",
            fields("rfc3164", 13, "text without a timestamp", app="x" * 48,
                   error="app_name cut to 48 characters"),
            id="rfc3164_tag_without_timestamp",
        ),
        pytest.param(
            f"<189>123: {HOSTILE}: *Mar  1 00:00:17.123: %SYS-5-CONFIG_I: Configured",
            fields("rfc3164", 189,
                   f"123: {HOSTILE}: *Mar  1 00:00:17.123: %SYS-5-CONFIG_I: Configured",
                   host="x" * 255, error="hostname cut to 255 characters"),
            id="cisco_ios_seqno_hostname",
        ),
        pytest.param(
            f"2026-11-21T11:59:58Z {HOSTILE} ERROR boom",
            fields("custom", 11, "boom", time="2026-11-21T11:59:58Z", app="x" * 48,
                   error="app_name cut to 48 characters"),
            id="custom_service",
        ),
        pytest.param(
            f"<14>1 - {'h' * 255} {'a' * 48} {'p' * 128} {'m' * 32} - at the limits",
            fields("rfc5424", 14, "at the limits", host="h" * 255, app="a" * 48,
                   procid="p" * 128, msgid="m" * 32),
            id="rfc5424_at_the_limits",
        ),
    ],
)
def test_header_fields_longer_than_rfc5424_allows_are_cut(line: str,
                                                         expected: dict[str, Any]) -> None:
    record = parse(line)
    assert_record(record, expected)
    assert record.raw in (None, line.encode())  # the original bytes, whole


def sd_line(sd: str) -> str:
    return f"<14>1 - h app - - {sd} the message"


@pytest.mark.parametrize(
    ("sd", "kept", "error"),
    [
        pytest.param('[big v="' + "v" * 100_000 + '"][after x="1"]', {"big": {}},
                     "structured_data cut to 65536 characters", id="100kb_value"),
        pytest.param("".join(f"[e{i}]" for i in range(200)),
                     {f"e{i}": {} for i in range(128)},
                     "structured_data cut to 128 elements", id="200_elements"),
        pytest.param("[many" + "".join(f' p{i}="{i}"' for i in range(1500)) + "]",
                     {"many": {f"p{i}": str(i) for i in range(1024)}},
                     "structured_data cut to 1024 params", id="1500_params"),
        pytest.param("".join(f"[e{i}]" for i in range(128)),
                     {f"e{i}": {} for i in range(128)}, None, id="128_elements_fit"),
    ],
)
def test_structured_data_is_bounded(sd: str, kept: dict[str, Any], error: str | None) -> None:
    record = parse(sd_line(sd))
    assert (record.structured_data, record.parse_error) == (kept, error)
    assert record.message == "the message"  # MSG starts after the whole SD, cut or not
    assert record.raw == (None if error is None else sd_line(sd).encode())
