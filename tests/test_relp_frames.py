"""RELP frames: decoding real omrelp sessions, broken and oversized frames, offers, responses."""

from __future__ import annotations

import pytest

from pgsyslog.receiver.relp_frames import (
    MAX_DATALEN,
    OK,
    SERVERCLOSE,
    OpenRefused,
    RelpDecoder,
    RelpFrame,
    accept_offers,
    frame,
    next_txnr,
    parse_offers,
    response,
)

# rsyslog 8.2302 omrelp (librelp 1.11.0) reading two lines with imfile and stopping, as
# captured on the wire; its template ends each message with LF.
RSYSLOG_OMRELP_OPEN = (b"1 open 86 relp_version=0\nrelp_software=librelp,1.11.0,"
                       b"http://librelp.adiscon.com\ncommands=syslog\n")
RSYSLOG_OMRELP_SESSION = (
    RSYSLOG_OMRELP_OPEN
    + b"2 syslog 64 <133>1 2026-12-02T05:37:53.011357+00:00 vm app - - - first line\n\n"
    b"3 syslog 65 <133>1 2026-12-02T05:37:53.011362+00:00 vm app - - - second line\n\n"
    b"4 close 0\n")
RSYSLOG_OMRELP_FRAMES = [
    RelpFrame(1, "open", b"relp_version=0\nrelp_software=librelp,1.11.0,"
                         b"http://librelp.adiscon.com\ncommands=syslog"),
    RelpFrame(2, "syslog", b"<133>1 2026-12-02T05:37:53.011357+00:00 vm app - - - first line\n"),
    RelpFrame(3, "syslog",
              b"<133>1 2026-12-02T05:37:53.011362+00:00 vm app - - - second line\n"),
    RelpFrame(4, "close", b""),
]


def decode(data: bytes, max_data: int = 65536) -> tuple[list[RelpFrame], str | None]:
    decoder = RelpDecoder(max_data)
    frames = decoder.feed(data)
    return frames, decoder.error


def test_rsyslog_omrelp_session() -> None:
    assert decode(RSYSLOG_OMRELP_SESSION) == (RSYSLOG_OMRELP_FRAMES, None)


@pytest.mark.parametrize("size", [1, 2, 7, 64])
def test_rsyslog_omrelp_session_in_pieces(size: int) -> None:
    decoder = RelpDecoder(65536)
    frames: list[RelpFrame] = []
    for start in range(0, len(RSYSLOG_OMRELP_SESSION), size):
        frames += decoder.feed(RSYSLOG_OMRELP_SESSION[start:start + size])
    assert (frames, decoder.error) == (RSYSLOG_OMRELP_FRAMES, None)
    assert decoder.buffered == 0


def test_an_unfinished_frame_waits_for_its_end() -> None:
    decoder = RelpDecoder(65536)
    assert decoder.feed(b"7 syslog 5 ab") == []
    assert decoder.error is None
    assert decoder.feed(b"cde\n8 clo") == [RelpFrame(7, "syslog", b"abcde")]
    assert decoder.feed(b"se 0\n") == [RelpFrame(8, "close", b"")]


@pytest.mark.parametrize(("sent", "error"), [
    pytest.param(b"<14>1 2024-03-01T10:00:00Z host app - - - hello\n",
                 "not a RELP frame header: b'<14>1", id="plain_syslog_on_the_relp_port"),
    pytest.param(b"GET / HTTP/1.1\r\n", "not a RELP frame header", id="http_request"),
    pytest.param(b"1234567890 syslog 3 abc\n", "not a RELP frame header",
                 id="txnr_of_ten_digits"),
    pytest.param(b"1 " + b"a" * 33 + b" 3 abc\n", "not a RELP frame header",
                 id="command_of_33_letters"),
    pytest.param(b"1 sys1og 3 abc\n", "not a RELP frame header", id="digit_in_command"),
    pytest.param(b"1 syslog 1234567890 a\n", "not a RELP frame header",
                 id="datalen_of_ten_digits"),
    pytest.param(b"1 syslog 3 abcX\n", "frame 1 syslog: expected LF after 3 octets of data, "
                 "got b'X\\n'", id="datalen_shorter_than_data"),
    pytest.param(b"1 close 0 \n", "frame 1 close: DATALEN 0 followed by b' '",
                 id="empty_frame_with_a_space"),
    pytest.param(b"1 syslog 3\nabc\n", "frame 1 syslog: DATALEN 3 followed by b'\\n'",
                 id="datalen_followed_by_lf"),
    pytest.param(b"1 syslog %d " % (MAX_DATALEN + 1),
                 f"DATALEN {MAX_DATALEN + 1} is above the {MAX_DATALEN} ceiling",
                 id="datalen_above_the_ceiling"),
])
def test_broken_frames(sent: bytes, error: str) -> None:
    frames, got = decode(RSYSLOG_OMRELP_OPEN + sent)
    assert frames == RSYSLOG_OMRELP_FRAMES[:1]  # what came before is kept
    assert got is not None and got.startswith(error), got


