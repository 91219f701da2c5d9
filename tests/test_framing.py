"""RFC 6587 framing, fed bytes directly: octet counting, LF, NUL, mixed, limits, split reads,
frames cut short, RELP on a syslog port, and UDP's octet-count prefix."""

from __future__ import annotations

import pytest

from pgsyslog.receiver.framing import (
    CONNECTION_ENDED,
    Frame,
    SyslogStreamDecoder,
    strip_datagram_count,
)

# What rsyslog 8.2302 with librelp 1.11.0 (omrelp) sends first, captured byte for byte;
# librelp 1.2.7 sends the same with a version two characters shorter (DATALEN 85).
OMRELP_OPEN = (b"1 open 86 relp_version=0\nrelp_software=librelp,1.11.0,"
               b"http://librelp.adiscon.com\ncommands=syslog\n")
OMRELP_OPEN_127 = (b"1 open 85 relp_version=0\nrelp_software=librelp,1.2.7,"
                   b"http://librelp.adiscon.com\ncommands=syslog\n")
# What follows once the server has answered: one message per "syslog" command.
OMRELP_SYSLOG = b"2 syslog 39 <13>Nov 21 11:59:58 h app: over relp\n"


def frames_of(chunks: list[bytes], max_length: int = 100) -> list[Frame]:
    decoder = SyslogStreamDecoder(max_length)
    out: list[Frame] = []
    for chunk in chunks:
        out += decoder.feed(chunk)
    return out + decoder.flush()


def test_octet_counted_frames_may_contain_newlines() -> None:
    assert frames_of([b"10 first\nline7 second\n"]) == [
        Frame(b"first\nline"), Frame(b"second\n")
    ]


def test_lf_framing() -> None:
    assert frames_of([b"<13>one\n<13>two\n"]) == [Frame(b"<13>one"), Frame(b"<13>two")]


def test_framing_is_detected_per_frame() -> None:
    data = b"5 <13>a<13>lf line\n7 <13>bcd"
    assert [f.data for f in frames_of([data])] == [b"<13>a", b"<13>lf line", b"<13>bcd"]


def test_line_starting_with_digits_is_not_an_octet_count() -> None:
    line = b"2026-11-21T11:59:58Z api ERROR boom\n"
    assert frames_of([line]) == [Frame(line[:-1])]


def test_epoch_timestamp_line_is_not_an_octet_count() -> None:
    line = b"1732190000123 host app: epoch millis first\n"
    assert frames_of([line]) == [Frame(line[:-1])]


@pytest.mark.parametrize("split_at", range(1, 30))
def test_any_split_of_the_stream_gives_the_same_frames(split_at: int) -> None:
    data = b"12 <13>hello wo<14>second line\n3 abc"
    whole = frames_of([data])
    assert frames_of([data[:split_at], data[split_at:]]) == whole
    assert frames_of([bytes([b]) for b in data]) == whole


def test_oversized_octet_counted_frame_is_cut_and_the_stream_goes_on() -> None:
    data = b"30 " + b"x" * 30 + b"4 next"
    assert frames_of([data], max_length=10) == [Frame(b"x" * 10, True), Frame(b"next")]


def test_oversized_line_is_cut_and_the_rest_of_it_skipped() -> None:
    chunks = [b"y" * 25, b"y" * 25 + b"\nshort\n"]
    assert frames_of(chunks, max_length=20) == [Frame(b"y" * 20, True), Frame(b"short")]


def test_decoder_buffers_at_most_about_max_length() -> None:
    decoder = SyslogStreamDecoder(1000)
    for _ in range(100):
        decoder.feed(b"z" * 500)  # one endless line
        assert decoder.buffered <= 1000


def test_unterminated_last_line_is_a_cut_frame_at_end_of_stream() -> None:
    assert frames_of([b"<13>first\n<13>no newline"]) == [
        Frame(b"<13>first"), Frame(b"<13>no newline", cut=CONNECTION_ENDED)
    ]


