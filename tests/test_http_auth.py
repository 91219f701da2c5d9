"""The token of /api: bearer headers in any case, browser sessions, and no secret in logs."""

from __future__ import annotations

import json
import logging
import time
import urllib.parse
from http.cookies import SimpleCookie
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from http_client import (
    EventStream,
    Reply,
    get,
    local_server,
    raw_request,
    request,
    settled_log,
)
from pgsyslog.http.auth import (
    COOKIE,
    MAX_FAILURES,
    SESSION_SECONDS,
    LoginFailures,
    Sessions,
    bearer_credentials,
    session_key,
)
from pgsyslog.http.errors import scrubbed
from stored import insert, record

TOKEN = "s3cret-Token"


def login(port: int, body: bytes, content_type: str) -> Reply:
    return request(port, "POST", "/api/login", {"Content-Type": content_type}, body)


def session_cookie(reply: Reply) -> SimpleCookie:
    cookie = SimpleCookie()
    cookie.load(reply.headers["Set-Cookie"])
    return cookie


# ---------------------------------------------------------------------------- bearer


def test_bearer_credentials_take_the_scheme_in_any_case() -> None:
    for header in ("Bearer abc", "bearer abc", "BEARER abc", "  Bearer   abc  "):
        assert bearer_credentials(header) == "abc", header
    for header in ("", "Bearer", "Bearer   ", "Basic abc", "Bearerabc", "Token abc"):
        assert bearer_credentials(header) is None, header


def test_the_bearer_scheme_is_case_insensitive_and_the_token_exact(dsn: str) -> None:
    with local_server(dsn, TOKEN) as server:
        for scheme in ("Bearer", "bearer", "BEARER", "bEaReR"):
            reply = get(server.port, "/api/search", headers={"Authorization": f"{scheme} {TOKEN}"})
            assert reply.status == 200, scheme
        for header in (f"Bearer {TOKEN.lower()}", f"Bearer {TOKEN}x", f"Basic {TOKEN}",
                       "Bearer", TOKEN):
            reply = get(server.port, "/api/search", headers={"Authorization": header})
            assert (reply.status, reply.body["error"].count("\n")) == (401, 0), header
        answer = raw_request(server.port, b"GET /api/search HTTP/1.1\r\nHost: t\r\n"
                                          b"Authorization: Bearer \xff\xfe\xc3\r\n"
                                          b"Connection: close\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 401"), answer


# -------------------------------------------------------------------------- sessions


def test_a_session_cookie_holds_its_expiry_and_a_mac_of_the_token() -> None:
    now = [1_000_000.0]
    sessions = Sessions(session_key(TOKEN), seconds=60, clock=lambda: now[0])
    first, second = sessions.open(), sessions.open()
    assert first != second and first.startswith("1000060.")
    assert sessions.valid(first) and sessions.valid(second)
    restarted = Sessions(session_key(TOKEN), seconds=60, clock=lambda: now[0])
    assert restarted.valid(first)  # no state: another process with the token takes it
    assert not Sessions(session_key(TOKEN + "x"), clock=lambda: now[0]).valid(first)
    expires, nonce, mac = first.split(".")
    other_digit = "1" if mac.endswith("0") else "0"  # one in 16 macs ends in 0
    for forged in (f"9999999.{nonce}.{mac}", f"{expires}.{nonce}x.{mac}",
                   f"{expires}.{nonce}.{mac[:-1]}{other_digit}", f"{expires}.{nonce}", "",
                   None, "a.b.c", "\udcff.\u00e9.x", f"{first}.x"):
        assert not sessions.valid(forged), forged
    sessions.close(first)
    assert not sessions.valid(first) and sessions.valid(second)
    now[0] += 60
    assert not sessions.valid(second)


def test_a_logout_remembers_a_bounded_number_of_sessions() -> None:
    sessions = Sessions(session_key(TOKEN), revoked_limit=2)
    cookies = [sessions.open() for _ in range(3)]
    for cookie in cookies:
        sessions.close(cookie)
    assert [sessions.valid(c) for c in cookies] == [True, False, False]  # the oldest went


