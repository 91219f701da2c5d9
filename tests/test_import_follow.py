"""`pgsyslog import --follow`: a writer process appends and rotates while follow runs and
is restarted (SIGTERM once, SIGKILL once); every line is stored exactly once."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

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


def wait_until(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def stop(proc: subprocess.Popen[str], sig: int) -> tuple[int, str]:
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err


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
    wait_until(lambda: stored(dsn) >= 500, 60, "500 rows")
    status, err = stop(follow, signal.SIGTERM)
    assert status == 0 and "Traceback" not in err, err
    follow = start_follow(dsn, log)
    wait_until(lambda: stored(dsn) >= 1500, 60, "1,500 rows (past the first rotation)")
    follow.kill()
    follow.communicate(timeout=30)
    follow = start_follow(dsn, log)
    assert writer.wait(120) == 0
    wait_until(lambda: stored(dsn) >= LINES, 60, f"{LINES} rows")
    time.sleep(1.5)  # three polls more: nothing else may come
    status, err = stop(follow, signal.SIGTERM)
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
        wait_until(lambda: stored(dsn) == 5, 60, "the first 5 rows")
        with log.open("r+") as out:  # copytruncate: same inode, emptied, written again
            out.truncate(0)
        log.write_text("".join(f"<14>1 2026-12-01T10:00:00Z h a - - - line {i}\n"
                               for i in range(5, 7)))
        wait_until(lambda: stored(dsn) == 7, 60, "the 2 rows after the truncation")
    finally:
        status, err = stop(follow, signal.SIGTERM)
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


def test_a_rotation_while_follow_was_down_is_read_to_its_end_first(
        dsn: str, tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text(lines_of(0, 3))
    follow = start_follow(dsn, log)
    wait_until(lambda: stored(dsn) == 3, 60, "the first 3 rows")
    assert stop(follow, signal.SIGTERM)[0] == 0
    with log.open("a") as out:  # written after the stop, before the rotation
        out.write(lines_of(3, 2))
    log.rename(tmp_path / "app.log.1")
    log.write_text(lines_of(5, 2))
    follow = start_follow(dsn, log)
    try:
        wait_until(lambda: stored(dsn) >= 7, 60, "7 rows")
        time.sleep(1.0)
    finally:
        status, err = stop(follow, signal.SIGTERM)
    assert status == 0, err
    assert "was rotated to" in err and "app.log.1" in err
    assert_each_line_once(dsn, 7)
    assert stored(dsn) == 7


def test_follow_goes_on_after_the_database_was_away(pg: Pg15, tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text(lines_of(0, 100))
    follow = start_follow(pg.dsn, log)
    try:
        wait_until(lambda: stored(pg.dsn) == 100, 60, "the first 100 rows")
        pg.stop()
        with log.open("a") as out:
            out.write(lines_of(100, 100))
        time.sleep(3)  # follow finds the lines, and no database to store them in
        pg.start()
        wait_until(lambda: stored(pg.dsn) == 200, 60, "the 100 rows written meanwhile")
    finally:
        status, err = stop(follow, signal.SIGTERM)
    assert status == 0, err
    assert "the database is away" in err and "Traceback" not in err, err
    assert_each_line_once(pg.dsn, 200)


def test_a_followed_gzip_file_is_read_once(dsn: str, tmp_path: Path) -> None:
    packed = tmp_path / "old.log.gz"
    packed.write_bytes(gzip.compress(lines_of(0, 50).encode()))
    follow = start_follow(dsn, packed)
    try:
        wait_until(lambda: stored(dsn) == 50, 60, "50 rows")
        time.sleep(1.5)  # three polls: a gzip file's size on disk is no truncation
    finally:
        status, err = stop(follow, signal.SIGTERM)
    assert status == 0, err
    assert "truncated" not in err
    assert stored(dsn) == 50
