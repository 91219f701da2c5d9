"""Where the database is and whether it answers: shared by the writers, the spool replay
and the server's database keeper."""

from __future__ import annotations

import asyncio
import time

from pgsyslog.storage.database import Timeouts


class DatabaseLink:
    """Not ready until the server has migrated the database; down after a failed write.

    While not ready, or down and before the next probe, batches go to the spool untried:
    one writer tries the database once per backoff interval (the probe), so that memory
    stays bounded and UDP keeps being read while it is away.
    """

    def __init__(self, timeouts: Timeouts) -> None:
        self.timeouts = timeouts
        self.dsn: str | None = None
        self.ready = asyncio.Event()
        self.down = False
        self.next_probe = 0.0  # monotonic time of the next try while down
        self.answered = asyncio.Event()  # set whenever a write succeeds after an outage
        # Set when start-up stopped waiting for the database (or a stop began): from then on
        # batches are spooled while it is not ready; before, they wait in the queue.
        self.patience_over = asyncio.Event()

    @property
    def batch_timeout(self) -> float:
        """Seconds a batch may take, from connecting to its COMMIT's answer. The client
        enforces it: a server that stopped answering enforces no statement timeout."""
        return self.timeouts.connect + self.timeouts.statement + 1.0

    def make_ready(self, dsn: str) -> None:
        self.dsn = dsn
        self.down = False
        self.ready.set()
        self.answered.set()

    def went_down(self, pause: float) -> None:
        self.down = True
        self.answered.clear()
        self.next_probe = time.monotonic() + pause

    def came_back(self) -> bool:
        """A write succeeded; True when that ends an outage."""
        was_down, self.down = self.down, False
        self.answered.set()
        return was_down

    def may_spool(self) -> bool:
        return self.ready.is_set() or self.patience_over.is_set()

    def skip_database(self) -> bool:
        if not self.ready.is_set():
            return True
        return self.down and time.monotonic() < self.next_probe

    def probe_due_in(self) -> float:
        return max(0.0, self.next_probe - time.monotonic()) if self.down else 0.0