def test_nothing_is_decoded_after_an_error() -> None:
    decoder = RelpDecoder(65536)
    decoder.feed(b"x")
    assert decoder.error is not None
    assert decoder.feed(b"1 close 0\n") == []


def test_data_above_max_data_is_cut_and_the_stream_goes_on() -> None:
    long = b"<14>1 - h app - - - " + b"x" * 100
    frames, error = decode(frame(2, b"syslog", long) + b"3 syslog 2 ok\n", max_data=30)
    assert error is None
    assert frames == [RelpFrame(2, "syslog", long[:30], truncated=True),
                      RelpFrame(3, "syslog", b"ok")]


def test_data_above_max_data_is_skipped_as_it_arrives() -> None:
    decoder = RelpDecoder(10)
    assert decoder.feed(b"2 syslog 100000 " + b"y" * 50_000) == []
    assert decoder.buffered == 10  # the rest was not kept
    assert decoder.feed(b"y" * 50_000 + b"\n") == [
        RelpFrame(2, "syslog", b"y" * 10, truncated=True)]


def test_offers_of_rsyslog_omrelp() -> None:
    offers = parse_offers(RSYSLOG_OMRELP_FRAMES[0].data)
    assert offers == {"relp_version": ["0"],
                      "relp_software": ["librelp", "1.11.0", "http://librelp.adiscon.com"],
                      "commands": ["syslog"]}
    answer, syslog = accept_offers(offers, "pgsyslog,1.0")
    assert answer == b"relp_version=0\nrelp_software=pgsyslog,1.0\ncommands=syslog"
    assert syslog


def test_offers_without_syslog_disable_it() -> None:
    answer, syslog = accept_offers({"relp_version": ["0"], "commands": ["eventlog"]}, "p")
    assert answer.endswith(b"\ncommands=")
    assert not syslog


def test_a_later_relp_version_is_answered_with_ours() -> None:
    answer, _ = accept_offers({"relp_version": ["1"], "commands": ["syslog"]}, "p")
    assert answer.startswith(b"relp_version=0\n")


@pytest.mark.parametrize("offers", [{}, {"relp_version": []}, {"relp_version": ["one"]},
                                    {"relp_version": ["-1"]},
                                    {"relp_version": ["\u00b2"]},  # a digit to isdigit()
                                    {"relp_version": ["\u0663"]}])  # an Arabic-Indic 3
def test_an_open_without_a_relp_version_is_refused(offers: dict[str, list[str]]) -> None:
    with pytest.raises(OpenRefused, match="relp_version"):
        accept_offers(offers, "p")


def test_responses_as_librelp_reads_them() -> None:
    assert response(2, OK) == b"2 rsp 6 200 OK\n"
    assert response(1, OK, b"relp_version=0") == b"1 rsp 21 200 OK\nrelp_version=0\n"
    assert SERVERCLOSE == b"0 serverclose 0\n"
    assert frame(9, b"close") == b"9 close 0\n"


def test_built_frames_decode_back() -> None:
    sent = response(1, OK, b"relp_version=0\ncommands=syslog") + response(2, b"500 no")
    frames, error = decode(sent)
    assert error is None
    assert frames == [RelpFrame(1, "rsp", b"200 OK\nrelp_version=0\ncommands=syslog"),
                      RelpFrame(2, "rsp", b"500 no")]


def test_transaction_numbers_wrap_at_999999999() -> None:
    assert [next_txnr(1), next_txnr(998_999_999), next_txnr(999_999_999)] == [
        2, 999_000_000, 1]
