"""Alert rules: the ``[[alert]]`` tables of the configuration, read and checked at load.

A rule is a search (``query`` and any of search's filters: host, app, severity, facility,
procid, msgid, source, peer; parsed by search's own parser) counted over the last
``window``, with a ``threshold`` (fires at this many rows or more)
or a ``below`` (fires under this many: a sender gone quiet). ``group_by`` (host or app)
makes one alert per value. ``notify`` lists where to post: URLs, or tables
``{url = "...", format = "alertmanager"}``.

:func:`parse_rules` raises ValueError with one line naming the rule and the key, such as
``rule "web errors": window: ...``; config.py puts ``alert: `` in front
(tests/test_alerts_rules.py).
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pgsyslog.storage.filters import FILTER_NAMES, REPEATABLE, FilterError, Filters, parse_filters

GroupBy = Literal["host", "app"]
NotifyFormat = Literal["json", "alertmanager"]
GROUP_COLUMNS: dict[str, str] = {"host": "hostname", "app": "app_name"}
NOTIFY_FORMATS: tuple[NotifyFormat, ...] = ("json", "alertmanager")
MAX_WINDOW_S = 7 * 86_400.0  # a week: longer windows are reports, not alerts
MAX_COUNT = 1_000_000_000
MAX_NAME = 200
ALERTMANAGER_PATH = "/api/v2/alerts"

_DURATION_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d)?$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True, slots=True)
class NotifyTarget:
    url: str  # where the POST goes (for alertmanager: .../api/v2/alerts)
    format: NotifyFormat = "json"

    def __str__(self) -> str:
        return self.url if self.format == "json" else f"{self.url} ({self.format})"


@dataclass(frozen=True, slots=True)
class AlertRule:
    name: str
    filters: Filters  # what a row must match (since/until are the window's, set per run)
    filter_text: dict[str, Any] = field(hash=False)  # the filters as written (API, links)
    window: float  # seconds
    threshold: int | None = None  # fires when count >= threshold
    below: int | None = None  # fires when count < below
    group_by: GroupBy | None = None
    notify: tuple[NotifyTarget, ...] = ()

    def __str__(self) -> str:
        return self.name

    def fires(self, count: int) -> bool:
        if self.threshold is not None:
            return count >= self.threshold
        assert self.below is not None  # parse_rules requires one of the two
        return count < self.below

    @property
    def condition(self) -> str:
        """The condition for people: ``>= 20 in 5m`` or ``< 1 in 10m``."""
        op, n = (">=", self.threshold) if self.threshold is not None else ("<", self.below)
        return f"{op} {n} in {format_duration(self.window)}"


def parse_duration(value: Any) -> float:
    """``30s``, ``5m``, ``2h``, ``1d`` or a number of seconds, above 0."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as 30s, 5m or 1h, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION_RE.match(str(value).strip().lower())
        if match is None:
            raise ValueError(f"expected a duration such as 30s, 5m or 1h, got {value!r}")
        seconds = float(match.group(1)) * _UNIT_S[match.group(2) or "s"]
    if not 0 < seconds <= MAX_WINDOW_S:
        raise ValueError(f"must be above 0 and at most 7d, got {value!r}")
    return seconds


def format_duration(seconds: float) -> str:
    for unit in ("d", "h", "m"):
        if seconds >= _UNIT_S[unit] and seconds % _UNIT_S[unit] == 0:
            return f"{int(seconds // _UNIT_S[unit])}{unit}"
    return f"{seconds:g}s"


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    if "\x00" in value:
        raise ValueError("holds a NUL character")
    return value


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected a whole number, got {value!r}")
    if not 1 <= value <= MAX_COUNT:
        raise ValueError(f"must be 1 to {MAX_COUNT:,}, got {value:,}")
    return value


def _group_by(value: Any) -> GroupBy:
    if value == "host" or value == "app":
        return value  # type: ignore[no-any-return]
    raise ValueError(f"expected host or app, got {value!r}")


def _http_url(text: str) -> str:
    url = urllib.parse.urlsplit(text.strip())
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ValueError(f"{text!r} is not an http:// or https:// URL")
    try:
        port = url.port  # urllib reads the port only when asked, and refuses 65536 and up
    except ValueError:
        port = 0
    if port == 0:
        raise ValueError(f"{text!r}: the port must be 1-65535")
    return text.strip()


def _alertmanager_url(url: str) -> str:
    """Alertmanager is named by its address; its alerts API is a fixed path under it."""
    base = url.rstrip("/")
    return base if base.endswith(ALERTMANAGER_PATH) else base + ALERTMANAGER_PATH


