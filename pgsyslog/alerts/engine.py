"""One evaluation round: under the alerts advisory lock, count every rule, write the new
states with their history, and claim the notifications owed.

Of several receivers on one database only the one holding the lock evaluates; the others
skip that round. A rule evaluated less than half an interval ago (by another receiver)
is skipped too, so that each rule is evaluated about once per alert_interval however
many receivers share the database (tests/test_alerts_evaluate.py::
test_a_round_writes_state_with_its_history_and_claims_each_notification_once).

The state of a rule that is no longer configured is left alone (list, API and metrics
show configured rules only): two receivers configured differently for a while, during a
rolling change, must not undo each other's alerts and notify them again.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from pgsyslog.alerts import counting, store
from pgsyslog.alerts.evaluate import AlertState, Decision, decide
from pgsyslog.alerts.notify import DELIVERY_SECONDS
from pgsyslog.alerts.rules import AlertRule
from pgsyslog.storage import database

log = logging.getLogger(__name__)

# Next to storage.locks' keys ("pgsyslog" in ASCII plus a purpose number): 3 is alerts.
ALERTS_LOCK = 0x7067_7379_736C_6F00 + 3
# Seconds a receiver holds an owed notification while it delivers it: every attempt
# with its timeout and backoff fits twice (notify.py), so only a receiver that died (or
# stopped mid-delivery) lets it go to another.
CLAIM_SECONDS = 2 * DELIVERY_SECONDS
# A firing alert is posted to Alertmanager again this often: Alertmanager resolves an
# alert by itself when resolve_timeout (5 minutes by default) passes without it.
RESEND_SECONDS = 60.0
# Every statement of a round waits and runs at most this long, so a round always ends.
STATEMENT_LIMIT_MS = 20_000

Connection = psycopg.Connection[Any]


@dataclass
class RoundResult:
    ran: bool  # False when another receiver held the lock
    evaluated: list[str] = field(default_factory=list)
    changes: list[AlertState] = field(default_factory=list)
    owed: list[AlertState] = field(default_factory=list)

    def summary(self) -> str:
        if not self.ran:
            return "skipped: another receiver holds the alerts lock"
        changed = ", ".join(f"{s.rule}{'[' + s.group + ']' if s.group else ''} {s.status}"
                            for s in self.changes)
        return f"{len(self.evaluated)} rule(s) evaluated; {changed or 'no change'}"


@contextmanager
def alerts_lock(conn: Connection) -> Iterator[bool]:
    """Hold the alerts advisory lock while inside; yield False when another has it."""
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (ALERTS_LOCK,)).fetchone()
    got = bool(row and row[0])
    try:
        yield got
    finally:
        if got and not conn.broken:
            conn.execute("SELECT pg_advisory_unlock(%s)", (ALERTS_LOCK,))


def evaluate_rule(conn: Connection, rule: AlertRule, previous: dict[str, AlertState],
                  now: datetime) -> list[Decision]:
    """The rule's decisions, with sample rows for the groups that start firing."""
    decisions = decide(rule, counting.count(conn, rule, now), previous, now)
    return [dataclasses.replace(d, state=dataclasses.replace(
                d.state, samples=counting.samples(conn, rule, d.state.group, now)))
            if d.changed and d.state.status == "firing" else d
            for d in decisions]


def _recent(states: dict[str, AlertState], now: datetime, interval: float) -> bool:
    cutoff = now - timedelta(seconds=interval / 2)
    return any(s.evaluated_at > cutoff for s in states.values())


def run_round(conn: Connection, rules: Sequence[AlertRule], interval: float,
              now: datetime) -> RoundResult:
    """One round on a connection that holds the lock (autocommit)."""
    names = [r.name for r in rules]
    if rules:
        counting.summarize_new_ranges(conn, now, max(r.window for r in rules))
    states = store.load_states(conn, names)
    result = RoundResult(ran=True)
    decisions: list[Decision] = []
    for rule in rules:
        previous = states.get(rule.name, {})
        if _recent(previous, now, interval):
            continue
        decided = evaluate_rule(conn, rule, previous, now)
        decisions += decided
        result.evaluated.append(rule.name)
        result.changes += [d.state for d in decided if d.changed]
    store.write_decisions(conn, decisions)
    resend = [r.name for r in rules if any(t.format == "alertmanager" for t in r.notify)]
    result.owed = store.claim_owed(conn, names, now, CLAIM_SECONDS, resend, RESEND_SECONDS)
    return result


def evaluate_all(dsn: str, rules: Sequence[AlertRule], interval: float,
                 now: datetime | None = None) -> RoundResult:
    """Connect, take the lock (or skip), run one round."""
    now = now or datetime.now(UTC)
    with database.connect(dsn, autocommit=True) as conn, alerts_lock(conn) as got:
        if not got:
            return RoundResult(ran=False)
        conn.execute(f"SET statement_timeout = {STATEMENT_LIMIT_MS}")
        conn.execute(f"SET lock_timeout = {STATEMENT_LIMIT_MS}")
        return run_round(conn, rules, interval, now)
