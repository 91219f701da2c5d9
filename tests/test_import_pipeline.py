"""The import's transactions in flight: group k registers and commits on one connection
while groups k+1 and k+2 have been COPYed on the two others. Each test stops the import in
that state (the test holds the commit-order lock, so group k cannot register), breaks one
side, and checks that what is stored and the stored position agree, and that the next
import stores every line once. Real PostgreSQL, `pgsyslog import` as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from test_import import assert_each_line_once, messages, numbered, one_error_line, run_import

from helpers import query
from pgsyslog.importer.run import CONNECTIONS
from pgsyslog.storage.copy import COMMIT_ORDER_LOCK
from pgsyslog.storage.database import APPLICATION_NAME

LINES = 6_000
GROUP = {"PGSYSLOG_IMPORT_BATCH_ROWS": "1000"}

_WAITING_TO_REGISTER = """
    SELECT pid FROM pg_stat_activity
    WHERE application_name = %(app)s AND wait_event_type = 'Lock' AND wait_event = 'advisory'
"""
# The groups after it: their COPY done (the savepoint around it released), waiting in Python.
_COPIED_AND_WAITING = """
    SELECT pid FROM pg_stat_activity
    WHERE application_name = %(app)s AND state = 'idle in transaction'
      AND query LIKE 'RELEASE%%'
"""


@contextmanager
def commit_order_held(dsn: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """Hold the lock batches register under, so that no import group can commit."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (COMMIT_ORDER_LOCK,))
        yield conn


def between_the_steps(dsn: str, proc: subprocess.Popen[str]) -> tuple[int, list[int]]:
    """Wait until group 0 waits to register and the groups after it have been COPYed, one
    on each other connection; their backends."""
    deadline = time.monotonic() + 60
    while True:
        waiting = query(dsn, _WAITING_TO_REGISTER, {"app": APPLICATION_NAME})
        copied = query(dsn, _COPIED_AND_WAITING, {"app": APPLICATION_NAME})
        if len(waiting) == 1 and len(copied) == CONNECTIONS - 1:
            return waiting[0][0], [pid for (pid,) in copied]
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"not both in flight: {waiting} {copied}"
        time.sleep(0.05)


def stored(dsn: str) -> tuple[int, list[tuple[object, ...]]]:
    count = query(dsn, "SELECT count(*) FROM syslog.messages")[0][0]
    return count, query(dsn, "SELECT lines FROM syslog.imported_files")


def test_a_kill_between_copy_and_commit_loses_and_repeats_nothing(
        dsn: str, tmp_path: Path) -> None:
    log = tmp_path / "big.log"
    log.write_text(numbered(LINES))
    with commit_order_held(dsn):
        proc = _start(dsn, log)
        between_the_steps(dsn, proc)
        proc.kill()
        proc.communicate(timeout=30)
    assert stored(dsn) == (0, [])  # the COPYs went with their connections
    result = run_import(dsn, str(log), env=GROUP)
    assert f"{LINES:,} imported, 0 skipped" in result.stdout, result.stdout + result.stderr
    assert_each_line_once(dsn, LINES)


def test_a_failed_commit_rolls_back_the_group_copied_after_it(dsn: str, tmp_path: Path
                                                              ) -> None:
    log = tmp_path / "big.log"
    log.write_text(numbered(LINES))
    with commit_order_held(dsn) as held:
        proc = _start(dsn, log)
        first, _ = between_the_steps(dsn, proc)
        held.execute("SELECT pg_terminate_backend(%s)", (first,))
        out, err = proc.communicate(timeout=60)
    one_error_line(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    assert stored(dsn) == (0, [])  # groups 1 and 2 were COPYed, then rolled back
    result = run_import(dsn, str(log), env=GROUP)
    assert f"{LINES:,} imported, 0 skipped" in result.stdout, result.stdout + result.stderr
    assert_each_line_once(dsn, LINES)


def test_a_lost_connection_after_the_copy_keeps_the_group_before_it(dsn: str, tmp_path: Path
                                                                    ) -> None:
    log = tmp_path / "big.log"
    log.write_text(numbered(LINES))
    with commit_order_held(dsn) as held:
        proc = _start(dsn, log)
        _, after = between_the_steps(dsn, proc)
        for pid in after:
            held.execute("SELECT pg_terminate_backend(%s)", (pid,))
    out, err = proc.communicate(timeout=60)  # group 0 commits once the lock is free
    one_error_line(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    assert stored(dsn) == (1000, [(1000,)])
    result = run_import(dsn, str(log), env=GROUP)
    assert f"{LINES - 1000:,} imported, 1,000 skipped" in result.stdout, result.stdout
    assert_each_line_once(dsn, LINES)


def _start(dsn: str, log: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "pgsyslog", "import", "--dsn", dsn,
                             "--default-tz", "UTC", "--quiet", str(log)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **GROUP})


_REFUSE_POISON = """
    CREATE FUNCTION pg_temp_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.message = 'poison' THEN
            RAISE EXCEPTION 'refused by the test' USING ERRCODE = '22000';
        END IF;
        RETURN NEW;
    END $$;
    CREATE TRIGGER refuse_poison BEFORE INSERT ON syslog.messages
        FOR EACH ROW EXECUTE FUNCTION pg_temp_refuse();
"""


def test_a_refused_line_is_kept_apart_and_the_groups_around_it_are_stored_once(
        dsn: str, tmp_path: Path) -> None:
    """The group with the refused row takes the split path while the groups before and
    after it are in flight; every other line lands once. (Its parts take new id blocks,
    so its rows have ids above those of the group after it.)"""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(_REFUSE_POISON)
    log = tmp_path / "big.log"
    text = numbered(LINES).splitlines(keepends=True)
    text.insert(2500, text[0].replace("line 0", "poison"))
    log.write_text("".join(text))
    result = run_import(dsn, str(log), env=GROUP)
    assert f"{LINES + 1:,} imported" in result.stdout, result.stdout + result.stderr
    assert "kept in syslog.unrouted" in result.stderr
    assert_each_line_once(dsn, LINES)
    in_id_order = messages(dsn)
    assert in_id_order[:2000] == [f"line {i}" for i in range(2000)]  # groups 0 and 1
    assert query(dsn, "SELECT message, error FROM syslog.unrouted") == [
        ("poison", "22000 refused by the test")]
    assert query(dsn, "SELECT lines FROM syslog.imported_files") == [(LINES + 1,)]
