"""The web console: its pages, its static files, and the login gate in front of them.

Pages are ``/`` (search), ``/status`` and ``/login``; their files live under
``/static/``. Every file of pgsyslog/http/console/ is read once when the app is made (a
few dozen KB), so no path from a request ever reaches the file system
(tests/test_console_http.py::test_the_console_and_every_file_its_pages_name_are_served
tries ``..``). With http_token
set, a request without a session (or the bearer token) is sent to /login when it asks
for a page and refused with 401 when it asks for a file, except the login page and the
files it needs (LOGIN_FILES)
(tests/test_console_http.py::test_nothing_is_reachable_without_a_session).
Every answer carries a Content-Security-Policy that lets the page load and connect to
its own origin only, a second wall behind the scripts, which put log text into the page
as text and never as markup
(tests/test_console_browser.py::test_a_phone_in_dark_mode_and_a_hostile_message).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

from aiohttp import web

from pgsyslog.http.auth import COOKIE, Handler
from pgsyslog.http.context import AUTH
from pgsyslog.http.errors import unauthorized

STATIC_DIR = Path(__file__).parent / "console"
PAGES = {"/": "index.html", "/status": "status.html"}
LOGIN_PAGE = "login.html"
LOGIN_FILES = frozenset({"console.css", "js/login.js", "favicon.svg"})
CONTENT_TYPES = {".html": "text/html", ".css": "text/css", ".js": "text/javascript",
                 ".svg": "image/svg+xml"}
NEEDS_SESSION = "log in first: POST /api/login, or send Authorization: Bearer <token>"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; connect-src 'self'; form-action 'self'; "
                               "base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


@dataclass(frozen=True, slots=True)
class StaticFile:
    body: bytes
    content_type: str
    etag: str


CONSOLE_FILES = web.AppKey("console_files", dict[str, StaticFile])


def load_files(directory: Path) -> dict[str, StaticFile]:
    """Every servable file under ``directory`` by its path relative to it ("js/main.js")."""
    files: dict[str, StaticFile] = {}
    for path in sorted(directory.rglob("*")):
        content_type = CONTENT_TYPES.get(path.suffix)
        if content_type and path.is_file():
            body = path.read_bytes()
            etag = f'"{hashlib.sha256(body).hexdigest()[:20]}"'
            files[path.relative_to(directory).as_posix()] = StaticFile(body, content_type, etag)
    return files


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path of this server, else ``/``."""
    if (not target or not target.startswith("/") or target.startswith(("//", "/\\"))
            or any(ord(c) < 0x20 or c == "\x7f" for c in target)):
        return "/"
    return target


def _respond(request: web.Request, file: StaticFile) -> web.Response:
    headers = {**SECURITY_HEADERS, "ETag": file.etag, "Cache-Control": "no-cache"}
    if request.headers.get("If-None-Match") == file.etag:
        return web.Response(status=304, headers=headers)
    return web.Response(body=file.body, content_type=file.content_type, charset="utf-8",
                        headers=headers)


def _signed_in(request: web.Request) -> bool:
    return request.app[AUTH].allows(request)


def _page(name: str) -> Handler:
    async def page(request: web.Request) -> web.StreamResponse:
        if not _signed_in(request):
            raise web.HTTPFound("/login?" + urlencode({"next": request.path_qs}))
        return _respond(request, request.app[CONSOLE_FILES][name])

    return page


async def login_page(request: web.Request) -> web.StreamResponse:
    """The login form; straight on to the page asked for when no login is needed."""
    auth = request.app[AUTH]
    if auth.open or auth.sessions.valid(request.cookies.get(COOKIE)):
        raise web.HTTPFound(safe_next(request.query.get("next")))
    return _respond(request, request.app[CONSOLE_FILES][LOGIN_PAGE])


async def static_file(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name not in LOGIN_FILES and not _signed_in(request):
        raise unauthorized(NEEDS_SESSION)
    file = request.app[CONSOLE_FILES].get(name)
    if file is None or name.endswith(".html"):
        raise web.HTTPNotFound()
    return _respond(request, file)


def add_console(app: web.Application, directory: Path = STATIC_DIR) -> None:
    """The console's routes on ``app`` (its Auth decides who may see them)."""
    app[CONSOLE_FILES] = load_files(directory)
    for path, name in PAGES.items():
        app.router.add_get(path, _page(name))
    app.router.add_get("/login", login_page)
    app.router.add_get("/static/{name:.+}", static_file)