def test_a_login_gives_a_cookie_that_every_api_endpoint_takes(dsn: str) -> None:
    insert(dsn, [record("seen through a session")])
    with local_server(dsn, TOKEN) as server:
        port = server.port
        reply = login(port, json.dumps({"token": TOKEN}).encode(), "application/json")
        assert (reply.status, reply.body["status"]) == (200, "logged in")
        morsel = session_cookie(reply)[COOKIE]
        assert morsel["httponly"] and morsel["samesite"] == "Strict"
        assert (morsel["path"], morsel["max-age"]) == ("/", str(SESSION_SECONDS))
        cookie = {"Cookie": f"{COOKIE}={morsel.value}"}
        body = get(port, "/api/search", headers=cookie).body
        assert [row["message"] for row in body["rows"]] == ["seen through a session"]
        stream = EventStream(port, "/api/tail?n=1", cookie)  # what EventSource sends
        try:
            assert stream.status == 200
            assert [e["message"] for e in stream.events(1, 10)] == ["seen through a session"]
        finally:
            stream.close()
        assert get(port, "/api/search", headers={"Cookie": f"{COOKIE}=made-up"}).status == 401


def test_a_form_login_works_too_and_a_wrong_token_is_one_line_401(dsn: str) -> None:
    with local_server(dsn, TOKEN) as server:
        form = urllib.parse.urlencode({"token": TOKEN}).encode()
        reply = login(server.port, form, "application/x-www-form-urlencoded")
        assert reply.status == 200 and COOKIE in session_cookie(reply)
        for body, content_type in [(b'{"token": "nope"}', "application/json"),
                                   (b"token=nope", "application/x-www-form-urlencoded")]:
            reply = login(server.port, body, content_type)
            assert (reply.status, reply.body) == (401, {"error": "wrong token"})
            assert "Set-Cookie" not in reply.headers
        for body, content_type in [(b"{not json", "application/json"),
                                   (b"[1, 2]", "application/json"),
                                   (b'{"token": 5}', "application/json"),
                                   (b"\xff\xfe", "application/json"),
                                   (b"", "application/x-www-form-urlencoded"),
                                   # hostile bodies that once made a 500
                                   (b"[" * 100_000 + b"]" * 100_000, "application/json"),
                                   (b'{"token": "x"}', "application/json; charset=x-bogus"),
                                   (b"token=x", "application/x-www-form-urlencoded; "
                                                "charset=x-bogus"),
                                   (b'{"token": "\\ud800"}', "application/json")]:
            reply = login(server.port, body, content_type)
            assert reply.status == 400, body
            assert (reply.text.count("\n") == 0 and "token" in reply.body["error"]) or \
                "JSON" in reply.body["error"]


def test_a_logout_ends_the_session(dsn: str) -> None:
    with local_server(dsn, TOKEN) as server:
        reply = login(server.port, json.dumps({"token": TOKEN}).encode(), "application/json")
        cookie = {"Cookie": f"{COOKIE}={session_cookie(reply)[COOKIE].value}"}
        assert get(server.port, "/api/search", headers=cookie).status == 200
        reply = request(server.port, "POST", "/api/logout", cookie)
        assert (reply.status, reply.body) == (200, {"status": "logged out"})
        cleared = session_cookie(reply)[COOKIE]
        assert cleared.value == "" and cleared["max-age"] == "0"
        assert get(server.port, "/api/search", headers=cookie).status == 401  # gone server-side


def logged_in(port: int, token: str = TOKEN) -> dict[str, str]:
    reply = login(port, json.dumps({"token": token}).encode(), "application/json")
    assert reply.status == 200, reply.text
    return {"Cookie": f"{COOKIE}={session_cookie(reply)[COOKIE].value}"}


