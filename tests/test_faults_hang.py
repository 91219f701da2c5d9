"""A database that hangs (issue 9.2): it accepts connections and answers nothing.

The fault proxy stops forwarding in both directions for 20 s in the middle of a stream:
the writer must take the database for away within its own deadlines (the server cannot
enforce a statement timeout while it hangs), spool, keep reading the senders, and store
everything once when the database answers again, including batches whose COMMIT was held
in the hang and reached the server late. Long: about 40 s.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from faultkit import Sender, received, stored, wait_for_stored, wait_until
from faultproxy import FaultProxy
from helpers import ServerProcess
from pg15 import Pg15

pytest_plugins = ["faultfixtures"]

HANG_SECONDS = 20
QUEUE_SIZE = 1_000


@pytest.mark.timeout(180)
def test_a_hung_database_is_taken_for_away_and_senders_are_not_held_up(
        pg: Pg15, proxy: FaultProxy, servers: Callable[..., ServerProcess],
        tmp_path: Path) -> None:
    rate, seconds = 1_000, 28
    total = rate * seconds
    # A small queue: were the writer stuck in the hang, it would fill in a second and the
    # receiver would stop reading the sender.
    server = servers(proxy.dsn(pg.dsn), tmp_path / "data", "--db-statement-timeout", "3",
                     "--db-connect-timeout", "2", "--queue-size", str(QUEUE_SIZE),
                     "--batch-rows", "200")
    sender = Sender(server.port("tcp"), range(total), rate=rate)
    sender.start()
    wait_until(lambda: sender.sent >= 3 * rate, 30, "the first 3 s of the stream")

    proxy.hang()
    read_before, sent_before = received(server), sender.sent
    time.sleep(HANG_SECONDS)
    read_in_hang, sent_in_hang = received(server) - read_before, sender.sent - sent_before
    log_in_hang = server.log
    proxy.pass_through()

    assert sender.finish() == total
    wait_for_stored(pg.dsn, total, timeout=90)
    assert server.stop() == 0, server.log
    assert "spooling" in log_in_hang, f"nothing was spooled during the hang: {log_in_hang}"
    # Read from the sender during the hang: far more than the queue could have absorbed.
    assert read_in_hang > 5 * QUEUE_SIZE, (
        f"during the hang serve read {read_in_hang} messages (the sender sent "
        f"{sent_in_hang}): the writer held up the senders")
    assert stored(pg.dsn) == (total, total), server.log
