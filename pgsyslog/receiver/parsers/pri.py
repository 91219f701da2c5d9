"""``<PRI>``: 1-3 digits with a value of 0-191 (DESIGN.md, parse rule 2)."""

from __future__ import annotations

NO_PRI = -1
"""The text does not start with ``<``."""
INVALID_PRI = -2
"""The text starts with ``<`` but not with a valid ``<PRI>``."""

MAX_PRI = 191
DEFAULT_FACILITY = 1  # user
DEFAULT_SEVERITY = 5  # notice

# Every valid "<PRI>", leading zeros included ("<013>"): one dict lookup per message.
_PRI_VALUES = {
    f"<{n:0{width}d}>": n for n in range(MAX_PRI + 1) for width in (1, 2, 3) if len(str(n)) <= width
}


def read_pri(text: str, start: int) -> tuple[int, int]:
    """Return ``(pri, end)``: the PRI value and the index after ``>``.

    ``pri`` is ``NO_PRI`` or ``INVALID_PRI`` (with ``end == start``) when there is none.
    """
    if not text.startswith("<", start):
        return NO_PRI, start
    end = text.find(">", start + 2, start + 5) + 1
    pri = _PRI_VALUES.get(text[start:end]) if end else None
    return (INVALID_PRI, start) if pri is None else (pri, end)


def invalid_pri_reason(text: str, start: int) -> str:
    """Say why the text at ``start`` is not a valid ``<PRI>`` (only called on failure)."""
    end = text.find(">", start, start + 8)
    if end < 0:
        return f"invalid PRI: no '>' after {text[start : start + 5]!r}"
    return f"invalid PRI {text[start : end + 1]!r}: must be 1-3 digits with a value of 0-191"