def test_a_session_survives_a_restart_and_a_new_token_ends_it(serve: Any) -> None:
    first = serve("--tcp", "127.0.0.1:0", "--http-token", TOKEN)
    assert "shorter than" in settled_log(first)
    cookie = logged_in(first.port("http"))
    assert get(first.port("http"), "/api/search", headers=cookie).status == 200
    first.stop()
    again = serve("--tcp", "127.0.0.1:0", "--http-token", TOKEN)
    assert get(again.port("http"), "/api/search", headers=cookie).status == 200
    assert get(again.port("http"), "/", headers=cookie).status == 200  # the console too
    other = serve("--tcp", "127.0.0.1:0", "--http-token", TOKEN + "-and-now-longer")
    assert "shorter than" not in settled_log(other)
    assert get(other.port("http"), "/api/search", headers=cookie).status == 401


def ended_within(stream: EventStream, seconds: float) -> bool:
    """The server ended the stream within ``seconds`` (keep-alives may come meanwhile)."""
    deadline = time.monotonic() + seconds
    assert stream.conn.sock is not None
    while (left := deadline - time.monotonic()) > 0:
        stream.conn.sock.settimeout(left)
        try:
            if not stream.response.readline():
                return True
        except TimeoutError:
            return False
    return False


def test_a_logout_ends_the_open_live_tails_of_its_session(dsn: str) -> None:
    with local_server(dsn, TOKEN) as server:
        cookie = logged_in(server.port)
        other = logged_in(server.port)
        streams = [EventStream(server.port, "/api/tail", c) for c in (cookie, other)]
        try:
            for stream in streams:
                stream.wait_open()
            assert request(server.port, "POST", "/api/logout", cookie).status == 200
            assert ended_within(streams[0], 20)  # its next read comes within KEEPALIVE
            assert not ended_within(streams[1], 1)
            assert get(server.port, "/api/search", headers=other).status == 200
        finally:
            for stream in streams:
                stream.close()


