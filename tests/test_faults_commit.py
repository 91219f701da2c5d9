"""Exactly once through ambiguous commits (issue 9.1).

The fault proxy lets a writer's COMMIT reach PostgreSQL and then drops the connection
before the answer comes back: the rows are committed, the writer only sees a lost
connection and must try again. A batch's identity, committed with its rows, is what keeps
that retry from storing the batch twice.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import psycopg

from faultkit import Sender, line, stored, wait_for_first_maintenance, wait_for_stored
from faultproxy import FaultProxy
from helpers import ServerProcess, query, send_tcp
from pg15 import Pg15

pytest_plugins = ["faultfixtures"]


def test_commits_cut_after_the_server_committed_store_each_message_once(
        pg: Pg15, proxy: FaultProxy, servers: Callable[..., ServerProcess],
        tmp_path: Path) -> None:
    total, cuts = 20_000, 5
    server = servers(proxy.dsn(pg.dsn), tmp_path / "data", "--batch-rows", "500")
    wait_for_first_maintenance(server)
    proxy.cut_after_commit(cuts)
    sender = Sender(server.port("tcp"), range(total), rate=5_000)  # 4 s: many batches
    sender.start()
    assert sender.finish() == total
    wait_for_stored(pg.dsn, total)
    assert server.stop() == 0, server.log
    assert proxy.cuts_done == cuts, "the proxy cut fewer commits than armed"
    assert stored(pg.dsn) == (total, total), server.log
    assert server.final_counters()["duplicates_skipped"] > 0, "no retry met a committed batch"


def refuse_poison(dsn: str) -> None:
    """Make PostgreSQL refuse one kind of row for a data reason (SQLSTATE 23514).

    The parsers bound every field now, so no message they let through is one that
    syslog.messages refuses; a constraint of the operator's stands in for such a row.
    syslog.unrouted has no such constraint and takes it.
    """
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE syslog.messages ADD CONSTRAINT no_poison "
                     "CHECK (message NOT LIKE 'poison=%')")


def test_a_batch_split_around_a_poison_row_then_cut_stores_each_row_once(
        pg: Pg15, proxy: FaultProxy, servers: Callable[..., ServerProcess],
        tmp_path: Path) -> None:
    total, poison_at = 1_000, 637
    # One batch of all the rows: the poison row makes it split, halves commit apart.
    server = servers(proxy.dsn(pg.dsn), tmp_path / "data", "--batch-rows", str(total),
                     "--batch-age-ms", "2000")
    wait_for_first_maintenance(server)
    refuse_poison(pg.dsn)  # after serve made its partitions: they get the constraint too
    proxy.cut_after_commit(3)  # the first three commits after the split are cut
    lines = [line(i, "poison" if i == poison_at else "id") for i in range(total)]
    send_tcp(server.port("tcp"), b"".join(lines))
    wait_for_stored(pg.dsn, total - 1)
    assert server.stop() == 0, server.log
    assert proxy.cuts_done == 3, "the proxy cut fewer commits than armed"
    assert stored(pg.dsn) == (total - 1, total - 1), server.log
    assert query(pg.dsn, "SELECT message FROM syslog.unrouted") == [("poison=0000637",)], (
        "the poison row is not in syslog.unrouted exactly once: " + server.log)
    assert server.final_counters()["duplicates_skipped"] > 0, "no retry met a committed half"
