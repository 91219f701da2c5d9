"""Bad input to the HTTP API is a 400 with a one-line JSON error: never a 500, never a
traceback in the server's log.

The known offenders come first (each once was a 500); then a few hundred parameter values
and header values drawn at random (seeded, so a failure repeats): random unicode, huge
and negative numbers, NUL and control characters, repeated parameters, bytes that are not
UTF-8. Requests go out as raw bytes, so that nothing is cleaned up on the way.
"""

from __future__ import annotations

import json
import random
import re
import socket
import urllib.parse
from dataclasses import dataclass
from typing import Any

from http_client import settled_log
from pgsyslog.http.search import PARAMS as SEARCH_PARAMS
from pgsyslog.http.tail import PARAMS as TAIL_PARAMS

TOKEN = "fuzz-token"
AUTH = f"Authorization: Bearer {TOKEN}\r\n".encode()


@dataclass
class Answer:
    status: int
    content_type: str
    body: bytes


def exchange(port: int, path: bytes, headers: bytes = AUTH, method: bytes = b"GET",
             body: bytes = b"") -> Answer:
    """One request as raw bytes; a live tail that opens is closed after its headers."""
    head = (method + b" " + path + b" HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
            + headers + b"Content-Length: %d\r\n\r\n" % len(body))
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(head + body)
        data = b""
        while b"\r\n\r\n" not in data and (chunk := s.recv(65536)):
            data += chunk
        status_line, _, rest = data.partition(b"\r\n")
        header_block, _, content = rest.partition(b"\r\n\r\n")
        fields = dict(line.split(b": ", 1) for line in header_block.split(b"\r\n") if b": " in line)
        content_type = fields.get(b"Content-Type", b"").decode()
        if not content_type.startswith("text/event-stream"):
            while chunk := s.recv(65536):
                content += chunk
    return Answer(int(status_line.split()[1]), content_type, content)


def check(answer: Answer, what: Any) -> None:
    assert answer.status < 500 or answer.status == 503, (what, answer)
    if answer.status >= 400 and answer.content_type.startswith("application/json"):
        assert b"\n" not in answer.body.strip(), (what, answer)
        assert set(json.loads(answer.body)) >= {"error"} or answer.status == 503, (what, answer)


def quoted(value: str) -> bytes:
    return urllib.parse.quote(value, safe="", errors="surrogatepass").encode()


def query_string(pairs: list[tuple[str, str]]) -> bytes:
    return b"&".join(quoted(name) + b"=" + quoted(value) for name, value in pairs)


KNOWN_OFFENDERS: list[tuple[bytes, bytes]] = [
    (b"/api/search?limit=%C2%B2", AUTH),
    (b"/api/search?severity=%C2%B2", AUTH),
    (b"/api/search?facility=%C2%B2", AUTH),
    (b"/api/search?since=99999999999d", AUTH),
    (b"/api/search?until=99999999999w", AUTH),
    (b"/api/search?host=%00", AUTH),
    (b"/api/search?app=a%00b", AUTH),
    (b"/api/search?q=%00", AUTH),
    (b"/api/search?cursor=99999999999999999999999", AUTH),
    (b"/api/search?limit=" + b"9" * 5000, AUTH),
    (b"/api/search?since=0001-01-01T00:00:00%2B14:00", AUTH),
    (b"/api/tail?n=%C2%B2", AUTH),
    (b"/api/tail?host=%00", AUTH),
    (b"/api/tail?since=99999999999d", AUTH),
    (b"/api/tail", AUTH + "Last-Event-ID: ²\r\n".encode()),
    (b"/api/tail", AUTH + b"Last-Event-ID: \xb2\r\n"),
    (b"/api/tail", AUTH + b"Last-Event-ID: " + b"9" * 30 + b"\r\n"),
    (b"/api/search", b"Authorization: Bearer \xff\xfe\xc3\r\n"),
    (b"/api/tail", b"Authorization: \xe9\xe9 \xff\r\n"),
    (b"/api/search", b"Cookie: pgsyslog_session=\xff\xfe; x=\"\r\n"),
]


