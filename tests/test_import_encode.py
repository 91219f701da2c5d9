"""A large import parses and encodes in two worker processes, half a group each
(importer/encode.py): the halves' rows are stored once each, with ids inside their
batch's block; a killed worker is replaced by a thread and no line is lost or stored
twice; a stopped one is given up on and killed; the import killed, the workers do not
outlive it. Real PostgreSQL, `pgsyslog import` as a subprocess."""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from multiprocessing import popen_spawn_posix
from pathlib import Path
from typing import Any

import pytest
from test_import import assert_each_line_once, numbered

from helpers import children_of, query
from pgsyslog.importer import encode
from pgsyslog.importer.lines import LineOptions

LINES = 150_000
SMALL_GROUPS = {"PGSYSLOG_IMPORT_BATCH_ROWS": "1000"}  # many groups: the worker is up early


def start(dsn: str, log: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "pgsyslog", "import", "--dsn", dsn,
                             "--default-tz", "UTC", "--quiet", str(log)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **SMALL_GROUPS})


def workers_of(pid: int) -> list[int]:
    """The encoding worker processes started by ``pid`` (multiprocessing's spawn)."""
    return children_of(pid, b"spawn_main")


def wait_for_workers(dsn: str, proc: subprocess.Popen[str]) -> list[int]:
    """The workers' pids, once they have encoded some of the rows stored."""
    deadline = time.monotonic() + 60
    while True:
        workers = workers_of(proc.pid)
        if len(workers) == encode.WORKERS and \
                query(dsn, "SELECT count(*) FROM syslog.messages")[0][0] > 10_000:
            return workers
        assert proc.poll() is None, f"the import ended before its worker was seen: " \
                                    f"{proc.communicate()}"
        assert time.monotonic() < deadline, "no worker process came"
        time.sleep(0.02)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_killed_worker_is_replaced_by_a_thread(dsn: str, tmp_path: Path) -> None:
    log = tmp_path / "big.log"
    log.write_text(numbered(LINES))
    proc = start(dsn, log)
    os.kill(wait_for_workers(dsn, proc)[0], signal.SIGKILL)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    assert f"{LINES:,} imported" in out, out
    assert "encoding worker process stopped" in err, err
    assert "Traceback" not in err, err
    assert_each_line_once(dsn, LINES)


def test_the_workers_end_with_a_killed_import(dsn: str, tmp_path: Path) -> None:
    log = tmp_path / "big.log"
    log.write_text(numbered(LINES))
    proc = start(dsn, log)
    workers = wait_for_workers(dsn, proc)
    # multiprocessing's resource tracker, started with the workers, must end too.
    trackers = children_of(proc.pid, b"resource_tracker")
    assert trackers, "no resource tracker seen beside the workers"
    proc.kill()
    proc.communicate(timeout=30)
    deadline = time.monotonic() + 10
    while living := [pid for pid in workers + trackers if alive(pid)]:
        assert time.monotonic() < deadline, f"processes {living} outlived their import"
        time.sleep(0.05)


def test_halves_with_skipped_lines_store_each_line_once_inside_its_batch(
        dsn: str, tmp_path: Path) -> None:
    """Blank lines in a group's first half leave ids unused between the halves' rows: each
    row must still lie in its batch's block, and in no other (storage/follow.py reads by
    those blocks)."""
    lines = numbered(LINES).splitlines(keepends=True)
    log = tmp_path / "gaps.log"
    log.write_text("".join(f"{line}   \n" if i % 7 == 0 else line
                           for i, line in enumerate(lines)))
    proc = start(dsn, log)
    workers = wait_for_workers(dsn, proc)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    assert f"{LINES:,} imported" in out, out
    assert len(workers) == 2
    assert_each_line_once(dsn, LINES)
    outside = query(dsn, "SELECT m.id FROM syslog.messages m WHERE (SELECT count(*) "
                         "FROM syslog.batches b WHERE m.id BETWEEN b.first_id AND b.last_id)"
                         " <> 1 LIMIT 5")
    assert outside == [], f"rows in no batch's block, or in two: {outside}"
    gaps = query(dsn, "SELECT count(*) FROM syslog.batches b WHERE b.last_id - b.first_id + 1"
                      " > (SELECT count(*) FROM syslog.messages m "
                      "    WHERE m.id BETWEEN b.first_id AND b.last_id)")[0][0]
    assert gaps > 0, "no group was split with blank lines in its first half"