def _target(value: Any) -> NotifyTarget:
    if isinstance(value, str):
        return NotifyTarget(_http_url(value))
    if not isinstance(value, Mapping):
        raise ValueError(f"expected a URL or a table {{url = ..., format = ...}}, got {value!r}")
    unknown = sorted(set(value) - {"url", "format"})
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r} (known: url, format)")
    if "url" not in value:
        raise ValueError("a target table needs url")
    url = _http_url(_text(value["url"]))
    form = value.get("format", "json")
    if form not in NOTIFY_FORMATS:
        raise ValueError(f"format: expected json or alertmanager, got {form!r}")
    return NotifyTarget(_alertmanager_url(url) if form == "alertmanager" else url, form)


def _notify(value: Any) -> tuple[NotifyTarget, ...]:
    items = [value] if isinstance(value, str | Mapping) else value
    if not isinstance(items, list):
        raise ValueError(f"expected a list of URLs, got {value!r}")
    return tuple(_target(item) for item in items)


def _filter_texts(key: str, value: Any) -> list[str]:
    """A filter's value as search's parser takes it: a list of strings."""
    items = value if isinstance(value, list) and key in REPEATABLE else [value]
    texts = []
    for item in items:
        if isinstance(item, int) and not isinstance(item, bool):
            item = str(item)
        texts.append(_text(item))
    if not texts:
        raise ValueError("give at least one value")
    return texts


# Search's filters, but the window sets the time: "query" is search's words (q).
FILTER_KEYS = ("query", *(n for n in FILTER_NAMES if n not in ("q", "since", "until", "time")))
RULE_KEYS: dict[str, Callable[[Any], Any]] = {
    "window": parse_duration,
    "threshold": _count,
    "below": _count,
    "group_by": _group_by,
    "notify": _notify,
}
KNOWN_KEYS = ("name", *FILTER_KEYS, *RULE_KEYS)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _name(table: Mapping[str, Any], number: int) -> str:
    if "name" not in table:
        raise ValueError(f"rule {number}: name: missing; give every [[alert]] a name")
    try:
        name = _text(table["name"]).strip()
    except ValueError as e:
        raise ValueError(f"rule {number}: name: {e}") from None
    if not name or len(name) > MAX_NAME or not name.isprintable():
        raise ValueError(f"rule {number}: name: give 1-{MAX_NAME} printable characters")
    return name


def _converted(table: Mapping[str, Any], name: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key == "name" or key in FILTER_KEYS:
            continue
        if key not in KNOWN_KEYS:
            raise ValueError(f'rule "{name}": {key}: unknown key (known: '
                             f"{', '.join(KNOWN_KEYS)})")
        try:
            values[key] = RULE_KEYS[key](value)
        except ValueError as e:
            raise ValueError(f'rule "{name}": {key}: {e}') from None
    return values


def _filters(table: Mapping[str, Any], name: str) -> tuple[Filters, dict[str, Any]]:
    """The rule's filters, parsed as search parses them, and their text as written."""
    texts: dict[str, list[str]] = {}
    for key in FILTER_KEYS:
        if key in table:
            try:
                texts[key] = _filter_texts(key, table[key])
            except ValueError as e:
                raise ValueError(f'rule "{name}": {key}: {e}') from None
    by_name = {("q" if k == "query" else k): v for k, v in texts.items()}
    try:
        filters = parse_filters(by_name, _EPOCH, UTC)
    except FilterError as e:
        shown_key = "query" if e.param == "q" else e.param or "filters"
        raise ValueError(f'rule "{name}": {shown_key}: {e}') from None
    shown = {k: (v if k in REPEATABLE else v[0]) for k, v in texts.items() if k != "query"}
    return filters, shown


def _rule(table: Any, number: int) -> AlertRule:
    if not isinstance(table, Mapping):
        raise ValueError(f"rule {number}: expected a table ([[alert]]), got {table!r}")
    name = _name(table, number)
    values = _converted(table, name)
    if "window" not in values:
        raise ValueError(f'rule "{name}": window: missing (such as window = "5m")')
    if ("threshold" in values) == ("below" in values):
        raise ValueError(f'rule "{name}": threshold: give threshold (fires at this many rows '
                         "or more) or below (fires under this many), one of them")
    filters, text = _filters(table, name)
    return AlertRule(name=name, filters=filters, filter_text=text, window=values["window"],
                     threshold=values.get("threshold"), below=values.get("below"),
                     group_by=values.get("group_by"), notify=values.get("notify", ()))


def parse_rules(value: Any) -> tuple[AlertRule, ...]:
    """The ``alert`` setting (a list of tables) as rules; ValueError naming rule and key."""
    if isinstance(value, Mapping):
        value = [value]
    if not isinstance(value, list | tuple):
        raise ValueError("give alert rules as [[alert]] tables in the configuration file")
    rules = tuple(_rule(table, number) for number, table in enumerate(value, 1))
    seen: set[str] = set()
    for rule in rules:
        if rule.name in seen:
            raise ValueError(f'rule "{rule.name}": name: given to two rules')
        seen.add(rule.name)
    return rules
