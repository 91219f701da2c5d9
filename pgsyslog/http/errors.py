"""JSON error responses: one line saying what is wrong, and never a traceback.

``json_errors`` is the outermost middleware: an error aiohttp raises itself (404, 405,
413) gets the same one-line JSON body as ours, a database that went away mid-request is a
503, and anything unexpected is a 500 logged in one line (the traceback at DEBUG only).
Requests aiohttp cannot even parse never reach a handler; ``server_log`` is the logger
given to aiohttp for those, and turns each into one line without the offending bytes
(they may hold a token). Tested by tests/test_http_fuzz.py and
test_http_auth.py::test_the_token_never_reaches_the_log.
"""

from __future__ import annotations

import json
import logging
import re

import psycopg
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler, Middleware
from psycopg.conninfo import conninfo_to_dict

from pgsyslog.config import MASK, mask_dsn
from pgsyslog.http.context import STATE

log = logging.getLogger(__name__)


class NoDatabase(Exception):
    """No database connection can be had now: a 503 saying "database: <reason>"."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"database: {reason}")
        self.reason = reason


def error_body(message: str) -> str:
    return json.dumps({"error": message}, ensure_ascii=False)


def bad_request(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=error_body(message), content_type="application/json")


def unavailable(message: str) -> web.HTTPServiceUnavailable:
    return web.HTTPServiceUnavailable(text=error_body(message), content_type="application/json")


def unauthorized(message: str) -> web.HTTPUnauthorized:
    return web.HTTPUnauthorized(text=error_body(message), content_type="application/json",
                                headers={"WWW-Authenticate": 'Bearer realm="pgsyslog"'})


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _password(dsn: str) -> str | None:
    try:
        password = conninfo_to_dict(dsn).get("password")
    except psycopg.Error:
        return None
    return str(password) if password else None


def scrubbed(text: str, dsn: str | None) -> str:
    """``text`` with the DSN's password masked wherever it shows (libpq quotes a DSN it
    cannot parse), for logs and for error bodies alike."""
    if not dsn:
        return text
    text = text.replace(dsn, mask_dsn(dsn))
    password = _password(dsn)
    if password:
        text = re.sub(rf"(?<!\w){re.escape(password)}(?!\w)", MASK, text)
    return text


def describe(exc: BaseException, dsn: str | None) -> str:
    """One line about a database error, safe to log and to show."""
    return scrubbed(first_line(exc), dsn)


def _as_json(exc: web.HTTPException) -> web.HTTPException:
    if exc.status < 400 or exc.content_type == "application/json":
        return exc
    exc.text = error_body(exc.reason)
    exc.content_type = "application/json"
    return exc


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as e:
        raise _as_json(e) from None
    except NoDatabase as e:
        raise unavailable(str(e)) from None
    except psycopg.OperationalError as e:
        message = f"database: {describe(e, request.app[STATE].dsn)}"
        log.warning("%s %s: %s", request.method, request.path, message)
        raise unavailable(message) from None
    except Exception as e:
        log.error("%s %s failed: %s: %s", request.method, request.path, type(e).__name__,
                  scrubbed(first_line(e), request.app[STATE].dsn))
        log.debug("the failure in full", exc_info=e)
        raise web.HTTPInternalServerError(
            text=error_body("internal error; the server log says more"),
            content_type="application/json") from None


MIDDLEWARES: tuple[Middleware, ...] = (json_errors,)


class _OneLine(logging.Filter):
    """aiohttp logs a request it cannot parse with a traceback; say it in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None:
            # Never the bytes the client sent: a header too long to parse may be the
            # token or a session cookie (tests/test_http_auth.py).
            reason = (f"HTTP {exc.code}" if isinstance(exc, HttpProcessingError)
                      else type(exc).__name__)
            record.msg, record.args = "%s: %s", (record.getMessage(), reason)
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.exc_info = record.exc_text = None
        return True


server_log = logging.getLogger("pgsyslog.http.server")
server_log.addFilter(_OneLine())
