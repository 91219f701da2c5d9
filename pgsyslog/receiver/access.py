"""Who may send: allowed-source networks per listener, and log lines once per peer."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Sequence

from pgsyslog.config import Network

# Distinct senders remembered (for the allow cache and the once-per-peer logs) before
# starting over: bounded memory under a flood of spoofed sources.
REMEMBERED_PEERS = 65536


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


class OncePerPeer:
    """Log a kind of event the first time each peer causes it, then stay quiet."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self._seen: set[str | None] = set()

    def warning(self, peer: str | None, message: str, *args: object) -> None:
        if peer in self._seen:
            return
        if len(self._seen) >= REMEMBERED_PEERS:
            self._seen.clear()
        self._seen.add(peer)
        self.logger.warning(message + " (logged once per peer)", *args)
