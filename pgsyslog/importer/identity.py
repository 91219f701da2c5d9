"""Which file is this? Pure decisions over what syslog.imported_files remembers.

A file is known by its device and inode and by the SHA-256 of its first bytes (of the
decompressed content). A rename keeps the inode and the head; compressing a rotated file
keeps the head; truncating or replacing a file changes the head, so it is a new file even
where the inode is the same.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

# Bytes of the head that identify a file: a few syslog lines, each with its own time.
HEAD_BYTES = 4096


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


def same_content(identity: FileIdentity, known: KnownFile) -> bool:
    """Whether the file starts as the known one did and is not shorter than its import."""
    if known.head_length <= 0 or known.head_length > len(identity.head):
        return False
    if identity.size is not None and identity.size < known.position:
        return False  # truncated and written again with the same first bytes
    return identity.head_sha256(known.head_length) == known.head_sha256


def recognise(identity: FileIdentity, known: Sequence[KnownFile]) -> KnownFile | None:
    """The known file this one is (renamed, grown, compressed), or None for a new file.

    Of several, the one on the same inode, then the one imported furthest.
    """
    matches = [k for k in known if same_content(identity, k)]
    here = (identity.device, identity.inode)
    return max(matches, key=lambda k: ((k.device, k.inode) == here, k.position), default=None)
