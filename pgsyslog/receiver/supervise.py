"""Listener loops that cannot die silently: an unexpected error is logged and the loop restarts.

While a loop waits to restart, its listener is in ``listeners_down`` (the receiver's
``state.listeners_down``, which /healthz reports) with the reason. The first failure of
each kind is logged at ERROR with its traceback (a ListenerLost only in one line), the
ones after it in one line.
tests/test_listener_restart.py breaks the UDP and TLS loops on purpose.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from pgsyslog.receiver.counters import Counters

log = logging.getLogger(__name__)

# Waits before a restart: doubling from FIRST_BACKOFF up to MAX_BACKOFF while the loop
# keeps failing; a loop that ran for HEALTHY_AFTER seconds starts again from the first.
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 30.0
HEALTHY_AFTER = 60.0


class ListenerLost(Exception):
    """A loss a listener expects (its socket closed under it, its reader process gone),
    which its message explains in full: logged without a traceback."""


def backoff(failures_in_a_row: int) -> float:
    """Seconds to wait before the restart that follows this many failures in a row."""
    return min(FIRST_BACKOFF * 2.0 ** (failures_in_a_row - 1), MAX_BACKOFF)


def failure_reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def keep_running(name: str, body: Callable[[], Awaitable[None]],
                       listeners_down: dict[str, str], counters: Counters,
                       prepare: Callable[[], Awaitable[None]] | None = None) -> None:
    """Run ``body`` again each time it raises; return when it returns (the listener stops).

    ``prepare`` runs before each restart (binding a socket again, say); the listener is
    out of ``listeners_down`` only once it has succeeded. A failing ``prepare`` is one
    more failure.
    """
    in_a_row = 0
    traced: set[type[BaseException]] = set()
    while True:
        started = time.monotonic()
        try:
            if in_a_row and prepare is not None:
                await prepare()
            listeners_down.pop(name, None)
            await body()
            return
        except Exception as e:
            exc = e
        in_a_row = 1 if time.monotonic() - started >= HEALTHY_AFTER else in_a_row + 1
        reason = failure_reason(exc)
        delay = backoff(in_a_row)
        counters.listener_restarts += 1
        listeners_down[name] = reason
        if type(exc) in traced or isinstance(exc, ListenerLost):
            log.error("%s stopped: %s; restarting in %gs", name, reason, delay)
        else:
            traced.add(type(exc))
            log.error("%s stopped: %s; restarting in %gs", name, reason, delay, exc_info=exc)
        await asyncio.sleep(delay)
