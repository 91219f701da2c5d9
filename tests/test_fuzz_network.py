"""The network fuzz of bench/fuzz.py, bounded: 20,000 hostile TCP frames and 5,000 datagrams.

Every frame is accounted for: stored, dropped as empty, dropped by UDP (queue full, kernel
buffer) or lost with a connection the receiver refused for its framing (the case that
made it refuse comes last on its connection, so nothing else is lost with it). A normal
message sent afterwards over each transport arrives intact.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

from helpers import ServerProcess

# bench/ is not a package: its fuzz module is imported from its directory.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import fuzz

TCP_FRAMES = 20_000
UDP_DATAGRAMS = 5_000
UDP_RATE = 5_000  # datagrams a second: a second of UDP


def test_hostile_frames_over_tcp_and_udp_are_all_accounted_for(
        serve: Callable[..., ServerProcess], dsn: str) -> None:
    server = serve("--tcp", "127.0.0.1:0", "--udp", "127.0.0.1:0")
    rng = random.Random(20261121)
    tally = fuzz.Tally()
    deadline = time.monotonic() + 240
    fuzz.send_tcp(server.port("tcp"), fuzz.tcp_connections(rng, TCP_FRAMES), tally,
                  deadline=deadline)
    fuzz.wait_until_written(dsn, deadline=deadline)
    fuzz.send_udp(server.port("udp"), fuzz.udp_datagrams(rng, UDP_DATAGRAMS), UDP_RATE, tally,
                  deadline=deadline)
    fuzz.wait_until_written(dsn, deadline=deadline)
    fuzz.send_normal_messages(server.port("tcp"), server.port("udp"), tally)
    assert fuzz.normal_arrived_intact(dsn), fuzz.normal_rows(dsn)
    assert server.stop() == 0
    counters = fuzz.final_counters(server.errors)
    rows = fuzz.stored_rows(dsn)
    assert fuzz.problems(tally, counters, rows) == [], fuzz.report(tally, counters, rows, 0)
    assert (tally.tcp_frames, tally.udp_sent) == (TCP_FRAMES + 1, UDP_DATAGRAMS + 1)
    # The run did meet what it is for: the hostile cases were sent and some were refused.
    assert tally.tcp_refused > 0 and tally.kinds["tcp RELP session"] > 0
    for kind in ("random bytes", "invalid UTF-8", "PRI edge case", "deeply nested SD",
                 "hostile header fields", "lying count, too large", "CR-only line ends"):
        assert tally.kinds[f"tcp {kind}"] > 0, kind
    assert counters["cut_short"] > 0 and counters["truncated"] > 0
    assert "Traceback" not in server.log
