"""The optional token of /api: ``Authorization: Bearer <token>``, or a session cookie.

A browser's EventSource cannot send an Authorization header, so a browser logs in once:
``POST /api/login`` with the token (a JSON or form field ``token``) sets an HttpOnly,
SameSite=Strict cookie holding a random session id, kept in memory until it expires
(SESSION_SECONDS) or ``POST /api/logout``. Tokens are compared in constant time, and
neither the token nor a session id is ever logged (test_http_auth.py::
test_the_token_never_reaches_the_log). /healthz and /metrics stay open for probes.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from pgsyslog.http.context import AUTH
from pgsyslog.http.errors import bad_request, unauthorized

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

COOKIE = "pgsyslog_session"
COOKIE_PATH = "/"  # the console's pages need it as much as /api (pgsyslog.http.console)
SESSION_SECONDS = 12 * 3600  # a browser logs in again after this
MAX_SESSIONS = 1_000  # sessions kept at most; a new one beyond that ends the oldest
NEEDS_TOKEN = ("this endpoint needs the header Authorization: Bearer <token>, "
               "or a session from POST /api/login")


def _digest(secret: str) -> bytes:
    # Hashing first makes the comparison constant-time in the length too.
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).digest()


def bearer_credentials(header: str) -> str | None:
    """The credentials of ``Bearer <credentials>``; the scheme in any case (RFC 7235)."""
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return None
    return credentials.strip()


class Sessions:
    """Session ids of logged-in browsers, each with the time it expires."""

    def __init__(self, seconds: float = SESSION_SECONDS, limit: int = MAX_SESSIONS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.limit = limit
        self.clock = clock
        self._expiry: dict[str, float] = {}  # in the order they were opened

    def open(self) -> str:
        now = self.clock()
        self._expiry = {sid: t for sid, t in self._expiry.items() if t > now}
        while len(self._expiry) >= self.limit:
            del self._expiry[next(iter(self._expiry))]
        sid = secrets.token_urlsafe(32)
        self._expiry[sid] = now + self.seconds
        return sid

    def valid(self, sid: str | None) -> bool:
        if not sid:
            return False
        expires = self._expiry.get(sid)
        if expires is None:
            return False
        if expires <= self.clock():
            del self._expiry[sid]
            return False
        return True

    def close(self, sid: str | None) -> None:
        if sid:
            self._expiry.pop(sid, None)


class Auth:
    """Who may use /api: everyone without a token, else bearers of it and sessions."""

    def __init__(self, token: str | None, sessions: Sessions | None = None) -> None:
        self._token = None if token is None else _digest(token)
        self.sessions = sessions or Sessions()

    @property
    def open(self) -> bool:
        return self._token is None

    def is_token(self, given: str | None) -> bool:
        if self._token is None:
            return True
        return given is not None and hmac.compare_digest(_digest(given), self._token)

    def allows(self, request: web.Request) -> bool:
        if self._token is None:
            return True
        credentials = bearer_credentials(request.headers.get("Authorization", ""))
        if credentials is not None:
            return self.is_token(credentials)
        return self.sessions.valid(request.cookies.get(COOKIE))


def require_token(handler: Handler) -> Handler:
    """``handler`` behind the token of the app's Auth (open when no token is set)."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        if not request.app[AUTH].allows(request):
            raise unauthorized(NEEDS_TOKEN)
        return await handler(request)

    return guarded


async def _given_token(request: web.Request) -> str:
    """The field ``token`` of a JSON object or a form; 400 when there is none."""
    try:
        if request.content_type == "application/json":
            body: Any = await request.json()
            token = body.get("token") if isinstance(body, dict) else None
        else:
            token = (await request.post()).get("token")
    except Exception:  # malformed or hostile JSON or form data: unknown charsets, deep
        # nesting, broken multipart; whatever it is, the client's body is at fault
        raise bad_request("the body is not valid JSON or form data") from None
    if not isinstance(token, str) or not token:
        raise bad_request('give the token as {"token": "..."} or the form field token')
    try:
        token.encode()
    except UnicodeEncodeError:  # a lone surrogate from a JSON escape
        raise bad_request("the token is not valid text") from None
    return token


async def login(request: web.Request) -> web.Response:
    """POST /api/login: the token for a session cookie."""
    auth = request.app[AUTH]
    token = await _given_token(request)
    if not auth.is_token(token):
        raise unauthorized("wrong token")
    response = web.json_response({"status": "logged in", "expires_in": SESSION_SECONDS})
    if not auth.open:
        response.set_cookie(COOKIE, auth.sessions.open(), max_age=SESSION_SECONDS,
                            path=COOKIE_PATH, httponly=True, samesite="Strict",
                            secure=request.secure)
    return response


async def logout(request: web.Request) -> web.Response:
    """POST /api/logout: the session ends, and the browser forgets its cookie."""
    request.app[AUTH].sessions.close(request.cookies.get(COOKIE))
    response = web.json_response({"status": "logged out"})
    response.del_cookie(COOKIE, path=COOKIE_PATH)
    return response
