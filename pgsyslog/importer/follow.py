"""`pgsyslog import --follow`: read files as they grow, across rotation, as ``tail -F``.

Each path is looked at every POLL_INTERVAL seconds when it has nothing new. A path that
now names another file (rotation by rename) has its old file read to its end first, then
the new one from its start; a file that became shorter than what was read, or whose first
bytes changed (copytruncate), is read again from the start as a new file. At start, a
file last read at the path and renamed or compressed since within its directory (a
rotation while follow was down) is read to its end first; when it is not there, one
warning says what may be lost. Positions are stored with every batch, so a
restart resumes without gaps or duplicates (test_import_follow.py::
test_follow_across_rotations_and_restarts_stores_every_line_once).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import psycopg

from pgsyslog.importer.identity import KnownFile, same_content
from pgsyslog.importer.run import GROUP_BYTES, Importer, OpenFile
from pgsyslog.importer.source import Source, SourceError, open_source, still_there
from pgsyslog.receiver.write_policy import Failure, backoff, classify, describe

log = logging.getLogger(__name__)

POLL_INTERVAL = 0.5  # seconds between two looks at a file that had nothing new
GROUPS_PER_TURN = 20  # groups one file may store before the next file has its turn

_LAST_AT_PATH = """
    SELECT id, device, inode, head_sha256, head_length, path, position, lines, compressed
    FROM syslog.imported_files WHERE path = %s
    ORDER BY updated_at DESC LIMIT 1