def test_octet_counted_frame_cut_by_the_end_of_the_connection_loses_its_count() -> None:
    assert frames_of([b"5 <13>a", b"500 <13>1 - h app - - - so"]) == [
        Frame(b"<13>a"),
        Frame(b"<13>1 - h app - - - so", cut=f"{CONNECTION_ENDED} (22 of 500 octets)"),
    ]


def test_a_frame_cut_by_the_receivers_stop_says_so() -> None:
    decoder = SyslogStreamDecoder(100)
    assert decoder.feed(b"<13>whole\n<13>half") == [Frame(b"<13>whole")]
    assert decoder.flush("cut by the receiver's stop") == [
        Frame(b"<13>half", cut="cut by the receiver's stop")]
    assert decoder.flush() == []  # the stream's own end after that adds nothing


def test_a_long_line_cut_at_max_length_and_by_the_end_is_both() -> None:
    assert frames_of([b"y" * 30], max_length=20) == [
        Frame(b"y" * 20, truncated=True, cut=CONNECTION_ENDED)]


def test_a_complete_stream_has_nothing_cut() -> None:
    assert all(f.cut is None for f in frames_of([b"3 abc<13>line\n4 defg"]))


def test_nul_ends_a_frame_as_lf_does() -> None:
    # logging.handlers.SysLogHandler over TCP: "<PRI>message" then NUL, and no LF.
    assert frames_of([b"<14>first\x00<14>second\x00<14>third\n"]) == [
        Frame(b"<14>first"), Frame(b"<14>second"), Frame(b"<14>third")]


@pytest.mark.parametrize("split_at", range(1, 20))
def test_nul_framing_survives_any_split(split_at: int) -> None:
    data = b"<14>one\x00<14>two\x00<14>3\x00"
    assert frames_of([data[:split_at], data[split_at:]]) == frames_of([data])
    assert len(frames_of([data])) == 3


def test_nul_inside_an_octet_counted_frame_is_data() -> None:
    assert frames_of([b"9 <14>a\x00b\x00c"]) == [Frame(b"<14>a\x00b\x00c")]


def test_a_long_line_is_skipped_to_its_nul() -> None:
    assert frames_of([b"z" * 30 + b"\x00<14>next\x00"], max_length=20) == [
        Frame(b"z" * 20, True), Frame(b"<14>next")]


def test_cr_alone_does_not_end_a_frame() -> None:
    assert frames_of([b"<14>a\r<14>b\r\n"]) == [Frame(b"<14>a\r<14>b\r")]


@pytest.mark.parametrize("session", [
    OMRELP_OPEN, OMRELP_OPEN_127, OMRELP_OPEN + OMRELP_SYSLOG, b"1 open 0\n"],
    ids=["librelp-1.11", "librelp-1.2.7", "open-then-syslog", "open-without-offers"])
def test_a_relp_session_is_refused_and_nothing_of_it_is_a_frame(session: bytes) -> None:
    decoder = SyslogStreamDecoder(100)
    assert decoder.feed(session) == []
    assert decoder.error is not None and "RELP" in decoder.error
    assert "omrelp" in decoder.error and "1 open" in decoder.error
    assert decoder.feed(OMRELP_SYSLOG) == []
    assert decoder.flush() == []


@pytest.mark.parametrize("split_at", range(1, len(OMRELP_OPEN)))
def test_a_relp_open_is_recognised_however_it_is_split(split_at: int) -> None:
    decoder = SyslogStreamDecoder(100)
    chunks = [OMRELP_OPEN[:split_at], OMRELP_OPEN[split_at:], OMRELP_SYSLOG]
    assert [f for c in chunks for f in decoder.feed(c)] == []
    assert decoder.error is not None and "RELP" in decoder.error


