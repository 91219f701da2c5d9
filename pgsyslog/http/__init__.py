"""The HTTP API inside `serve` (aiohttp on the receiver's event loop).

``/healthz`` and ``/metrics`` are open (probes and Prometheus); ``/api/*`` needs the
token when one is set (pgsyslog.http.auth), and so do the web console's pages and files
but its login page (pgsyslog.http.console). Handlers live in one module each; this module
wires them and owns the server's lifecycle. The server can start before the database is
known: handlers answer 503 until ``state.dsn`` is set (pgsyslog.http.database).
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from aiohttp import web

from pgsyslog.config import Endpoint
from pgsyslog.http.alerts import ALERT_RULES, alerts
from pgsyslog.http.auth import Auth, login, logout, require_token
from pgsyslog.http.console import add_console
from pgsyslog.http.context import (
    AUTH,
    CLOSING,
    DATABASE,
    DEFAULT_DB_CONNECTIONS,
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_STREAM_TIMEOUT,
    LIMITS,
    STATE,
    STREAMS,
    Limits,
    Streams,
)
from pgsyslog.http.context_rows import context_rows
from pgsyslog.http.database import ApiDatabase
from pgsyslog.http.errors import MIDDLEWARES, server_log
from pgsyslog.http.facets import facets
from pgsyslog.http.health import healthz
from pgsyslog.http.histogram import histogram
from pgsyslog.http.metrics import Metrics
from pgsyslog.http.partitions import partitions
from pgsyslog.http.search import search
from pgsyslog.http.stats import RETENTION, Retention, stats
from pgsyslog.http.tail import tail
from pgsyslog.receiver.state import ReceiverState

# Seconds a stop waits for requests in progress; live tails end at once on their own.
# Seconds an idle kept-alive connection stays open (aiohttp's default is an hour).
KEEPALIVE_TIMEOUT = 15.0
SHUTDOWN_TIMEOUT = 5.0


class HttpServer:
    def __init__(self, runner: web.AppRunner, port: int, metrics: Metrics) -> None:
        self.runner = runner
        self.port = port
        self.metrics = metrics

    async def close(self) -> None:
        await self.runner.cleanup()
        self.metrics.close()


def make_app(state: ReceiverState, token: str | None, metrics: Metrics, *,
             db_connections: int = DEFAULT_DB_CONNECTIONS,
             limits: Limits | None = None,
             retention_days: int | None = None,
             alert_rules: tuple[Any, ...] = ()) -> web.Application:
    app = web.Application(middlewares=MIDDLEWARES)
    app[STATE] = state
    app[CLOSING] = asyncio.Event()
    app[STREAMS] = Streams()
    app[LIMITS] = limits or Limits()
    app[DATABASE] = ApiDatabase(state, db_connections)
    app[AUTH] = Auth(token)
    app[RETENTION] = Retention(retention_days)
    app[ALERT_RULES] = alert_rules
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics.handle)
    app.router.add_get("/api/search", require_token(search))
    app.router.add_get("/api/tail", require_token(tail))
    app.router.add_get("/api/histogram", require_token(histogram))
    app.router.add_get("/api/facets", require_token(facets))
    app.router.add_get("/api/context", require_token(context_rows))
    app.router.add_get("/api/stats", require_token(stats))
    app.router.add_get("/api/partitions", require_token(partitions))
    app.router.add_get("/api/alerts", require_token(alerts))
    app.router.add_post("/api/login", login)
    app.router.add_post("/api/logout", logout)
    add_console(app)
    app.on_shutdown.append(_end_streams)
    app.on_cleanup.append(_close_database)
    return app


async def _end_streams(app: web.Application) -> None:
    app[CLOSING].set()


async def _close_database(app: web.Application) -> None:
    await app[DATABASE].close()


async def start_http(endpoint: Endpoint, token: str | None, state: ReceiverState, *,
                     db_connections: int = DEFAULT_DB_CONNECTIONS,
                     max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
                     stream_timeout: float = DEFAULT_STREAM_TIMEOUT,
                     retention_days: int | None = None,
                     alert_rules: tuple[Any, ...] = (),
                     ssl_context: ssl.SSLContext | None = None) -> HttpServer:
    """Bind and serve; usable before the database is known (``state.dsn`` None).

    With ``ssl_context`` the listener speaks HTTPS only: a plain HTTP request fails its
    handshake (tests/test_https.py::test_https_serves_health_and_the_api_and_refuses_http).
    """
    metrics = Metrics(state)
    app = make_app(state, token, metrics, db_connections=db_connections,
                   limits=Limits(max_response_bytes, stream_timeout),
                   retention_days=retention_days, alert_rules=alert_rules)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT,
                           keepalive_timeout=KEEPALIVE_TIMEOUT,
                           logger=server_log)
    await runner.setup()
    site = web.TCPSite(runner, endpoint.host, endpoint.port, ssl_context=ssl_context)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        metrics.close()
        raise
    server = site._server
    assert server is not None
    port: int = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    return HttpServer(runner, port, metrics)
