"""Fuzz over the network: hostile frames against a real `pgsyslog serve`, every one accounted for.

    python bench/fuzz.py [--tcp-frames 1000000] [--udp-datagrams 200000] [--seed 1]
                         [--udp-rate 5000] [--dsn URL]

Starts a PostgreSQL of its own (the embedded one, in a temporary directory; or --dsn, an
empty database) and a `pgsyslog serve` listening on 127.0.0.1 only, on ports the kernel
picks. Sends random bytes, invalid UTF-8, PRI edge cases, unterminated and deeply nested
STRUCTURED-DATA, 100 KB SD, NUL bytes, CR-only line ends, lying octet counts, RELP
sessions and 3,000-character header fields over TCP (octet-counted, LF- and NUL-ended,
one connection after another), then datagrams over UDP at a fixed rate. Then one normal
message over each transport, which must arrive intact; then it stops serve and prints
what was sent, stored and counted as dropped, by reason. UDP is sent once serve has
written what came over TCP, and the normal messages once it has written everything.

Bookkeeping. A "frame" is what the receiver's framing makes of the bytes, so each case
knows how many it is: a count smaller than its message splits it in two (the rest is read
as a line); CR-only lines followed by one LF are one frame (CR does not end a frame).
Cases that make the receiver close the connection (an octet count above its ceiling,
digits that are not a count, a RELP session) come last on their connection, so what the
connection lost is exactly that case: everything before it was read before the receiver
could see it. The check is, per transport and in all:

    tcp: frames sent = received by serve + frames lost with their refused connection
    udp: datagrams sent = received by serve + dropped by the kernel (its buffer was full)
    all: sent = stored + dropped (empty, UDP queue full, kernel) + lost with connections

and exits 1 when a sum does not hold or the last normal messages did not arrive intact.
Bounded: counts are arguments, the run stops by itself, 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import ast
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

MAX_FRAME_LENGTH = 64 * 1024  # serve's default max_frame_length
MAX_OCTET_COUNT = 64 * 1024 * 1024  # framing.MAX_OCTET_COUNT: a larger count closes
MAX_DATAGRAM = 65_000  # below UDP's 65,507-byte payload limit
FRAMES_PER_CONNECTION = (1, 200)
DEADLINE_S = 1800  # sending stops with an error past this; serve is stopped either way
OMRELP_OPEN = (b"1 open 86 relp_version=0\nrelp_software=librelp,1.11.0,"
               b"http://librelp.adiscon.com\ncommands=syslog\n")
NORMAL_TEXT = "the normal message after the fuzz: Zürich ✓ [ok]"


@dataclass
class Piece:
    data: bytes
    frames: int = 1  # frames the receiver's framing makes of data


@dataclass
class Connection:
    payload: bytes
    kinds: Counter[str]
    handed: int  # frames the receiver reads and hands on
    lost: int = 0  # frames lost because the receiver closes the connection
    refused: bool = False  # the receiver closes it (framing error)


# ----------------------------------------------------------------------------- contents

WORDS = b"login failed for user admin from 192.0.2.7 port 22 ssh2 disk full retry".split()


def words(rng: random.Random, n: int = 8) -> bytes:
    return b" ".join(rng.choices(WORDS, k=n))


def good_message(rng: random.Random) -> bytes:
    return (b"<%d>1 2026-11-21T12:%02d:%02dZ web%d nginx %d - - %s"
            % (rng.randint(0, 191), rng.randint(0, 59), rng.randint(0, 59), rng.randint(0, 9),
               rng.randint(1, 65535), words(rng)))


PRI_EDGES = [b"<0>", b"<191>", b"<192>", b"<999>", b"<1000>", b"<>", b"<-1>", b"<1", b"<013>",
             b"<0013>", b"< 13>", b"<13 >", b"<a>", b"<<13>>", b"<13><14>", b"<\xff>", b">13<"]
BAD_UTF8 = [b"\xff", b"\xfe", b"\xc3", b"\xc3\x28", b"\xe2\x82", b"\xed\xa0\x80", b"\xf0\x9f\x9a",
            b"\xc0\xaf", b"\xf8\x88\x80\x80\x80", b"\x80\x80", b"\xef\xbb"]


def pri_edge(rng: random.Random) -> bytes:
    rest = rng.choice([b"1 - h app - - - ", b"Nov 21 11:59:58 h app: ", b"", b" "])
    return rng.choice(PRI_EDGES) + rest + words(rng)


def invalid_utf8(rng: random.Random) -> bytes:
    parts = [rng.choice(BAD_UTF8) + w for w in rng.choices(WORDS, k=6)]
    head = rng.choice([b"<14>1 - h\xff app\xc3 - - - ", b"<13>Nov 21 11:59:58 h\xfe app: ",
                       b'<14>1 - h app - - [x v="\xc3\x28"] '])
    return head + b" ".join(parts)


def unterminated_sd(rng: random.Random) -> bytes:
    return rng.choice([b'<14>1 - h app - - [x a="never closed ', b"<14>1 - h app - - [x",
                       b'<14>1 - h app - - [x a="1"][y b="2', b'<14>1 - h app - - [x a="\\'])


def nested_sd(rng: random.Random) -> bytes:
    depth = rng.randint(10, 5000)
    return rng.choice([b"<14>1 - h app - - " + b"[" * depth + b"]" * depth + b" msg",
                       b"<14>1 - h app - - " + b"[a " * depth + b"x",
                       b'<14>1 - h app - - [a x="' + b"[" * depth + b'"] msg'])


def huge_sd(rng: random.Random) -> bytes:
    return (b'<14>1 - h app - - [big v="' + b"v" * rng.randint(100_000, 110_000) + b'"] after')


def hostile_fields(rng: random.Random) -> bytes:
    huge = b"x" * 3000
    return rng.choice([b"<14>1 - " + huge + b" app - - - m", b"<14>1 - h " + huge + b" - - - m",
                       b"<14>1 - h a " + huge + b" " + huge + b" - m",
                       b"<13>Nov 21 11:59:58 h " + huge + b"[1]: m"])


def nul_inside(rng: random.Random) -> bytes:
    return b"<14>1 - h app - - - before\x00after" + b"\x00" * rng.randint(0, 3)


def random_bytes(rng: random.Random) -> bytes:
    return rng.randbytes(rng.choice([rng.randint(1, 64), rng.randint(1, 2000)]))


# Each kind makes the content of one message; how it is framed is chosen apart from it.
CONTENTS: dict[str, tuple[int, Callable[[random.Random], bytes]]] = {
    "good": (30, good_message),
    "random bytes": (20, random_bytes),
    "invalid UTF-8": (10, invalid_utf8),
    "PRI edge case": (10, pri_edge),
    "unterminated SD": (6, unterminated_sd),
    "deeply nested SD": (4, nested_sd),
    "hostile header fields": (4, hostile_fields),
    "NUL inside": (4, nul_inside),
    "100 KB SD": (1, huge_sd),  # scaled down below: rare, and cut to max_frame_length
}


def pick_content(rng: random.Random) -> tuple[str, bytes]:
    kinds = list(CONTENTS)
    kind = rng.choices(kinds, weights=[CONTENTS[k][0] for k in kinds])[0]
    if kind == "100 KB SD" and rng.random() > 0.02:
        kind = "good"
    return kind, CONTENTS[kind][1](rng)


# ----------------------------------------------------------------------------- framing


def as_line(content: bytes) -> bytes:
    """Content that a line can carry: no LF or NUL (they end it), no digit first (a count)."""
    content = content.replace(b"\n", b" ").replace(b"\x00", b" ")
    return content if content[:1] and not content[:1].isdigit() else b"x" + content


def counted(content: bytes) -> Piece:
    return Piece(b"%d %s" % (len(content), content))


def body_piece(rng: random.Random) -> tuple[str, Piece]:
    """One case that leaves the framing in step: any position on a connection."""
    roll = rng.random()
    if roll < 0.03:
        return "empty or whitespace", Piece(rng.choice([b"\n", b"   \n", b"\t\r\n", b"1  "]))
    if roll < 0.06:  # CR-only line ends: one frame until the LF
        lines = b"\r".join(as_line(good_message(rng)) for _ in range(rng.randint(2, 5)))
        return "CR-only line ends", Piece(lines + b"\r\n")
    if roll < 0.08:
        return "lying count, too small", short_count(rng)
    if roll < 0.085:
        return "line over max_frame_length", Piece(b"<14>" + b"L" * (MAX_FRAME_LENGTH + 999)
                                                   + b"\n")
    kind, content = pick_content(rng)
    framing = rng.random()
    if framing < 0.5:
        return kind, counted(content)
    if framing < 0.8:
        return kind, Piece(as_line(content) + b"\n")
    return kind, Piece(as_line(content) + b"\x00")  # Python's SysLogHandler over TCP


def short_count(rng: random.Random) -> Piece:
    """A count smaller than its message: the count's frame, then the rest as a line."""
    message = as_line(good_message(rng))
    cuts = [i for i in range(1, len(message)) if not message[i : i + 1].isdigit()]
    return Piece(b"%d %s\n" % (rng.choice(cuts), message), frames=2)


