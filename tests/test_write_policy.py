"""The writer's decisions: real PostgreSQL errors classified by SQLSTATE, backoff, halves."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from pgsyslog.receiver.write_policy import (
    BACKOFF_MAX,
    Batch,
    Failure,
    backoff,
    chunks,
    classify,
    describe,
    spool_now,
)
from pgsyslog.record import Record


def error_of(dsn: str, statement: str, setup: str | None = None) -> psycopg.Error:
    with psycopg.connect(dsn, autocommit=True) as conn:
        if setup:
            conn.execute(setup)
        with pytest.raises(psycopg.Error) as caught:
            conn.execute(statement)
    return caught.value


INSERT = ("INSERT INTO syslog.messages (received_at, facility, severity, hostname, message, "
          "format, transport) VALUES ({when}, 1, {severity}, {hostname}, 'm', 'raw', 'tcp')")


# Random enough not to compress below the btree's limit of a third of a page.
RANDOM_TEXT = "(SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 300))"


@pytest.mark.parametrize(("statement", "setup", "expected"), [
    ("SELECT 1/0", None, Failure.DATA),
    ("SELECT 'x'::int", None, Failure.DATA),
    (INSERT.format(when="now()", severity=9, hostname="'h'"), None, Failure.DATA),
    (INSERT.format(when="now()", severity=5, hostname=RANDOM_TEXT), None,
     Failure.DATA),  # 54000 index row too large
    (INSERT.format(when="now() + interval '400 days'", severity=5, hostname="'h'"), None,
     Failure.NO_PARTITION),
    ("SELECT pg_sleep(5)", "SET statement_timeout = '50ms'", Failure.TRANSIENT),
    ("SELECT * FROM syslog.not_there", None, Failure.TRANSIENT),
    ("SELECT pg_terminate_backend(pg_backend_pid())", None, Failure.TRANSIENT),
])
def test_real_errors_are_classified_by_sqlstate(dsn: str, statement: str, setup: str | None,
                                                expected: Failure) -> None:
    error = error_of(dsn, statement, setup)
    assert classify(error) is expected, (error.sqlstate, error)
    assert describe(error).splitlines() == [describe(error)]


def test_a_batch_identity_seen_again_is_a_duplicate(dsn: str) -> None:
    batch_id = uuid.uuid4()
    register = ("INSERT INTO syslog.batches (id, seq) VALUES "
                f"('{batch_id}', nextval('syslog.batch_seq'))")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(register)
    assert classify(error_of(dsn, register)) is Failure.DUPLICATE


def test_a_unique_violation_elsewhere_is_data(dsn: str) -> None:
    setup = "CREATE TEMP TABLE t (x int PRIMARY KEY); INSERT INTO t VALUES (1)"
    assert classify(error_of(dsn, "INSERT INTO t VALUES (1)", setup)) is Failure.DATA


def test_client_side_failures() -> None:
    assert classify(TimeoutError()) is Failure.TRANSIENT
    assert classify(psycopg.OperationalError("server closed the connection")) is (
        Failure.TRANSIENT)
    assert classify(psycopg.DataError("NUL in a text field")) is Failure.DATA
    assert classify(ValueError("cannot encode")) is Failure.DATA


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [backoff(a, 1.0) for a in (1, 2, 3)] == [0.2, 0.4, 0.8]
    assert backoff(50, 1.0) == BACKOFF_MAX
    assert backoff(1, 0.5) == 0.1


def test_spool_after_three_tries_or_at_once_when_stopping() -> None:
    assert [spool_now(a, stopping=False) for a in (1, 2, 3)] == [False, False, True]
    assert spool_now(1, stopping=True)


def record(i: int) -> Record:
    return Record(datetime.now(UTC) - timedelta(seconds=i), None, 1, 5, "h", None, None, None,
                  None, f"m{i}", "raw", "tcp", None, None, None)


def test_halves_have_identities_derived_the_same_way_every_time() -> None:
    batch = Batch.new([record(i) for i in range(5)])
    left, right = batch.halves()
    again = batch.halves()
    assert (left.id, right.id) == (again[0].id, again[1].id)
    assert len({batch.id, left.id, right.id}) == 3
    assert [r.message for r in left.records + right.records] == [
        r.message for r in batch.records]


def test_chunks_are_at_most_the_size() -> None:
    records = [record(i) for i in range(5)]
    assert [len(c) for c in chunks(records, 2)] == [2, 2, 1]
    assert chunks([], 2) == []
