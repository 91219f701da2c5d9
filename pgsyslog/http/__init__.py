"""The HTTP API inside `serve` (aiohttp on the receiver's event loop).

``/healthz`` and ``/metrics`` are open (probes and Prometheus); ``/api/search`` and
``/api/tail`` need the bearer token when one is set. Handlers live in one module each;
this module wires them and owns the server's lifecycle.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from pgsyslog.config import Endpoint
from pgsyslog.http.auth import require_token
from pgsyslog.http.context import CLOSING, STATE, STREAMS, Streams
from pgsyslog.http.health import healthz
from pgsyslog.http.metrics import Metrics
from pgsyslog.http.search import search
from pgsyslog.http.tail import tail
from pgsyslog.receiver.state import ReceiverState

# Seconds a stop waits for requests in progress; live tails end at once on their own.
SHUTDOWN_TIMEOUT = 5.0


class HttpServer:
    def __init__(self, runner: web.AppRunner, port: int, metrics: Metrics) -> None:
        self.runner = runner
        self.port = port
        self.metrics = metrics

    async def close(self) -> None:
        await self.runner.cleanup()
        self.metrics.close()


def make_app(state: ReceiverState, token: str | None, metrics: Metrics) -> web.Application:
    app = web.Application()
    app[STATE] = state
    app[CLOSING] = asyncio.Event()
    app[STREAMS] = Streams()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics.handle)
    app.router.add_get("/api/search", require_token(token, search))
    app.router.add_get("/api/tail", require_token(token, tail))
    app.on_shutdown.append(_end_streams)
    return app


async def _end_streams(app: web.Application) -> None:
    app[CLOSING].set()


async def start_http(endpoint: Endpoint, token: str | None, state: ReceiverState) -> HttpServer:
    metrics = Metrics(state)
    runner = web.AppRunner(make_app(state, token, metrics), access_log=None,
                           shutdown_timeout=SHUTDOWN_TIMEOUT)
    await runner.setup()
    site = web.TCPSite(runner, endpoint.host, endpoint.port)
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