def ending(rng: random.Random) -> tuple[str, Piece, int, bool]:
    """What may end a connection: (kind, piece, frames lost, the receiver closes it)."""
    roll = rng.random()
    if roll < 0.10:  # a count larger than what follows: cut by the connection's end
        content = good_message(rng)
        lie = len(content) + rng.randint(1, 10**6)
        return "lying count, too large", Piece(b"%d %s" % (lie, content)), 0, False
    if roll < 0.15:
        return "unterminated last line", Piece(as_line(good_message(rng))), 0, False
    if roll < 0.18:
        lie = rng.randint(MAX_OCTET_COUNT + 1, 999_999_999)
        return ("lying count, above the ceiling",
                Piece(b"%d %s" % (lie, good_message(rng)), frames=0), 1, True)
    if roll < 0.20:  # after a counted frame, digits that are not a count lose the framing
        data = counted(good_message(rng)).data + b"12x4 " + good_message(rng) + b"\n"
        return "digits that are not a count", Piece(data, frames=1), 1, True
    return "", Piece(b"", frames=0), 0, False


def relp_session(rng: random.Random, frames: int) -> Connection:
    """rsyslog's omrelp pointed at the plain port: its open, then syslog commands."""
    messages = [good_message(rng) for _ in range(frames - 1)]
    syslog = b"".join(b"%d syslog %d %s\n" % (txnr, len(m), m)
                      for txnr, m in enumerate(messages, 2))
    return Connection(OMRELP_OPEN + syslog, Counter({"RELP session": 1}), handed=0,
                      lost=frames, refused=True)


