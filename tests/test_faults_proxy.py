"""The fault proxy itself: it frames the wire protocol and injects each fault it promises."""

from __future__ import annotations

import struct
import threading

import psycopg
import pytest

from faultproxy import GSSENC_REQUEST, SSL_REQUEST, FaultProxy, MessageSplitter, is_commit
from helpers import query
from pg15 import Pg15

pytest_plugins = ["faultfixtures"]


def startup_message(code: int, body: bytes = b"") -> bytes:
    return struct.pack(">II", 8 + len(body), code) + body


def typed(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack(">I", 4 + len(body)) + body


def test_splitter_frames_startup_then_typed_messages_fed_byte_by_byte() -> None:
    stream = (startup_message(SSL_REQUEST) + startup_message(GSSENC_REQUEST)
              + startup_message(196608, b"user\0postgres\0\0")
              + typed(b"Q", b"BEGIN\0") + typed(b"Q", b"COMMIT\0"))
    splitter = MessageSplitter(startup=True)
    messages = [m for byte in stream for m in splitter.feed(bytes([byte]))]
    assert [kind for kind, _, _ in messages] == [b"", b"", b"", b"Q", b"Q"]
    assert b"".join(raw for _, _, raw in messages) == stream
    assert messages[-1][1] == b"COMMIT\0"


def test_splitter_reads_the_one_byte_answer_to_an_ssl_request() -> None:
    splitter = MessageSplitter(startup=False)
    splitter.raw_bytes = 1
    answer = b"N" + typed(b"R", struct.pack(">I", 0)) + typed(b"Z", b"I")
    assert [kind for kind, _, _ in splitter.feed(answer)] == [b"N", b"R", b"Z"]


@pytest.mark.parametrize(("sql", "commit"), [("COMMIT", True), (" commit; ", True),
                                             ("END", True), ("BEGIN", False),
                                             ("SELECT 'COMMIT'", False), (None, False)])
def test_what_counts_as_a_commit(sql: str | None, commit: bool) -> None:
    assert is_commit(sql) is commit


def test_pass_through_carries_queries(pg: Pg15, proxy: FaultProxy) -> None:
    assert query(proxy.dsn(pg.dsn), "SELECT 1 + 1") == [(2,)]


def test_cut_after_commit_commits_but_the_client_sees_the_connection_lost(
        pg: Pg15, proxy: FaultProxy) -> None:
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE cut_probe (n int)")
    proxy.cut_after_commit(1)
    conn = psycopg.connect(proxy.dsn(pg.dsn), autocommit=True)
    with pytest.raises(psycopg.OperationalError):  # noqa: SIM117 (the error is the commit's)
        with conn.transaction():
            conn.execute("INSERT INTO cut_probe VALUES (1)")
    conn.close()
    assert proxy.cuts_done == 1
    assert query(pg.dsn, "SELECT n FROM cut_probe") == [(1,)]
    # armed for one commit only: the next one goes through
    with psycopg.connect(proxy.dsn(pg.dsn)) as again:
        again.execute("INSERT INTO cut_probe VALUES (2)")
    assert query(pg.dsn, "SELECT n FROM cut_probe ORDER BY n") == [(1,), (2,)]


def test_hang_holds_queries_and_new_connections_until_pass(pg: Pg15, proxy: FaultProxy) -> None:
    conn = psycopg.connect(proxy.dsn(pg.dsn), autocommit=True)
    proxy.hang()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(proxy.dsn(pg.dsn), connect_timeout=1)
    answered = threading.Event()

    def ask() -> None:
        conn.execute("SELECT 1")
        answered.set()

    asker = threading.Thread(target=ask, daemon=True)
    asker.start()
    assert not answered.wait(1.0), "a query went through a hung proxy"
    proxy.pass_through()
    assert answered.wait(10), "the held query did not go on after pass"
    conn.close()


def test_reset_drops_open_and_new_connections(pg: Pg15, proxy: FaultProxy) -> None:
    conn = psycopg.connect(proxy.dsn(pg.dsn), autocommit=True)
    proxy.reset()
    with pytest.raises(psycopg.OperationalError):
        conn.execute("SELECT 1")
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(proxy.dsn(pg.dsn), connect_timeout=2)
    proxy.pass_through()
    assert query(proxy.dsn(pg.dsn), "SELECT 1") == [(1,)]
