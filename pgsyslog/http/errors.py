"""JSON error responses: one line saying what is wrong."""

from __future__ import annotations

import json

from aiohttp import web


def _body(message: str) -> str:
    return json.dumps({"error": message}, ensure_ascii=False)


def bad_request(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=_body(message), content_type="application/json")


def unavailable(message: str) -> web.HTTPServiceUnavailable:
    return web.HTTPServiceUnavailable(text=_body(message), content_type="application/json")


def unauthorized(message: str) -> web.HTTPUnauthorized:
    return web.HTTPUnauthorized(text=_body(message), content_type="application/json",
                                headers={"WWW-Authenticate": 'Bearer realm="pgsyslog"'})
