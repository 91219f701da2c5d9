"""Rows of syslog.messages as binary COPY data, made without a connection.

So that another process can do the encoding: ``pgsyslog import`` parses and encodes its
groups of lines in a worker process, and the importer only sends the bytes (copy.py's
copy_data). The bytes are exactly what copy.py's copy_rows sends for the same records:
psycopg's own row formatter (the C one of psycopg_binary) with the same dumpers, and
the binary COPY signature and trailer around the rows
(test_copy_data.py::test_the_data_is_what_copy_rows_stores).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date

from psycopg import abc, postgres
from psycopg._copy_base import format_row_binary  # psycopg's COPY row formatter
from psycopg.adapt import AdaptersMap, Transformer
from psycopg.pq import Format

from pgsyslog.record import Record
from pgsyslog.storage.row_format import MESSAGE_TYPES, PackedInet, PackedInetDumper, message_row

# PostgreSQL's binary COPY format: signature, flags, header extension length; -1 ends it.
SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
TRAILER = b"\xff\xff"


class _Context:
    """What a Transformer adapts with when there is no connection."""

    def __init__(self, adapters: AdaptersMap) -> None:
        self.adapters = adapters
        self.connection = None


def _transformer() -> abc.Transformer:
    adapters = AdaptersMap(postgres.adapters)
    adapters.register_dumper(PackedInet, PackedInetDumper)
    tx = Transformer(_Context(adapters))
    oids = [postgres.types[name].oid for name in MESSAGE_TYPES]
    tx.set_dumper_types(oids, Format.BINARY)
    return tx


class MessageRows:
    """Encodes records as the rows of COPY_MESSAGES (one per process: it keeps its
    adapters)."""

    def __init__(self) -> None:
        self._tx = _transformer()

    def encode(self, records: Sequence[Record], first_id: int) -> bytes:
        """The whole COPY data: signature, a row per record with ids from ``first_id``
        on (grouped by day), trailer."""
        return stream(rows for rows, _ in self.encode_by_day(records, first_id).values())

    def encode_by_day(self, records: Sequence[Record], first_id: int
                      ) -> dict[date, tuple[bytes, int]]:
        """The rows of each day of received_at (ids from ``first_id`` on, in the order of
        ``records``), without signature and trailer: a day whose partition is still being
        loaded is COPYed into its table alone, the others together (``stream``)."""
        parts: dict[date, bytearray] = {}
        counts: dict[date, int] = {}
        tx = self._tx
        for row_id, record in enumerate(records, first_id):
            day = record.received_at.date()
            out = parts.get(day)
            if out is None:
                out = parts[day] = bytearray()
                counts[day] = 0
            format_row_binary(message_row(row_id, record), tx, out)
            counts[day] += 1
        return {day: (bytes(out), counts[day]) for day, out in parts.items()}


def stream(rows: Iterable[bytes]) -> bytes:
    """Whole COPY data from rows of encode_by_day."""
    return b"".join((SIGNATURE, *rows, TRAILER))
