"""Days the store does not hold yet are loaded into a table of their own and attached, with
their indexes built, when the import is done (partitions.create_detached): a real
database, the command as a subprocess where the operator would run it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from test_import import FOREVER, assert_each_line_once, rfc5424, run_import, start_import

from helpers import query
from pgsyslog.storage import database, maintenance, partitions

NOW = datetime.now(UTC)
OLD = NOW - timedelta(days=12)  # a day no partition holds


def lines_of(count: int, first_time: datetime, step: timedelta = timedelta(seconds=1),
             first: int = 0) -> str:
    return "".join(rfc5424(first_time + step * i, f"line {i}") for i in range(first, first + count))


def attached_days(dsn: str) -> set[date]:
    with database.connect(dsn) as conn:
        return {p.day for p in partitions.list_partitions(conn)}


def left_over(dsn: str) -> list[str]:
    with database.connect(dsn) as conn:
        return partitions.left_over_tables(conn)


def index_shapes(dsn: str, table: str) -> list[tuple[str, bool]]:
    """Each index of the table as its definition without the names, and its validity."""
    rows = query(dsn, "SELECT pg_get_indexdef(i.indexrelid), i.indisvalid FROM pg_index i "
                      "WHERE i.indrelid = %s::regclass", (f"syslog.{table}",))
    shapes = [(definition.split(" USING ", 1)[1], valid) for definition, valid in rows]
    return sorted(shapes)


def wait_for_ledger_lines(dsn: str, proc: subprocess.Popen[str], timeout: float = 60) -> int:
    """Lines of the import committed (its rows are not in a query yet)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = query(dsn, "SELECT coalesce(sum(lines), 0) FROM syslog.imported_files")[0][0]
        if lines:
            return int(lines)
        assert proc.poll() is None and time.monotonic() < deadline, "nothing was committed"
        time.sleep(0.05)


def attaching(conn: psycopg.Connection[Any], day: date) -> None:
    """Hold ``day`` as a session attaching it does: its table made, its loading lock
    taken exclusive."""
    partitions.create_detached(conn, day)
    conn.execute("SELECT pg_advisory_lock(%s::int4, %s::int4)", partitions.loading_lock_key(day))


def attached(conn: psycopg.Connection[Any], day: date) -> None:
    """The attach that ``attaching`` stood for, done."""
    partitions.create_partition(conn, day)
    conn.execute("SELECT pg_advisory_unlock(%s::int4, %s::int4)",
                 partitions.loading_lock_key(day))


def popen_import(dsn: str, *args: str, **popen: Any) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "pgsyslog", "import", "--dsn", dsn,
                             "--default-tz", "UTC", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **FOREVER},
                            **popen)


