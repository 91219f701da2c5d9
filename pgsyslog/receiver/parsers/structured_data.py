"""RFC 5424 STRUCTURED-DATA (section 6.3) to ``{"sd-id": {"param": "value"}}``.

Values unescape ``\\"``, ``\\\\`` and ``\\]``; a backslash before any other character is
kept with it. A param given more than once becomes a list of its values in order; an
SD-ID given more than once (which RFC 5424 forbids) has its params merged.

What is kept is bounded: at most MAX_SD_CHARS of SD text, MAX_SD_ELEMENTS elements and
MAX_SD_PARAMS params; the elements and params past a bound are left out (the record says
so, and its ``raw`` keeps them), and MSG still starts after the whole SD.
"""

from __future__ import annotations

import re
from operator import itemgetter

from pgsyslog.record import SDValue, StructuredData

_NAME = r'[^ =\]"\[]+'  # RFC 5424: not '=', SP, ']' or '"' (and, here, not '[' either)
_VALUE = r'[^"\\]*+(?:\\.[^"\\]*+)*+'  # escapes still in; possessive: no backtracking
_ELEMENTS = re.compile(rf'(?:\[{_NAME}(?: +{_NAME}="{_VALUE}")* *\])++', re.DOTALL)
# Within what _ELEMENTS matched: each SD-ID (after '[') and each name="value".
_PARTS = re.compile(rf'\[({_NAME})|({_NAME})="({_VALUE})"', re.DOTALL)
_ESCAPED = re.compile(r'\\(["\\\]])')
_UNESCAPED = itemgetter(1)  # a C-level callable for re.sub: faster than the template r"\1"

# Far above what real senders write (a few elements of a few params), low enough that one
# message cannot make a huge JSON document.
MAX_SD_CHARS = 64 * 1024
MAX_SD_ELEMENTS = 128
MAX_SD_PARAMS = 1024


def parse_structured_data(text: str, pos: int) -> tuple[StructuredData | None, int, str | None]:
    """Read the SD elements that start at ``text[pos] == "["``.

    Returns ``(structured_data, end, None)``; ``(structured_data, end, reason)`` when it
    was cut to the bounds; ``(None, pos, reason)`` when an element is malformed or cut off.
    """
    m = _ELEMENTS.match(text, pos)
    if m is None:
        return None, pos, _reason(text, pos)
    end = m.end()
    if text.startswith("[", end):  # a later element is malformed or cut off
        return None, pos, _reason(text, end)
    parts = _PARTS.findall(text, pos, end)
    cut = None
    if end - pos > MAX_SD_CHARS or len(parts) > MAX_SD_ELEMENTS:
        parts, cut = _within_bounds(text, pos, end)
    sd: StructuredData = {}
    params: dict[str, SDValue] = {}
    for sd_id, name, value in parts:
        if sd_id:
            params = sd.setdefault(sd_id, {})
            continue
        if "\\" in value:
            value = _ESCAPED.sub(_UNESCAPED, value)
        if name in params:
            _add_repeated(params, name, value)
        else:
            params[name] = value
    return sd, end, cut


def _within_bounds(text: str, pos: int, end: int) -> tuple[list[tuple[str, str, str]], str | None]:
    """The parts of a large SD that fit the bounds, and which bound cut it (None: none)."""
    kept: list[tuple[str, str, str]] = []
    elements = params = 0
    for part in _PARTS.finditer(text, pos, end):
        if part.end() - pos > MAX_SD_CHARS:
            return kept, f"structured_data cut to {MAX_SD_CHARS} characters"
        sd_id, name, value = part.groups()
        if sd_id:
            elements += 1
            if elements > MAX_SD_ELEMENTS:
                return kept, f"structured_data cut to {MAX_SD_ELEMENTS} elements"
        else:
            params += 1
            if params > MAX_SD_PARAMS:
                return kept, f"structured_data cut to {MAX_SD_PARAMS} params"
        kept.append((sd_id or "", name or "", value or ""))
    return kept, None


def _add_repeated(params: dict[str, SDValue], name: str, value: str) -> None:
    old = params[name]
    if isinstance(old, list):
        old.append(value)
    else:
        params[name] = [old, value]


def _reason(text: str, pos: int) -> str:
    if "]" not in text[pos:]:
        return "STRUCTURED-DATA is not terminated (no ']')"
    return f"malformed STRUCTURED-DATA at {text[pos : pos + 30]!r}"
