"""`pgsyslog import --follow`: a writer process appends and rotates while follow runs and
is restarted (SIGTERM once, SIGKILL once); every line is stored exactly once."""

from __future__ import annotations

import gzip
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from helpers import query
from pg15 import Pg15
from pgsyslog.importer.follow import Change, change_of

pytest_plugins = ["faultfixtures"]

# Appends LINES numbered lines to the log, a few at a time, renaming the file away
# (log -> log.1, later log -> log.2) and starting a new one at ROTATE_AT.
WRITER = textwrap.dedent("""
    import os, sys, time
    path, count, rotations = sys.argv[1], int(sys.argv[2]), [int(n) for n in sys.argv[3:]]
    out = open(path, "a")
    for i in range(count):
        if i in rotations:
            out.close()
            os.rename(path, f"{path}.{rotations.index(i) + 1}")
            out = open(path, "a")
        out.write(f"<14>1 2026-12-01T10:00:00Z host app - - - line {i}\\n")
        out.flush()
        if i % 10 == 9:
            time.sleep(0.02)
    out.close()
""")
LINES = 3000
ROTATE_AT = (1000, 2000)


def start_follow(dsn: str, log: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "pgsyslog", "import", "--follow", "--dsn",
                             dsn, "--default-tz", "UTC", str(log)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PGSYSLOG_RETENTION_DAYS": "0"})


def stored(dsn: str) -> int:
    return int(query(dsn, "SELECT count(*) FROM syslog.messages")[0][0])


# A loaded machine (the suite runs beside other work) can take minutes for a few thousand
# rows; a wait that times out says what was stored and what follow printed.
WAIT = 180


def wait_for_rows(dsn: str, count: int, follow: subprocess.Popen[str], what: str,
                  timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while stored(dsn) < count:
        if follow.poll() is not None or time.monotonic() > deadline:
            if follow.poll() is None:
                follow.kill()
            _, err = follow.communicate(timeout=30)
            raise AssertionError(f"timed out waiting for {what}: {stored(dsn):,} rows stored, "
                                 f"follow exited {follow.returncode}; it printed: {err[-3000:]}")
        time.sleep(0.05)


def stop(proc: subprocess.Popen[str], sig: int) -> tuple[int, str]:
    if proc.poll() is None:
        proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err


def stop_all(*procs: subprocess.Popen[str] | None) -> None:
    """Kill what still runs and reap it (a test that failed leaves no process behind)."""
    for proc in procs:
        if proc is None:
            continue
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def assert_each_line_once(dsn: str, count: int) -> None:
    twice = query(dsn, "SELECT message, count(*) FROM syslog.messages GROUP BY message "
                       "HAVING count(*) > 1")
    assert twice == [], f"stored more than once: {twice[:5]}"
    got = {m for (m,) in query(dsn, "SELECT message FROM syslog.messages")}
    missing = sorted(set(range(count)) - {int(m.split()[1]) for m in got})
    assert missing == [], f"{len(missing)} lines missing, first {missing[:10]}"


def test_follow_across_rotations_and_restarts_stores_every_line_once(
        dsn: str, tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.touch()
    follow = start_follow(dsn, log)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(log), str(LINES),
                               *map(str, ROTATE_AT)])
    try:
        wait_for_rows(dsn, 500, follow, "500 rows")
        status, err = stop(follow, signal.SIGTERM)
        assert status == 0 and "Traceback" not in err, err
        follow = start_follow(dsn, log)
        wait_for_rows(dsn, 1500, follow, "1,500 rows (past the first rotation)")
        follow.kill()
        follow.communicate(timeout=30)
        follow = start_follow(dsn, log)
        assert writer.wait(WAIT) == 0
        wait_for_rows(dsn, LINES, follow, f"{LINES} rows")
        time.sleep(1.5)  # three polls more: nothing else may come
        status, err = stop(follow, signal.SIGTERM)
    finally:
        stop_all(follow, writer)
    assert status == 0, err
    assert_each_line_once(dsn, LINES)
    assert stored(dsn) == LINES
    assert (tmp_path / "app.log.2").exists()


def test_follow_reads_a_truncated_file_from_its_start(dsn: str, tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("".join(f"<14>1 2026-12-01T10:00:00Z h a - - - line {i}\n"
                           for i in range(5)))
    follow = start_follow(dsn, log)
    try:
        wait_for_rows(dsn, 5, follow, "the first 5 rows")
        with log.open("r+") as out:  # copytruncate: same inode, emptied, written again
            out.truncate(0)
        log.write_text("".join(f"<14>1 2026-12-01T10:00:00Z h a - - - line {i}\n"
                               for i in range(5, 7)))
        wait_for_rows(dsn, 7, follow, "the 2 rows after the truncation")
        status, err = stop(follow, signal.SIGTERM)
    finally:
        stop_all(follow)
    assert status == 0, err
    assert_each_line_once(dsn, 7)


def fake_stat(dev: int, ino: int, size: int) -> os.stat_result:
    return os.stat_result((0o100644, ino, dev, 1, 0, 0, size, 0, 0, 0))


def test_what_happened_to_a_followed_file() -> None:
    opened = fake_stat(1, 10, 500)
    assert change_of(opened, None, 500, False) is Change.GONE
    assert change_of(opened, fake_stat(1, 11, 0), 500, False) is Change.RENAMED
    assert change_of(opened, fake_stat(1, 10, 20), 500, False) is Change.TRUNCATED
    assert change_of(opened, fake_stat(1, 10, 900), 500, True) is Change.TRUNCATED
    assert change_of(opened, fake_stat(1, 10, 900), 500, False) is Change.NONE


def lines_of(first: int, count: int) -> str:
    return "".join(f"<14>1 2026-12-01T10:00:00Z h a - - - line {i}\n"
                   for i in range(first, first + count))


def follow_once(dsn: str, log: Path, count: int) -> str:
    """Follow until ``count`` rows are stored and a second more; what follow printed."""
    follow = start_follow(dsn, log)
    try:
        wait_for_rows(dsn, count, follow, f"{count} rows")
        time.sleep(1.0)
        status, err = stop(follow, signal.SIGTERM)
    finally:
        stop_all(follow)
    assert status == 0, err
    return err


def test_a_rotation_while_follow_was_down_is_read_to_its_end_first(
        dsn: str, tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text(lines_of(0, 3))
    follow_once(dsn, log, 3)
    with log.open("a") as out:  # written after the stop, before the rotation
        out.write(lines_of(3, 2))
    log.rename(tmp_path / "app.log.1")
    log.write_text(lines_of(5, 2))
    err = follow_once(dsn, log, 7)
    assert "was rotated to" in err and "app.log.1" in err
    assert_each_line_once(dsn, 7)
    assert stored(dsn) == 7


@pytest.mark.parametrize("first", [3, 200], ids=["short_head", "whole_head"])
def test_a_rotation_compressed_while_follow_was_down_is_finished(
        dsn: str, tmp_path: Path, first: int) -> None:
    log = tmp_path / "app.log"
    log.write_text(lines_of(0, first))
    follow_once(dsn, log, first)
    with log.open("a") as out:  # written after the stop, before the rotation
        out.write(lines_of(first, 50))
    rotated = tmp_path / "app.log.1"  # logrotate's compress without delaycompress
    log.rename(rotated)
    with rotated.open("rb") as plain, gzip.open(tmp_path / "app.log.1.gz", "wb") as packed:
        shutil.copyfileobj(plain, packed)
    rotated.unlink()
    log.write_text(lines_of(first + 50, 10))
    err = follow_once(dsn, log, first + 60)
    assert "was rotated to" in err and "app.log.1.gz" in err, err
    assert_each_line_once(dsn, first + 60)
    assert stored(dsn) == first + 60
    again = subprocess.run([sys.executable, "-m", "pgsyslog", "import", "--dsn", dsn,
                            str(tmp_path / "app.log.1.gz")], capture_output=True, text=True,
                           timeout=120)
    assert f"0 imported, {first + 50} skipped as already imported" in again.stdout, again


def test_a_rotation_gone_while_follow_was_down_is_one_warning(dsn: str,
                                                               tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text(lines_of(0, 3))
    follow_once(dsn, log, 3)
    log.rename(tmp_path / "app.log.1")
    (tmp_path / "app.log.1").unlink()  # rotated and deleted (or moved away) meanwhile
    log.write_text(lines_of(3, 2))
    err = follow_once(dsn, log, 5)
    warnings = [line for line in err.splitlines() if "WARNING" in line]
    assert len(warnings) == 1, err
    size = len(lines_of(0, 3))
    assert (f"{log}: the file read before (3 lines stored, to byte {size}) was rotated away "
            f"while follow was down") in warnings[0]
    assert f"pgsyslog import {log}.*.gz" in warnings[0]
    assert_each_line_once(dsn, 5)


def test_follow_goes_on_after_the_database_was_away(pg: Pg15, tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text(lines_of(0, 100))
    follow = start_follow(pg.dsn, log)
    try:
        wait_for_rows(pg.dsn, 100, follow, "the first 100 rows")
        pg.stop()
        with log.open("a") as out:
            out.write(lines_of(100, 100))
        time.sleep(3)  # follow finds the lines, and no database to store them in
        pg.start()
        wait_for_rows(pg.dsn, 200, follow, "the 100 rows written meanwhile")
        status, err = stop(follow, signal.SIGTERM)
    finally:
        stop_all(follow)
    assert status == 0, err
    assert "the database is away" in err and "Traceback" not in err, err
    assert_each_line_once(pg.dsn, 200)


def test_a_followed_gzip_file_is_read_once(dsn: str, tmp_path: Path) -> None:
    packed = tmp_path / "old.log.gz"
    packed.write_bytes(gzip.compress(lines_of(0, 50).encode()))
    err = follow_once(dsn, packed, 50)  # two polls: its size on disk is no truncation
    assert "truncated" not in err
    assert stored(dsn) == 50
