"""Rows that make PostgreSQL send a notice each (to_tsvector: "word is too long to be
indexed", for a word over 2,047 characters) in batches of thousands: a notice per row
filled the socket while the COPY was still being sent, server and client waited for each
other, and every writer and the spool replay stalled on it. pgsyslog's sessions keep
notices on the server (storage/database.py, with_timeouts)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from test_import import run_import

from helpers import query, send_tcp, wait_for_rows

ROWS = 4_000
LONG_WORD = "x" * 3_000  # longer than a tsvector lexeme may be (2,047 bytes)


def lines(tag: str) -> bytes:
    return b"".join(f"<14>1 2026-12-01T10:00:00Z host app - - - {tag} {i} {LONG_WORD}\n"
                    .encode() for i in range(ROWS))


def test_serve_stores_full_batches_of_rows_with_words_too_long_to_index(
        serve: Any, dsn: str) -> None:
    server = serve("--tcp", "127.0.0.1:0", "--batch-rows", "2000", "--batch-age-ms", "3000")
    send_tcp(server.port("tcp"), lines("served"))
    assert wait_for_rows(dsn, ROWS, timeout=60) == ROWS
    assert query(dsn, "SELECT count(*) FROM syslog.messages WHERE message LIKE %s",
                 (f"served 1 {LONG_WORD}",)) == [(1,)]
    assert server.stop() == 0
    assert "unreachable" not in server.log, server.log
    assert server.final_counters()["spooled"] == 0, server.log


def test_import_stores_full_groups_of_lines_with_words_too_long_to_index(
        dsn: str, tmp_path: Path) -> None:
    log = tmp_path / "long.log"
    log.write_bytes(lines("imported"))
    result = run_import(dsn, str(log), env={"PGSYSLOG_IMPORT_BATCH_ROWS": "2000"})
    assert result.returncode == 0, result.stderr
    assert f"{ROWS:,} imported" in result.stdout, result.stdout
    assert query(dsn, "SELECT count(*) FROM syslog.messages") == [(ROWS,)]
