"""Rows as JSON pages and as Server-Sent Events: pure functions, run off the event loop.

A page of /api/search is capped in bytes (http_max_response_bytes) as well as in rows:
the rows that would make it larger are left for the next page, cut at a row boundary, and
the page says ``"truncated": true`` with a ``next`` cursor that continues after its last
row. A page holds at least one row, so that paging always moves on, even past a row larger
than the cap on its own (test_http_limits.py::
test_a_page_larger_than_the_cap_is_cut_at_a_row_boundary).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from pgsyslog.storage.rows import StoredMessage, message_json

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
# The envelope around the rows, with the longest cursor a bigint can be.
_ENVELOPE = len(b'{"rows":[],"next":"9223372036854775807","truncated":false}')


def row_json(m: StoredMessage) -> bytes:
    return _encode(message_json(m)).encode()


@dataclass
class Page:
    """The rows of one answer, encoded as they are offered, until the page is full."""

    limit: int  # rows at most
    max_bytes: int  # bytes of the whole body at most (unless one row is larger alone)
    rows: list[bytes] = field(default_factory=list)
    size: int = _ENVELOPE
    last_id: int | None = None
    more: bool = False  # a row exists after this page
    truncated: bool = False  # the page was cut by max_bytes, not by limit

    def offer(self, m: StoredMessage) -> bool:
        """Add the row if it fits; False (and the page is full) when it does not."""
        if self.more:
            return False
        if len(self.rows) >= self.limit:
            self.more = True
            return False
        encoded = row_json(m)
        added = len(encoded) + (1 if self.rows else 0)
        if self.rows and self.size + added > self.max_bytes:
            self.more = self.truncated = True
            return False
        self.rows.append(encoded)
        self.size += added
        self.last_id = m.id
        return True

    def fill(self, rows: Iterable[StoredMessage]) -> None:
        for m in rows:
            if not self.offer(m):
                return

    def body(self) -> bytes:
        cursor = _encode(str(self.last_id) if self.more else None)
        return b"".join((b'{"rows":[', b",".join(self.rows), b'],"next":', cursor.encode(),
                         b',"truncated":', b"true" if self.truncated else b"false", b"}"))


def events(rows: Sequence[StoredMessage]) -> bytes:
    """The rows as Server-Sent Events: the id, then the row as JSON."""
    return b"".join(b"id: %d\ndata: %s\n\n" % (m.id, row_json(m)) for m in rows)
