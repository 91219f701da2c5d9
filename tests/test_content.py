"""What arrives is stored as DESIGN.md says: UTF-8, long messages, oversized frames, NUL."""

from __future__ import annotations

from collections.abc import Callable

from helpers import ServerProcess, query, send_tcp, wait_for_rows


def frame(message: bytes) -> bytes:
    return b"%d %s" % (len(message), message)


def test_multibyte_utf8_over_tcp(serve: Callable[..., ServerProcess], dsn: str) -> None:
    server = serve("--tcp", "127.0.0.1:0")
    text = "ログイン成功: ユーザー 田中太郎 🚀 Zürich — ok"
    send_tcp(server.port("tcp"), frame(f"<14>1 - tokyo auth - - - {text}".encode()))
    assert wait_for_rows(dsn, 1) == 1
    assert query(dsn, "SELECT message, parse_error FROM syslog.messages") == [(text, None)]


def test_60_kib_message_over_tcp_is_kept_whole(serve: Callable[..., ServerProcess],
                                               dsn: str) -> None:
    server = serve("--tcp", "127.0.0.1:0")
    body = "".join(f"word{i:05d} " for i in range(6200))[: 60 * 1024]
    send_tcp(server.port("tcp"), frame(f"<14>1 - big app - - - {body}".encode()))
    assert wait_for_rows(dsn, 1) == 1
    assert query(dsn, "SELECT length(message), parse_error FROM syslog.messages") == [
        (len(body), None)]
    # the words are searchable through the full-text index expression
    hits = query(dsn, "SELECT count(*) FROM syslog.messages WHERE "
                      "syslog.message_tsvector(app_name, message) @@ "
                      "to_tsquery('simple', 'word06000')")
    assert hits == [(1,)]


def test_oversized_frame_is_truncated_marked_and_the_connection_goes_on(
        serve: Callable[..., ServerProcess], dsn: str) -> None:
    server = serve("--tcp", "127.0.0.1:0", "--max-frame-length", "1024")
    big = b"<14>1 - big app - - - " + b"x" * 5000
    after = b"<14>1 - big app - - - after the big one"
    send_tcp(server.port("tcp"), frame(big) + frame(after) + b"x" * 3000 + b"\n" + after + b"\n")
    assert wait_for_rows(dsn, 4) == 4
    rows = query(dsn, "SELECT length(raw), parse_error, message FROM syslog.messages ORDER BY id")
    assert rows[0][0] == 1024 and "truncated" in rows[0][1]
    assert rows[1] == (None, None, "after the big one")
    assert rows[2][0] == 1024 and "truncated" in rows[2][1]
    assert rows[3] == (None, None, "after the big one")


def test_nul_byte_inside_a_message(serve: Callable[..., ServerProcess], dsn: str) -> None:
    server = serve("--tcp", "127.0.0.1:0")
    send_tcp(server.port("tcp"), frame(b"<14>1 - nul app - - - before\x00after\x00"))
    assert wait_for_rows(dsn, 1) == 1
    assert query(dsn, "SELECT message FROM syslog.messages") == [("before\ufffdafter",)]


def test_invalid_utf8_is_decoded_with_replacement(serve: Callable[..., ServerProcess],
                                                  dsn: str) -> None:
    server = serve("--tcp", "127.0.0.1:0")
    send_tcp(server.port("tcp"), b"<14>Nov 21 11:59:58 h app: caf\xe9 cr\xe8me\n")
    assert wait_for_rows(dsn, 1) == 1
    assert query(dsn, "SELECT message FROM syslog.messages") == [("caf\ufffd cr\ufffdme",)]


def test_empty_messages_are_not_stored(serve: Callable[..., ServerProcess], dsn: str) -> None:
    server = serve("--tcp", "127.0.0.1:0")
    send_tcp(server.port("tcp"), b"\n   \n\r\n<14>1 - h app - - - the only one\n")
    assert wait_for_rows(dsn, 1) == 1
    assert server.stop() == 0
    assert query(dsn, "SELECT message FROM syslog.messages") == [("the only one",)]
