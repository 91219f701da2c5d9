"""RFC 5424 STRUCTURED-DATA (section 6.3) to ``{"sd-id": {"param": "value"}}``.

Values unescape ``\\"``, ``\\\\`` and ``\\]``; a backslash before any other character is
kept with it. A param given more than once becomes a list of its values in order; an
SD-ID given more than once (which RFC 5424 forbids) has its params merged.
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


def parse_structured_data(text: str, pos: int) -> tuple[StructuredData | None, int, str | None]:
    """Read the SD elements that start at ``text[pos] == "["``.

    Returns ``(structured_data, end, None)``, or ``(None, pos, reason)`` when an element
    is malformed or cut off.
    """
    m = _ELEMENTS.match(text, pos)
    if m is None:
        return None, pos, _reason(text, pos)
    if text.startswith("[", m.end()):  # a later element is malformed or cut off
        return None, pos, _reason(text, m.end())
    sd: StructuredData = {}
    params: dict[str, SDValue] = {}
    for sd_id, name, value in _PARTS.findall(text, pos, m.end()):
        if sd_id:
            params = sd.setdefault(sd_id, {})
            continue
        if "\\" in value:
            value = _ESCAPED.sub(_UNESCAPED, value)
        if name in params:
            _add_repeated(params, name, value)
        else:
            params[name] = value
    return sd, m.end(), None


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
