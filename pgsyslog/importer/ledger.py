"""syslog.imported_files: how far each file has been imported.

A file's position moves in the transaction that stores its lines, and only from the
position this import started from (compare and set): a crash loses nothing and stores
nothing twice (test_import.py::test_a_kill_in_the_middle_loses_and_repeats_nothing).
While an import reads a file it holds advisory locks on the file's device and inode and
on the hash of its first HEAD_BYTES, both taken before the file is looked up: a second
import of it, or of a file starting with the same bytes (its rotated copy), is refused in
one line (test_import.py::test_a_second_import_of_a_file_being_imported_is_refused_in_one_line,
::test_a_copy_imported_at_the_same_time_is_refused_in_one_line).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import psycopg

from pgsyslog.importer.identity import HEAD_BYTES, FileIdentity, KnownFile, recognise
from pgsyslog.importer.source import still_there

AsyncConnection = psycopg.AsyncConnection[Any]

_CANDIDATES = """
    SELECT id, device, inode, head_sha256, head_length, path, position, lines, compressed
    FROM syslog.imported_files
    WHERE (device = %(device)s AND inode = %(inode)s)
       OR (head_length = %(full)s AND head_sha256 = %(head)s)
"""
_INSERT = """
    INSERT INTO syslog.imported_files
        (device, inode, head_sha256, head_length, path, compressed, position, lines)
    VALUES (%(device)s, %(inode)s, %(head)s, %(head_length)s, %(path)s, %(compressed)s,
            %(position)s, %(lines)s)
    RETURNING id
"""
_ADVANCE = """
    UPDATE syslog.imported_files
    SET device = %(device)s, inode = %(inode)s, head_sha256 = %(head)s,
        head_length = %(head_length)s, path = %(path)s, compressed = %(compressed)s,
        position = %(position)s, lines = lines + %(lines)s, updated_at = now()
    WHERE id = %(id)s AND position = %(start)s
"""


# Two-int advisory lock keys held by the session importing a file: (FILE_LOCK, a hash of
# device and inode) and, for a file of a whole head, (HEAD_LOCK, a hash of the head), so
# that two imports of one file, or of two files recognised as one, cannot both go on.
FILE_LOCK = 0x7067_7369  # "pgsi"
HEAD_LOCK = 0x7067_7368  # "pgsh"
_TRY_LOCK = "SELECT pg_try_advisory_lock(%s::int4, %s::int4)"
_UNLOCK = "SELECT pg_advisory_unlock(%s::int4, %s::int4)"

LockKey = tuple[int, int]


def _key(space: int, digest: bytes) -> LockKey:
    return space, int.from_bytes(digest[:4], "big", signed=True)


def lock_keys(identity: FileIdentity) -> list[LockKey]:
    """The file's inode key, and its head key when the head is whole."""
    inode = hashlib.sha256(f"{identity.device}:{identity.inode}".encode()).digest()
    keys = [_key(FILE_LOCK, inode)]
    if identity.full_head:
        keys.append(_key(HEAD_LOCK, identity.head_sha256(HEAD_BYTES)))
    return keys


async def lock(conn: AsyncConnection, identity: FileIdentity, path: str) -> list[LockKey]:
    """Hold the file's locks on this session (the keys, for unlock), or raise
    ConcurrentImport."""
    held: list[LockKey] = []
    for key in lock_keys(identity):
        async with conn.cursor() as cur:
            await cur.execute(_TRY_LOCK, key)
            row = await cur.fetchone()
        if not (row and row[0]):
            await unlock(conn, held)
            raise ConcurrentImport(_busy(path, key[0]))
        held.append(key)
    return held


def _busy(path: str, space: int) -> str:
    if space == FILE_LOCK:
        return (f"{path}: another pgsyslog import is reading this file now; run this one "
                "again after it")
    return (f"{path}: another pgsyslog import is reading a file that starts with the same "
            f"{HEAD_BYTES:,} bytes now (this one's rotation or copy); run this one again "
            "after it")


async def unlock(conn: AsyncConnection, keys: list[LockKey]) -> None:
    for key in reversed(keys):
        await conn.execute(_UNLOCK, key)


async def touch(conn: AsyncConnection, file_id: int) -> None:
    await conn.execute("UPDATE syslog.imported_files SET updated_at = now() WHERE id = %s",
                       (file_id,))


class ConcurrentImport(Exception):
    """Another import moved this file's position meanwhile; the message is one line."""


@dataclass
class FileState:
    """Where the import of one file stands (id None: not in imported_files yet)."""

    id: int | None
    position: int
    lines: int


async def find(conn: AsyncConnection, identity: FileIdentity, location: str) -> KnownFile | None:
    """The known file this one at ``location`` is, or None (identity.recognise)."""
    params = {"device": identity.device, "inode": identity.inode,
              "head": identity.head_sha256(HEAD_BYTES) if identity.full_head else None,
              "full": HEAD_BYTES}
    async with conn.cursor() as cur:
        await cur.execute(_CANDIDATES, params)
        known = [KnownFile(*row) for row in await cur.fetchall()]
    here = (identity.device, identity.inode)
    gone = {k.id for k in known if (k.device, k.inode) != here and not still_there(k)}
    return recognise(identity, location, known, gone)


async def advance(conn: AsyncConnection, file_id: int | None, start: int,
                  identity: FileIdentity, path: str, position: int, lines: int) -> int:
    """Move the file's position from ``start`` to ``position`` (``lines`` more lines read)
    in the current transaction; return the file's id (a new row when ``file_id`` is None).

    Waits for a transaction moving the same file to end; raises ConcurrentImport when the
    position is no longer ``start`` then (it moved, or an earlier group rolled back).
    """
    params = {"device": identity.device, "inode": identity.inode,
              "head": identity.head_sha256(), "head_length": len(identity.head),
              "path": path, "compressed": identity.compressed, "position": position,
              "lines": lines, "id": file_id, "start": start}
    async with conn.cursor() as cur:
        if file_id is None:
            await cur.execute(_INSERT, params)
            row = await cur.fetchone()
            assert row is not None
            return int(row[0])
        await cur.execute(_ADVANCE, params)
        if cur.rowcount != 1:
            raise ConcurrentImport(f"{path}: its position in imported_files moved meanwhile "
                                   "(another import of it?); this one stops, and nothing was "
                                   "stored twice")
    return file_id
