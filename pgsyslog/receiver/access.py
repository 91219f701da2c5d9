"""Who may send: allowed-source networks per listener, and log lines rate-limited per peer."""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Sequence

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


class PeerLog:
    """Log a kind of event when a peer first causes it, then at most once per ``every`` s.

    A sender that keeps failing (or keeps being refused) gets one line per ``every``, not one
    per attempt; memory stays bounded by REMEMBERED_PEERS.
    """

    def __init__(self, logger: logging.Logger, every: float = LOG_EVERY) -> None:
        self.logger = logger
        self.every = every
        self._last: dict[str | None, float] = {}

    def warning(self, peer: str | None, message: str, *args: object) -> None:
        now = time.monotonic()
        last = self._last.get(peer)
        if last is not None and now - last < self.every:
            return
        if len(self._last) >= REMEMBERED_PEERS:
            self._last.clear()
        self._last[peer] = now
        self.logger.warning(message + " (logged at most every %gs per peer)", *args, self.every)
