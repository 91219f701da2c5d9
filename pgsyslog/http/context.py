"""What the handlers share, as typed keys of the aiohttp application."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from pgsyslog.config import MIB
from pgsyslog.receiver.state import ReceiverState

if TYPE_CHECKING:
    from pgsyslog.http.auth import Auth
    from pgsyslog.http.database import ApiDatabase

STATE = web.AppKey("state", ReceiverState)
# Set when the server stops: live tails end their streams instead of holding shutdown up.
CLOSING = web.AppKey("closing", asyncio.Event)


@dataclass
class Streams:
    open: int = 0  # live tails open now; each holds one database connection


# The defaults of the settings http_db_connections, http_max_response_bytes and
# http_stream_timeout (pgsyslog.config; tests/test_http.py checks they agree).
DEFAULT_DB_CONNECTIONS = 4
DEFAULT_MAX_RESPONSE_BYTES = 16 * MIB
DEFAULT_STREAM_TIMEOUT = 30.0


@dataclass(frozen=True)
class Limits:
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES  # bytes of an answer at most
    stream_timeout: float = DEFAULT_STREAM_TIMEOUT  # seconds a write to a tail may take


STREAMS = web.AppKey("streams", Streams)
LIMITS = web.AppKey("limits", Limits)
DATABASE: web.AppKey[ApiDatabase] = web.AppKey("database")
AUTH: web.AppKey[Auth] = web.AppKey("auth")
