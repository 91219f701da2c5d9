"""RFC 6587 framing, fed bytes directly: octet counting, LF, mixed, limits, split reads."""

from __future__ import annotations

import pytest

from pgsyslog.receiver.framing import Frame, SyslogStreamDecoder


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


def test_unterminated_last_line_is_a_frame_at_end_of_stream() -> None:
    assert frames_of([b"<13>first\n<13>no newline"]) == [
        Frame(b"<13>first"), Frame(b"<13>no newline")
    ]


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
