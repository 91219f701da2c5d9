"""Random byte streams through framing and parsing: nothing raises, nothing is lost."""

from __future__ import annotations

import itertools
import random
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import ServerProcess, query
from pgsyslog.receiver.framing import CONNECTION_ENDED, Frame, SyslogStreamDecoder
from pgsyslog.receiver.parsers import parse_message
from pgsyslog.record import ParseContext

CTX = ParseContext(datetime(2026, 11, 21, 12, tzinfo=UTC), ZoneInfo("UTC"), "192.0.2.9", "tcp")
MAX_LENGTH = 256


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4000), st.lists(st.integers(min_value=0), max_size=20))
def test_any_byte_stream_frames_and_parses_without_error(data: bytes, cuts: list[int]) -> None:
    decoder = SyslogStreamDecoder(MAX_LENGTH)
    frames: list[Frame] = []
    for chunk in chunked(data, cuts):
        frames += decoder.feed(chunk)
        assert decoder.buffered <= len(data)
    frames += decoder.flush()
    for frame in frames:
        assert len(frame.data) <= MAX_LENGTH
        record = parse_message(frame.data, CTX)
        if record is not None:
            assert "\x00" not in record.message and 0 <= record.severity <= 7


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=300), max_size=30),
       st.lists(st.integers(min_value=0), max_size=20))
def test_octet_counted_frames_survive_any_chunking(messages: list[bytes], cuts: list[int]
                                                   ) -> None:
    stream = b"".join(b"%d %s" % (len(m), m) for m in messages)
    decoder = SyslogStreamDecoder(MAX_LENGTH)
    frames: list[Frame] = []
    for chunk in chunked(stream, cuts):
        frames += decoder.feed(chunk)
    frames += decoder.flush()
    assert decoder.error is None
    assert frames == [Frame(m[:MAX_LENGTH], len(m) > MAX_LENGTH) for m in messages]


# A line-framed message holds no terminator and does not start with a digit (that would be
# read as an octet count).
line_message = st.binary(min_size=1, max_size=300).map(
    lambda m: b"x" + m.replace(b"\n", b"").replace(b"\x00", b""))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(line_message, st.sampled_from([b"\n", b"\x00"])), max_size=30),
       st.lists(st.integers(min_value=0), max_size=20))
def test_lf_and_nul_ended_frames_survive_any_chunking(messages: list[tuple[bytes, bytes]],
                                                      cuts: list[int]) -> None:
    stream = b"".join(m + end for m, end in messages)
    decoder = SyslogStreamDecoder(MAX_LENGTH)
    frames: list[Frame] = []
    for chunk in chunked(stream, cuts):
        frames += decoder.feed(chunk)
    frames += decoder.flush()
    assert frames == [Frame(m[:MAX_LENGTH], len(m) > MAX_LENGTH) for m, _ in messages]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=200), min_size=1, max_size=20),
       st.integers(min_value=0), st.lists(st.integers(min_value=0), max_size=10))
def test_a_stream_cut_anywhere_keeps_every_frame_before_the_cut(
        messages: list[bytes], cut_at: int, cuts: list[int]) -> None:
    framed = [b"%d %s" % (len(m), m) for m in messages]
    stream = b"".join(framed)
    cut_at %= len(stream) + 1
    decoder = SyslogStreamDecoder(MAX_LENGTH)
    frames: list[Frame] = []
    for chunk in chunked(stream[:cut_at], cuts):
        frames += decoder.feed(chunk)
    frames += decoder.flush()
    # What the receiver must hand on, worked out from the frames' own offsets.
    expected, start = [], 0
    for message, whole in zip(messages, framed, strict=True):
        if start + len(whole) <= cut_at:
            expected.append(Frame(message))
        elif start < cut_at:
            head = stream[start:cut_at]
            prefix = len(whole) - len(message)
            if len(head) >= prefix:
                cut = f"{CONNECTION_ENDED} ({len(head) - prefix} of {len(message)} octets)"
                expected.append(Frame(head[prefix:], cut=cut))
            else:  # the count itself was cut: its digits are all there is
                expected.append(Frame(head, cut=CONNECTION_ENDED))
        start += len(whole)
    assert decoder.error is None
    assert frames == expected


def test_a_thousand_random_frames_over_tcp(serve: Callable[..., ServerProcess],
                                           dsn: str) -> None:
    rng = random.Random(20261121)
    frames = [bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 2000)))
              for _ in range(1000)]
    frames[::50] = [b" \t \r\n"] * len(frames[::50])  # some are empty once trimmed
    server = serve("--tcp", "127.0.0.1:0")
    with socket.create_connection(("127.0.0.1", server.port("tcp"))) as s:
        s.sendall(b"".join(b"%d %s" % (len(f), f) for f in frames))
    assert server.stop() == 0
    counters = server.final_counters()
    stored = query(dsn, "SELECT count(*) FROM syslog.messages")[0][0]
    assert counters["received"] == 1000
    assert counters["dropped_empty"] >= 20
    assert stored + counters["dropped_empty"] == 1000