def test_a_relp_open_arriving_byte_by_byte_is_recognised() -> None:
    decoder = SyslogStreamDecoder(100)
    assert [f for b in OMRELP_OPEN for f in decoder.feed(bytes([b]))] == []
    assert decoder.error is not None and "RELP" in decoder.error


@pytest.mark.parametrize(("chunks", "expected"), [
    ([b"1 o"], [Frame(b"o")]),  # held back as a possible RELP start, then framed at the end
    ([b"1 op\n"], [Frame(b"o"), Frame(b"p")]),
    ([b"1 ope", b"n sesame\n"], [Frame(b"o"), Frame(b"pen sesame")]),
    ([b"9 open 3 ab"], [Frame(b"open 3 ab")]),  # a message may start with "open"
    ([b"12 <13>open 3 x"], [Frame(b"<13>open 3 x")]),
])
def test_streams_that_only_start_like_relp_are_syslog(chunks: list[bytes],
                                                      expected: list[Frame]) -> None:
    decoder = SyslogStreamDecoder(100)
    frames = [f for c in chunks for f in decoder.feed(c)] + decoder.flush()
    assert frames == expected
    assert decoder.error is None


def test_relp_is_only_recognised_at_the_start_of_a_stream() -> None:
    # The same bytes later in a stream are an ordinary (if odd) octet-counted frame.
    assert frames_of([b"3 abc", b"1 open 3 xyz\n"]) == [
        Frame(b"abc"), Frame(b"o"), Frame(b"pen 3 xyz")]


def loggen_datagram(size: int = 256) -> bytes:
    """A datagram shaped as syslog-ng's loggen frames it (--syslog-proto with framing):
    "SIZE SP" then SIZE bytes of RFC 5424, padded with PADD and ended by LF."""
    head = (b"<38>1 2026-11-21T12:28:51+02:00 localhost prg00000 1234 - - \xef\xbb\xbfseq: "
            b"0000000007, thread: 0000, runid: 1732190000, stamp: 2026-11-21T12:28:51 ")
    body = (head + b"PADD" * size)[: size - 1] + b"\n"
    return b"%d %s" % (size, body)


@pytest.mark.parametrize(("datagram", "expected"), [
    (loggen_datagram(), loggen_datagram()[4:]),
    (b"9 <14>hello", b"<14>hello"),
    (b"9 <14>hello!", b"9 <14>hello!"),  # the count does not match: it is the message
    (b"8 <14>hello", b"8 <14>hello"),
    (b"09 <14>hello", b"09 <14>hello"),  # a count has no leading zero
    (b"12 monkeys", b"12 monkeys"),
    (b"2026-11-21T11:59:58Z api ERROR boom", b"2026-11-21T11:59:58Z api ERROR boom"),
    (b"<14>1 - h app - - - normal", b"<14>1 - h app - - - normal"),
    (b"", b""),
])
def test_udp_octet_count_prefix_is_removed_only_when_it_fits(datagram: bytes,
                                                              expected: bytes) -> None:
    assert strip_datagram_count(datagram) == expected


def test_an_octet_count_above_the_ceiling_ends_the_stream() -> None:
    decoder = SyslogStreamDecoder(100)
    assert decoder.feed(b"3 abc999999999 xyz") == [Frame(b"abc")]
    assert decoder.error is not None and "ceiling" in decoder.error
    assert decoder.feed(b"3 def") == []  # nothing more is read from a broken stream
    assert decoder.flush() == []


def test_digits_that_are_not_a_count_end_an_octet_counted_stream() -> None:
    decoder = SyslogStreamDecoder(100)
    assert decoder.feed(b"3 abc12x4 junk\n") == [Frame(b"abc")]
    assert decoder.error == "expected an octet count, got b'12x4 junk\\n'"


def test_lines_starting_with_digits_are_fine_before_any_octet_count() -> None:
    decoder = SyslogStreamDecoder(100)
    assert decoder.feed(b"12x4 a line\n") == [Frame(b"12x4 a line")]
    assert decoder.error is None