def tcp_connections(rng: random.Random, total: int) -> Iterator[Connection]:
    """Connections whose frames add up to exactly ``total``, each with its bookkeeping."""
    sent = 0
    while sent < total:
        budget = min(rng.randint(*FRAMES_PER_CONNECTION), total - sent)
        if rng.random() < 0.02:
            connection = relp_session(rng, min(budget, 5))
        else:
            connection = plain_connection(rng, budget)
        sent += connection.handed + connection.lost
        yield connection


def plain_connection(rng: random.Random, budget: int) -> Connection:
    kinds: Counter[str] = Counter()
    end_kind, end, lost, refused = ending(rng)
    if end.frames + lost > budget:
        end_kind, end, lost, refused = "", Piece(b"", frames=0), 0, False
    parts, handed = [], 0
    while handed + end.frames + lost < budget:
        kind, piece = body_piece(rng)
        if handed + piece.frames + end.frames + lost > budget:
            kind, piece = "good", counted(good_message(rng))
        parts.append(piece.data)
        handed += piece.frames
        kinds[kind] += 1
    if end_kind:
        parts.append(end.data)  # last: what follows a refusal would be lost too
        kinds[end_kind] += 1
    return Connection(b"".join(parts), kinds, handed + end.frames, lost, refused)


def udp_datagrams(rng: random.Random, count: int) -> Iterator[tuple[str, bytes]]:
    for _ in range(count):
        roll = rng.random()
        if roll < 0.03:
            yield "empty or whitespace", rng.choice([b"", b" ", b"\r\n", b"\x00", b" \t "])
        elif roll < 0.08:  # syslog-ng's loggen frames datagrams with their own length
            content = good_message(rng)
            yield "loggen octet count", b"%d %s" % (len(content), content)
        elif roll < 0.10:
            content = good_message(rng)
            yield "lying count", b"%d %s" % (len(content) + rng.randint(-5, 5) or 1, content)
        else:
            kind, content = pick_content(rng)
            yield kind, content[:MAX_DATAGRAM]


