"""Parser throughput on one core: messages per second, median of 5 runs per format.

    python bench/parse.py [--messages N]

Each format gets realistic, varied lines generated here (fixed seed): hosts, apps,
PIDs, offsets, fractions, message lengths and SD values differ from line to line. Rates
are per second of CPU time of this process, so other work on the machine counts less.
Goals on the reference machine: >= 200,000 msg/s for RFC 5424 without SD and
>= 100,000 msg/s with SD.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from pgsyslog.receiver.parsers import parse_message
from pgsyslog.record import ParseContext

RUNS = 5
GOALS = {"rfc5424 without SD": 200_000, "rfc5424 with 2 SD elements": 100_000}

HOSTS = ["web01", "web02.example.com", "db-primary", "10.20.30.40", "fw-edge-3", "k8s-node-17"]
APPS = ["nginx", "sshd", "postgres", "kernel", "haproxy", "billing-api", "cron", "systemd"]
MSGIDS = ["-", "ID47", "AUDIT", "REQ", "-", "CONN"]
WORDS = [
    "connection", "accepted", "from", "peer", "closed", "timeout", "user", "session", "started",
    "finished", "request", "GET", "POST", "/api/v1/items", "status", "200", "404", "500",
    "latency", "ms", "bytes", "upstream", "retry", "queue", "depth", "käse", "naïve",
]  # fmt: skip
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
# SD values; one in ten needs escapes (\" \\ \]), more than real senders produce.
NOTES = ["ok", "retry", "cache miss", "queue full", "disk 91%", "user=alice", "ümlaut", "v2.3.1",
         "eu-west-1", 'say \\"C:\\\\tmp\\]\\"']  # fmt: skip
LEVELS = ["INFO", "WARN", "ERROR", "DEBUG", "info", "Warning", "TRACE", "CRITICAL"]


def _text(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 30)))


def _rfc3339(rng: random.Random) -> str:
    frac = rng.choice(["", ".5", ".123", ".123456"])
    zone = rng.choice(["Z", "Z", "+01:00", "-07:00", "+05:30"])
    return f"2026-11-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}{frac}{zone}"  # noqa: E501


def rfc5424_plain(rng: random.Random) -> bytes:
    return (
        f"<{rng.randint(0, 191)}>1 {_rfc3339(rng)} {rng.choice(HOSTS)} {rng.choice(APPS)} "
        f"{rng.randint(1, 65535)} {rng.choice(MSGIDS)} - {_text(rng)}"
    ).encode()


def rfc5424_sd(rng: random.Random) -> bytes:
    value = rng.choice(NOTES)
    sd = (
        f'[meta sequenceId="{rng.randint(1, 10**6)}" sysUpTime="{rng.randint(1, 10**8)}"]'
        f'[origin@32473 ip="192.0.2.{rng.randint(1, 254)}" software="{rng.choice(APPS)}" '
        f'note="{value}"]'
    )
    return (
        f"<{rng.randint(0, 191)}>1 {_rfc3339(rng)} {rng.choice(HOSTS)} {rng.choice(APPS)} "
        f"{rng.randint(1, 65535)} {rng.choice(MSGIDS)} {sd} {_text(rng)}"
    ).encode()


def rfc3164(rng: random.Random) -> bytes:
    day = rng.randint(1, 28)
    stamp = f"{rng.choice(MONTHS)} {day:2d} {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}"  # noqa: E501
    tag = rng.choice([f"{rng.choice(APPS)}[{rng.randint(1, 65535)}]:", f"{rng.choice(APPS)}:"])
    return f"<{rng.randint(0, 191)}>{stamp} {rng.choice(HOSTS)} {tag} {_text(rng)}".encode()


def custom(rng: random.Random) -> bytes:
    if rng.random() < 0.5:
        stamp = _rfc3339(rng)
    else:
        stamp = f"2026-11-{rng.randint(1, 28):02d} {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d},{rng.randint(0, 999):03d}"  # noqa: E501
    return f"{stamp} {rng.choice(APPS)} {rng.choice(LEVELS)} {_text(rng)}".encode()


def measure(lines: list[bytes], ctx: ParseContext) -> float:
    """Messages per second of CPU time for one pass over ``lines``.

    CPU time, not wall time, so that other work on the machine does not count.
    """
    parse = parse_message
    started = time.process_time()
    for line in lines:
        parse(line, ctx)
    return len(lines) / (time.process_time() - started)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=50_000, help="lines per run (default 50000)")
    args = ap.parse_args()
    ctx = ParseContext(
        received_at=datetime(2026, 11, 21, 12, 0, tzinfo=UTC), default_tz=ZoneInfo("Europe/Berlin")
    )
    kinds: dict[str, Callable[[random.Random], bytes]] = {
        "rfc5424 without SD": rfc5424_plain,
        "rfc5424 with 2 SD elements": rfc5424_sd,
        "rfc3164": rfc3164,
        "custom": custom,
    }
    print(f"parse_message, one core, median of {RUNS} runs of {args.messages:,} messages")
    for name, make in kinds.items():
        rng = random.Random(name)
        lines = [make(rng) for _ in range(args.messages)]
        rate = statistics.median(measure(lines, ctx) for _ in range(RUNS))
        goal = GOALS.get(name)
        verdict = (
            "" if goal is None else f"  (goal {goal:,}: {'met' if rate >= goal else 'MISSED'})"
        )
        print(f"  {name:<28} {rate:>12,.0f} msg/s{verdict}")


if __name__ == "__main__":
    main()
