"""Partitions and retention against the real database, beside live inserts."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

import psycopg
import pytest
from click.testing import CliRunner

from helpers import ServerProcess, query, wait_for_rows
from pgsyslog.cli import cli
from pgsyslog.record import Record
from pgsyslog.storage import database, locks, partitions
from pgsyslog.storage.copy import copy_records, register_adapters
from pgsyslog.storage.days import day_start
from pgsyslog.storage.maintenance import (
    MaintenanceBusy,
    MaintenanceResult,
    drain_unrouted,
    prune_batches,
    run_maintenance,
)

TODAY = datetime.now(UTC).date()
T = TypeVar("T")


def record_at(when: datetime, message: str) -> Record:
    return Record(when, None, 1, 5, "h", "app", None, None, None, message, "rfc5424", "tcp",
                  "127.0.0.1", None, None)


def fill(dsn: str, days: list[date], per_day: int = 10) -> None:
    """Create partitions for the days and COPY rows into each."""
    async def write() -> None:
        conn = await database.connect_async(dsn, autocommit=True)
        register_adapters(conn)
        async with conn.transaction():
            await copy_records(conn, [
                record_at(day_start(day) + timedelta(hours=12, seconds=i), f"{day} {i}")
                for day in days for i in range(per_day)])
        await conn.close()

    with database.connect(dsn, autocommit=True) as conn:
        for day in days:
            partitions.create_partition(conn, day)
    asyncio.run(write())


def names(dsn: str) -> list[str]:
    with database.connect(dsn) as conn:
        return [p.name for p in partitions.list_partitions(conn)]


def test_prune_removes_exactly_the_expired_days(dsn: str) -> None:
    old = [TODAY - timedelta(days=d) for d in (40, 35, 31, 30, 29, 5)]
    fill(dsn, old)
    now = datetime.now(UTC)
    with database.connect(dsn, autocommit=True) as conn:
        conn.execute("SET lock_timeout = '7s'")
        dropped = partitions.drop_expired_partitions(conn, now, retention_days=30)
        # its own bounds are gone afterwards; the session's settings are back
        assert conn.execute("SHOW lock_timeout").fetchone() == ("7s",)
        assert conn.execute("SHOW statement_timeout").fetchone() == ("0",)
    # a day is dropped when the whole of it is more than 30 days old
    assert dropped == [partitions.partition_name(TODAY - timedelta(days=d)) for d in (40, 35, 31)]
    kept = names(dsn)
    assert not set(dropped) & set(kept)
    for d in (30, 29, 5):
        assert partitions.partition_name(TODAY - timedelta(days=d)) in kept
    assert query(dsn, "SELECT count(*) FROM syslog.messages") == [(30,)]


def test_prune_cli_dry_run_changes_nothing_then_prunes(dsn: str) -> None:
    fill(dsn, [TODAY - timedelta(days=10), TODAY - timedelta(days=3)])
    before = names(dsn)
    runner = CliRunner()
    dry = runner.invoke(cli, ["partitions", "prune", "--dsn", dsn, "--retention-days", "7",
                              "--dry-run"])
    assert dry.exit_code == 0, dry.output
    expired = partitions.partition_name(TODAY - timedelta(days=10))
    assert f"would drop {expired}" in dry.output
    assert names(dsn) == before
    real = runner.invoke(cli, ["partitions", "prune", "--dsn", dsn, "--retention-days", "7"])
    assert real.exit_code == 0, real.output
    assert f"dropped {expired}" in real.output
    assert names(dsn) == [n for n in before if n != expired]
    assert query(dsn, "SELECT count(*) FROM syslog.messages") == [(10,)]


def test_retention_forever_drops_nothing(dsn: str) -> None:
    fill(dsn, [TODAY - timedelta(days=400)])
    with database.connect(dsn, autocommit=True) as conn:
        assert partitions.drop_expired_partitions(conn, datetime.now(UTC), 0) == []


def test_partitions_list_and_ensure_cli(dsn: str) -> None:
    runner = CliRunner()
    ensured = runner.invoke(cli, ["partitions", "ensure", "--dsn", dsn, "--ahead", "6"])
    assert ensured.exit_code == 0, ensured.output
    assert ensured.output.strip().endswith("3 partition(s) created")
    listed = runner.invoke(cli, ["partitions", "list", "--dsn", dsn])
    assert listed.exit_code == 0
    assert partitions.partition_name(TODAY + timedelta(days=6)) in listed.output
    assert "8 partition(s)" in listed.output


def test_prune_while_a_writer_keeps_copying(dsn: str) -> None:
    old_days = [TODAY - timedelta(days=d) for d in range(40, 50)]
    fill(dsn, old_days, per_day=1)
    written = 0
    errors: list[BaseException] = []
    stop = threading.Event()

    async def keep_writing() -> None:
        nonlocal written
        conn = await database.connect_async(dsn, autocommit=True)
        register_adapters(conn)
        while not stop.is_set():
            batch = [record_at(datetime.now(UTC), f"live {written + i}") for i in range(200)]
            async with conn.transaction():
                await copy_records(conn, batch)
            written += len(batch)
        await conn.close()

    def writer() -> None:
        try:
            asyncio.run(keep_writing())
        except BaseException as e:  # reported below
            errors.append(e)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        with database.connect(dsn, autocommit=True) as conn:
            dropped = partitions.drop_expired_partitions(conn, datetime.now(UTC), 30)
    finally:
        stop.set()
        thread.join(60)
    assert errors == []
    assert len(dropped) == 10 and written > 0
    assert query(dsn, "SELECT count(*) FROM syslog.messages WHERE message LIKE 'live %'") == [
        (written,)]


def test_a_pending_detach_is_finalized_by_the_next_run(dsn: str) -> None:
    old = TODAY - timedelta(days=60)
    fill(dsn, [old])
    name = partitions.partition_name(old)
    # A DETACH ... CONCURRENTLY whose second transaction is cancelled stays pending: hold a
    # lock on the partition so that the detach waits, then cancel it.
    with database.connect(dsn) as blocker, database.connect(dsn, autocommit=True) as detacher:
        blocker.execute(f"SELECT count(*) FROM syslog.{name}")  # open transaction, holds lock
        pid = detacher.info.backend_pid

        def cancel_soon() -> None:
            with database.connect(dsn, autocommit=True) as admin:
                for _ in range(100):
                    waiting = admin.execute(
                        "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s",
                        (pid,)).fetchone()
                    if waiting and waiting[0] in ("Lock", "IPC", "Timeout"):
                        break
                    threading.Event().wait(0.05)
                admin.execute("SELECT pg_cancel_backend(%s)", (pid,))

        canceller = threading.Thread(target=cancel_soon)
        canceller.start()
        with pytest.raises(psycopg.errors.QueryCanceled):
            detacher.execute(f"ALTER TABLE syslog.messages DETACH PARTITION syslog.{name} "
                             "CONCURRENTLY")
        canceller.join()
        blocker.rollback()
    pending = query(dsn, "SELECT i.inhdetachpending FROM pg_inherits i JOIN pg_class c "
                         "ON c.oid = i.inhrelid WHERE c.relname = %s", (name,))
    assert pending == [(True,)]
    result = run_maintenance(dsn, ahead=3, retention_days=30, steps=("drop",))
    assert name in result.dropped
    assert query(dsn, "SELECT to_regclass(%s)", (f"syslog.{name}",)) == [(None,)]


def test_a_second_maintenance_run_skips_while_one_holds_the_lock(dsn: str) -> None:
    with database.connect(dsn, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (locks.MAINTENANCE,))
        skipped = run_maintenance(dsn, ahead=3, retention_days=30)
        assert skipped.ran is False
        holder.execute("SELECT pg_advisory_unlock(%s)", (locks.MAINTENANCE,))
    assert run_maintenance(dsn, ahead=3, retention_days=30).ran is True


def test_two_runs_at_once_no_error(dsn: str) -> None:
    results: list[object] = []

    def run() -> None:
        try:
            results.append(run_maintenance(dsn, ahead=30, retention_days=30))
        except BaseException as e:
            results.append(e)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(not isinstance(r, BaseException) for r in results), results
    assert any(r.ran for r in results)  # type: ignore[attr-defined]
    assert len(names(dsn)) == 32  # yesterday .. today + 30, made once


def test_unrouted_rows_are_drained_into_their_partition(dsn: str) -> None:
    future = TODAY + timedelta(days=20)
    with psycopg.connect(dsn) as conn:
        conn.execute("""INSERT INTO syslog.unrouted (received_at, facility, severity, message,
                        format, transport, error)
                        VALUES (%s, 1, 5, 'from the future', 'raw', 'udp',
                                'no partition of relation "messages" found for row')""",
                     (day_start(future) + timedelta(hours=1),))
    with database.connect(dsn, autocommit=True) as conn:
        assert drain_unrouted(conn) == 0  # its day has no partition yet
        partitions.create_partition(conn, future)
        assert drain_unrouted(conn) == 1
    assert query(dsn, "SELECT count(*) FROM syslog.unrouted") == [(0,)]
    assert query(dsn, "SELECT message, tableoid::regclass::text FROM syslog.messages") == [
        ("from the future", f"syslog.{partitions.partition_name(future)}")]


def test_a_row_without_partition_is_stored(serve: Callable[..., ServerProcess],
                                           dsn: str) -> None:
    """The writer makes a missing partition (here: all were dropped) and retries."""
    with database.connect(dsn, autocommit=True) as conn:
        for name in names(dsn):
            conn.execute(f"DROP TABLE syslog.{name}")
    server = serve("--udp", "127.0.0.1:0", "--partitions-ahead", "0",
                   "--maintenance-interval", "3600")
    # start-up made today's partition again; drop it to force the writer's path
    with database.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP TABLE syslog.{partitions.partition_name(TODAY)}")
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"<14>1 - h app - - - no partition yet", ("127.0.0.1", server.port("udp")))
    assert wait_for_rows(dsn, 1) == 1
    assert partitions.partition_name(TODAY) in names(dsn)


def test_serve_runs_maintenance_on_schedule_and_logs_it(serve: Callable[..., ServerProcess],
                                                       dsn: str) -> None:
    fill(dsn, [TODAY - timedelta(days=45)], per_day=1)
    server = serve("--udp", "127.0.0.1:0", "--maintenance-interval", "1",
                   "--retention-days", "30")
    expired = partitions.partition_name(TODAY - timedelta(days=45))
    deadline = datetime.now(UTC) + timedelta(seconds=30)
    while datetime.now(UTC) < deadline and server.log.count("maintenance: ") < 3:
        threading.Event().wait(0.2)
    runs = [line for line in server.errors if "maintenance: " in line]
    assert len(runs) >= 3, server.log  # the first at start, then one a second
    assert f"maintenance: dropped {expired}" in runs[0]
    assert all("nothing to do" in line for line in runs[1:])
    assert expired not in names(dsn)


HANG_GUARD_S = 60  # a run that has not returned by then hangs: the test fails, not waits


def run_in_thread(run: Callable[[], T]) -> tuple[threading.Thread, list[T | BaseException]]:
    """Start run() in a thread; the list gets what it returned or raised."""
    outcome: list[T | BaseException] = []

    def target() -> None:
        try:
            outcome.append(run())
        except BaseException as e:  # reported by the test
            outcome.append(e)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, outcome


def wait_for_advisory_waiter(dsn: str, outcome: list[Any]) -> None:
    """Until a session of this database waits for an advisory lock, or the thread that
    should wait has ended (with its outcome), or HANG_GUARD_S have passed."""
    deadline = time.monotonic() + HANG_GUARD_S
    while time.monotonic() < deadline and not outcome:
        waiting = query(dsn, "SELECT count(*) FROM pg_stat_activity WHERE wait_event = "
                             "'advisory' AND datname = current_database()")
        if waiting[0][0]:
            return
        time.sleep(0.05)
    raise AssertionError(f"nobody waited for the maintenance lock: {outcome}")


def is_pending(dsn: str, name: str) -> list[tuple[object, ...]]:
    return query(dsn, "SELECT i.inhdetachpending FROM pg_inherits i JOIN pg_class c "
                      "ON c.oid = i.inhrelid WHERE c.relname = %s", (name,))


def table_exists(dsn: str, name: str) -> bool:
    return query(dsn, "SELECT to_regclass(%s)", (f"syslog.{name}",)) != [(None,)]


def messages(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


def test_a_detach_blocked_by_an_open_transaction_is_finished_by_the_next_run(
        dsn: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pgsyslog")
    old = TODAY - timedelta(days=60)
    fill(dsn, [old])
    name = partitions.partition_name(old)
    with database.connect(dsn) as reader:
        # A report still reading: its transaction locks the parent and every partition.
        reader.execute("SELECT count(*) FROM syslog.messages")
        thread, outcome = run_in_thread(lambda: run_maintenance(
            dsn, ahead=3, retention_days=30, steps=("drop",), statement_limit=1.0))
        thread.join(HANG_GUARD_S)
        hung = thread.is_alive()
        reader.rollback()
        assert not hung, "the detach waited without limit behind an open transaction"
        assert len(outcome) == 1 and isinstance(outcome[0], MaintenanceResult), outcome
        assert outcome[0].dropped == []
        assert len(messages(caplog, "partition maintenance stopped")) == 1
        assert is_pending(dsn, name) == [(True,)]
    result = run_maintenance(dsn, ahead=3, retention_days=30, steps=("drop",))
    assert result.dropped == [name]
    assert not table_exists(dsn, name)
    assert query(dsn, "SELECT count(*) FROM syslog.messages") == [(0,)]


def test_start_up_waits_for_another_receivers_maintenance(
        dsn: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pgsyslog")
    with database.connect(dsn, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (locks.MAINTENANCE,))
        holder_pid = holder.info.backend_pid
        thread, outcome = run_in_thread(lambda: run_maintenance(
            dsn, ahead=6, retention_days=30, wait=True, steps=("ensure",)))
        wait_for_advisory_waiter(dsn, outcome)
        assert thread.is_alive()
        holder.execute("SELECT pg_advisory_unlock(%s)", (locks.MAINTENANCE,))
        thread.join(HANG_GUARD_S)
    assert len(outcome) == 1 and isinstance(outcome[0], MaintenanceResult), outcome
    assert outcome[0].ran
    assert partitions.partition_name(TODAY + timedelta(days=6)) in outcome[0].created
    waited = messages(caplog, "waiting for another receiver's partition maintenance")
    assert len(waited) == 1 and f"pid {holder_pid}" in waited[0]


def test_start_up_gives_up_in_one_line(dsn: str) -> None:
    with database.connect(dsn, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (locks.MAINTENANCE,))
        with pytest.raises(MaintenanceBusy) as raised:
            run_maintenance(dsn, ahead=3, retention_days=30, wait=True, lock_wait_limit=0.5)
        text = str(raised.value)
        assert "\n" not in text and f"pid {holder.info.backend_pid}" in text
    assert run_maintenance(dsn, ahead=3, retention_days=30, wait=True).ran  # lock left free


def test_serve_waits_for_another_receivers_maintenance_at_start(
        serve: Callable[..., ServerProcess], dsn: str) -> None:
    with database.connect(dsn, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (locks.MAINTENANCE,))
        starter, started = run_in_thread(lambda: serve("--udp", "127.0.0.1:0"))
        wait_for_advisory_waiter(dsn, started)
        holder.execute("SELECT pg_advisory_unlock(%s)", (locks.MAINTENANCE,))
    starter.join(HANG_GUARD_S)
    assert len(started) == 1 and isinstance(started[0], ServerProcess), started
    log_text = started[0].log
    assert log_text.count("waiting for another receiver's partition maintenance") == 1
    assert "Traceback" not in log_text


def create_free_table(dsn: str, name: str) -> None:
    with database.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE syslog.{name} "
                     "(LIKE syslog.messages INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")


def insert_into(dsn: str, name: str, when: datetime) -> None:
    with database.connect(dsn, autocommit=True) as conn:
        conn.execute(f"INSERT INTO syslog.{name} (received_at, facility, severity, message, "
                     "format, transport) VALUES (%s, 1, 5, 'kept', 'raw', 'udp')", (when,))


def test_expired_left_over_tables_are_dropped_and_no_other_table_is_touched(
        dsn: str) -> None:
    old = TODAY - timedelta(days=60)
    orphan = partitions.partition_name(old)
    create_free_table(dsn, orphan)  # as a crash between DETACH and DROP leaves it
    insert_into(dsn, orphan, day_start(old))
    bystanders = [f"{orphan}_archive", "messages_p2020", "messages_old", "notes"]
    for name in bystanders:
        create_free_table(dsn, name)
    result = run_maintenance(dsn, ahead=3, retention_days=30)
    assert result.dropped == [orphan]
    assert not table_exists(dsn, orphan)
    assert all(table_exists(dsn, name) for name in bystanders)


def test_a_young_left_over_table_is_attached_with_its_rows(dsn: str) -> None:
    """Attached, not dropped and made again: a young left-over may hold rows (a detach
    under a shorter retention than today's), and attaching is finishing a half-made one."""
    young = TODAY - timedelta(days=10)
    name = partitions.partition_name(young)
    create_free_table(dsn, name)
    insert_into(dsn, name, day_start(young) + timedelta(hours=3))
    assert run_maintenance(dsn, ahead=3, retention_days=30).dropped == []
    assert name in names(dsn)
    assert query(dsn, "SELECT message, tableoid::regclass::text FROM syslog.messages") == [
        ("kept", f"syslog.{name}")]


def test_a_left_over_table_whose_rows_do_not_fit_stays_as_it_is(
        dsn: str, caplog: pytest.LogCaptureFixture) -> None:
    young = TODAY - timedelta(days=10)
    name = partitions.partition_name(young)
    create_free_table(dsn, name)
    insert_into(dsn, name, day_start(young) - timedelta(hours=1))  # the day before
    result = run_maintenance(dsn, ahead=3, retention_days=30)
    assert result.ran and name not in names(dsn)
    assert query(dsn, f"SELECT message FROM syslog.{name}") == [("kept",)]
    assert len(messages(caplog, f"{name} cannot be attached")) == 1


def range_checks(dsn: str, day: date) -> list[tuple[object, ...]]:
    return query(dsn, "SELECT conname FROM pg_constraint WHERE conname = %s",
                 (f"{partitions.partition_name(day)}_range",))


def test_two_creators_of_one_day_make_one_partition(dsn: str) -> None:
    for offset in range(100, 120):
        day = TODAY + timedelta(days=offset)
        both_connected = threading.Barrier(2)

        def create(day: date = day, barrier: threading.Barrier = both_connected) -> bool:
            with database.connect(dsn, autocommit=True) as conn:
                barrier.wait(HANG_GUARD_S)
                return partitions.create_partition(conn, day)

        creators = [run_in_thread(create) for _ in range(2)]
        for thread, _ in creators:
            thread.join(HANG_GUARD_S)
        outcomes = [outcome for _, made in creators for outcome in made]
        assert outcomes.count(True) == 1 and outcomes.count(False) == 1, (day, outcomes)
        assert names(dsn).count(partitions.partition_name(day)) == 1
        assert range_checks(dsn, day) == []  # no CHECK left on the live partition


def test_a_half_made_partition_is_finished(dsn: str) -> None:
    day = TODAY + timedelta(days=20)
    name = partitions.partition_name(day)
    create_free_table(dsn, name)  # a creator crashed after CREATE TABLE
    with database.connect(dsn, autocommit=True) as conn:
        conn.execute(f"ALTER TABLE syslog.{name} ADD CONSTRAINT {name}_range "
                     "CHECK (received_at IS NOT NULL)")  # ... or after a CHECK of its own
        assert partitions.create_partition(conn, day) is True
        assert partitions.create_partition(conn, day) is False
    assert name in names(dsn)
    assert range_checks(dsn, day) == []


def test_old_batch_identities_are_pruned_in_short_transactions(dsn: str) -> None:
    now = datetime.now(UTC)
    ages = [1, 29, 31, 40, 50, 60, 89, 91, 400]
    with database.connect(dsn, autocommit=True) as conn:
        for seq, age in enumerate(ages):
            conn.execute("INSERT INTO syslog.batches (id, seq, committed_at) "
                         "VALUES (gen_random_uuid(), %s, %s)", (seq, now - timedelta(days=age)))

        def kept() -> list[int]:
            rows = conn.execute("SELECT seq FROM syslog.batches ORDER BY seq").fetchall()
            return [ages[seq] for (seq,) in rows]

        assert prune_batches(conn, now, retention_days=0, batch_rows=2) == 2  # forever: 90 days
        assert kept() == [1, 29, 31, 40, 50, 60, 89]
        assert prune_batches(conn, now, retention_days=30, batch_rows=2) == 5
        assert kept() == [1, 29]
    result = run_maintenance(dsn, ahead=3, retention_days=1, now=now)
    assert result.batches_pruned == 1 and "forgot 1 old batch identity" in result.summary()