def test_the_known_offenders_are_400s(serve: Any) -> None:
    server = serve("--tcp", "127.0.0.1:0", "--http-token", TOKEN)
    port = server.port("http")
    for path, headers in KNOWN_OFFENDERS:
        answer = exchange(port, path, headers)
        assert answer.status in (400, 401), (path, headers, answer)
        assert answer.content_type.startswith("application/json"), (path, answer)
        assert json.loads(answer.body)["error"].count("\n") == 0
    assert "Traceback" not in settled_log(server)


ALPHABET = ("abcXYZ019 -_.:+/%&=?#\"'\\<>[]{}" "²³¹٣１⁵" "\x00\x01\x07\x1b\x7f\u0085"
            "é漢字🙂\u200f\u0301\ufeff\uffff\U0010ffff" "\ud800\udfff")
SPECIAL_VALUES = ["", " ", "-1", "-0", "+5", "5.0", "1e9", "0x10", "nan", "∞", "²",
                  "99999999999d", "-99999999999w", "9" * 19, "9" * 20, "9" * 4400,
                  "9223372036854775807", "9223372036854775808", "now", "yesterday",
                  "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "2024-02-30",
                  "24:00", "\x00", "a\x00b", "\ud800", "true", "maybe", "emerg", "local7",
                  '"unclosed', "-", "!!!", "a & b | c", "''"]


def random_value(rng: random.Random) -> str:
    if rng.random() < 0.4:
        return rng.choice(SPECIAL_VALUES)
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 24)))


def random_query(rng: random.Random, known: tuple[str, ...]) -> list[tuple[str, str]]:
    names = [*known, "x", "LIMIT", "host\x00", "²"]
    pairs = [(rng.choice(names), random_value(rng)) for _ in range(rng.randint(1, 3))]
    if rng.random() < 0.15:
        pairs.append(pairs[0])  # a repeated parameter
    return pairs


def random_header_bytes(rng: random.Random) -> bytes:
    return bytes(rng.choice(b"abz09 :;=,\"\\\t\x00\x01\x7f\x80\xb2\xc3\xe9\xff")
                 for _ in range(rng.randint(0, 30)))


def test_random_parameters_and_headers_never_fail_the_server(serve: Any) -> None:
    server = serve("--tcp", "127.0.0.1:0", "--http-token", TOKEN)
    port = server.port("http")
    rng = random.Random(20240301)
    statuses: dict[int, int] = {}

    def send(path: bytes, headers: bytes = AUTH, **kwargs: Any) -> None:
        answer = exchange(port, path, headers, **kwargs)
        check(answer, (path, headers, kwargs))
        statuses[answer.status] = statuses.get(answer.status, 0) + 1

    for _ in range(250):
        send(b"/api/search?" + query_string(random_query(rng, SEARCH_PARAMS)))
    for _ in range(100):
        send(b"/api/tail?" + query_string(random_query(rng, TAIL_PARAMS)))
    for _ in range(40):
        send(b"/healthz?" + query_string(random_query(rng, SEARCH_PARAMS)))
    for _ in range(60):
        name = rng.choice([b"Authorization", b"Last-Event-ID", b"Cookie", b"Content-Type"])
        value = rng.choice([random_value(rng).encode("utf-8", "surrogatepass"),
                            random_header_bytes(rng), b"Bearer " + random_header_bytes(rng)])
        path = rng.choice([b"/api/search", b"/api/tail", b"/healthz"])
        send(path, (AUTH if name != b"Authorization" else b"") + name + b": " + value + b"\r\n")
    for _ in range(40):
        content_type = rng.choice([b"application/json", b"application/x-www-form-urlencoded",
                                   b"multipart/form-data; boundary=x", b"text/plain", b"\xff"])
        body = rng.choice([random_value(rng).encode("utf-8", "surrogatepass"),
                           random_header_bytes(rng), b'{"token": %s}' % random_header_bytes(rng)])
        send(b"/api/login", b"Content-Type: " + content_type + b"\r\n", method=b"POST", body=body)
    assert statuses.get(400, 0) > 200  # most of it was bad input, and was told so
    log = settled_log(server)
    assert "Traceback" not in log
    assert not re.search(r"(GET|POST) /\S* failed:", log)  # json_errors saw no bug
