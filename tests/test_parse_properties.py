"""Properties of the parsers: no input makes them raise, and RFC 5424 survives a round trip."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from pgsyslog.receiver.parsers import FORMAT_CHOICES, FormatChoice, parse_message
from pgsyslog.receiver.parsers.build import FIELD_LIMITS
from pgsyslog.record import FORMATS, ParseContext, Record, record_fields

PEER = "192.0.2.50"
CTX = ParseContext(
    datetime(2026, 11, 21, 12, 0, tzinfo=UTC), ZoneInfo("Europe/Berlin"), PEER, "tcp"
)

# Pieces of real syslog, so that random lines reach deep into every parser.
FRAGMENTS = [
    b"<13>", b"<191>", b"<0>", b"<013>", b"<192>", b"<", b">", b"1 ", b"- ", b"-", b" ", b"  ",
    b"[", b"]", b'"', b"\\", b"=", b":", b": ", b"Nov 21 11:59:58", b"Feb 29 ", b"Nov  1 ",
    b"*Mar  1 00:00:17.123", b".", b"2026-11-21T11:59:58Z", b"2026-11-21 11:59:58,123",
    b"2026-13-45T25:61:61Z", b"+01:00", b" UTC", b"CET:", b"host ", b"app[12]: ", b"app: ",
    b'[a x="1"]', b'[a x="1" x="2"]', b"123: ", b"ERROR ", b"info ", b"\xef\xbb\xbf", b"\x00",
    b"\r", b"\n", b"\t", b"\xc3\xa9", b"\xff", b"\xc3", b"\xf0\x9f\x9a\x80",
    b"h" * 300 + b" ", b"t" * 60 + b": ", b"t" * 60 + b"[" + b"9" * 140 + b"]: ",
]  # fmt: skip
syslogish = st.lists(st.sampled_from(FRAGMENTS) | st.binary(max_size=6), max_size=40).map(b"".join)


def check_invariants(data: bytes, record: Record | None) -> None:
    if record is None:
        assert not data.rstrip(b"\r\n\x00").strip()
        return
    assert record.format in FORMATS
    assert 0 <= record.facility <= 23
    assert 0 <= record.severity <= 7
    assert isinstance(record.message, str)
    assert "\x00" not in record.message
    assert record.event_time is None or record.event_time.tzinfo is UTC
    assert (record.raw is None) == (record.parse_error is None)
    assert record.raw in (None, data)
    assert "internal parser error" not in (record.parse_error or "")
    for name, limit in FIELD_LIMITS.items():
        assert len(getattr(record, name) or "") <= limit, name
    assert (record.received_at, record.source_ip, record.transport) == (
        CTX.received_at,
        PEER,
        "tcp",
    )
    json.dumps(record_fields(record), ensure_ascii=False).encode()  # printable, storable


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300), st.sampled_from(FORMAT_CHOICES))
def test_arbitrary_bytes_never_raise(data: bytes, fmt: FormatChoice) -> None:
    check_invariants(data, parse_message(data, CTX, fmt))


@settings(max_examples=1000, deadline=None)
@given(syslogish, st.sampled_from(FORMAT_CHOICES))
def test_syslog_like_bytes_never_raise(data: bytes, fmt: FormatChoice) -> None:
    check_invariants(data, parse_message(data, CTX, fmt))


# ----------------------------------------------------------------------------- round trip

PRINTUSASCII = st.characters(min_codepoint=33, max_codepoint=126)


def header_field(max_size: int) -> st.SearchStrategy[str | None]:
    return st.none() | st.text(PRINTUSASCII, min_size=1, max_size=max_size).filter(
        lambda s: s != "-")


# HOSTNAME, APP-NAME, PROCID, MSGID within RFC 5424's limits.
header_fields = st.tuples(*(header_field(limit) for limit in FIELD_LIMITS.values())).map(list)
sd_name = st.text(
    st.characters(min_codepoint=33, max_codepoint=126, exclude_characters='= ]"['),
    min_size=1,
    max_size=32,
)
any_text = st.characters(codec="utf-8", exclude_characters="\x00")
sd_param = st.tuples(sd_name, st.text(any_text, max_size=30))
sd_elements = st.lists(
    st.tuples(sd_name, st.lists(sd_param, max_size=5)), max_size=4, unique_by=lambda e: e[0]
)
offsets = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
timestamps = st.none() | st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2100, 1, 1), timezones=offsets
)
# A MSG that starts with a space loses that space on purpose (rsyslog's forwarding writes
# two spaces before MSG; see parsers/rfc5424.py), so the round trip starts with another
# character; the BOM is removed by the rules too.
messages = st.text(any_text, max_size=200).filter(
    lambda s: not s.startswith(("\ufeff", " ")) and not s.endswith(("\r", "\n"))
)


def escape_sd_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def write_rfc5424(
    pri: int,
    timestamp: datetime | None,
    header: list[str | None],
    elements: list[tuple[str, list[tuple[str, str]]]],
    message: str,
) -> bytes:
    """A message as an RFC 5424 sender writes it (the test's own, independent writer)."""
    stamp = "-" if timestamp is None else timestamp.isoformat().replace("+00:00", "Z")
    fields = " ".join("-" if f is None else f for f in header)
    sd = "".join(
        f"[{sd_id}" + "".join(f' {n}="{escape_sd_value(v)}"' for n, v in params) + "]"
        for sd_id, params in elements
    )
    line = f"<{pri}>1 {stamp} {fields} {sd or '-'}"
    return (f"{line} {message}" if message else line).encode()


def expected_sd(elements: list[tuple[str, list[tuple[str, str]]]]) -> dict[str, Any] | None:
    if not elements:
        return None
    sd: dict[str, dict[str, Any]] = {}
    for sd_id, params in elements:
        values: dict[str, list[str]] = {}
        for name, value in params:
            values.setdefault(name, []).append(value)
        sd[sd_id] = {n: v[0] if len(v) == 1 else v for n, v in values.items()}
    return sd


@settings(max_examples=500, deadline=None)
@given(
    st.integers(0, 191),
    timestamps,
    header_fields,
    sd_elements,
    messages,
)
def test_rfc5424_round_trip(
    pri: int,
    timestamp: datetime | None,
    header: list[str | None],
    elements: list[tuple[str, list[tuple[str, str]]]],
    message: str,
) -> None:
    data = write_rfc5424(pri, timestamp, header, elements, message)
    record = parse_message(data, CTX)
    assert record is not None
    hostname, app_name, procid, msgid = header
    assert (record.format, record.parse_error) == ("rfc5424", None)
    assert (record.facility, record.severity) == divmod(pri, 8)
    assert record.event_time == timestamp
    assert (record.hostname, record.app_name, record.procid, record.msgid) == (
        PEER if hostname is None else hostname,
        app_name,
        procid,
        msgid,
    )
    assert record.structured_data == expected_sd(elements)
    assert record.message == message


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(PRINTUSASCII, min_size=1, max_size=400).filter(lambda s: s != "-"),
                min_size=4, max_size=4), messages)
def test_header_fields_past_their_limits_are_cut_and_the_rest_is_kept(
    header: list[str], message: str
) -> None:
    data = write_rfc5424(14, None, list(header), [], message)
    record = parse_message(data, CTX)
    assert record is not None
    limits = list(FIELD_LIMITS.items())
    assert [record.hostname, record.app_name, record.procid, record.msgid] == [
        value[:limit] for value, (_, limit) in zip(header, limits, strict=True)]
    cut = [f"{name} cut to {limit} characters"
           for value, (name, limit) in zip(header, limits, strict=True) if len(value) > limit]
    assert record.parse_error == ("; ".join(cut) or None)
    assert record.raw == (data if cut else None)
    assert record.message == message
