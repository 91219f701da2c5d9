"""syslog.imported_files: how far each file has been imported.

A file's position moves in the transaction that stores its lines, and only from the
position this import started from (compare and set): a crash loses nothing and stores
nothing twice (test_import.py::test_a_kill_in_the_middle_loses_and_repeats_nothing).
While an import reads a file it holds an advisory lock on the file's device and inode: a
second import of it is refused in one line
(test_import.py::test_a_second_import_of_a_file_being_imported_is_refused_in_one_line).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import psycopg

from pgsyslog.importer.identity import HEAD_BYTES, FileIdentity, KnownFile, recognise

AsyncConnection = psycopg.AsyncConnection[Any]

_CANDIDATES = """
    SELECT id, device, inode, head_sha256, head_length, path, position, lines
    FROM syslog.imported_files
    WHERE (device = %(device)s AND inode = %(inode)s) OR head_sha256 = %(head)s
       OR head_length < %(full)s
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


# Two-int advisory lock keys (FILE_LOCK, a hash of device and inode) held by the session
# importing a file, so that two imports of one new file cannot both insert it.
FILE_LOCK = 0x7067_7369  # "pgsi"
_TRY_LOCK = "SELECT pg_try_advisory_lock(%s::int4, %s::int4)"
_UNLOCK = "SELECT pg_advisory_unlock(%s::int4, %s::int4)"


def _lock_key(identity: FileIdentity) -> tuple[int, int]:
    digest = hashlib.sha256(f"{identity.device}:{identity.inode}".encode()).digest()
    return FILE_LOCK, int.from_bytes(digest[:4], "big", signed=True)


async def lock(conn: AsyncConnection, identity: FileIdentity, path: str) -> None:
    """Hold the file's lock on this session, or raise ConcurrentImport."""
    async with conn.cursor() as cur:
        await cur.execute(_TRY_LOCK, _lock_key(identity))
        row = await cur.fetchone()
    if not (row and row[0]):
        raise ConcurrentImport(f"{path}: another pgsyslog import is reading this file now; "
                               "run this one again after it")


async def unlock(conn: AsyncConnection, identity: FileIdentity) -> None:
    await conn.execute(_UNLOCK, _lock_key(identity))


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


async def find(conn: AsyncConnection, identity: FileIdentity) -> KnownFile | None:
    """The known file this one is, or None."""
    params = {"device": identity.device, "inode": identity.inode,
              "head": identity.head_sha256(), "full": HEAD_BYTES}
    async with conn.cursor() as cur:
        await cur.execute(_CANDIDATES, params)
        rows = await cur.fetchall()
    return recognise(identity, [KnownFile(*row) for row in rows])


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
