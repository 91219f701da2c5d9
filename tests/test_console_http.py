"""The console's routes over plain HTTP: its files, and the login gate in front of them."""

from __future__ import annotations

import json
import re
import urllib.parse
from http.cookies import SimpleCookie

import pytest

from http_client import EventStream, LocalServer, Reply, get, local_server, request
from pgsyslog.http.auth import COOKIE
from pgsyslog.http.console import CONSOLE_FILES, LOGIN_FILES, STATIC_DIR, safe_next
from stored import insert, record

TOKEN = "console-Token-7"
# Open by design: probes, Prometheus, and what a browser needs to log in.
OPEN_PATHS = {"/healthz", "/metrics", "/login", "/api/login", "/api/logout"}
REFERENCE_RE = re.compile(r'(?:src|href)="(/static/[^"]+)"')
IMPORT_RE = re.compile(r'from "\./([^"]+)"')


def login(port: int) -> dict[str, str]:
    reply = request(port, "POST", "/api/login", {"Content-Type": "application/json"},
                    json.dumps({"token": TOKEN}).encode())
    assert reply.status == 200, reply.text
    cookie: SimpleCookie = SimpleCookie()
    cookie.load(reply.headers["Set-Cookie"])
    return {"Cookie": f"{COOKIE}={cookie[COOKIE].value}"}


def concrete_paths(server: LocalServer) -> list[tuple[str, str]]:
    """(method, path) of every route of the app, with each console file for /static/."""
    paths = []
    for route in server.app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        if route.method == "HEAD":
            continue
        if "path" in info:
            paths.append((route.method, info["path"]))
        elif info.get("formatter") == "/static/{name}":
            paths += [(route.method, f"/static/{name}") for name in server.app[CONSOLE_FILES]]
        else:
            raise AssertionError(f"a route this test does not know how to reach: {info}")
    return paths


def refused(reply: Reply, path: str) -> bool:
    if reply.status == 302:
        return reply.headers["Location"].startswith("/login?next=")
    return reply.status == 401 and reply.body["error"].count("\n") == 0


def test_the_console_and_every_file_its_pages_name_are_served(dsn: str) -> None:
    with local_server(dsn) as server:
        page = get(server.port, "/")
        assert page.status == 200 and page.headers.get_content_type() == "text/html"
        assert 'name="q"' in page.text and 'data-action="live"' in page.text
        assert "default-src 'none'" in page.headers["Content-Security-Policy"]
        for path in ("/", "/status"):
            for reference in REFERENCE_RE.findall(get(server.port, path).text):
                reply = get(server.port, reference)
                assert reply.status == 200, reference
        for module in sorted(STATIC_DIR.glob("js/*.js")):
            for imported in IMPORT_RE.findall(module.read_text()):
                assert get(server.port, f"/static/js/{imported}").status == 200, imported
        script = get(server.port, "/static/js/main.js")
        assert script.headers.get_content_type() == "text/javascript"
        again = get(server.port, "/static/js/main.js", headers={"If-None-Match":
                                                                  script.headers["ETag"]})
        assert (again.status, again.text) == (304, "")
        for missing in ("/static/nope.js", "/static/index.html", "/static/%2e%2e/console.py",
                        "/static/../auth.py"):
            assert get(server.port, missing).status == 404, missing


def test_without_a_token_the_login_page_goes_straight_on(dsn: str) -> None:
    with local_server(dsn) as server:
        reply = get(server.port, "/login?next=/status%3Fx%3D1")
        assert (reply.status, reply.headers["Location"]) == (302, "/status?x=1")


def test_nothing_is_reachable_without_a_session(dsn: str) -> None:
    with local_server(dsn, TOKEN) as server:
        paths = concrete_paths(server)
        assert {p for _, p in paths} >= {"/", "/status", "/static/js/main.js", "/api/search",
                                         "/api/tail"}
        for cookie in ({}, {"Cookie": f"{COOKIE}=made-up"}):
            for method, path in paths:
                name = path.removeprefix("/static/")
                if path in OPEN_PATHS or name in LOGIN_FILES:
                    continue
                reply = request(server.port, method, path, cookie)
                assert refused(reply, path), (method, path, reply.status, reply.text[:200])
        page = get(server.port, "/status?q=disk")
        location = urllib.parse.urlsplit(page.headers["Location"])
        assert location.path == "/login"
        assert urllib.parse.parse_qs(location.query) == {"next": ["/status?q=disk"]}
        login_page = get(server.port, "/login?next=/status")
        assert login_page.status == 200 and 'name="token"' in login_page.text
        for name in LOGIN_FILES:
            assert get(server.port, f"/static/{name}").status == 200, name


def test_a_session_opens_the_pages_the_api_and_the_stream(dsn: str) -> None:
    insert(dsn, [record("seen by a logged-in browser")])
    with local_server(dsn, TOKEN) as server:
        cookie = login(server.port)
        for path in ("/", "/status", "/static/js/main.js", "/static/js/status.js"):
            assert get(server.port, path, headers=cookie).status == 200, path
        rows = get(server.port, "/api/search", headers=cookie).body["rows"]
        assert [r["message"] for r in rows] == ["seen by a logged-in browser"]
        stream = EventStream(server.port, "/api/tail?n=1", cookie)
        try:
            assert [e["message"] for e in stream.events(1, 10)] == ["seen by a logged-in browser"]
        finally:
            stream.close()
        reply = get(server.port, "/login?next=/status", headers=cookie)
        assert (reply.status, reply.headers["Location"]) == (302, "/status")
        assert get(server.port, "/", token=TOKEN).status == 200  # scripts may fetch pages too
        request(server.port, "POST", "/api/logout", cookie)
        assert get(server.port, "/", headers=cookie).status == 302
        assert get(server.port, "/static/js/main.js", headers=cookie).status == 401


@pytest.mark.parametrize(("given", "goes_to"), [
    ("/status?q=a", "/status?q=a"), ("/", "/"), (None, "/"), ("", "/"),
    ("//evil.example/x", "/"), ("/\\evil.example", "/"), ("https://evil.example", "/"),
    ("status", "/"), ("/x\r\nSet-Cookie: a=b", "/"), ("javascript:alert(1)", "/"),
])
def test_after_a_login_only_a_path_of_this_server_is_followed(given: str | None,
                                                             goes_to: str) -> None:
    assert safe_next(given) == goes_to

