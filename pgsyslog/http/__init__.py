"""The HTTP API inside `serve` (aiohttp on the receiver's event loop).

Placeholder until the API lands: only /healthz.
"""

from __future__ import annotations

from aiohttp import web

from pgsyslog.config import Endpoint
from pgsyslog.receiver.state import ReceiverState


class HttpServer:
    def __init__(self, runner: web.AppRunner, port: int) -> None:
        self.runner = runner
        self.port = port

    async def close(self) -> None:
        await self.runner.cleanup()


async def start_http(endpoint: Endpoint, token: str | None, state: ReceiverState) -> HttpServer:
    app = web.Application()

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, endpoint.host, endpoint.port)
    await site.start()
    server = site._server
    assert server is not None
    port: int = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    return HttpServer(runner, port)
