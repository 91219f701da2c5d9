"""The writers' side of the disk spool: append batches off the event loop, count, log once
per outage, and bring spooled frames back in (the replay), beside live writing."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import OrderedDict
from collections.abc import Callable

from pgsyslog.receiver.counters import Counters
from pgsyslog.receiver.link import DatabaseLink
from pgsyslog.receiver.store import BatchStore
from pgsyslog.receiver.write_policy import BACKOFF_MAX, Batch, describe
from pgsyslog.storage.spool import Spool

log = logging.getLogger(__name__)

# Appends remembered by batch id (more than there can be writers): a stop that spools a
# cancelled writer's batch finds the append that writer started, finished or still
# running in its thread, instead of appending the batch a second time.
RECENT_APPENDS = 256


class Spooler:
    """Appends batches to the spool (None: the spool is turned off)."""

    def __init__(self, spool: Spool | None, counters: Counters,
                 on_size: Callable[[int], None] | None = None) -> None:
        self.spool = spool
        self.counters = counters
        self.on_size = on_size
        self.replay_wanted = asyncio.Event()  # frames are waiting for the replay
        self._outage_logged = False
        self._appends: OrderedDict[uuid.UUID, asyncio.Future[bool]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.spool is not None

    async def put(self, batch: Batch, *, force: bool = False, outage: bool = True) -> bool:
        """Spool the batch (fsynced); False when there is no spool, no room (unless
        ``force``: a stopping receiver spools everything) or the disk refused it.
        ``outage`` False: UDP overflow while the database answers (not logged as an outage).

        A batch is appended once: a put of a batch whose append succeeded, or is still
        running after its caller was cancelled, waits for that one
        (tests/test_spooler.py::test_a_batch_is_appended_once_when_its_writer_is_cancelled).
        """
        if self.spool is None:
            return False
        earlier = self._appends.get(batch.id)
        if earlier is not None and await asyncio.shield(earlier):
            return True
        append = asyncio.ensure_future(self._append(batch, force, outage))
        self._appends[batch.id] = append
        self._appends.move_to_end(batch.id)
        while len(self._appends) > RECENT_APPENDS:
            self._appends.popitem(last=False)
        # Shielded: a cancelled caller leaves the append to finish in its thread.
        return await asyncio.shield(append)

    async def _append(self, batch: Batch, force: bool, outage: bool = True) -> bool:
        assert self.spool is not None
        try:
            appended = await asyncio.to_thread(self.spool.append, batch.id, batch.records,
                                               force=force)
        except OSError as e:
            self.counters.spool_write_failed += len(batch.records)
            log.error("cannot write %d rows to the spool in %s: %s", len(batch.records),
                      self.spool.directory, e)
            return False
        except Exception:
            # A spool that fails in an unforeseen way is treated as full: the caller keeps
            # the rows (retries the database, or puts them back in the queue).
            log.exception("the spool failed unexpectedly; %d rows stay in memory",
                          len(batch.records))
            return False
        if appended:
            self._spooled(len(batch.records), outage)
        return appended

    def _spooled(self, rows: int, outage: bool = True) -> None:
        """``outage`` False: the database answers, the queue was full (UDP overflow)."""
        assert self.spool is not None
        self.counters.spooled += rows
        if outage and not self._outage_logged:
            self._outage_logged = True
            log.warning("database unreachable: spooling batches to %s until it answers",
                        self.spool.directory)
        self.replay_wanted.set()
        self.report_size()

    def outage_over(self) -> None:
        self._outage_logged = False

    def report_size(self) -> None:
        if self.spool is not None:
            self.counters.spool_damaged_bytes = self.spool.damaged_bytes
            if self.on_size is not None:
                self.on_size(self.spool.pending)

    @property
    def pending(self) -> int:
        return 0 if self.spool is None else self.spool.pending


class SpoolReplayer:
    """Writes spooled frames back in order on a connection of its own, whenever the
    database answers; the writers go on with live batches meanwhile, so senders are not
    held up by a long replay. A frame that committed before (a replay cut short between
    its commit and its mark) is recognised by its batch identity and skipped."""

    def __init__(self, spooler: Spooler, store: BatchStore, link: DatabaseLink,
                 counters: Counters) -> None:
        assert spooler.spool is not None
        self.spool: Spool = spooler.spool
        self.spooler = spooler
        self.store = store
        self.link = link
        self.counters = counters
        self.replaying = False

    async def run(self) -> None:
        """Replay whenever frames wait and the database answers; until cancelled."""
        wanted = self.spooler.replay_wanted
        if self.spool.pending:
            wanted.set()
        try:
            while True:
                await wanted.wait()
                await self.link.ready.wait()
                if self.link.skip_database():
                    # Wait for a writer's probe to find the database, or try ourselves.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.link.answered.wait(),
                                               max(self.link.probe_due_in(), 0.1))
                wanted.clear()
                if not await self.replay():
                    wanted.set()
                    await asyncio.sleep(BACKOFF_MAX / 2)
        finally:
            await self.store.disconnect()

    async def replay(self) -> bool:
        """Write every pending frame; False when the database failed meanwhile."""
        frames = self.spool.frames()  # a generator: each next() reads from disk
        replayed = 0
        self.replaying = True
        try:
            while (frame := await asyncio.to_thread(next, frames, None)) is not None:
                try:
                    await self.store.write(Batch(frame.batch_id, list(frame.records)))
                except Exception as e:
                    log.warning("spool replay paused after %d rows: %s", replayed, describe(e))
                    self.link.went_down(BACKOFF_MAX)
                    return False
                await asyncio.to_thread(self.spool.mark_replayed, frame)
                replayed += len(frame.records)
                self.counters.replayed += len(frame.records)
                self.spooler.report_size()
        finally:
            self.replaying = False
            await asyncio.to_thread(frames.close)
            self.spooler.report_size()
        if replayed:
            log.warning("replayed %d rows from the spool", replayed)
        self.link.came_back()
        self.spooler.outage_over()
        return True
