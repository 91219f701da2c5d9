"""The optional bearer token of /api (health and metrics stay open for probes)."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web

from pgsyslog.http.errors import unauthorized

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def require_token(token: str | None, handler: Handler) -> Handler:
    """``handler`` behind ``Authorization: Bearer <token>``; unchanged when token is None."""
    if token is None:
        return handler
    expected = f"Bearer {token}".encode()

    async def guarded(request: web.Request) -> web.StreamResponse:
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            raise unauthorized("this endpoint needs the header Authorization: Bearer <token>")
        return await handler(request)

    return guarded
