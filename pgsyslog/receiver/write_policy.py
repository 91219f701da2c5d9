"""What the writer does about a failure: pure decisions, no I/O.

A failed batch write is classified by SQLSTATE (never by message text):

- TRANSIENT: the database is away, shutting down, overloaded, or did not answer in time
  (connection classes 08, 57 operator intervention, 53 resources, 58 system, 40 rollbacks,
  55 object state, a client-side timeout, a connection lost without a SQLSTATE; also
  42 and 3F, a schema that is missing until migrations run). Retry the same batch, then
  spool it.
- DATA: the database refuses these rows (22 data, 23 integrity, 54 program limits such as
  an index row too large, and errors raised while encoding a row): split the batch so
  that one poison row cannot sink the others.
- NO_PARTITION: no partition for a row's day (23514 on the parent table itself, with no
  constraint name): make the partition, then try again.
- DUPLICATE: the batch's identity is in syslog.batches already: it committed before (an
  ambiguous commit, a replay cut short after its commit). Skip it.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass

import psycopg

from pgsyslog.record import Record
from pgsyslog.storage.copy import DUPLICATE_BATCH_CONSTRAINT

BACKOFF_FIRST = 0.2  # seconds before the first retry after a connection error
BACKOFF_MAX = 10.0  # never wait longer than this between two tries
# Tries (about 0.2 + 0.4 s of waiting) before a batch is spooled: a database restart that
# takes a second costs no disk writes; a longer outage does not hold up the queue.
SPOOL_AFTER_TRIES = 3

TRANSIENT_CLASSES = frozenset({"08", "53", "57", "58", "40", "55", "42", "3F", "XX", "25"})
DATA_CLASSES = frozenset({"22", "23", "54", "21"})
PARENT_TABLE = "messages"


class Failure(enum.Enum):
    TRANSIENT = "transient"
    DATA = "data"
    NO_PARTITION = "no partition"
    DUPLICATE = "duplicate"


def classify(exc: BaseException) -> Failure:
    if not isinstance(exc, psycopg.Error):
        # A client-side timeout is the database not answering; anything else raised while
        # building rows is about those rows.
        return Failure.TRANSIENT if isinstance(exc, TimeoutError | OSError) else Failure.DATA
    state = exc.sqlstate
    if state is None:
        # Raised by psycopg itself: a lost connection, or a value it cannot send.
        if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
            return Failure.TRANSIENT
        return Failure.DATA
    diag = exc.diag
    if state == "23505" and diag.constraint_name == DUPLICATE_BATCH_CONSTRAINT:
        return Failure.DUPLICATE
    if state == "23514" and diag.constraint_name is None and diag.table_name == PARENT_TABLE:
        return Failure.NO_PARTITION
    if state[:2] in DATA_CLASSES:
        return Failure.DATA
    # Unknown classes too: the rows wait in the spool for a person rather than being
    # scattered into syslog.unrouted by a fault that is not theirs.
    return Failure.TRANSIENT


def describe(exc: BaseException) -> str:
    """One line for logs and syslog.unrouted.error: SQLSTATE and the server's words."""
    if isinstance(exc, psycopg.Error):
        text = exc.diag.message_primary or str(exc)
        first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
        return f"{exc.sqlstate} {first}" if exc.sqlstate else first
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def backoff(attempt: int, jitter: float) -> float:
    """Seconds before try ``attempt + 1``; ``jitter`` in [0.5, 1] spreads the writers."""
    return float(min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (attempt - 1))) * jitter


def spool_now(attempt: int, stopping: bool) -> bool:
    """After a transient failure: spool the batch rather than wait and retry?"""
    return stopping or attempt >= SPOOL_AFTER_TRIES


@dataclass(frozen=True, slots=True)
class Batch:
    """Records written together, and the identity committed with them."""

    id: uuid.UUID
    records: list[Record]

    @classmethod
    def new(cls, records: list[Record]) -> Batch:
        return cls(uuid.uuid4(), records)

    def halves(self) -> tuple[Batch, Batch]:
        """Two batches with identities derived from this one's, the same at every try,
        so that a half that committed before a connection loss is known as such."""
        middle = len(self.records) // 2
        return (Batch(uuid.uuid5(self.id, "0"), self.records[:middle]),
                Batch(uuid.uuid5(self.id, "1"), self.records[middle:]))


def chunks(records: list[Record], size: int) -> list[list[Record]]:
    """Records in pieces of at most ``size`` (spool frames at a stop)."""
    return [records[i : i + size] for i in range(0, len(records), size)]
