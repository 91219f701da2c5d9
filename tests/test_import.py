"""`pgsyslog import`: real files, a real database, the command as a subprocess."""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from helpers import query
from pg15 import Pg15
from pgsyslog.importer.progress import progress_line

pytest_plugins = ["faultfixtures"]

UNREACHABLE_DSN = "host=/nonexistent-socket-dir dbname=none connect_timeout=1"
NOW = datetime.now(UTC)
FOREVER = {"PGSYSLOG_RETENTION_DAYS": "0"}


def run_import(dsn: str, *args: str, stdin: bytes | None = None,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "pgsyslog", "import", "--dsn", dsn,
                             "--default-tz", "UTC", *args], input=stdin, capture_output=True,
                            timeout=120, env={**os.environ, **(env or {})})
    return subprocess.CompletedProcess(result.args, result.returncode,
                                       result.stdout.decode(), result.stderr.decode())


def stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def rfc5424(t: datetime, text: str, host: str = "web01") -> str:
    return f"<14>1 {stamp(t)} {host} app 42 - - {text}\n"


def numbered(count: int, first: int = 0, day: datetime = NOW) -> str:
    return "".join(rfc5424(day - timedelta(minutes=5), f"line {i}")
                   for i in range(first, first + count))


def messages(dsn: str) -> list[str]:
    return [m for (m,) in query(dsn, "SELECT message FROM syslog.messages ORDER BY id")]


def partition_days(dsn: str) -> set[str]:
    rows = query(dsn, "SELECT c.relname FROM pg_inherits i JOIN pg_class c "
                      "ON c.oid = i.inhrelid WHERE i.inhparent = 'syslog.messages'::regclass")
    return {name.removeprefix("messages_p") for (name,) in rows}


def test_a_plain_file_lands_in_the_partitions_of_its_own_days(dsn: str, tmp_path: Path) -> None:
    old = NOW - timedelta(days=12)
    log = tmp_path / "syslog"
    log.write_text(rfc5424(old, "twelve days ago")
                   + "2026-03-01 10:15:30,123 billing ERROR payment failed\n"
                   + "just some words without a header\n"
                   + "\n")
    result = run_import(dsn, str(log), env=FOREVER)
    assert result.returncode == 0, result.stderr
    assert "3 imported" in result.stdout and "1 blank" in result.stdout
    rows = query(dsn, "SELECT received_at, event_time, format, transport, source_ip, hostname "
                      "FROM syslog.messages ORDER BY id")
    assert [r[2:] for r in rows] == [("rfc5424", "file", None, "web01"),
                                     ("custom", "file", None, None),
                                     ("raw", "file", None, None)]
    assert rows[0][0] == rows[0][1] == old
    assert rows[1][0] == rows[1][1] == datetime(2026, 3, 1, 10, 15, 30, 123000, tzinfo=UTC)
    assert rows[2][1] is None  # no time of its own: the file's modification time
    assert abs(rows[2][0].timestamp() - log.stat().st_mtime) < 1e-3
    assert {f"{old:%Y%m%d}", "20260301"} <= partition_days(dsn)


def test_gzip_is_told_by_its_magic_bytes_not_its_name(dsn: str, tmp_path: Path) -> None:
    packed = tmp_path / "export.log"  # gzip without .gz
    packed.write_bytes(gzip.compress(numbered(3).encode()))
    plain = tmp_path / "plain.gz"  # plain text named .gz
    plain.write_text(numbered(2, first=3))
    result = run_import(dsn, str(packed), str(plain))
    assert result.returncode == 0, result.stderr
    assert sorted(messages(dsn)) == [f"line {i}" for i in range(5)]
    assert query(dsn, "SELECT path, compressed, lines FROM syslog.imported_files "
                      "ORDER BY id") == [(str(packed), True, 3), (str(plain), False, 2)]


def test_standard_input_has_no_identity_and_is_imported_each_time(dsn: str) -> None:
    data = numbered(4).encode()
    for _ in range(2):
        result = run_import(dsn, "-", stdin=data)
        assert result.returncode == 0, result.stderr
        assert "standard input has no identity" in result.stderr
    assert len(messages(dsn)) == 8
    assert query(dsn, "SELECT count(*) FROM syslog.imported_files") == [(0,)]


def test_gzip_on_standard_input(dsn: str) -> None:
    result = run_import(dsn, "-", stdin=gzip.compress(numbered(3).encode()))
    assert result.returncode == 0, result.stderr
    assert messages(dsn) == ["line 0", "line 1", "line 2"]


