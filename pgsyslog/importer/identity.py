"""Which file is this? Pure decisions over what syslog.imported_files remembers.

A file is known by its device and inode and by the SHA-256 of its first bytes (of the
decompressed content). It is a file imported before only when that is safe:

- the same device and inode, starting as it did (renamed, hard-linked, grown); or
- a rotated copy of it (compressed, or copied as copytruncate does): its first
  HEAD_BYTES match, it lies in the directory the known file was last read in, its name
  is that file's with a rotation suffix (``.1``, ``.2.gz``, ``-20261201.gz``), and the
  known file is no longer at its path (gone, another file there, or emptied).

Anything else is a new file: the same first bytes in another directory, under another
name, or while the known file is still where it was; and a file shorter than HEAD_BYTES
is told from others by its inode alone (test_import.py::
test_a_file_starting_as_a_known_one_elsewhere_is_a_new_file, ::
test_renamed_and_compressed_rotations_are_recognised).
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

# Bytes of the head that identify a file: a few syslog lines, each with its own time.
HEAD_BYTES = 4096
# What logrotate appends to a rotated file's name: .1, .2.gz, -20261201, -20261201.gz.
ROTATION_SUFFIX = re.compile(r"(?:[.-]\d+)*(?:\.gz)?$")


@dataclass(frozen=True, slots=True)
class FileIdentity:
    """What a file is now: where it lives on disk and how its content starts."""

    device: int
    inode: int
    head: bytes  # the first HEAD_BYTES bytes of the content (fewer in a smaller file)
    compressed: bool
    size: int | None  # bytes of the content when known without reading it (plain files)

    def head_sha256(self, length: int | None = None) -> bytes:
        return hashlib.sha256(self.head[: len(self.head) if length is None else length]).digest()

    @property
    def full_head(self) -> bool:
        """Whether the head is long enough to tell this file from others by itself."""
        return len(self.head) >= HEAD_BYTES


@dataclass(frozen=True, slots=True)
class KnownFile:
    """One row of syslog.imported_files."""

    id: int
    device: int
    inode: int
    head_sha256: bytes
    head_length: int
    path: str
    position: int
    lines: int
    compressed: bool = False


def same_content(identity: FileIdentity, known: KnownFile) -> bool:
    """Whether the file starts as the known one did and is not shorter than its import."""
    if known.head_length <= 0 or known.head_length > len(identity.head):
        return False
    if identity.size is not None and identity.size < known.position:
        return False  # truncated and written again with the same first bytes
    return identity.head_sha256(known.head_length) == known.head_sha256


def rotation_base(path: str) -> tuple[str, str]:
    """The directory and the name without its rotation suffix: syslog.2.gz -> syslog."""
    directory, name = posixpath.split(path)
    return directory, ROTATION_SUFFIX.sub("", name) or name


def is_rotated_copy(identity: FileIdentity, location: str, known: KnownFile,
                    gone: Collection[int]) -> bool:
    """Whether the file at ``location`` is a rotated copy of a known file that is no
    longer at its path (``gone`` holds the ids of such rows)."""
    if known.id not in gone or known.head_length < HEAD_BYTES or not identity.full_head:
        return False
    return rotation_base(location) == rotation_base(known.path) and same_content(identity,
                                                                                  known)


def recognise(identity: FileIdentity, location: str, known: Sequence[KnownFile],
              gone: Collection[int]) -> KnownFile | None:
    """The known file this one is (see the module), or None for a new file.

    Of several, the one on the same inode, then the one imported furthest.
    """
    here = (identity.device, identity.inode)
    same_file = [k for k in known if (k.device, k.inode) == here and same_content(identity, k)]
    if same_file:
        return max(same_file, key=lambda k: k.position)
    rotated = [k for k in known if is_rotated_copy(identity, location, k, gone)]
    return max(rotated, key=lambda k: k.position, default=None)