"""


class Change(enum.Enum):
    NONE = "none"
    GONE = "gone"  # nothing at the path (between a rename and the new file)
    RENAMED = "renamed"  # the path names another file now
    TRUNCATED = "truncated"  # the same file, shorter than what was read, or rewritten


def change_of(opened: os.stat_result, at_path: os.stat_result | None, read_to: int,
              head_changed: bool) -> Change:
    """What happened to a followed file, from the stat of its open descriptor and of its
    path (None: missing). Pure."""
    if at_path is None:
        return Change.GONE
    if (at_path.st_dev, at_path.st_ino) != (opened.st_dev, opened.st_ino):
        return Change.RENAMED
    if at_path.st_size < read_to or head_changed:
        return Change.TRUNCATED
    return Change.NONE


@dataclass
class Followed:
    path: str
    opened: OpenFile


class Follower:
    """Follows several paths on one importer until ``stop`` is set."""

    def __init__(self, importer: Importer, stop: asyncio.Event) -> None:
        self.importer = importer
        self.stop = stop

    async def run(self, paths: list[str], done: list[OpenFile]) -> None:
        """Follow until stopped; every file read is added to ``done`` (for the summary)."""
        followed: list[Followed] = []
        try:
            for path in paths:
                await self._catch_up_rotated(path, done)
                followed.append(Followed(path, await self.importer.open(open_source(path))))
            while not self.stop.is_set():
                busy = False
                for item in followed:
                    busy |= await self._turn(item, done)
                if not busy:
                    await self._pause(POLL_INTERVAL)
        finally:
            for item in followed:
                with contextlib.suppress(psycopg.Error, OSError):  # the database is away
                    await self.importer.release(item.opened)
                item.opened.source.close()
                done.append(item.opened)

    async def run_through_outages(self, paths: list[str]) -> list[OpenFile]:
        """Follow; when the database goes away, say so, wait, connect again and go on from
        the positions stored (test_import_follow.py::
        test_follow_goes_on_after_the_database_was_away)."""
        done: list[OpenFile] = []
        attempt = 0
        while not self.stop.is_set():
            try:
                if attempt:
                    await self.importer.connect()
                await self.run(paths, done)
            except (psycopg.Error, OSError) as e:
                if classify(e) is not Failure.TRANSIENT:
                    raise
                attempt += 1
                pause = backoff(attempt, 1.0)
                log.warning("the database is away (%s); following goes on from the stored "
                            "positions, next try in %.1fs", describe(e), pause)
                await self.importer.close()
                await self._pause(pause)
            else:
                break
        return done

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), seconds)

    async def _turn(self, item: Followed, done: list[OpenFile]) -> bool:
        """Store what is new in the file, or look for a rotation; True when lines came."""
        if await self._read_new(item.opened, final=False):
            return True
        change = _look(item)
        if change is Change.RENAMED:
            await self._read_new(item.opened, final=True, limit=None)
            log.info("%s was rotated: its old file is read to its end, the new one from its "
                     "start", item.path)
        elif change is Change.TRUNCATED:
            log.info("%s was truncated or rewritten: reading it from its start", item.path)
        else:
            return False
        return await self._reopen(item, done)

    async def _reopen(self, item: Followed, done: list[OpenFile]) -> bool:
        try:
            source = open_source(item.path)
        except SourceError as e:
            log.warning("%s; trying again", e)  # gone again, or not readable yet
            return False
        item.opened.source.close()
        done.append(item.opened)
        await self.importer.release(item.opened)
        item.opened = await self.importer.open(source)
        return True

    async def _read_new(self, opened: OpenFile, *, final: bool,
                        limit: int | None = GROUPS_PER_TURN) -> bool:
        stored = 0
        while (limit is None or stored < limit) and not self.stop.is_set():
            group = opened.reader.group(self.importer.settings.batch_rows, final=final,
                                        max_bytes=GROUP_BYTES)
            if group is None:
                break
            await self.importer.store_group(opened, group)
            stored += 1
        return stored > 0

    async def _catch_up_rotated(self, path: str, done: list[OpenFile]) -> None:
        """Read to its end the file last read at ``path`` when another file is there now
        (a rotation while follow was down): renamed in its directory, or compressed there
        (logrotate's compress without delaycompress); when neither is found, warn that
        its end may be lost."""
        last = await self._last_at(path)
        if last is None or still_there(last):
            return
        opened = await self._open_renamed(path, last)
        if opened is None:
            opened = await self._open_compressed_rotation(path, last)
        if opened is None:
            return
        if opened.state.id != last.id:  # imported on its own since: nothing to finish
            await self.importer.release(opened)
            opened.source.close()
            return
        log.info("%s was rotated to %s since the last run: reading that to its end", path,
                 opened.source.name)
        await self.importer.import_all(opened)
        opened.source.close()
        done.append(opened)

    async def _last_at(self, path: str) -> KnownFile | None:
        async with self.importer.conn.cursor() as cur:
            await cur.execute(_LAST_AT_PATH, (os.path.abspath(path),))
            row = await cur.fetchone()
        return None if row is None else KnownFile(*row)

    async def _open_renamed(self, path: str, last: KnownFile) -> OpenFile | None:
        """``last`` renamed in ``path``'s directory, opened at its stored position."""
        renamed = _find_inode(Path(path).parent, last.device, last.inode)
        if renamed is None:
            return None
        opened = await self.importer.open(open_source(renamed))
        if opened.state.id != last.id:  # another file on a reused inode
            await self.importer.release(opened)
            opened.source.close()
            return None
        return opened

    async def _open_compressed_rotation(self, path: str, last: KnownFile) -> OpenFile | None:
        """The gzip rotation of ``last`` beside ``path``, opened at its stored position
        (test_import_follow.py::test_a_rotation_compressed_while_follow_was_down_is_finished);
        None, with one warning, when there is none."""
        source = find_compressed_rotation(path, last)
        if source is None:
            log.warning("%s: the file read before (%s lines stored, to byte %s) was rotated "
                        "away while follow was down and is not in %s, renamed or compressed: "
                        "every line it got after byte %s may be lost; to recover them, "
                        "import its rotation (pgsyslog import %s.*.gz)", path,
                        f"{last.lines:,}", f"{last.position:,}", Path(path).parent,
                        f"{last.position:,}", path)
            return None
        opened = await self.importer.open(source)
        if opened.state.id is None:  # its head is short, or not recognised by name
            await self.importer.release(opened)
            opened = await self.importer.open_as(source, last)
        return opened


def find_compressed_rotation(path: str, last: KnownFile) -> Source | None:
    """A gzip file in ``path``'s directory, named after it, whose content starts as
    ``last`` did; opened."""
    directory, name = os.path.split(os.path.abspath(path))
    try:
        names = sorted(e.name for e in os.scandir(directory)
                       if e.name.startswith(name) and e.name != name)
    except OSError:
        return None
    for candidate in names:
        with contextlib.suppress(SourceError):
            source = open_source(os.path.join(directory, candidate))
            identity = source.identity
            if source.compressed and identity is not None and same_content(identity, last):
                return source
            source.close()
    return None


def _find_inode(directory: Path, device: int, inode: int) -> str | None:
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return None
    for entry in entries:
        with contextlib.suppress(OSError):
            if entry.inode() == inode and entry.is_file() and entry.stat().st_dev == device:
                return entry.path
    return None


def _look(item: Followed) -> Change:
    source = item.opened.source
    try:
        at_path: os.stat_result | None = os.stat(item.path)
    except FileNotFoundError:
        at_path = None
    opened = os.fstat(source.raw.fileno())
    # A gzip file's size on disk is not its content's: only a rename tells of it.
    read_to = 0 if source.compressed else item.opened.reader.position
    return change_of(opened, at_path, read_to, _head_changed(source))


def _head_changed(source: Source) -> bool:
    identity = source.identity
    if identity is None or source.compressed:
        return False
    now = os.pread(source.raw.fileno(), len(identity.head), 0)
    return now != identity.head
