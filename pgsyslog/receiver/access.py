"""Who may send: allowed-source networks per listener, and log lines rate-limited per peer."""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pgsyslog.config import Network

# Distinct senders remembered (for the allow cache and the per-peer logs) before
# starting over: bounded memory under a flood of spoofed sources.
REMEMBERED_PEERS = 65536
LOG_EVERY = 60.0  # seconds between two lines about the same peer's same kind of event


class AllowList:
    """Empty means everyone; otherwise a source must be inside one of the networks."""

    def __init__(self, networks: Sequence[Network]) -> None:
        self.networks = tuple(networks)
        self._cache: dict[str | None, bool] = {}

    def allows(self, source_ip: str | None) -> bool:
        if not self.networks:
            return True
        allowed = self._cache.get(source_ip)
        if allowed is None:
            allowed = self._check(source_ip)
            if len(self._cache) >= REMEMBERED_PEERS:
                self._cache.clear()
            self._cache[source_ip] = allowed
        return allowed

    def _check(self, source_ip: str | None) -> bool:
        if source_ip is None:
            return False
        address = ipaddress.ip_address(source_ip)
        return any(address.version == n.version and address in n for n in self.networks)


@dataclass(frozen=True, slots=True)
class Turn:
    """A line may be logged now; ``held_back`` lines were not, in the ``seconds`` since
    the peer's previous line (``kinds``: how many of each kind, most first)."""

    held_back: int = 0
    seconds: float = 0.0
    kinds: tuple[tuple[str, int], ...] = ()


@dataclass(slots=True)
class _Window:
    opened: float  # when the peer's last line was logged
    held_back: int = 0
    kinds: dict[str, int] = field(default_factory=dict)

    def turn(self, now: float) -> Turn:
        kinds = sorted(self.kinds.items(), key=lambda kind: (-kind[1], kind[0]))
        return Turn(self.held_back, now - self.opened, tuple(kinds))


class PeerLimit:
    """Per peer: the first event logs, then at most one line per ``every`` seconds; the
    events held back in between are counted and handed to the next line, or to a summary
    once the window is over (:meth:`overdue`). Pure: the clock is given.

    Memory stays bounded by REMEMBERED_PEERS (then it starts over, counts and all).
    tests/test_tls_failures.py::test_peer_limit, ::test_peer_limit_overdue and
    ::test_peer_limit_remembers_a_bounded_number_of_peers try it.
    """

    def __init__(self, every: float = LOG_EVERY,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.every = every
        self.clock = clock
        self._windows: dict[str | None, _Window] = {}

    @property
    def remembered(self) -> int:
        """How many peers have a window now."""
        return len(self._windows)

    def turn(self, peer: str | None, kind: str = "") -> Turn | None:
        """A Turn when a line about ``peer`` may be logged now, else None (counted)."""
        now = self.clock()
        window = self._windows.get(peer)
        if window is not None and now - window.opened < self.every:
            window.held_back += 1
            if kind:
                window.kinds[kind] = window.kinds.get(kind, 0) + 1
            return None
        if window is None and len(self._windows) >= REMEMBERED_PEERS:
            self._windows.clear()
        self._windows[peer] = _Window(now)
        return Turn() if window is None else window.turn(now)

    def overdue(self) -> list[tuple[str | None, Turn]]:
        """The peers whose window is over with events held back, and their Turn: the
        summary line is their line (a new window opens). Windows over with nothing held
        back are forgotten."""
        now = self.clock()
        due = []
        for peer, window in list(self._windows.items()):
            if now - window.opened < self.every:
                continue
            if window.held_back:
                due.append((peer, window.turn(now)))
                self._windows[peer] = _Window(now)
            else:
                del self._windows[peer]
        return due


def held_back_note(peer: str | None, turn: Turn) -> str:
    """``and 14 more from 10.0.0.5 in the last 60s: unknown_ca 14; `` or nothing."""
    if not turn.held_back:
        return ""
    return f"and {turn.held_back} more from {peer} in the last {span(turn.seconds)}" \
        f"{kinds_note(turn)}; "


def kinds_note(turn: Turn) -> str:
    return ": " + ", ".join(f"{kind} {n}" for kind, n in turn.kinds) if turn.kinds else ""


def span(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.0f} h"


class PeerLog:
    """Log a kind of event when a peer first causes it, then at most once per ``every`` s,
    saying how many were not logged since the previous line.

    A sender that keeps failing (or keeps being refused) gets one line per ``every``, not one
    per attempt; memory stays bounded by REMEMBERED_PEERS (PeerLimit; tests/
    test_tls_failures.py::test_peer_log_lines_say_how_many_were_not_logged).
    """

    def __init__(self, logger: logging.Logger, every: float = LOG_EVERY,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.limit = PeerLimit(every, clock)

    @property
    def every(self) -> float:
        return self.limit.every

    def warning(self, peer: str | None, message: str, *args: object, kind: str = "") -> bool:
        """Log the line when the peer's turn has come; True when it was logged. ``kind``
        (a reason, say) is counted for the summary when the line is held back."""
        turn = self.limit.turn(peer, kind)
        if turn is None:
            return False
        self.logger.warning(message + " (%slogged at most every %gs per peer)", *args,
                            held_back_note(peer, turn), self.every)
        return True

    def report_held_back(self, what: str) -> int:
        """One line per peer whose minute is over with lines held back since its last:
        ``3 more failed TLS handshakes from 10.0.0.5 in the last 60s: unknown_ca 3``.
        Returns how many lines were logged."""
        due = self.limit.overdue()
        for peer, turn in due:
            self.logger.warning("%d more %s from %s in the last %s%s (logged at most every "
                                "%gs per peer)", turn.held_back, what, peer, span(turn.seconds),
                                kinds_note(turn), self.every)
        return len(due)