def test_yearless_timestamps_take_the_year_of_the_files_modification(dsn: str,
                                                                      tmp_path: Path) -> None:
    log = tmp_path / "syslog.1"
    log.write_text("Dec 31 23:59:58 gw kernel: last of the year\n"
                   "Jan  1 00:00:02 gw kernel: first of the year\n")
    modified = datetime(2026, 1, 2, 8, 0, tzinfo=UTC).timestamp()
    os.utime(log, (modified, modified))
    result = run_import(dsn, str(log), env=FOREVER)
    assert result.returncode == 0, result.stderr
    assert query(dsn, "SELECT received_at, event_time FROM syslog.messages ORDER BY id") == [
        (datetime(2025, 12, 31, 23, 59, 58, tzinfo=UTC),) * 2,
        (datetime(2026, 1, 1, 0, 0, 2, tzinfo=UTC),) * 2]
    assert {"20251231", "20260101"} <= partition_days(dsn)


def test_host_names_the_lines_that_carry_none(dsn: str, tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("2026-11-30T10:00:00Z billing INFO charged\n"
                   "a raw line\n"
                   + rfc5424(NOW, "has its own", host="db1"))
    result = run_import(dsn, "--host", "appliance-7", str(log), env=FOREVER)
    assert result.returncode == 0, result.stderr
    assert query(dsn, "SELECT hostname FROM syslog.messages ORDER BY id") == [
        ("appliance-7",), ("appliance-7",), ("db1",)]


def test_lines_older_than_the_retention_are_counted_and_skipped_with_one_warning(
        dsn: str, tmp_path: Path) -> None:
    log = tmp_path / "old.log"
    log.write_text("".join(rfc5424(NOW - timedelta(days=40 + i), f"old {i}") for i in range(3))
                   + numbered(2))
    result = run_import(dsn, str(log), env={"PGSYSLOG_RETENTION_DAYS": "7"})
    assert result.returncode == 0, result.stderr
    assert "2 imported" in result.stdout and "3 skipped as too old" in result.stdout
    warnings = [line for line in result.stderr.splitlines() if "WARNING" in line]
    assert len(warnings) == 1 and "retention_days (7)" in warnings[0]
    assert messages(dsn) == ["line 0", "line 1"]
    assert not any(day < f"{NOW - timedelta(days=8):%Y%m%d}" for day in partition_days(dsn))


def test_importing_twice_adds_nothing_and_a_grown_file_only_its_new_lines(
        dsn: str, tmp_path: Path) -> None:
    log = tmp_path / "syslog"
    log.write_text(numbered(5))
    assert run_import(dsn, str(log)).returncode == 0
    again = run_import(dsn, str(log))
    assert again.returncode == 0, again.stderr
    assert "0 imported, 5 skipped as already imported" in again.stdout
    with log.open("a") as out:
        out.write(numbered(3, first=5))
    grown = run_import(dsn, str(log))
    assert "3 imported, 5 skipped as already imported" in grown.stdout
    assert messages(dsn) == [f"line {i}" for i in range(8)]


def test_renamed_and_compressed_rotations_are_recognised(dsn: str, tmp_path: Path) -> None:
    log = tmp_path / "syslog"
    log.write_text(numbered(100))  # more than the 4 KiB head
    assert run_import(dsn, str(log)).returncode == 0
    with log.open("a") as out:
        out.write(numbered(2, first=100))
    rotated = tmp_path / "syslog.1"
    log.rename(rotated)  # logrotate: same inode
    log.write_text(numbered(1, first=102))  # and a new file at the path
    renamed = run_import(dsn, str(rotated))
    assert "2 imported, 100 skipped as already imported" in renamed.stdout, renamed.stdout
    packed = tmp_path / "syslog.2.gz"  # the next rotation compresses it: another inode
    packed.write_bytes(gzip.compress(rotated.read_bytes()))
    rotated.unlink()
    compressed = run_import(dsn, str(packed))
    assert "0 imported, 102 skipped as already imported" in compressed.stdout, compressed.stdout
    assert messages(dsn) == [f"line {i}" for i in range(102)]


def test_a_file_starting_as_a_known_one_elsewhere_is_a_new_file(dsn: str,
                                                               tmp_path: Path) -> None:
    banner = "boot: firmware 1.2 starting\nboot: link up\n"  # shorter than the 4 KiB head
    (tmp_path / "devA").mkdir()
    (tmp_path / "devB").mkdir()
    dev_a, dev_b = tmp_path / "devA" / "export.txt", tmp_path / "devB" / "export.txt"
    dev_a.write_text(banner)
    dev_b.write_text(banner + "error: disk failed on devB\n")
    assert "2 imported" in run_import(dsn, "--host", "devA", str(dev_a), env=FOREVER).stdout
    second = run_import(dsn, "--host", "devB", str(dev_b), env=FOREVER)
    assert "3 imported, 0 skipped" in second.stdout, second.stdout
    with dev_a.open("a") as out:
        out.write("error: devA overheated\n")
    grown = run_import(dsn, "--host", "devA", str(dev_a), env=FOREVER)
    assert "1 imported, 2 skipped" in grown.stdout, grown.stdout
    assert query(dsn, "SELECT hostname, count(*) FROM syslog.messages GROUP BY 1 "
                      "ORDER BY 1") == [("devA", 3), ("devB", 3)]
    assert query(dsn, "SELECT path FROM syslog.imported_files ORDER BY id") == [
        (str(dev_a),), (str(dev_b),)]  # neither row was moved to the other file
    whole = tmp_path / "devA" / "syslog"  # a whole head, still at its path
    whole.write_text(numbered(100))
    assert run_import(dsn, str(whole)).returncode == 0
    for copy in (tmp_path / "devB" / "syslog.1.gz", tmp_path / "devA" / "copy-of-syslog.gz"):
        copy.write_bytes(gzip.compress(whole.read_bytes()))
        result = run_import(dsn, str(copy))
        assert "100 imported, 0 skipped" in result.stdout, (copy, result.stdout)


def test_a_copytruncate_copy_gives_only_the_lines_missed(dsn: str, tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text(numbered(100))
    assert run_import(dsn, str(log)).returncode == 0
    with log.open("a") as out:  # written after the import, just before the rotation
        out.write(numbered(5, first=100))
    copy = tmp_path / "app.log.1"
    shutil.copy(log, copy)  # copytruncate: a copy, then the file emptied and written on
    with log.open("r+") as out:
        out.truncate(0)
    log.write_text(numbered(3, first=105))
    assert "5 imported, 100 skipped" in run_import(dsn, str(copy)).stdout
    assert "3 imported, 0 skipped" in run_import(dsn, str(log)).stdout
    assert_each_line_once(dsn, 108)


def test_a_short_file_is_known_by_its_inode_only(dsn: str, tmp_path: Path) -> None:
    log = tmp_path / "small.log"
    log.write_text(numbered(3))  # under the 4 KiB head: its first bytes prove nothing
    assert run_import(dsn, str(log)).returncode == 0
    rotated = tmp_path / "small.log.1"
    log.rename(rotated)
    assert "0 imported, 3 skipped" in run_import(dsn, str(rotated)).stdout
    packed = tmp_path / "small.log.2.gz"
    packed.write_bytes(gzip.compress(rotated.read_bytes()))
    rotated.unlink()
    assert "3 imported, 0 skipped" in run_import(dsn, str(packed)).stdout


def test_a_truncated_and_rewritten_file_is_a_new_file(dsn: str, tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text(numbered(3))
    assert run_import(dsn, str(log)).returncode == 0
    with log.open("w") as out:  # same inode, new content
        out.write(numbered(2, first=100))
    result = run_import(dsn, str(log))
    assert "2 imported, 0 skipped" in result.stdout, result.stdout
    assert messages(dsn) == ["line 0", "line 1", "line 2", "line 100", "line 101"]


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_a_missing_or_unreadable_file_is_one_line_and_nothing_is_imported(
        dsn: str, tmp_path: Path) -> None:
    good = tmp_path / "good.log"
    good.write_text(numbered(2))
    line = one_error_line(run_import(dsn, str(good), str(tmp_path / "nope.log")))
    assert line == f"Error: {tmp_path / 'nope.log'}: cannot read it: No such file or directory"
    line = one_error_line(run_import(dsn, str(good), str(tmp_path)))
    assert line == f"Error: {tmp_path}: cannot read it: Is a directory"
    assert messages(dsn) == []
    assert query(dsn, "SELECT count(*) FROM syslog.imported_files") == [(0,)]


def test_a_damaged_gzip_file_is_one_line(dsn: str, tmp_path: Path) -> None:
    broken = tmp_path / "syslog.3.gz"
    broken.write_bytes(b"\x1f\x8b\x08\x00garbage that is no deflate stream")
    line = one_error_line(run_import(dsn, str(broken)))
    assert line.startswith(f"Error: {broken}: not a readable gzip file")
    assert messages(dsn) == []


def cut_gzip(data: bytes) -> tuple[bytes, int]:
    """A gzip of ``data`` broken off in the middle, and its content bytes that remain."""
    packed = gzip.compress(data, compresslevel=1)[: len(gzip.compress(data, 1)) // 2]
    remaining = 0
    with gzip.GzipFile(fileobj=io.BytesIO(packed)) as stream, contextlib.suppress(EOFError):
        while chunk := stream.read1(65536):
            remaining += len(chunk)
    return packed, remaining


def lines_in(data: bytes, content_bytes: int) -> int:
    return data[:content_bytes].count(b"\n")


def test_a_gzip_cut_short_imports_the_lines_before_the_cut_in_one_line(
        dsn: str, tmp_path: Path) -> None:
    data = numbered(5000).encode()
    packed, remaining = cut_gzip(data)
    broken = tmp_path / "syslog.4.gz"
    broken.write_bytes(packed)
    result = run_import(dsn, str(broken))
    complete = lines_in(data, remaining)
    assert f"{complete:,} imported" in result.stdout, result.stdout
    assert one_error_line(result) == (f"Error: {broken}: the gzip data is cut short after "
                                      f"{remaining:,} bytes of content: the lines before it "
                                      "are imported")
    assert result.returncode == 1
    assert messages(dsn) == [f"line {i}" for i in range(complete)]


def test_a_cut_gzip_of_a_known_file_counts_only_the_lines_it_holds(
        dsn: str, tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    data = numbered(5000).encode()
    log.write_bytes(data)
    assert run_import(dsn, str(log)).returncode == 0
    log.rename(tmp_path / "app.log.1")
    log.write_text(numbered(1, first=5000))  # the path holds a new file now
    (tmp_path / "app.log.1").unlink()
    packed, remaining = cut_gzip(data)
    broken = tmp_path / "app.log.1.gz"  # compressing it was broken off
    broken.write_bytes(packed)
    result = run_import(dsn, str(broken))
    complete = lines_in(data, remaining)
    assert f"0 imported, {complete:,} skipped as already imported" in result.stdout, result
    assert "cut short" in one_error_line(result)
    assert len(messages(dsn)) == 5000


def test_an_empty_host_is_refused_in_one_line(dsn: str, tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text(numbered(2))
    result = run_import(dsn, "--host", "", str(log))
    assert result.returncode == 2
    assert "--host" in one_error_line(result) and "empty" in result.stderr
    assert messages(dsn) == []


def test_an_unreachable_database_is_one_line(tmp_path: Path) -> None:
    log = tmp_path / "syslog"
    log.write_text(numbered(2))
    line = one_error_line(run_import(UNREACHABLE_DSN, str(log)))
    assert "cannot connect to" in line


def start_import(dsn: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "pgsyslog", "import", "--dsn", dsn,
                             "--default-tz", "UTC", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for_some_rows(dsn: str, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while query(dsn, "SELECT count(*) FROM syslog.messages")[0][0] == 0:
        assert proc.poll() is None and time.monotonic() < deadline, "no rows came"
        time.sleep(0.05)


def assert_each_line_once(dsn: str, count: int) -> None:
    rows = query(dsn, "SELECT message, count(*) FROM syslog.messages GROUP BY message "
                      "HAVING count(*) > 1")
    assert rows == [], f"stored twice: {rows[:5]}"
    assert sorted(messages(dsn), key=lambda m: int(m.split()[1])) == [
        f"line {i}" for i in range(count)]


def test_a_kill_in_the_middle_loses_and_repeats_nothing(dsn: str, tmp_path: Path) -> None:
    log = tmp_path / "big.log"
    log.write_text(numbered(60_000))
    proc = start_import(dsn, "--quiet", str(log))
    wait_for_some_rows(dsn, proc)
    proc.kill()
    proc.communicate(timeout=30)
    stored = query(dsn, "SELECT count(*) FROM syslog.messages")[0][0]
    result = run_import(dsn, str(log))
    assert result.returncode == 0, result.stderr
    assert f"{60_000 - stored:,} imported, {stored:,} skipped" in result.stdout, result.stdout
    assert_each_line_once(dsn, 60_000)


def test_sigterm_ends_an_import_after_the_batch_in_flight(dsn: str, tmp_path: Path) -> None:
    log = tmp_path / "big.log"
    log.write_text(numbered(60_000))
    proc = start_import(dsn, "--quiet", str(log))
    wait_for_some_rows(dsn, proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    if proc.returncode == 0:  # it had finished before the signal came
        assert "60,000 imported" in out
    else:
        assert proc.returncode == 130 and "run the same import again" in err, err
        assert "Traceback" not in err
    assert run_import(dsn, str(log)).returncode == 0
    assert_each_line_once(dsn, 60_000)


def test_a_terminal_gets_a_progress_bar_with_rates(dsn: str, tmp_path: Path) -> None:
    log = tmp_path / "syslog"
    log.write_text(numbered(5000))
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "pgsyslog", "import", "--dsn", dsn,
                             str(log)], stdout=subprocess.DEVNULL, stderr=follower,
                            env={**os.environ, "COLUMNS": "160", "TERM": "xterm"})
    os.close(follower)
    shown = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 60)
        try:
            chunk = os.read(leader, 65536) if ready else b""
        except OSError:  # the child closed the terminal
            chunk = b""
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    assert proc.wait(60) == 0
    text = shown.decode(errors="replace")
    assert "lines/s" in text and "5,000 lines" in text and "/s" in text, text


def test_the_plain_progress_line_says_rates_and_eta() -> None:
    line = progress_line("/var/log/syslog", 120_000, 12_000_000, 48_000_000, 4.0)
    assert line == ("import: /var/log/syslog: 120,000 lines, 12.0 MB of 48.0 MB (25%), "
                    "30,000 lines/s, 3.0 MB/s, ETA 0:00:12")


def test_a_second_import_of_a_file_being_imported_is_refused_in_one_line(
        dsn: str, tmp_path: Path) -> None:
    log = tmp_path / "big.log"
    log.write_text(numbered(60_000))
    first = start_import(dsn, "--quiet", str(log))
    wait_for_some_rows(dsn, first)
    second = run_import(dsn, "--quiet", str(log))
    _, first_err = first.communicate(timeout=120)
    assert first.returncode == 0, first_err
    if second.returncode == 0:  # the first had finished by then
        assert "0 imported, 60,000 skipped" in second.stdout
    else:
        assert one_error_line(second) == (f"Error: {log}: another pgsyslog import is reading "
                                          "this file now; run this one again after it")
    assert_each_line_once(dsn, 60_000)


def test_a_copy_imported_at_the_same_time_is_refused_in_one_line(dsn: str,
                                                                 tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text(numbered(100))
    follow = start_import(dsn, "--follow", str(log))  # holds the file's locks while it runs
    try:
        wait_for_some_rows(dsn, follow)
        packed = tmp_path / "app.log.1.gz"  # its rotation, compressed, while it is read
        packed.write_bytes(gzip.compress(log.read_bytes()))
        result = run_import(dsn, str(packed))
    finally:
        follow.send_signal(signal.SIGTERM)
        follow.communicate(timeout=60)
    assert one_error_line(result) == (
        f"Error: {packed}: another pgsyslog import is reading a file that starts with the "
        "same 4,096 bytes now (this one's rotation or copy); run this one again after it")
    assert_each_line_once(dsn, 100)


def test_an_unterminated_last_line_waits_while_the_file_is_being_written(
        dsn: str, tmp_path: Path) -> None:
    live = tmp_path / "live.log"
    live.write_bytes(b"<14>1 - h a - - - line 0\n<14>1 - h a - - - line")
    assert "1 imported" in run_import(dsn, str(live)).stdout
    with live.open("a") as out:
        out.write(" 1\n")
    assert "1 imported, 1 skipped" in run_import(dsn, str(live)).stdout
    done = tmp_path / "export.log"  # not modified for a minute: it is complete
    done.write_bytes(b"<14>1 - h a - - - line 2\n<14>1 - h a - - - line 3")
    minute_ago = time.time() - 60
    os.utime(done, (minute_ago, minute_ago))
    assert "2 imported" in run_import(dsn, str(done)).stdout
    assert messages(dsn) == ["line 0", "line 1", "line 2", "line 3"]


def test_what_an_import_reported_done_survives_a_server_crash_at_once(
        pg: Pg15, tmp_path: Path) -> None:
    log = tmp_path / "syslog"
    log.write_text(numbered(20_000))
    result = run_import(pg.dsn, "--quiet", str(log))
    assert result.returncode == 0 and "20,000 imported" in result.stdout, result.stderr
    pg.kill9()  # the groups committed without waiting for their WAL flush
    pg.start()
    assert_each_line_once(pg.dsn, 20_000)


def test_batch_rows_sets_the_lines_of_each_transaction(dsn: str, tmp_path: Path) -> None:
    log = tmp_path / "seven.log"
    log.write_text(numbered(7))
    result = run_import(dsn, "--batch-rows", "3", str(log))
    assert result.returncode == 0, result.stderr
    assert query(dsn, "SELECT last_id - first_id + 1 FROM syslog.batches ORDER BY seq") == [
        (3,), (3,), (1,)]
    bad = run_import(dsn, "--batch-rows", "0", str(log))
    assert bad.returncode == 2 and "import_batch_rows" in bad.stderr, bad.stderr