# ----------------------------------------------------------------------------- sending


@dataclass
class Tally:
    """What was sent, and what the bookkeeping says the receiver must have of it."""

    tcp_frames: int = 0
    tcp_handed: int = 0  # frames the receiver read before any close
    tcp_lost: int = 0  # frames lost with the connections the receiver refused
    tcp_connections: int = 0
    tcp_refused: int = 0
    unexpected_closes: int = 0  # connections closed early that should not have been
    udp_sent: int = 0
    udp_not_sent: int = 0  # sendto failed on our side: never offered to the receiver
    kinds: Counter[str] = field(default_factory=Counter)


def send_tcp(port: int, connections: Iterator[Connection], tally: Tally,
             progress: Callable[[int], None] = lambda n: None,
             deadline: float = float("inf")) -> None:
    for connection in connections:
        if time.monotonic() > deadline:
            raise TimeoutError("the fuzz run passed its deadline")
        closed_early = send_one_connection(port, connection.payload)
        tally.tcp_connections += 1
        tally.tcp_frames += connection.handed + connection.lost
        tally.tcp_handed += connection.handed
        tally.tcp_lost += connection.lost
        tally.tcp_refused += connection.refused
        tally.unexpected_closes += closed_early and not connection.refused
        tally.kinds.update({f"tcp {k}": n for k, n in connection.kinds.items()})
        progress(tally.tcp_frames)


