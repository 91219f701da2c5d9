"""What the handlers share, as typed keys of the aiohttp application."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiohttp import web

from pgsyslog.receiver.state import ReceiverState

STATE = web.AppKey("state", ReceiverState)
# Set when the server stops: live tails end their streams instead of holding shutdown up.
CLOSING = web.AppKey("closing", asyncio.Event)


@dataclass
class Streams:
    open: int = 0  # live tails open now; each holds one database connection


STREAMS = web.AppKey("streams", Streams)