@contextmanager
def reaped(proc: subprocess.Popen[str]) -> Iterator[subprocess.Popen[str]]:
    """The process, killed at the end if it still runs (a test failed meanwhile)."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_a_day_without_partition_is_attached_with_every_index_at_the_end(
        dsn: str, tmp_path: Path) -> None:
    log = tmp_path / "old.log"
    log.write_text(lines_of(3000, OLD.replace(hour=12)))
    result = run_import(dsn, str(log), "--batch-rows", "500", env=FOREVER)
    assert result.returncode == 0, result.stderr
    assert "3,000 imported" in result.stdout
    assert OLD.date() in attached_days(dsn) and left_over(dsn) == []
    assert_each_line_once(dsn, 3000)
    # The same indexes as a partition maintenance made, each valid.
    loaded = partitions.partition_name(OLD.date())
    made = partitions.partition_name(NOW.date())
    assert index_shapes(dsn, loaded) == index_shapes(dsn, made)
    assert all(valid for _, valid in index_shapes(dsn, loaded))
    assert len(index_shapes(dsn, loaded)) >= 6
    # And a full-text search finds its rows through the index.
    found = query(dsn, "SELECT count(*) FROM syslog.messages WHERE "
                       "syslog.message_tsvector(app_name, message) @@ "
                       "websearch_to_tsquery('simple', 'line 2999')")[0][0]
    assert found == 1


def test_a_killed_import_of_old_days_shows_each_line_once_after_the_next(
        dsn: str, tmp_path: Path) -> None:
    log = tmp_path / "old.log"
    log.write_text(lines_of(60_000, OLD.replace(hour=1)))
    proc = start_import(dsn, "--quiet", str(log))  # twelve days: within the retention
    committed = wait_for_ledger_lines(dsn, proc)
    proc.kill()
    proc.communicate(timeout=30)
    table = partitions.partition_name(OLD.date())
    # Committed, but not attached: in no query yet, kept in the day's table.
    assert left_over(dsn) == [table]
    assert query(dsn, "SELECT count(*) FROM syslog.messages")[0][0] == 0
    assert query(dsn, f"SELECT count(*) FROM syslog.{table}")[0][0] >= committed
    result = run_import(dsn, str(log), env=FOREVER)
    assert result.returncode == 0, result.stderr
    assert left_over(dsn) == [] and OLD.date() in attached_days(dsn)
    assert_each_line_once(dsn, 60_000)


def test_maintenance_attaches_the_table_of_an_import_that_died(dsn: str, tmp_path: Path) -> None:
    log = tmp_path / "old.log"
    log.write_text(lines_of(60_000, OLD.replace(hour=1)))
    proc = start_import(dsn, "--quiet", str(log))
    wait_for_ledger_lines(dsn, proc)
    proc.kill()
    proc.communicate(timeout=30)
    stored = query(dsn, f"SELECT count(*) FROM syslog.{partitions.partition_name(OLD.date())}"
                   )[0][0]
    maintenance.run_maintenance(dsn, ahead=1, retention_days=30)
    assert left_over(dsn) == [] and OLD.date() in attached_days(dsn)
    assert query(dsn, "SELECT count(*) FROM syslog.messages")[0][0] == stored


def test_maintenance_leaves_a_table_an_import_is_loading_to_it(
        dsn: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    log = tmp_path / "old.log"
    log.write_text(lines_of(200_000, OLD.replace(hour=0), step=timedelta(milliseconds=100)))
    proc = start_import(dsn, "--quiet", "--batch-rows", "2000", str(log))
    wait_for_ledger_lines(dsn, proc)
    caplog.set_level("INFO", logger="pgsyslog.storage.partitions")
    maintenance.run_maintenance(dsn, ahead=1, retention_days=30)
    assert proc.poll() is None, "the import ended before maintenance ran: a larger file"
    table = partitions.partition_name(OLD.date())
    assert f"left-over table syslog.{table} is being loaded by an import" in caplog.text
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "200,000 imported" in out
    assert left_over(dsn) == [] and OLD.date() in attached_days(dsn)
    assert query(dsn, "SELECT count(*) FROM syslog.messages")[0][0] == 200_000


def test_rows_across_a_loaded_and_an_attached_day_are_each_stored_once(
        dsn: str, tmp_path: Path) -> None:
    # Four days ago has no partition (loaded), three days ago has one (made before).
    late = (NOW - timedelta(days=4)).replace(hour=23, minute=50, second=0, microsecond=0)
    with database.connect(dsn, autocommit=True) as conn:
        partitions.ensure_days(conn, [(late + timedelta(days=1)).date()])
    log = tmp_path / "midnight.log"
    log.write_text(lines_of(1200, late))  # 20 minutes: ten before midnight, ten after
    result = run_import(dsn, str(log), "--batch-rows", "700", env=FOREVER)
    assert result.returncode == 0, result.stderr
    assert_each_line_once(dsn, 1200)
    by_day = dict(query(dsn, "SELECT received_at::date, count(*) FROM syslog.messages "
                             "GROUP BY 1"))
    assert by_day == {late.date(): 600, (late + timedelta(days=1)).date(): 600}
    assert left_over(dsn) == []


def test_a_writer_that_needs_a_day_being_loaded_attaches_it_with_its_rows(dsn: str) -> None:
    day = OLD.date()
    with database.connect(dsn, autocommit=True) as conn:
        assert partitions.create_detached(conn, day)
        table = partitions.partition_name(day)
        conn.execute(f"INSERT INTO syslog.{table} (received_at, facility, severity, message, "
                     "format, transport) VALUES (%s, 1, 5, 'loaded', 'raw', 'file')", (OLD,))
        assert partitions.create_partition(conn, day)  # as serve's writer does
    assert day in attached_days(dsn)
    assert query(dsn, "SELECT message FROM syslog.messages") == [("loaded",)]


@pytest.mark.parametrize("half_made", [False, True], ids=["no table", "half made"])
def test_rows_of_yesterday_show_as_each_group_commits(dsn: str, tmp_path: Path,
                                                      half_made: bool) -> None:
    yesterday = (NOW - timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    with database.connect(dsn, autocommit=True) as conn:  # no partition: made, not loaded
        conn.execute(f"DROP TABLE syslog.{partitions.partition_name(yesterday.date())}")
        if half_made:  # a creation cut before its ATTACH
            partitions.create_detached(conn, yesterday.date())
    log = tmp_path / "recent.log"
    log.write_text(lines_of(60_000, yesterday))
    proc = start_import(dsn, "--quiet", str(log))
    committed = wait_for_ledger_lines(dsn, proc)
    proc.kill()
    proc.communicate(timeout=30)
    assert left_over(dsn) == []
    assert query(dsn, "SELECT count(*) FROM syslog.messages")[0][0] >= committed


def test_follow_stores_rows_of_old_days_where_queries_see_them_at_once(
        dsn: str, tmp_path: Path) -> None:
    log = tmp_path / "old.log"
    log.write_text(lines_of(500, OLD))
    proc = subprocess.Popen([sys.executable, "-m", "pgsyslog", "import", "--follow", "--dsn",
                             dsn, "--default-tz", "UTC", str(log)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **FOREVER})
    try:
        deadline = time.monotonic() + 60
        while query(dsn, "SELECT count(*) FROM syslog.messages")[0][0] < 500:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr
            time.sleep(0.05)
        assert left_over(dsn) == []
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def test_a_day_passed_is_attached_while_the_next_days_load(dsn: str, tmp_path: Path) -> None:
    first = (NOW - timedelta(days=9)).replace(hour=0, minute=0, second=0, microsecond=0)
    log = tmp_path / "three-days.log"
    # A line every 4 s for the first day, then two days of one a second.
    log.write_text(lines_of(21_600, first, step=timedelta(seconds=4))
                   + lines_of(172_800, first + timedelta(days=1), first=21_600))
    proc = start_import(dsn, "--quiet", str(log))
    deadline = time.monotonic() + 120
    while first.date() not in attached_days(dsn):
        assert proc.poll() is None and time.monotonic() < deadline, "the first day came last"
        time.sleep(0.05)
    last = (first + timedelta(days=2)).date()
    assert last not in attached_days(dsn), "the import was done before the first day was in"
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    assert {first.date(), last} <= attached_days(dsn) and left_over(dsn) == []
    assert query(dsn, "SELECT count(*), count(DISTINCT message) FROM syslog.messages")[0] == (
        194_400, 194_400)


def test_rotated_files_imported_newest_first_store_each_line_once(
        dsn: str, tmp_path: Path) -> None:
    start = (NOW - timedelta(days=8)).replace(hour=6, minute=25, second=0, microsecond=0)
    older, newer = tmp_path / "syslog.2", tmp_path / "syslog.1"
    older.write_text(lines_of(20_000, start, step=timedelta(seconds=4)))  # 22 h
    newer.write_text(lines_of(20_000, start + timedelta(days=1), step=timedelta(seconds=4),
                              first=20_000))
    result = run_import(dsn, str(newer), str(older), "--batch-rows", "3000", env=FOREVER)
    assert result.returncode == 0, result.stderr
    assert left_over(dsn) == []
    assert_each_line_once(dsn, 40_000)


def test_indexes_built_before_a_kill_are_kept_and_the_others_built_once(dsn: str) -> None:
    from pgsyslog.importer.run import _attach_loaded

    day = OLD.date()
    table = partitions.partition_name(day)
    with database.connect(dsn, autocommit=True) as conn:
        partitions.create_detached(conn, day)
        every = partitions.missing_index_statements(conn, day)
        assert " USING gin " in every[0]  # the longest build starts first
        conn.execute(every[-1].encode())  # one index had been built when the import died
        assert partitions.missing_index_statements(conn, day) == every[:-1]
    _attach_loaded(dsn, day)
    assert index_shapes(dsn, table) == index_shapes(dsn, partitions.partition_name(NOW.date()))
    assert left_over(dsn) == []


def test_a_host_longer_than_a_row_may_hold_is_refused_in_one_line(
        dsn: str, tmp_path: Path) -> None:
    log = tmp_path / "raw.log"
    log.write_text("plain text without a header\n")
    result = run_import(dsn, "--host", "h" * 256, str(log), env=FOREVER)
    assert result.returncode == 2 and "at most 255" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) <= 3
    assert query(dsn, "SELECT count(*) FROM syslog.imported_files")[0][0] == 0


def test_maintenance_goes_past_a_table_an_index_refuses(dsn: str) -> None:
    bad, good = OLD.date(), (OLD - timedelta(days=1)).date()
    with database.connect(dsn, autocommit=True) as conn:
        for day in (bad, good):
            partitions.create_detached(conn, day)
        conn.execute(f"INSERT INTO syslog.{partitions.partition_name(bad)} (received_at, "
                     "facility, severity, hostname, message, format, transport) "
                     "SELECT %s, 1, 5, string_agg(md5(random()::text), ''), 'm', 'raw', 'file' "
                     "FROM generate_series(1, 250)", (OLD,))  # 8,000 characters at random
    maintenance.run_maintenance(dsn, ahead=1, retention_days=30)  # 54000 in the btree
    assert left_over(dsn) == [partitions.partition_name(bad)]
    assert good in attached_days(dsn)


def test_an_import_of_a_day_another_is_loading_leaves_the_attach_to_the_last(
        dsn: str, tmp_path: Path) -> None:
    big, small = tmp_path / "big.log", tmp_path / "small.log"
    big.write_text(lines_of(150_000, OLD.replace(hour=0), step=timedelta(milliseconds=500)))
    small.write_text(lines_of(2000, OLD.replace(hour=23), first=150_000))
    first = start_import(dsn, "--quiet", "--batch-rows", "2000", str(big))
    wait_for_ledger_lines(dsn, first)
    second = run_import(dsn, str(small), env=FOREVER)
    assert second.returncode == 0, second.stderr
    if first.poll() is None:  # the second ended while the first was still loading
        assert left_over(dsn) == [partitions.partition_name(OLD.date())]
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert left_over(dsn) == [] and OLD.date() in attached_days(dsn)
    assert query(dsn, "SELECT count(*), count(DISTINCT message) FROM syslog.messages")[0] == (
        152_000, 152_000)


def test_an_import_waits_for_a_day_maintenance_is_attaching(dsn: str, tmp_path: Path) -> None:
    day = OLD.date()
    with database.connect(dsn, autocommit=True) as conn:
        attaching(conn, day)
        log = tmp_path / "old.log"
        log.write_text(lines_of(1000, OLD))
        proc = popen_import(dsn, str(log))
        time.sleep(3)
        assert proc.poll() is None, proc.communicate()
        assert query(dsn, "SELECT count(*) FROM syslog.imported_files")[0][0] == 0
        attached(conn, day)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "waiting for syslog." in err and "1,000 imported" in out
    assert_each_line_once(dsn, 1000)


def test_sigterm_ends_an_import_waiting_for_another_sessions_attach(
        dsn: str, tmp_path: Path) -> None:
    """The wait may last as long as another session's index builds: a SIGTERM ends it at
    once, with nothing of the waiting group stored, and the next import stores it all."""
    day = OLD.date()
    log = tmp_path / "old.log"
    log.write_text(lines_of(1000, OLD))
    with database.connect(dsn, autocommit=True) as conn:
        attaching(conn, day)
        with reaped(popen_import(dsn, str(log))) as proc:
            time.sleep(3)
            assert proc.poll() is None, proc.communicate()
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=10)  # not when the attach is done
        assert proc.returncode == 130, err
        assert "waiting for syslog." in err and "interrupted" in err, err
        assert "0 imported" in out and "Traceback" not in err
        assert query(dsn, "SELECT coalesce(sum(lines), 0) FROM syslog.imported_files")[0][0] == 0
        attached(conn, day)
    again = run_import(dsn, str(log), env=FOREVER)
    assert again.returncode == 0, again.stderr
    assert "1,000 imported" in again.stdout
    assert_each_line_once(dsn, 1000)


def test_a_stop_does_not_end_standard_inputs_wait_whose_lines_cannot_be_read_again(
        dsn: str, tmp_path: Path) -> None:
    day = OLD.date()
    with database.connect(dsn, autocommit=True) as conn:
        attaching(conn, day)
        log = tmp_path / "old.log"
        log.write_text(lines_of(1000, OLD))
        with log.open() as stdin, reaped(popen_import(dsn, "-", stdin=stdin)) as proc:
            time.sleep(3)
            proc.send_signal(signal.SIGTERM)
            time.sleep(1)
            assert proc.poll() is None, proc.communicate()  # still waiting, lines in hand
            attached(conn, day)
            out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "1,000 imported" in out and "Traceback" not in err
    assert "lines of standard input given again would be stored again" in err
    assert_each_line_once(dsn, 1000)


def test_ctrl_c_as_the_encoding_workers_start_shows_no_traceback(
        dsn: str, tmp_path: Path) -> None:
    """A terminal's Ctrl-C goes to the whole process group, the workers too: here it
    comes as they start (with the second batch, which waits for its day)."""
    waiting = OLD.date() + timedelta(days=1)
    midnight = datetime(waiting.year, waiting.month, waiting.day, tzinfo=UTC)
    log = tmp_path / "old.log"  # the first 1,000 lines on the day before
    log.write_text(lines_of(2000, midnight - timedelta(seconds=1000)))
    with database.connect(dsn, autocommit=True) as conn:
        attaching(conn, waiting)
        with reaped(popen_import(dsn, "--batch-rows", "1000", str(log),
                                 start_new_session=True)) as proc:
            assert proc.stderr is not None
            seen = []
            while not seen or "waiting for" not in seen[-1]:
                seen.append(proc.stderr.readline())
                assert seen[-1], "".join(seen)  # it ended without waiting
            os.killpg(proc.pid, signal.SIGINT)
            out, err = proc.communicate(timeout=60)
        err = "".join(seen) + err
        assert proc.returncode == 130, err
        assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
        assert "1,000 imported" in out
        attached(conn, waiting)


def test_a_stop_while_waiting_attaches_a_day_another_import_left_to_it(
        dsn: str, tmp_path: Path) -> None:
    """Stopped while waiting for its group's second day, an import holds the first day's
    loading lock: another import done with that day meanwhile left its attach to this one,
    which attaches it at finish (not the next maintenance run)."""
    first = OLD.date()
    second = first + timedelta(days=1)
    midnight = datetime(second.year, second.month, second.day, tzinfo=UTC)
    spanning = tmp_path / "spanning.log"  # one group: lines 0-599 on the first day
    spanning.write_text(lines_of(1200, midnight - timedelta(seconds=600)))
    other = tmp_path / "other.log"  # the first day only
    other.write_text(lines_of(500, midnight - timedelta(hours=10), first=1200))
    with database.connect(dsn, autocommit=True) as conn:
        attaching(conn, second)
        with reaped(popen_import(dsn, str(spanning))) as proc:
            time.sleep(3)
            assert proc.poll() is None, proc.communicate()
            done = run_import(dsn, str(other), env=FOREVER)
            assert done.returncode == 0, done.stderr
            assert "500 imported" in done.stdout
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
        assert proc.returncode == 130, err
        assert "Traceback" not in err
        assert first in attached_days(dsn)
        assert left_over(dsn) == [partitions.partition_name(second)]  # the one "attaching"
        assert query(dsn, "SELECT count(*) FROM syslog.messages")[0][0] == 500
        attached(conn, second)
    again = run_import(dsn, str(spanning), env=FOREVER)
    assert again.returncode == 0, again.stderr
    assert "1,200 imported" in again.stdout
    assert_each_line_once(dsn, 1700)


def test_a_later_file_another_import_reads_still_leaves_the_days_loaded_before_attached(
        dsn: str, tmp_path: Path) -> None:
    """Refused at its second file (another import reads it), an import still attaches the
    day its first file loaded: the rows it counted as imported show."""
    locked = OLD.date() + timedelta(days=1)
    earlier, later = tmp_path / "earlier.log", tmp_path / "later.log"
    earlier.write_text(lines_of(800, OLD - timedelta(days=2)))
    later.write_text(lines_of(200, datetime(locked.year, locked.month, locked.day, tzinfo=UTC),
                              first=800))
    with database.connect(dsn, autocommit=True) as conn:
        attaching(conn, locked)
        reader = popen_import(dsn, str(later))
        try:
            time.sleep(3)  # it reads later.log, waiting for the locked day
            assert reader.poll() is None, reader.communicate()
            refused = run_import(dsn, str(earlier), str(later), env=FOREVER)
            assert refused.returncode == 1
            assert refused.stderr.strip().endswith(
                f"Error: {later}: another pgsyslog import is reading this file now; run "
                "this one again after it"), refused.stderr
            assert (OLD - timedelta(days=2)).date() in attached_days(dsn)
            assert query(dsn, "SELECT count(*) FROM syslog.messages")[0][0] == 800
        finally:
            reader.send_signal(signal.SIGTERM)
            reader.communicate(timeout=30)
        attached(conn, locked)
    assert reader.returncode == 130
    again = run_import(dsn, str(earlier), str(later), env=FOREVER)
    assert again.returncode == 0, again.stderr
    assert "total: 200 imported, 800 skipped as already imported" in again.stdout
    assert_each_line_once(dsn, 1000)
