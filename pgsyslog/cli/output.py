"""How `search` and `tail` print rows: an aligned table, JSON lines, or syslog lines.

The table colours severities on a terminal; click.echo drops the colours when the output
is piped. Messages come from the network, so the table shows their control characters
escaped rather than letting them drive the terminal.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, tzinfo
from typing import Any

import click

from pgsyslog.storage.filters import severity_label
from pgsyslog.storage.rows import StoredMessage, message_json

OUTPUTS = ("table", "json", "raw")
NO_ENTRIES = "-- No entries --"
MAX_COLUMN = 32  # host and app columns grow up to this width; longer values overflow
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

SEVERITY_STYLES: dict[int, dict[str, Any]] = {
    0: {"fg": "bright_red", "bold": True},
    1: {"fg": "bright_red", "bold": True},
    2: {"fg": "bright_red", "bold": True},
    3: {"fg": "red"},
    4: {"fg": "yellow"},
    5: {"bold": True},
    7: {"dim": True},
}

_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


class Printer:
    """Prints batches of rows in one output format; the table keeps its columns across
    batches (``tail -f``), widening them when a longer host or app comes."""

    def __init__(self, output: str, zone: tzinfo) -> None:
        self.output = output
        self.zone = zone
        self.widths = [len("host"), len("app")]
        self.header_done = False

    def print(self, rows: Sequence[StoredMessage]) -> None:
        if not rows:
            return
        if self.output == "json":
            lines = [_encode(message_json(m)) for m in rows]
        elif self.output == "raw":
            lines = [raw_line(m, self.zone) for m in rows]
        else:
            lines = self._table(rows)
        click.echo("\n".join(lines), color=None)

    def print_result(self, rows: Sequence[StoredMessage]) -> None:
        """A whole answer: its rows, or in a table ``-- No entries --`` when there are none
        (as journalctl says it; json and raw print nothing, for scripts)."""
        if not rows and self.output == "table":
            click.echo(NO_ENTRIES)
        self.print(rows)

    def _table(self, rows: Sequence[StoredMessage]) -> list[str]:
        for m in rows:
            for i, value in enumerate((m.hostname, m.app_name)):
                self.widths[i] = max(self.widths[i], min(len(value or "-"), MAX_COLUMN))
        lines = []
        if not self.header_done:
            lines.append(self._line("TIME", "HOST", "APP", "SEVERITY", "MESSAGE"))
            self.header_done = True
        for m in rows:
            label = severity_label(m.severity)
            styled = click.style(f"{label:<8}", **SEVERITY_STYLES.get(m.severity, {}))
            when = m.received_at.astimezone(self.zone).strftime("%Y-%m-%d %H:%M:%S")
            lines.append(self._line(when, _escaped(m.hostname or "-"),
                                    _escaped(m.app_name or "-"), styled,
                                    self._message(m.message)))
        return lines

    def _line(self, when: str, host: str, app: str, severity: str, message: str) -> str:
        host_w, app_w = self.widths
        return f"{when:<19} {host:<{host_w}} {app:<{app_w}} {severity:<8} {message}"

    def _message(self, text: str) -> str:
        """Control characters escaped; further lines indented under the message column."""
        text = _escaped(text)
        indent = " " * (19 + self.widths[0] + self.widths[1] + 8 + 4)
        return text.replace("\n", "\n" + indent)


def _escaped(text: str) -> str:
    """Control characters but tab and newline as \\xNN: they must not drive the terminal."""
    return _CONTROL_RE.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def raw_line(m: StoredMessage, zone: tzinfo) -> str:
    """The row as syslog text: the original bytes when they were kept, else the message
    written back in its own format (RFC 5424, RFC 3164 or custom)."""
    if m.raw is not None:
        return m.raw.decode("utf-8", "replace").rstrip("\r\n")
    pri = f"<{m.facility * 8 + m.severity}>"
    when = m.event_time or m.received_at
    if m.format == "rfc5424":
        stamp = when.astimezone(UTC).isoformat().replace("+00:00", "Z")
        head = " ".join(v or "-" for v in (stamp, m.hostname, m.app_name, m.procid, m.msgid))
        sd = structured_data_text(m.structured_data)
        return f"{pri}1 {head} {sd}" + (f" {m.message}" if m.message else "")
    if m.format == "custom":
        stamp = when.astimezone(zone).isoformat()
        return f"{stamp} {m.app_name or '-'} {severity_label(m.severity).upper()} {m.message}"
    if m.format == "raw":
        return m.message
    return f"{pri}{bsd_timestamp(when.astimezone(zone))} {m.hostname or '-'} {_tag(m)}{m.message}"


def bsd_timestamp(when: datetime) -> str:
    return f"{MONTHS[when.month - 1]} {when.day:2d} {when:%H:%M:%S}"


def _tag(m: StoredMessage) -> str:
    if m.app_name is None:
        return ""
    return m.app_name + (f"[{m.procid}]" if m.procid else "") + ": "


def structured_data_text(sd: dict[str, Any] | None) -> str:
    """RFC 5424 STRUCTURED-DATA from the stored JSON ("-" when there is none)."""
    if not sd:
        return "-"
    elements = []
    for sd_id, params in sd.items():
        parts = [sd_id]
        for name, value in params.items():
            for v in value if isinstance(value, list) else [value]:
                escaped = str(v).replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")
                parts.append(f'{name}="{escaped}"')
        elements.append("[" + " ".join(parts) + "]")
    return "".join(elements)


def human_size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


@contextmanager
def stdout_closed_quietly() -> Iterator[None]:
    """``pgsyslog search | head`` closes the pipe early: that is no error."""
    try:
        yield
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the interpreter's last flush goes nowhere