def send_one_connection(port: int, payload: bytes) -> bool:
    """Send, half-close, read until the receiver closes; True when it reset the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=120) as s:
        try:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            while s.recv(65536):
                pass
        except (ConnectionResetError, BrokenPipeError):
            return True
    return False


def send_udp(port: int, datagrams: Iterator[tuple[str, bytes]], rate: int,
             tally: Tally, deadline: float = float("inf")) -> None:
    burst = max(1, rate // 100)  # 100 bursts a second
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        start = time.perf_counter()
        for n, (kind, datagram) in enumerate(datagrams, 1):
            try:
                s.sendto(datagram, ("127.0.0.1", port))
            except OSError:
                tally.udp_not_sent += 1
                continue
            tally.udp_sent += 1
            tally.kinds[f"udp {kind}"] += 1
            if n % burst == 0:
                if time.monotonic() > deadline:
                    raise TimeoutError("the fuzz run passed its deadline")
                if (ahead := start + n / rate - time.perf_counter()) > 0:
                    time.sleep(ahead)


NORMAL_TCP = f"<14>1 2026-11-21T12:00:00Z fuzz-check tcp-check 7 ID1 - {NORMAL_TEXT}\n"
NORMAL_UDP = f"<14>1 2026-11-21T12:00:00Z fuzz-check udp-check 7 ID1 - {NORMAL_TEXT}"


def send_normal_messages(tcp_port: int, udp_port: int, tally: Tally) -> None:
    """One ordinary message over each transport, after all the rest."""
    send_one_connection(tcp_port, NORMAL_TCP.encode())
    tally.tcp_connections += 1
    tally.tcp_frames += 1
    tally.tcp_handed += 1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(NORMAL_UDP.encode(), ("127.0.0.1", udp_port))
    tally.udp_sent += 1


# ----------------------------------------------------------------------------- checking


def normal_rows(dsn: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT transport, hostname, app_name, procid, msgid, message, parse_error "
            "FROM syslog.messages WHERE hostname = 'fuzz-check' ORDER BY transport").fetchall()


def row_count(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM syslog.messages").fetchone()
    return int(row[0]) if row else 0


def wait_until_written(dsn: str, quiet: float = 3.0, deadline: float = float("inf")) -> None:
    """Until the row count stops growing for ``quiet`` seconds: serve has caught up."""
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        n = row_count(dsn)
        if n != last:
            last, since = n, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        time.sleep(0.5)


def normal_arrived_intact(dsn: str, timeout: float = 120) -> bool:
    expected = [(t, "fuzz-check", f"{t}-check", "7", "ID1", NORMAL_TEXT, None)
                for t in ("tcp", "udp")]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = normal_rows(dsn)
        if len(rows) >= 2:
            return rows == expected
        time.sleep(0.5)
    return False


def stored_rows(dsn: str) -> dict[str, int]:
    """Rows by transport, with_error (parse_error set), and unrouted."""
    with psycopg.connect(dsn) as conn:
        by_transport: dict[str, int] = dict(conn.execute(
            "SELECT transport, count(*) FROM syslog.messages GROUP BY transport").fetchall())
        with_error = conn.execute(
            "SELECT count(*) FROM syslog.messages WHERE parse_error IS NOT NULL").fetchone()
        unrouted = conn.execute("SELECT count(*) FROM syslog.unrouted").fetchone()
    return {"tcp": by_transport.get("tcp", 0), "udp": by_transport.get("udp", 0),
            "with_error": with_error[0] if with_error else 0,
            "unrouted": unrouted[0] if unrouted else 0}


def final_counters(stderr_lines: list[str]) -> dict[str, Any]:
    """The counters serve logs as it stops (``stopped: {...}, kernel_udp_drops=N``)."""
    for line in reversed(stderr_lines):
        if m := re.search(r"stopped: (\{.*\}), kernel_udp_drops=(\d+)", line):
            counters: dict[str, Any] = ast.literal_eval(m.group(1))
            counters["kernel_udp_drops"] = int(m.group(2))
            return counters
    raise SystemExit("serve logged no final counters")


def problems(tally: Tally, counters: dict[str, Any], rows: dict[str, int]) -> list[str]:
    """Every sum of the bookkeeping that does not hold (empty: all hold).

    A datagram dropped because the queue was full was read and parsed first: it is in
    ``received``; one the kernel dropped never reached serve.
    """
    received = counters["received_by_transport"]
    kernel = counters["kernel_udp_drops"]
    stored = rows["tcp"] + rows["udp"] + rows["unrouted"]
    dropped = counters["dropped_empty"] + counters["dropped_queue_full"] + kernel
    checks = [
        ("tcp: frames sent = read + lost with refused connections",
         tally.tcp_frames, received.get("tcp", 0) + tally.tcp_lost),
        ("udp: datagrams sent = read + dropped by the kernel",
         tally.udp_sent, received.get("udp", 0) + kernel),
        ("all: sent = stored + dropped (empty, queue full, kernel) + lost with connections",
         tally.tcp_frames + tally.udp_sent, stored + dropped + tally.tcp_lost),
        ("connections refused for their framing = framing errors",
         tally.tcp_refused, counters["framing_errors"]),
        ("rows written = rows stored", counters["written"], rows["tcp"] + rows["udp"]),
        ("connections closed early that should not have been", 0, tally.unexpected_closes),
        ("rows spooled and not replayed", 0, counters["spooled"] - counters["replayed"]),
        ("rows rejected by the database", 0, counters["rejected"]),
    ]
    return [f"{name}: expected {want:,}, got {got:,}" for name, want, got in checks
            if want != got]


def report(tally: Tally, counters: dict[str, Any], rows: dict[str, int], seconds: float) -> str:
    received = counters["received_by_transport"]
    return "\n".join([
        f"sent:    tcp {tally.tcp_frames:,} frames on {tally.tcp_connections:,} connections, "
        f"udp {tally.udp_sent:,} datagrams ({tally.udp_not_sent:,} refused by sendto), "
        f"in {seconds:,.0f} s",
        f"read:    tcp {received.get('tcp', 0):,}, udp {received.get('udp', 0):,} "
        f"(handed to the parser)",
        f"stored:  tcp {rows['tcp']:,}, udp {rows['udp']:,}, unrouted {rows['unrouted']:,}; "
        f"{rows['with_error']:,} with a parse_error, {counters['truncated']:,} truncated, "
        f"{counters.get('cut_short', 0):,} cut short",
        f"dropped: empty {counters['dropped_empty']:,}, udp queue full "
        f"{counters['dropped_queue_full']:,}, udp kernel buffer {counters['kernel_udp_drops']:,}, "
        f"lost with {tally.tcp_refused:,} refused connections {tally.tcp_lost:,} "
        f"(framing_errors {counters['framing_errors']:,})",
        "cases:   " + ", ".join(f"{k} {n:,}" for k, n in sorted(tally.kinds.items())),
    ])


# ----------------------------------------------------------------------------- serve


@dataclass
class Serve:
    proc: subprocess.Popen[str]
    ports: dict[str, int]
    stderr: list[str]
    reader: threading.Thread

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        status = self.proc.wait(300)
        self.reader.join(10)
        return status


def start_serve(dsn: str, data_dir: Path) -> Serve:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pgsyslog", "serve", "--dsn", dsn, "--data-dir", str(data_dir),
         "--tcp", "127.0.0.1:0", "--udp", "127.0.0.1:0", "--http", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stderr: list[str] = []

    def read_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            # the first lines (why a start failed), the counters, and anything alarming
            if len(stderr) < 20 or any(w in line for w in ("stopped: {", "Traceback",
                                                             "ERROR", "CRITICAL")):
                stderr.append(line.rstrip("\n"))

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    ports: dict[str, int] = {}
    assert proc.stdout is not None
    for line in proc.stdout:
        if m := re.match(r"listening on (udp|tcp)://.+:(\d+)$", line.strip()):
            ports[m.group(1)] = int(m.group(2))
        if line.startswith("then:"):
            break
    if proc.poll() is not None or set(ports) != {"tcp", "udp"}:
        raise SystemExit(f"serve did not start: {stderr}")
    threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep the pipe drained
    return Serve(proc, ports, stderr, reader)


def run(dsn: str, data_dir: Path, args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    serve = start_serve(dsn, data_dir)
    tally = Tally()
    started = time.monotonic()
    step = max(1, args.tcp_frames // 10)
    marks = iter(range(step, args.tcp_frames + step, step))
    next_mark = next(marks)

    def progress(frames: int) -> None:
        nonlocal next_mark
        if frames >= next_mark:
            print(f"  tcp: {frames:,} frames sent", flush=True)
            next_mark = next(marks, sys.maxsize)

    try:
        deadline = started + DEADLINE_S
        send_tcp(serve.ports["tcp"], tcp_connections(rng, args.tcp_frames), tally, progress,
                 deadline)
        wait_until_written(dsn, deadline=deadline)  # UDP's drops are then UDP's own
        send_udp(serve.ports["udp"], udp_datagrams(rng, args.udp_datagrams), args.udp_rate,
                 tally, deadline)
        print(f"  udp: {tally.udp_sent:,} datagrams sent", flush=True)
        wait_until_written(dsn, deadline=deadline)
        send_normal_messages(serve.ports["tcp"], serve.ports["udp"], tally)
        intact = normal_arrived_intact(dsn)
    finally:
        status = serve.stop()
    seconds = time.monotonic() - started
    counters = final_counters(serve.stderr)
    rows = stored_rows(dsn)
    print(report(tally, counters, rows, seconds))
    found = problems(tally, counters, rows)
    if status != 0:
        found.append(f"serve exited with status {status}")
    if not intact:
        found.append(f"the normal messages sent afterwards: {normal_rows(dsn)}")
    if any("Traceback" in line for line in serve.stderr):
        found.append("serve printed a traceback")
    for problem in found:
        print(f"FAILED {problem}")
    if not found:
        print("check:   stored + dropped = sent on every transport; the normal messages sent "
              "afterwards arrived intact: OK")
    return 1 if found else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tcp-frames", type=int, default=1_000_000)
    parser.add_argument("--udp-datagrams", type=int, default=200_000)
    parser.add_argument("--udp-rate", type=int, default=5_000, help="datagrams offered/s")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dsn", help="an empty database to use instead of an embedded one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pgsyslog-fuzz-") as tmp:
        if args.dsn:
            sys.exit(run(args.dsn, Path(tmp) / "data", args))
        from pgsyslog.storage.database import EmbeddedDatabase

        database = EmbeddedDatabase(Path(tmp) / "pg", stop_on_exit=True)
        try:
            status = run(database.start(), Path(tmp) / "data", args)
        finally:
            database.stop()
    sys.exit(status)


if __name__ == "__main__":
    main()
