"""The optional token of /api: ``Authorization: Bearer <token>``, or a session cookie.

A browser's EventSource cannot send an Authorization header, so a browser logs in once:
``POST /api/login`` with the token (a JSON or form field ``token``) sets an HttpOnly,
SameSite=Strict cookie (Secure over HTTPS, path /). The cookie carries its own expiry
(SESSION_SECONDS) and an HMAC-SHA256 over it keyed from the token, so it is checked
without server state: it survives a restart of serve and works on every receiver with the
same token, and a new token ends every session
(tests/test_http_auth.py::test_a_session_survives_a_restart_and_a_new_token_ends_it).
``POST /api/logout`` revokes the cookie in this process (its live tails end at their next
read, tests/test_http_auth.py::test_a_logout_ends_the_open_live_tails_of_its_session) and
deletes it from the browser; a copy of it taken before stays valid on other receivers, or
after a restart, until it expires.

Login and logout refuse cross-site requests (an ``Origin`` of another host, a
``Sec-Fetch-Site`` other than same-origin), and an address that gave a wrong token
MAX_FAILURES times within FAILURE_WINDOW seconds gets 429 until the oldest failure is that
old (test_http_auth.py::test_failed_logins_are_limited_and_logged_once_a_minute).
Tokens are compared in constant time, and neither the token nor a session cookie is ever
logged (test_http_auth.py::test_the_token_never_reaches_the_log). /healthz and /metrics
stay open for probes.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from pgsyslog.http.context import AUTH
from pgsyslog.http.errors import bad_request, error_body, unauthorized

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

log = logging.getLogger(__name__)

COOKIE = "pgsyslog_session"
COOKIE_PATH = "/"  # the console's pages need it as much as /api (pgsyslog.http.console)
SESSION_SECONDS = 12 * 3600  # a browser logs in again after this
MAX_REVOKED = 10_000  # logged-out sessions remembered (until they expire); beyond, the oldest
MIN_TOKEN_LENGTH = 16  # serve warns at start about a shorter http_token
MAX_FAILURES = 10  # wrong tokens an address may give per FAILURE_WINDOW
FAILURE_WINDOW = 60.0  # seconds; also the least time between two log lines for an address
MAX_ADDRESSES = 10_000  # addresses whose failures are counted; beyond, the oldest is dropped
NEEDS_TOKEN = ("this endpoint needs the header Authorization: Bearer <token>, "
               "or a session from POST /api/login")
_KEY_LABEL = b"pgsyslog session cookie"


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _digest(secret: str) -> bytes:
    # Hashing first makes the comparison constant-time in the length too.
    return hashlib.sha256(_bytes(secret)).digest()


def session_key(token: str) -> bytes:
    """The key of the session cookies: from the token, so a new token ends every session."""
    return hmac.new(_bytes(token), _KEY_LABEL, hashlib.sha256).digest()


def bearer_credentials(header: str) -> str | None:
    """The credentials of ``Bearer <credentials>``; the scheme in any case (RFC 7235)."""
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return None
    return credentials.strip()


class Sessions:
    """Session cookies ``EXPIRES.NONCE.MAC``: EXPIRES in Unix seconds, NONCE random, MAC
    the HMAC-SHA256 of ``EXPIRES.NONCE`` under ``key``; and the nonces logged out here."""

    def __init__(self, key: bytes, seconds: float = SESSION_SECONDS,
                 clock: Callable[[], float] = time.time, revoked_limit: int = MAX_REVOKED
                 ) -> None:
        self.key = key
        self.seconds = seconds
        self.clock = clock  # wall clock: an expiry must mean the same after a restart
        self.revoked_limit = revoked_limit
        self._revoked: dict[str, int] = {}  # nonce: expiry, in the order they were revoked

    def _mac(self, signed: str) -> bytes:
        return hmac.new(self.key, _bytes(signed), hashlib.sha256).hexdigest().encode()

    def open(self) -> str:
        signed = f"{math.ceil(self.clock() + self.seconds)}.{secrets.token_urlsafe(24)}"
        return f"{signed}.{self._mac(signed).decode()}"

    def _verified(self, cookie: str | None) -> tuple[int, str] | None:
        """(expiry, nonce) of a cookie signed with this key and not expired."""
        parts = (cookie or "").split(".")
        if len(parts) != 3:
            return None
        expires, nonce, mac = parts
        if not hmac.compare_digest(self._mac(f"{expires}.{nonce}"), _bytes(mac)):
            return None
        if not (expires.isascii() and expires.isdigit()) or int(expires) <= self.clock():
            return None
        return int(expires), nonce

    def valid(self, cookie: str | None) -> bool:
        verified = self._verified(cookie)
        return verified is not None and verified[1] not in self._revoked

    def close(self, cookie: str | None) -> None:
        """Revoke the cookie here until it expires."""
        verified = self._verified(cookie)
        if verified is None:
            return
        now = self.clock()
        self._revoked = {n: t for n, t in self._revoked.items() if t > now}
        while len(self._revoked) >= self.revoked_limit:
            del self._revoked[next(iter(self._revoked))]
        self._revoked[verified[1]] = verified[0]


class LoginFailures:
    """Wrong tokens by address: MAX_FAILURES per FAILURE_WINDOW seconds, then a wait; and
    when to log them (once a window per address, with the count since the last line)."""

    def __init__(self, limit: int = MAX_FAILURES, window: float = FAILURE_WINDOW,
                 clock: Callable[[], float] = time.monotonic,
                 addresses: int = MAX_ADDRESSES) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self.addresses = addresses
        self._times: dict[str, deque[float]] = {}  # address: its failures in the window
        self._unlogged: dict[str, tuple[float, int]] = {}  # address: (logged at, since)

    def _recent(self, address: str, now: float) -> deque[float]:
        times = self._times.get(address, deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        return times

    def retry_after(self, address: str) -> int | None:
        """Seconds ``address`` must wait before it may try again; None when it may now."""
        now = self.clock()
        times = self._recent(address, now)
        if len(times) < self.limit:
            return None
        return max(1, math.ceil(times[0] + self.window - now))

    def failed(self, address: str) -> int | None:
        """Count a failure; the failures to log now (None: not yet, one line a window)."""
        now = self.clock()
        times = self._recent(address, now)
        times.append(now)
        self._times.pop(address, None)
        self._times[address] = times  # the most recent last: the oldest goes first
        if len(self._times) > self.addresses:
            del self._times[next(iter(self._times))]
        return self._count_for_log(address, now)

    def _count_for_log(self, address: str, now: float) -> int | None:
        logged_at, count = self._unlogged.pop(address, (-math.inf, 0))
        due = now - logged_at >= self.window
        self._unlogged[address] = (now, 0) if due else (logged_at, count + 1)
        if len(self._unlogged) > self.addresses:
            del self._unlogged[next(iter(self._unlogged))]
        return count + 1 if due else None


class Auth:
    """Who may use /api: everyone without a token, else bearers of it and sessions."""

    def __init__(self, token: str | None, sessions: Sessions | None = None,
                 failures: LoginFailures | None = None) -> None:
        self._token = None if token is None else _digest(token)
        key = secrets.token_bytes(32) if token is None else session_key(token)
        self.sessions = sessions or Sessions(key)
        self.failures = failures or LoginFailures()

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


def _error(status: type[web.HTTPException], message: str,
           headers: dict[str, str] | None = None) -> web.HTTPException:
    return status(text=error_body(message), content_type="application/json", headers=headers)


def cross_site(request: web.Request) -> bool:
    """The request comes from another site's page: by its Sec-Fetch-Site when the browser
    sends one (so a proxy that rewrites Host is no matter), else by its Origin, whose host
    must be the Host the request was sent to."""
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None:
        return fetch_site.lower() != "same-origin"
    origin = request.headers.get("Origin")
    if origin is None:
        return False  # not from a browser's script or form: curl, scripts, old browsers
    return urlsplit(origin).netloc.lower() != request.host.lower()


def _same_site_only(request: web.Request) -> None:
    if cross_site(request):
        raise _error(web.HTTPForbidden, "cross-site requests may not log in or out")


def _refuse_if_limited(auth: Auth, address: str) -> None:
    wait = auth.failures.retry_after(address)
    if wait is not None:
        raise _error(web.HTTPTooManyRequests,
                     f"too many wrong tokens from this address; try again in {wait} s",
                     {"Retry-After": str(wait)})


def _count_failure(auth: Auth, address: str) -> None:
    count = auth.failures.failed(address)
    if count is not None:
        log.warning("login with a wrong token from %s (%d since the last such line)",
                    address, count)


async def login(request: web.Request) -> web.Response:
    """POST /api/login: the token for a session cookie."""
    _same_site_only(request)
    auth = request.app[AUTH]
    address = request.remote or "unknown"
    _refuse_if_limited(auth, address)
    token = await _given_token(request)
    if not auth.is_token(token):
        _count_failure(auth, address)
        raise unauthorized("wrong token")
    response = web.json_response({"status": "logged in", "expires_in": SESSION_SECONDS})
    if not auth.open:
        response.set_cookie(COOKIE, auth.sessions.open(), max_age=SESSION_SECONDS,
                            path=COOKIE_PATH, httponly=True, samesite="Strict",
                            secure=request.secure)
    return response


async def logout(request: web.Request) -> web.Response:
    """POST /api/logout: the session ends, and the browser forgets its cookie."""
    _same_site_only(request)
    request.app[AUTH].sessions.close(request.cookies.get(COOKIE))
    response = web.json_response({"status": "logged out"})
    response.del_cookie(COOKIE, path=COOKIE_PATH)
    return response
