"""Progress of an import: a rich bar on a terminal, one plain line at intervals elsewhere.

Both show lines and bytes per second and, when the size is known, an ETA. The figures of
one file are cumulative; ``update`` is called after each batch.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.text import Text

PLAIN_INTERVAL = 10.0  # seconds between two plain progress lines


class ImportProgress(Protocol):
    def start(self, name: str, total_bytes: int | None) -> None: ...
    def update(self, lines: int, done_bytes: int) -> None: ...
    def finish(self) -> None: ...
    def close(self) -> None: ...


def make_progress(stream: IO[str] | None = None, *, quiet: bool = False) -> ImportProgress:
    """The bar when ``stream`` (stderr) is a terminal, plain lines otherwise."""
    out = sys.stderr if stream is None else stream
    if quiet:
        return QuietProgress()
    return BarProgress(out) if out.isatty() else PlainProgress(out)


class QuietProgress:
    def start(self, name: str, total_bytes: int | None) -> None:
        pass

    def update(self, lines: int, done_bytes: int) -> None:
        pass

    def finish(self) -> None:
        pass

    def close(self) -> None:
        pass


class LinesPerSecond(ProgressColumn):
    def render(self, task: Task) -> Text:
        lines = int(task.fields.get("lines", 0))
        elapsed = task.elapsed or 0.0
        rate = f"{lines / elapsed:,.0f}" if elapsed > 0 else "?"
        return Text(f"{lines:,} lines {rate} lines/s", style="progress.data.speed")


class BarProgress:
    def __init__(self, stream: IO[str]) -> None:
        self._bar = Progress(TextColumn("{task.description}"), BarColumn(), LinesPerSecond(),
                             TransferSpeedColumn(), TimeRemainingColumn(),
                             console=Console(file=stream), transient=False)
        self._bar.start()
        self._task: TaskID | None = None

    def start(self, name: str, total_bytes: int | None) -> None:
        self._task = self._bar.add_task(name, total=total_bytes, lines=0)

    def update(self, lines: int, done_bytes: int) -> None:
        if self._task is not None:
            self._bar.update(self._task, completed=done_bytes, lines=lines)

    def finish(self) -> None:
        if self._task is not None:
            self._bar.stop_task(self._task)
            self._task = None

    def close(self) -> None:
        self._bar.stop()


class PlainProgress:
    def __init__(self, stream: IO[str], interval: float = PLAIN_INTERVAL) -> None:
        self._out = stream
        self._interval = interval
        self._name = ""
        self._total: int | None = None
        self._started = self._shown = 0.0

    def start(self, name: str, total_bytes: int | None) -> None:
        self._name, self._total = name, total_bytes
        self._started = self._shown = time.monotonic()

    def update(self, lines: int, done_bytes: int) -> None:
        now = time.monotonic()
        if now - self._shown >= self._interval:
            self._shown = now
            print(progress_line(self._name, lines, done_bytes, self._total, now - self._started),
                  file=self._out, flush=True)

    def finish(self) -> None:
        pass

    def close(self) -> None:
        pass


def progress_line(name: str, lines: int, done: int, total: int | None, elapsed: float) -> str:
    """``import: FILE: 1,200,000 lines, 45 MB of 120 MB (37%), 52,000 lines/s, ...``."""
    seconds = max(elapsed, 1e-9)
    part = f"{human_bytes(done)}"
    eta = ""
    if total:
        part += f" of {human_bytes(total)} ({100 * done // total}%)"
        rate = done / seconds
        if rate > 0:
            eta = f", ETA {_clock((total - done) / rate)}"
    return (f"import: {name}: {lines:,} lines, {part}, {lines / seconds:,.0f} lines/s, "
            f"{human_bytes(done / seconds)}/s{eta}")


def human_bytes(count: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1000:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"


def _clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"