def test_a_stopped_worker_is_given_up_on_and_killed(monkeypatch: pytest.MonkeyPatch,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    """A worker that never answers (SIGSTOP, a frozen cgroup) costs WORKER_WAIT, not the
    import: the group is encoded in a thread, the worker is killed, and the warning says
    it gave no answer."""
    monkeypatch.setattr(encode, "THREAD_GROUPS", 0)
    monkeypatch.setattr(encode, "WORKER_WAIT", 2.0)
    now = datetime.now(UTC)
    options = LineOptions(reference=now, now=now, default_tz=UTC)
    lines = [b"<14>1 2026-12-01T10:00:00Z host app - - - line %d" % i for i in range(100)]

    async def scenario() -> tuple[encode.EncodedGroup, encode.EncodedGroup, list[int]]:
        encoder = encode.Encoder()
        try:
            while not encoder.in_worker:  # the first groups go to a thread meanwhile
                await encoder.encode(lines, options, 1)
                await asyncio.sleep(0.05)
            by_worker = await encoder.encode(lines, options, 1)
            workers = [p.pid for p in multiprocessing.active_children()]
            assert workers, "no worker process"
            for pid in workers:
                os.kill(pid, signal.SIGSTOP)
            by_thread = await encoder.encode(lines, options, 1)
            return by_worker, by_thread, workers
        finally:
            encoder.close()

    by_worker, by_thread, workers = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert by_thread == by_worker and by_thread.rows == 100
    warnings = [r.getMessage() for r in caplog.records if r.name == encode.__name__]
    assert warnings == ["the encoding worker process gave no answer in 2 s (stopped or "
                        "stuck); encoding in the importer itself from here on"]
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in workers):
        assert time.monotonic() < deadline, "the stopped worker was left alive"
        time.sleep(0.05)


@pytest.mark.parametrize("failure", [OSError(errno.EMFILE, "Too many open files"),
                                     RuntimeError("can't start new thread")],
                         ids=["EMFILE", "no thread"])
def test_a_second_worker_that_cannot_start_leaves_no_unretrieved_exception(
        failure: Exception, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """The first worker starts and the second cannot (EMFILE under a low `ulimit -n`, no
    thread left under a low `ulimit -v`): the import encodes in a thread, kills the first,
    and leaves nothing on stderr but its one warning, no asyncio "Future exception was
    never retrieved"."""
    launch = popen_spawn_posix.Popen._launch
    started = 0

    def launch_one(self: Any, process_obj: Any) -> None:
        nonlocal started
        started += 1
        if started > 1:
            raise failure
        launch(self, process_obj)

    monkeypatch.setattr(popen_spawn_posix.Popen, "_launch", launch_one)
    monkeypatch.setattr(encode, "THREAD_GROUPS", 0)
    now = datetime.now(UTC)
    options = LineOptions(reference=now, now=now, default_tz=UTC)
    lines = [b"<14>1 2026-12-01T10:00:00Z host app - - - line %d" % i for i in range(2000)]

    async def scenario() -> list[encode.EncodedGroup]:
        encoder = encode.Encoder()
        groups = [await encoder.encode(lines, options, 1 + k * 2000) for k in range(3)]
        encoder.close()
        await asyncio.sleep(0.5)  # the killed worker's call ends meanwhile
        gc.collect()  # asyncio logs an unretrieved exception when its future is collected
        return groups

    with caplog.at_level(logging.WARNING):
        groups = asyncio.run(asyncio.wait_for(scenario(), 60))
        gc.collect()
    assert started == 2, "the second worker's start was not tried"
    assert [g.rows for g in groups] == [2000, 2000, 2000]
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [f"the encoding worker process could not start ({failure}); "
                        "encoding in the importer itself from here on"]


def test_the_worker_imports_no_sqlalchemy() -> None:
    """A worker process imports only what encode_group needs: the parsers, psycopg and
    the row format. SQLAlchemy (reached through storage/schema.py) would triple its
    start-up, CPU an import of half a million lines has none to spare."""
    heavy = ("sqlalchemy", "alembic", "aiohttp", "click", "pgsyslog.storage.schema")
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, pgsyslog.importer.encode\n"
         f"print(' '.join(m for m in {heavy!r} if m in sys.modules))"],
        capture_output=True, text=True, check=True).stdout.split()
    assert loaded == []
