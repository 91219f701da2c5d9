"""What the fault tests share: senders, counts, metrics and the spool's frames.

Every message a test sends carries a unique id in its text, so that counting rows,
distinct messages and messages sent tells duplicates from losses. The fixtures are in
faultfixtures.py.
"""

from __future__ import annotations

import re
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from helpers import ServerProcess, query
from pgsyslog.storage.spool import Spool

CHUNK = 200  # messages per sendall


# ----------------------------------------------------------------------------- messages


def line(i: int, tag: str = "id") -> bytes:
    return b"<14>1 2026-11-21T11:59:58Z faulthost faults - - - %s=%07d\n" % (tag.encode(), i)


class Sender(threading.Thread):
    """Sends messages ``ids`` over one TCP connection, ``rate`` a second (0: at once).

    ``sent`` counts the messages the kernel took so far; ``error`` holds why it stopped early.
    """

    def __init__(self, port: int, ids: Iterable[int], rate: float = 0, tag: str = "id") -> None:
        super().__init__(daemon=True)
        self.port = port
        self.ids = list(ids)
        self.rate = rate
        self.tag = tag
        self.sent = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with socket.create_connection(("127.0.0.1", self.port)) as s:
                started = time.monotonic()
                for first in range(0, len(self.ids), CHUNK):
                    chunk = self.ids[first:first + CHUNK]
                    s.sendall(b"".join(line(i, self.tag) for i in chunk))
                    self.sent += len(chunk)
                    if self.rate:
                        ahead = started + self.sent / self.rate - time.monotonic()
                        if ahead > 0:
                            time.sleep(ahead)
        except OSError as e:
            self.error = e

    def finish(self, timeout: float = 120) -> int:
        self.join(timeout)
        assert not self.is_alive(), f"the sender is still sending after {timeout} s"
        assert self.error is None, f"the sender failed after {self.sent}: {self.error!r}"
        return self.sent


def send(port: int, ids: Iterable[int], tag: str = "id") -> int:
    sender = Sender(port, ids, tag=tag)
    sender.start()
    return sender.finish()


# ----------------------------------------------------------------------------- checks


def stored(dsn: str, tag: str = "id") -> tuple[int, int]:
    """(rows, distinct messages) of this tag in syslog.messages."""
    rows = query(dsn, "SELECT count(*), count(DISTINCT message) FROM syslog.messages "
                      "WHERE message LIKE %s", (f"{tag}=%",))
    return int(rows[0][0]), int(rows[0][1])


def wait_until(predicate: Callable[[], object], timeout: float, what: str,
               every: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout} s")


def wait_for_stored(dsn: str, count: int, timeout: float = 60, tag: str = "id",
                    server: ServerProcess | None = None) -> None:
    """Poll until ``count`` rows of the tag are stored (or more: the caller checks)."""
    def enough() -> bool:
        try:
            return stored(dsn, tag)[0] >= count
        except Exception:  # the database may be coming back
            return False

    try:
        wait_until(enough, timeout, f"{count} rows stored", 0.5)
    except AssertionError as e:
        log = f"\n{server.log}" if server is not None else ""
        raise AssertionError(f"{e} (have {_safe_stored(dsn, tag)}){log}") from None


def _safe_stored(dsn: str, tag: str) -> object:
    try:
        return stored(dsn, tag)
    except Exception as e:
        return e


_METRIC_RE = re.compile(r"^(pgsyslog_[a-z_]+)(?:\{[^}]*\})? ([0-9.e+-]+)$", re.MULTILINE)


def metrics(server: ServerProcess) -> dict[str, float]:
    """The /metrics values, summed over labels, by metric name."""
    url = f"http://127.0.0.1:{server.port('http')}/metrics"
    with urllib.request.urlopen(url, timeout=10) as answer:
        text = answer.read().decode()
    totals: dict[str, float] = {}
    for name, value in _METRIC_RE.findall(text):
        totals[name] = totals.get(name, 0.0) + float(value)
    return totals


def received(server: ServerProcess) -> int:
    return int(metrics(server).get("pgsyslog_messages_received_total", 0))


def wait_for_received(server: ServerProcess, count: int, timeout: float = 60) -> None:
    wait_until(lambda: received(server) >= count, timeout,
               f"serve received {count} messages (has {received(server)})")


@dataclass
class SpoolContents:
    """What a stopped serve left in its spool."""

    frame_rows: list[int]  # rows of each frame, in order
    batch_ids: list[str]  # the batch id of each frame
    messages: list[str]  # every row's message, frame after frame

    @property
    def rows(self) -> int:
        return sum(self.frame_rows)


def spool_contents(data_dir: Path) -> SpoolContents:
    spool = Spool(data_dir / "spool", max_bytes=1 << 40, fsync=False)
    contents = SpoolContents([], [], [])
    for frame in spool.frames():
        contents.frame_rows.append(len(frame.records))
        contents.batch_ids.append(str(frame.batch_id))
        contents.messages.extend(r.message for r in frame.records)
    return contents


def spool_frames(data_dir: Path) -> list[int]:
    """Rows in each frame of the spool under data_dir, in order."""
    return spool_contents(data_dir).frame_rows


def log_lines_since(server: ServerProcess, start: int) -> list[str]:
    return server.errors[start:]


def stop_in_time(server: ServerProcess, seconds: float) -> int:
    """SIGTERM, then the exit status; fails when serve takes longer than ``seconds``."""
    status = server.stop(timeout=seconds)
    server.final_counters()  # every exit path prints the `stopped: {...}` summary
    return status


def wait_for_first_maintenance(server: ServerProcess, timeout: float = 30) -> None:
    """serve runs partition maintenance once as it starts; faults armed after it hit writers."""
    wait_until(lambda: metrics(server).get("pgsyslog_maintenance_runs_total", 0) >= 1,
               timeout, "serve's first maintenance run")