CROSS_SITE = [{"Origin": "http://evil.example"}, {"Origin": "null"},
              {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
              {"Sec-Fetch-Site": "none", "Origin": "http://127.0.0.1"}]


def test_login_and_logout_refuse_cross_site_requests(dsn: str) -> None:
    body = json.dumps({"token": TOKEN}).encode()
    with local_server(dsn, TOKEN) as server:
        port = server.port
        same = {"Origin": f"http://127.0.0.1:{port}", "Sec-Fetch-Site": "same-origin"}
        cookie = logged_in(port)
        for headers in CROSS_SITE:
            reply = request(port, "POST", "/api/login",
                            {"Content-Type": "application/json", **headers}, body)
            assert (reply.status, "Set-Cookie" in reply.headers) == (403, False), headers
            assert reply.body == {"error": "cross-site requests may not log in or out"}
            reply = request(port, "POST", "/api/logout", {**cookie, **headers})
            assert reply.status == 403, headers
        assert get(port, "/api/search", headers=cookie).status == 200  # still logged in
        reply = request(port, "POST", "/api/login",
                        {"Content-Type": "application/json", **same}, body)
        assert reply.status == 200
        # A proxy that rewrote Host: the browser's Sec-Fetch-Site is what counts.
        proxied = {"Origin": "https://logs.example", "Sec-Fetch-Site": "same-origin"}
        reply = request(port, "POST", "/api/login",
                        {"Content-Type": "application/json", **proxied}, body)
        assert reply.status == 200
        assert request(port, "POST", "/api/logout", {**cookie, **same}).status == 200
        assert get(port, "/api/search", headers=cookie).status == 401


def test_login_failures_are_counted_per_address_and_logged_once_a_window() -> None:
    now = [0.0]
    failures = LoginFailures(limit=3, window=60, clock=lambda: now[0])
    assert [failures.failed("a") for _ in range(3)] == [1, None, None]
    assert failures.retry_after("a") == 60 and failures.retry_after("b") is None
    now[0] = 30.0
    assert failures.retry_after("a") == 30
    now[0] = 60.0
    assert failures.retry_after("a") is None  # the first three are a window old
    assert failures.failed("a") == 3  # a line again: the two unlogged and this one


def test_failed_logins_are_limited_and_logged_once_a_minute(
        dsn: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="pgsyslog.http.auth")
    wrong = json.dumps({"token": "wrong-Guess-77"}).encode()
    with local_server(dsn, TOKEN) as server:
        statuses = [login(server.port, wrong, "application/json").status
                    for _ in range(MAX_FAILURES)]
        assert statuses == [401] * MAX_FAILURES
        for body in (wrong, json.dumps({"token": TOKEN}).encode()):
            reply = login(server.port, body, "application/json")
            assert reply.status == 429 and "try again in" in reply.body["error"]
            assert 1 <= int(reply.headers["Retry-After"]) <= 60
        assert get(server.port, "/api/search", token=TOKEN).status == 200  # bearers go on
    lines = [r.getMessage() for r in caplog.records if r.name == "pgsyslog.http.auth"]
    assert lines == ["login with a wrong token from 127.0.0.1 (1 since the last such line)"]
    assert "wrong-Guess-77" not in caplog.text and TOKEN not in caplog.text


def test_without_a_token_login_is_not_needed(dsn: str) -> None:
    with local_server(dsn) as server:
        reply = login(server.port, b'{"token": "anything"}', "application/json")
        assert reply.status == 200 and "Set-Cookie" not in reply.headers
        assert get(server.port, "/api/search").status == 200


# ------------------------------------------------------------------------------ logs


def test_the_token_never_reaches_the_log(serve: Any) -> None:
    server = serve("--tcp", "127.0.0.1:0", "--http-token", TOKEN)
    port = server.port("http")
    for header in (f"Bearer {TOKEN}", "Bearer wrong-Guess-77", f"bearer {TOKEN}"):
        get(port, "/api/search?host=%00", headers={"Authorization": header})
    # aiohttp refuses this header itself, and would log the line that holds the token.
    raw_request(port, f"GET /api/search HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\x01\r\n"
                      "Connection: close\r\n\r\n".encode())
    login(port, json.dumps({"token": "wrong-Guess-77"}).encode(), "application/json")
    login(port, json.dumps({"token": TOKEN}).encode(), "application/json")
    log = settled_log(server)
    assert "http_token is shorter than 16 characters" in log  # TOKEN has 12
    assert "Error handling request" in log  # the refused header was logged, in one line
    for secret in (TOKEN, "wrong-Guess-77"):
        assert secret not in log
    assert "Traceback" not in log
    server.stop()
    assert TOKEN not in server.log


BAD_DSN = "postgresql://u:pw-Secret-42@[::1/db"  # libpq's error quotes a DSN it cannot parse


def test_scrubbed_masks_the_password_a_database_error_quotes() -> None:
    try:
        conninfo_to_dict(BAD_DSN)
    except psycopg.ProgrammingError as e:
        text = scrubbed(str(e), BAD_DSN)
    assert "pw-Secret-42" not in text and "postgresql://u:***@[::1/db" in text
    assert scrubbed("password authentication failed", "host=h password=ab") == (
        "password authentication failed")
    assert scrubbed("key ab and cab", "host=h password=ab") == "key *** and cab"


def test_a_dsn_password_never_reaches_an_answer_or_the_log(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with local_server(BAD_DSN) as server:
        answers = [get(server.port, path) for path in ("/api/search", "/api/tail", "/healthz")]
    assert [a.status for a in answers] == [503, 503, 503]
    assert answers[0].body == {"error": "database: the DSN cannot be parsed"}
    assert answers[2].body["database"] == "the DSN cannot be parsed"
    for answer in answers:
        assert "pw-Secret-42" not in answer.text
    assert "pw-Secret-42" not in caplog.text
